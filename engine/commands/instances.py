"""Verbs on a whole instance: start, withdraw, copy (CC), urge, comment."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow

from .. import attachments as stored_files, clock, org
from ..access import actor as get_actor, can_see, may_start
from ..errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited, ValidationFailed
from ..forms import validate_form
from ..models import Attachment, Comment, HistoryEvent, Timer
from ..queries import command_history, instance_dict
from ..runner import Command, InstanceRow, copy_to
from ..tables import CANDIDATE_TABLE, INSERT_INSTANCE, TASK_TABLE, iso, usernames
from ..services import release_reservations
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
        cmd = Command(session, inst, parsed, actor, now, had_timers=False, known_history=(0, ()))  # no history yet
        meta = {"submitter": subject.username, "started_by": actor.username,
                "region": subject.region.code if subject.region else None}
        wf = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=rt.script_engine)
        wf.task_tree.data.update({**meta, **initial})
        if start_form:
            stored_files.link_form(cmd, parsed.forms[start_form], initial)
        rt._participate(cmd, actor.id)
        rt._participate(cmd, subject.id)
        cmd.record("started", None, subject=subject.username if subject.id != actor.id else None)
        rt._settle(cmd, wf)
        if data is not None and not start_form:
            first = [row for row in cmd.tasks.values() if row.status == "open"]
            if len(first) != 1 or first[0].assignee_id != actor.id:
                raise BadRequest("this process does not start with a task of yours; start it without data")
            complete_loaded(rt, cmd, wf, first[0], data)
        rt._save(cmd, wf)
        return instance_dict(rt, session, inst, with_history=True, events=command_history(session, cmd))


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
    with rt.command(username, instance_id=instance_id) as cmd:
        session, inst, actor = cmd.session, cmd.instance, cmd.actor
        if not can_see(session, inst, actor):
            raise NotFound(f"instance {instance_id} not found")
        may = {inst.started_by_id} | ({inst.subject_id} if cmd.parsed.catalog.get("subject_may_withdraw") else set())
        if actor.id not in may:
            raise Forbidden("only the person who started it may withdraw it" if len(may) == 1 else
                            "only the person who started it, or whom it is about, may withdraw it")
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
        release_reservations(cmd)
        rt._save(cmd, wf)
        return instance_dict(rt, session, inst, with_history=True)


MAX_COPIES = 20
URGE_INTERVAL = timedelta(hours=1)
MENTION = re.compile(r"@([A-Za-z0-9_.\-]+)")


def copy(rt, instance_id, username: str, users, comment: str | None = None) -> dict:
    """CC (抄送) by anyone who can see the instance: each user may then read it, its comments and
    attachments, and comment; they decide nothing."""
    with rt.command(username, instance_id=instance_id) as cmd:
        session, actor = cmd.session, cmd.actor
        if not can_see(session, cmd.instance, actor):
            raise NotFound(f"instance {instance_id} not found")
        if not isinstance(users, list) or not 1 <= len(users) <= MAX_COPIES \
                or not all(isinstance(u, str) and u for u in users):
            raise ValidationFailed({"users": f"give 1 to {MAX_COPIES} usernames"})
        _text(comment, "comment", required=False)
        found, unknown = [], []
        for name in dict.fromkeys(users):
            user = org.user_by_name(session, name)
            if user is None or not user.active:
                unknown.append(name)
            elif user.id != actor.id:
                found.append(user)
        if unknown:
            raise ValidationFailed({"users": "no active user: " + ", ".join(unknown)})
        if not found:
            raise ValidationFailed({"users": "copying a request to yourself does nothing"})
        copy_to(cmd, found, actor, comment or None)
        rt._save(cmd)
        return instance_dict(rt, session, cmd.instance, with_history=True)


def urge(rt, instance_id, username: str, comment: str | None = None) -> dict:
    """催办 by the starter or the subject: the owners (or candidates) of the open tasks are told.
    At most once an hour per instance."""
    with rt.command(username, instance_id=instance_id) as cmd:
        session, inst, actor = cmd.session, cmd.instance, cmd.actor
        if not can_see(session, inst, actor):
            raise NotFound(f"instance {instance_id} not found")
        if actor.id not in (inst.started_by_id, inst.subject_id):
            raise Forbidden("only the person who started it, or whom it is about, may urge it")
        if inst.status != "running":
            raise Conflict(f"instance {instance_id} is {inst.status}, not running")
        _text(comment, "comment", required=False)
        last = session.scalar(select(func.max(HistoryEvent.at)).where(
            HistoryEvent.instance_id == inst.id, HistoryEvent.action == "urged"))
        if last is not None and cmd.now - last < URGE_INTERVAL:
            wait = int((last + URGE_INTERVAL - cmd.now).total_seconds()) + 1
            raise RateLimited(f"this request was urged less than an hour ago; try again in {wait // 60 + 1} minutes",
                              wait)
        rows = session.execute(select(TASK_TABLE.c.id, TASK_TABLE.c.assignee_id).where(
            TASK_TABLE.c.instance_id == inst.id, TASK_TABLE.c.status == "open")).all()
        pools = session.execute(select(CANDIDATE_TABLE.c.task_id, CANDIDATE_TABLE.c.user_id).where(
            CANDIDATE_TABLE.c.task_id.in_([r.id for r in rows if r.assignee_id is None] or [""]))).all()
        targets = [(r.id, r.assignee_id) for r in rows if r.assignee_id is not None] + list(pools)
        ids = {uid for _t, uid in targets}
        names = usernames(session, ids)
        for task_id, uid in targets:
            cmd.notify("urge", [uid], task_id, comment=comment or None)
        notified = sorted(names[uid] for uid in ids)
        cmd.record("urged", None, to=notified, comment=comment or None)
        rt._save(cmd)
        return {"notified": notified}


def comment(rt, instance_id, username: str, text, attachments=None) -> dict:
    """A comment on the instance's thread, by anyone who can see it; @username tells that user
    when they can see the instance too."""
    with rt.command(username, instance_id=instance_id) as cmd:
        session, inst, actor = cmd.session, cmd.instance, cmd.actor
        if not can_see(session, inst, actor):
            raise NotFound(f"instance {instance_id} not found")
        text = _text(text, "text", required=True)
        if attachments is None:
            attachments = []
        if not isinstance(attachments, list) or len(attachments) > 20 \
                or not all(isinstance(a, str) for a in attachments):
            raise ValidationFailed({"attachments": "must be a list of at most 20 attachment ids"})
        attachments = list(dict.fromkeys(attachments))
        stored_files.link(cmd, {"attachments": attachments})
        row = Comment(instance_id=inst.id, author_id=actor.id, at=cmd.now, text=text, attachments=attachments)
        session.add(row)
        session.flush()
        mentioned = []
        for name in dict.fromkeys(MENTION.findall(text)):
            user = org.user_by_name(session, name)
            if user is not None and user.active and user.id != actor.id and can_see(session, inst, user):
                mentioned.append(user.id)
        cmd.notify("mention", mentioned, None, comment_id=row.id)
        rt._save(cmd)
        return comment_dict(session, row, actor.username)


def comment_dict(session, row, author: str) -> dict:
    """The comment object; its attachments as the attachment objects of the instance's list."""
    files = [session.get(Attachment, a) for a in row.attachments or []]
    names = usernames(session, {f.uploaded_by_id for f in files if f is not None})
    return {"id": row.id, "at": iso(row.at), "author": author, "text": row.text,
            "attachments": [stored_files.attachment_dict(f, names) for f in files if f is not None]}


def _text(value, field: str, *, required: bool, limit: int = 5000) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationFailed({field: "must be a string" if value is not None else "this field is required"})
    value = value.strip()
    if required and not value:
        raise ValidationFailed({field: "this field is required"})
    if len(value) > limit:
        raise ValidationFailed({field: f"at most {limit} characters"})
    return value
