"""Verbs on one task: complete, claim, transfer (delegate)."""
from __future__ import annotations

from datetime import datetime

from SpiffWorkflow.util.task import TaskState

from .. import org
from ..access import check_can_act, is_candidate
from ..errors import Conflict, Forbidden, ValidationFailed
from ..forms import validate_form
from ..queries import instance_dict, task as task_view
from ..runner import Command, TaskRow, find_task, form_payload
from ..tables import DELETE_CANDIDATES, username as username_of


def complete(rt, task_id: str, username: str, data: dict | None, *, at: datetime | None = None) -> dict:
    expired = None
    with rt.command(username, task_id=task_id, at=at) as cmd:
        row = cmd.task
        check_can_act(cmd.session, cmd.instance, row, cmd.actor)
        wf = rt._load(cmd)
        if cmd.had_timers:  # a due timer wins over the user (trap 3): fire it first, then look again
            rt._run(cmd, wf.refresh_timers)
            rt._run(cmd, wf.do_engine_steps, None, cmd.task_completed)
            if cmd.fired_timers:
                rt._settle(cmd, wf)
        if row.status != "open":
            expired = f"task {task_id} closed before your action: {row.title_en} is past its deadline"
        else:
            complete_loaded(rt, cmd, wf, row, data)
        rt._save(cmd, wf)
        instance = instance_dict(rt, cmd.session, cmd.instance, with_history=True)
    if expired:
        raise Conflict(expired)
    return {"instance": instance, "tasks": instance["tasks"]}


def complete_loaded(rt, cmd: Command, wf, row: TaskRow, data) -> None:
    """Complete the open task `row` of the loaded workflow with the user's answer, then settle."""
    info = next((i for i in cmd.parsed.tasks.values() if i.name == row.name), None)
    task = find_task(wf, row.id)
    if task is None or task.state != TaskState.READY:
        raise Conflict(f"task {row.id} is no longer open")
    accepted = validate_form(cmd.parsed.forms[row.form], data if data is not None else {})
    if row.is_approval:
        decision = accepted.get("decision")
        if decision == "return":
            if cmd.instance.return_count >= cmd.parsed.max_returns():
                raise ValidationFailed({"decision": f"this request was already returned {cmd.instance.return_count} "
                                        "times, the most this process allows; approve or reject it"})
            cmd.instance.return_count += 1
        cmd.instance.last_approver_id = cmd.actor.id if decision == "approve" else None
        action = {"approve": "approved", "reject": "rejected", "return": "returned"}.get(decision, "completed")
        cmd.record(action, row.name, **{k: accepted.get(k) for k in accepted})
    else:
        cmd.instance.last_approver_id = None
        cmd.record("completed", row.name, **accepted)
    row.update(status="completed", completed_at=cmd.now, completed_by_id=cmd.actor.id,
               assignee_id=row.assignee_id if row.assignee_id is not None else cmd.actor.id)
    rt._participate(cmd, cmd.actor.id)
    rt._run(cmd, rt._run_task, task, form_payload(info, accepted, cmd.actor))
    rt._settle(cmd, wf)


def claim(rt, task_id: str, username: str) -> dict:
    with rt.command(username, task_id=task_id) as cmd:
        row, actor = cmd.task, cmd.actor
        if row.status != "open":
            raise Conflict(f"task {task_id} is already {row.status}")
        if row.assignee_id != actor.id and not is_candidate(cmd.session, row, actor):
            raise Forbidden(f"task {task_id} is not yours to claim")
        if row.assignee_id not in (None, actor.id):
            raise Conflict(f"task {task_id} is held by {username_of(cmd.session, row.assignee_id)}")
        if row.assignee_id is None:
            row.update(assignee_id=actor.id)
            cmd.record("claimed", row.name)
            rt._save(cmd)
    return task_view(rt, task_id, username)


def delegate(rt, task_id: str, username: str, to: str, comment: str | None = None) -> dict:
    """Transfer (转交): the task moves to another person, its route unchanged."""
    with rt.command(username, task_id=task_id) as cmd:
        session, row, actor = cmd.session, cmd.task, cmd.actor
        check_can_act(session, cmd.instance, row, actor)
        if not isinstance(to, str) or not to:
            raise ValidationFailed({"to": "this field is required"})
        target = org.user_by_name(session, to)
        if target is None or not target.active:
            raise ValidationFailed({"to": f"no active user {to!r}"})
        if target.id == actor.id:
            raise ValidationFailed({"to": "the task is already yours"})
        if row.is_approval and target.id == cmd.instance.subject_id:
            raise ValidationFailed({"to": "nobody approves their own request"})
        row.update(assignee_id=target.id)  # the task leaves any claim pool: it is the target's now
        session.execute(DELETE_CANDIDATES, {"task_id": row.id})
        rt._participate(cmd, target.id)
        cmd.record("delegated", row.name, **{"from": actor.username, "to": target.username, "comment": comment or None})
        rt._save(cmd)
    return task_view(rt, task_id, to)
