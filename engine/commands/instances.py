"""Verbs on a whole instance: start, withdraw."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow

from .. import clock, org
from ..access import actor as get_actor, can_see, may_start
from ..errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed
from ..forms import validate_form
from ..models import Timer
from ..queries import instance_dict
from ..runner import Command, InstanceRow
from ..tables import INSERT_INSTANCE, TASK_TABLE, instance_id as parse_instance_id
from .tasks import complete_loaded


def start(rt, process_id: str, username: str, data: dict | None = None, *, at: datetime | None = None) -> dict:
    with rt.db.write() as session:
        actor = get_actor(session, username)
        definition_id = rt.definitions.latest_id(session, process_id)
        if definition_id is None:
            raise NotFound(f"process {process_id!r} not found")
        parsed = rt.definitions.get(session, definition_id)
        if not may_start(session, parsed, actor):
            raise Forbidden(f"{username} may not start {process_id}")
        if data is not None and not isinstance(data, dict):
            raise ValidationFailed({"_form": "data must be a JSON object"})
        start_form = parsed.catalog.get("start_form")
        initial = validate_form(parsed.forms[start_form], data or {}) if start_form else {}
        subject = _subject(session, parsed, actor, initial)
        now = at or clock.now()
        inst = InstanceRow(
            id=0, definition_id=definition_id, process_id=process_id, status="running", started_by_id=actor.id,
            subject_id=subject.id, region_id=subject.region_id, data={}, state="", lock_version=0,
            return_count=0, last_approver_id=None, created_at=now, updated_at=now, completed_at=None)
        inserted = {k: v for k, v in vars(inst).items() if k != "id"}
        inst.id = session.execute(INSERT_INSTANCE, inserted).inserted_primary_key[0]
        cmd = Command(session, inst, parsed, actor, now, had_timers=False)
        meta = {"submitter": subject.username, "started_by": actor.username,
                "region": subject.region.code if subject.region else None}
        wf = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=rt.script_engine)
        wf.task_tree.data.update({**meta, **initial})
        rt._participate(cmd, actor.id)
        rt._participate(cmd, subject.id)
        cmd.record("started", None, subject=subject.username if subject.id != actor.id else None)
        rt._settle(cmd, wf)
        if data and not start_form:
            first = [row for row in cmd.tasks.values() if row.status == "open"]
            if len(first) != 1 or first[0].assignee_id != actor.id:
                raise BadRequest("this process does not start with a task of yours; start it without data")
            complete_loaded(rt, cmd, wf, first[0], data)
        rt._save(cmd, wf)
        return instance_dict(rt, session, inst, with_history=True)


def _subject(session, parsed, actor, initial: dict):
    """Whom the instance is about: the start data's subject field (checked against the catalog's
    rule), else the starter."""
    field_name = parsed.catalog.get("subject_field")
    if not field_name or not initial.get(field_name):
        if parsed.catalog.get("subject_required"):
            raise ValidationFailed({field_name: "this field is required"})
        return actor
    subject = org.user_by_name(session, initial[field_name])
    if subject is None or not subject.active:
        raise ValidationFailed({field_name: f"no active user {initial[field_name]!r}"})
    rule = parsed.catalog.get("subject_rule")
    if rule == "self_or_report" and subject.id != actor.id and subject.id not in org.reports_of(session, actor):
        raise ValidationFailed({field_name: f"{subject.username} is not in your team"})
    if rule == "has_manager" and org.first_active_manager(session, subject) is None:
        raise ValidationFailed({field_name: f"{subject.username} has no manager to evaluate them"})
    if rule == "not_self" and subject.id == actor.id:
        raise ValidationFailed({field_name: "you cannot start this for yourself"})
    return subject


def withdraw(rt, instance_id, username: str) -> dict:
    with rt.command(username, instance_id=parse_instance_id(instance_id)) as cmd:
        session, inst, actor = cmd.session, cmd.instance, cmd.actor
        if not can_see(session, inst, actor):
            raise NotFound(f"instance {instance_id} not found")
        if inst.started_by_id != actor.id:
            raise Forbidden("only the person who started it may withdraw it")
        if inst.status != "running":
            raise Conflict(f"instance {instance_id} is {inst.status}, not running")
        wf = rt._load(cmd)
        rt._run(cmd, wf.cancel)
        session.execute(update(TASK_TABLE).where(TASK_TABLE.c.instance_id == inst.id, TASK_TABLE.c.status == "open")
                        .values(status="cancelled", completed_at=cmd.now))
        session.execute(update(Timer).where(Timer.instance_id == inst.id, Timer.status == "waiting")
                        .values(status="cancelled"))
        data = dict(inst.data or {})
        data["outcome"] = "withdrawn"
        inst.data, inst.status, inst.completed_at = data, "cancelled", cmd.now
        cmd.record("withdrawn", None)
        rt._save(cmd, wf)
        return instance_dict(rt, session, inst, with_history=True)
