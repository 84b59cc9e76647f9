"""Add signer (加签): extra approvers on a step, kept outside SpiffWorkflow (ENGINE-NOTES): their
tasks are human_tasks rows pointing at the step's BPMN task row (`parent_id`), and a gate on that
READY task decides when the workflow moves on.

- `before` (前加签): the owner's task waits; when every added signer approved, it comes back to them.
- `after` (后加签): the owner's approval is held until every added signer approved too.
- `parallel` (会签): they sign alongside the owner; the step is done when all approved.
An added signer's return or reject acts for the whole step at once.
"""
from __future__ import annotations

from uuid import uuid4

from sqlalchemy import select
from SpiffWorkflow.util.task import TaskState

from .. import org
from ..access import check_can_act
from ..errors import Conflict, ValidationFailed
from ..queries import instance_dict
from ..models import User
from ..runner import Command, TaskRow, find_task, task_row
from ..tables import TASK_TABLE
from .tasks import ACTIONS, check_decision, finish_step, optional_comment

MODES = ("before", "after", "parallel")
MAX_SIGNERS = 10


def add_signer(rt, task_id: str, username: str, users, mode, comment=None) -> dict:
    with rt.command(username, task_id=task_id) as cmd:
        session, row, actor = cmd.session, cmd.task, cmd.actor
        check_can_act(session, cmd.instance, row, actor)
        if row.parent_id is not None or not row.is_approval:
            raise ValidationFailed({"users": "signers can be added only to an approval step, by its owner"})
        if mode not in MODES:
            raise ValidationFailed({"mode": "must be one of: before, after, parallel"})
        if not isinstance(users, list) or not 1 <= len(users) <= MAX_SIGNERS \
                or not all(isinstance(u, str) and u for u in users):
            raise ValidationFailed({"users": f"give 1 to {MAX_SIGNERS} usernames"})
        if len(set(users)) != len(users):
            raise ValidationFailed({"users": "a person is named twice"})
        comment = optional_comment(comment)
        already = {r.assignee_id for r in signer_rows(cmd, row) if r.status == "open"}
        refused, found = [], []
        for name in users:
            user = org.user_by_name(session, name)
            why = "the step is already theirs" if user is not None and user.id == actor.id else \
                org.may_take(session, cmd.parsed.lanes, user, cmd.subject, row.lane)
            if why is None and user.id in already:
                why = "already signs this step"
            if why:
                refused.append(f"{name} ({why})")
            else:
                found.append(user)
        if refused:
            raise ValidationFailed({"users": "cannot take this task: " + "; ".join(refused)})
        if row.assignee_id is None:  # taken from a claim pool by adding signers to it
            row.update(assignee_id=actor.id)
        for user in found:
            signer = TaskRow(
                id=str(uuid4()), instance_id=row.instance_id, process_id=row.process_id, name=row.name,
                title=row.title, title_en=row.title_en, lane=row.lane, form=row.form, data_key=None,
                is_approval=True, assignee_id=user.id, candidate_role=None, status="open",
                due_at=row.due_at, sort_due=row.sort_due, created_at=cmd.now, completed_at=None,
                completed_by_id=None, parent_id=row.id,
                context={"via": "signer", "mode": mode, "added_by": actor.username, "comment": comment or None},
                new=True)
            cmd.tasks[signer.id] = signer
            rt._participate(cmd, user.id)
            cmd.notify("task_assigned", [user.id], signer.id, task=row.name, added_by=actor.username, mode=mode)
        row.update(context=row.with_context(signers=True))  # the step has added signers: its gate is asked
        if mode == "before":
            row.update(status="waiting")
        cmd.record("signer_added", row.name, users=[u.username for u in found], mode=mode, comment=comment or None)
        rt._save(cmd)
        return instance_dict(rt, session, cmd.instance, with_history=True)


def signer_rows(cmd: Command, parent: TaskRow) -> list[TaskRow]:
    """The added signers' rows of a step (read once per command, then held by it)."""
    if parent.id not in cmd.signers_loaded:
        for found in cmd.session.execute(select(TASK_TABLE).where(TASK_TABLE.c.parent_id == parent.id)):
            if found.id not in cmd.tasks:
                cmd.tasks[found.id] = TaskRow(**found._mapping)
        cmd.signers_loaded.add(parent.id)
    return [r for r in cmd.tasks.values() if r.parent_id == parent.id]


def pending_signers(cmd: Command, parent: TaskRow) -> list[TaskRow]:
    if not (parent.context or {}).get("signers"):
        return []  # no signer was ever added: nothing to read
    return [r for r in signer_rows(cmd, parent) if r.status == "open"]


def complete_signer(rt, cmd: Command, wf, row: TaskRow, accepted: dict) -> None:
    """An added signer decides. A return or reject ends the whole step now; the last approval
    releases the gate: the step comes back to its owner (before) or moves on with the owner's
    held approval (after / parallel)."""
    parent = cmd.tasks.get(row.parent_id) or task_row(cmd.session, row.parent_id)
    cmd.tasks[parent.id] = parent
    task = find_task(wf, parent.id)
    if task is None or task.state != TaskState.READY or not parent.live:
        raise Conflict(f"task {row.id} is no longer open")
    target = check_decision(cmd, parent, accepted)
    decision = accepted["decision"]
    mode = (row.context or {}).get("mode")
    cmd.record(ACTIONS[decision], row.name, signer=True, mode=mode, **accepted)
    row.update(status="completed", completed_at=cmd.now, completed_by_id=cmd.actor.id)
    rt._participate(cmd, cmd.actor.id)
    if decision != "approve":
        if parent.status in ("open", "waiting"):
            parent.update(status="cancelled", completed_at=cmd.now)
            cmd.record("task_cancelled", parent.name, actor=None, because=ACTIONS[decision], by=cmd.actor.username)
        finish_step(rt, cmd, wf, parent, task, accepted, cmd.actor, target)
        return
    if pending_signers(cmd, parent):
        return
    if parent.status == "waiting":  # 前加签: back to the owner
        parent.update(status="open")
        cmd.record("signers_approved", parent.name, actor=None)
        cmd.notify("task_assigned", [parent.assignee_id], parent.id, task=parent.name)
    elif parent.status == "held":  # the owner approved already: the step moves on with that approval
        held = (parent.context or {}).get("held") or {"decision": "approve"}
        owner = cmd.session.get(User, parent.assignee_id)
        parent.update(status="completed")
        cmd.record("signers_approved", parent.name, actor=None)
        finish_step(rt, cmd, wf, parent, task, held, owner, None)
