"""Operations on instances, by an administrator: retry an instance in error, cancel one, reassign a
task. Each is one command (the instance locked, all or nothing) and is recorded in the instance's
history with the administrator as actor (and in the audit trail).

An instance goes into `error` when a step the system runs on its own (a timer firing) fails:
the failing step is rolled back as always, and the instance is marked with what failed and where,
so that it no longer fires that timer over and over and an administrator can see it.
"""
from __future__ import annotations

from sqlalchemy import update

from .. import access, audit, clock, org
from ..errors import Conflict, ProcessError, ValidationFailed
from ..models import Timer
from ..queries import instance_dict, task as task_view
from ..services import release_reservations
from ..tables import DELETE_CANDIDATES, TASK_TABLE, instance_id as parse_instance_id, iso, json_safe
from ..tables import username as username_of
from .instances import _text


def mark_error(rt, instance_id: int, exc: ProcessError, at, during: str) -> None:
    """In a transaction of its own (the failed one rolled back): status `error`, with what failed."""
    error = {"message": exc.message, "where": exc.where, "at": iso(at), "during": during}
    with rt.db.write() as session:
        cmd = rt._command(session, instance_id, None, at)
        if cmd.instance.status not in ("running", "error"):
            return
        cmd.instance.status, cmd.instance.error = "error", json_safe(error)
        cmd.record("error", exc.where, actor=None, message=exc.message, during=during)
        rt._save(cmd)


def _require_admin(rt, name: str) -> None:
    """403 before anything else (an instance that does not exist is nobody else's business)."""
    with rt.db.read() as session:
        access.admin(session, name)


def retry(rt, instance_id, admin_name: str) -> dict:
    """Re-run an instance in error from its last saved state: due timers fire, engine steps run.
    Success: running again (or finished). Failure: still in error, with the new reason (422)."""
    _require_admin(rt, admin_name)
    number = parse_instance_id(instance_id)
    try:
        with rt.command(admin_name, instance_id=number) as cmd:
            access.admin(cmd.session, admin_name)
            inst = cmd.instance
            if inst.status != "error":
                raise Conflict(f"instance {number} is {inst.status}, not in error")
            previous = inst.error
            inst.status, inst.error = "running", None
            cmd.record("retried", None, error=(previous or {}).get("message"))
            wf = rt._load(cmd)
            rt._run(cmd, wf.refresh_timers)
            rt._settle(cmd, wf)
            rt._save(cmd, wf)
            audit.record(cmd.session, cmd.actor, "api", "instance", str(number), "retried",
                         {"status": "error", "error": previous}, {"status": inst.status})
            return instance_dict(rt, cmd.session, inst, with_history=True)
    except ProcessError as exc:
        mark_error(rt, number, exc, clock.now(), "retry")
        raise


def cancel(rt, instance_id, admin_name: str, comment) -> dict:
    """An administrator ends a running (or failed) instance: open tasks and timers are cancelled,
    reservations released, `data.outcome` `cancelled`; the starter is told."""
    _require_admin(rt, admin_name)
    number = parse_instance_id(instance_id)
    with rt.command(admin_name, instance_id=number) as cmd:
        session = cmd.session
        access.admin(session, admin_name)
        comment = _text(comment, "comment", required=True)
        inst = cmd.instance
        if inst.status not in ("running", "error"):
            raise Conflict(f"instance {number} is {inst.status}; only a running instance or one in error can be cancelled")
        before = inst.status
        wf = rt._load(cmd)
        rt._run(cmd, wf.cancel)
        session.execute(update(TASK_TABLE).where(TASK_TABLE.c.instance_id == inst.id,
                                                 TASK_TABLE.c.status.in_(("open", "waiting", "held")))
                        .values(status="cancelled", completed_at=cmd.now))
        session.execute(update(Timer).where(Timer.instance_id == inst.id, Timer.status == "waiting")
                        .values(status="cancelled"))
        data = dict(inst.data or {})
        data["outcome"] = "cancelled"
        inst.data, inst.status, inst.completed_at, inst.error = data, "cancelled", cmd.now, None
        cmd.record("cancelled", None, comment=comment)
        release_reservations(cmd)
        cmd.notify("outcome", [inst.started_by_id, inst.subject_id], outcome="cancelled")
        rt._save(cmd, wf)
        audit.record(session, cmd.actor, "api", "instance", str(number), "cancelled",
                     {"status": before}, {"status": "cancelled", "comment": comment})
        return instance_dict(rt, session, inst, with_history=True)


def reassign(rt, task_id: str, admin_name: str, to) -> dict:
    """An administrator gives an open task to someone else, within the limits of separation of duties."""
    _require_admin(rt, admin_name)
    with rt.command(admin_name, task_id=task_id) as cmd:
        session, row = cmd.session, cmd.task
        access.admin(session, admin_name)
        if row.status not in ("open", "waiting"):
            raise Conflict(f"task {task_id} is {row.status}, not open")
        if not isinstance(to, str) or not to:
            raise ValidationFailed({"to": "this field is required"})
        target = org.user_by_name(session, to)
        why = org.may_take(session, cmd.parsed.lanes, target, cmd.subject, row.lane)
        if why:
            raise ValidationFailed({"to": why})
        if target.id == row.assignee_id:
            raise ValidationFailed({"to": "the task is already theirs"})
        previous = username_of(session, row.assignee_id)
        row.update(assignee_id=target.id, context=row.with_context(via="reassign"))
        session.execute(DELETE_CANDIDATES, {"task_id": row.id})
        rt._participate(cmd, target.id)
        cmd.record("reassigned", row.name, **{"from": previous, "to": target.username})
        cmd.notify("task_assigned", [target.id], row.id, task=row.name)
        rt._save(cmd)
        audit.record(session, cmd.actor, "api", "task", row.id, "reassigned", {"assignee": previous},
                     {"assignee": target.username, "instance_id": row.instance_id})
    return task_view(rt, task_id, admin_name)

