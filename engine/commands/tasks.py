"""Verbs on one task: complete (approve / return — to any earlier step — / reject), claim,
transfer (delegate), and the parts of a decision that added signers share."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from SpiffWorkflow.bpmn.specs.defaults import ParallelGateway
from SpiffWorkflow.util.task import TaskState

from .. import attachments, org
from ..access import check_can_act, is_candidate
from ..errors import Conflict, Forbidden, ValidationFailed
from ..forms import validate_form
from ..queries import command_instance_dict, return_targets, task as task_view
from ..runner import Command, TaskRow, find_task, form_payload, task_row
from ..services import release_reservations
from ..tables import DELETE_CANDIDATES, TASK_TABLE, iso, username as username_of

ACTIONS = {"approve": "approved", "reject": "rejected", "return": "returned"}


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
        instance = command_instance_dict(rt, cmd)
    if expired:
        raise Conflict(expired)
    return {"instance": instance, "tasks": instance["tasks"]}


def complete_loaded(rt, cmd: Command, wf, row: TaskRow, data) -> None:
    """Complete the open task `row` of the loaded workflow with the user's answer, then settle."""
    from .signers import complete_signer, pending_signers
    accepted = validate_form(cmd.parsed.forms[row.form], data if data is not None else {})
    attachments.link_form(cmd, cmd.parsed.forms[row.form], accepted)
    if row.parent_id is not None:  # an added signer's task
        complete_signer(rt, cmd, wf, row, accepted)
        return
    task = find_task(wf, row.id)
    if task is None or task.state != TaskState.READY:
        raise Conflict(f"task {row.id} is no longer open")
    # the actor takes part already: whoever is given a task (its owner, each of a pool, by transfer,
    # return or hand-over) is made a participant when it is given
    if not row.is_approval:
        cmd.instance.last_approver_id = None
        cmd.record("completed", row.name, **accepted)
        row.update(status="completed", completed_at=cmd.now, completed_by_id=cmd.actor.id,
                   assignee_id=row.assignee_id if row.assignee_id is not None else cmd.actor.id)
        rt._run(cmd, rt._run_task, task, form_payload(cmd.parsed.tasks_by_name.get(row.name), accepted, cmd.actor))
        rt._settle(cmd, wf)
        return
    target = check_decision(cmd, row, accepted)
    cmd.record(ACTIONS[accepted["decision"]], row.name, **accepted)
    row.update(completed_at=cmd.now, completed_by_id=cmd.actor.id,
               assignee_id=row.assignee_id if row.assignee_id is not None else cmd.actor.id)
    if accepted["decision"] == "approve" and pending_signers(cmd, row):
        # 后加签 / 会签: the owner's approval is held until every added signer approved too
        row.update(status="held", context=row.with_context(held=accepted))
        cmd.record("held", row.name, reason="waiting for the added signers")
        return
    row.update(status="completed")
    finish_step(rt, cmd, wf, row, task, accepted, cmd.actor, target)


def check_decision(cmd: Command, row: TaskRow, accepted: dict) -> str | None:
    """Refuse a return past the process's bound or to a step not offered; the step a return
    resumes by a reset (None: the submitter's step, by the BPMN return path)."""
    if accepted.get("decision") != "return":
        if accepted.get("return_to"):
            raise ValidationFailed({"return_to": "only a return goes back to a step"})
        return None
    if cmd.instance.return_count >= cmd.parsed.max_returns():
        raise ValidationFailed({"decision": f"this request was already returned {cmd.instance.return_count} "
                                "times, the most this process allows; approve or reject it"})
    target = accepted.get("return_to")
    if not target:
        return None
    offered = [t["name"] for t in return_targets(cmd.session, cmd.parsed, cmd.instance, row)]
    if target not in offered:
        raise ValidationFailed({"return_to": f"{target!r} is not a step this task can return to "
                                f"(it can return to: {', '.join(offered) or 'none'})"})
    return None if target == cmd.parsed.catalog.get("submitter_step") else target


def finish_step(rt, cmd: Command, wf, row: TaskRow, task, accepted: dict, decider, target: str | None) -> None:
    """The step of BPMN task `row` is decided (by its owner, or by an added signer for the whole step):
    run it with the answer, or — for a return to an earlier step — reset the workflow to that step.
    A return or reject ends a parallel step at once: the other reviewers' tasks are cancelled."""
    decision = accepted["decision"]
    inst = cmd.instance
    inst.last_approver_id = decider.id if decision == "approve" and row.natural and decider.id == row.assignee_id \
        else None
    info = cmd.parsed.tasks_by_name.get(row.name)
    payload = form_payload(info, {k: v for k, v in accepted.items() if k != "return_to"}, decider)
    if decision in ("return", "reject"):
        _end_parallel_step(rt, cmd, wf, row, task, decision, decider)
        for signer in cmd.tasks.values():
            if signer.parent_id == row.id and signer.status == "open":
                signer.update(status="cancelled", completed_at=cmd.now)
                cmd.record("task_cancelled", signer.name, actor=None, because=ACTIONS[decision],
                           by=decider.username, signer=username_of(cmd.session, signer.assignee_id))
    if decision == "return":
        inst.return_count += 1
        cmd.new_context = {"returned": {"by": decider.username, "comment": accepted.get("comment"),
                                        "from": row.name, "at": iso(cmd.now)}}
        if target is not None:
            _return_to_step(rt, cmd, wf, task, target)
            return
        release_reservations(cmd)  # back to the submitter: a resubmission reserves again
    rt._run(cmd, rt._run_task, task, payload)
    rt._settle(cmd, wf)


def _end_parallel_step(rt, cmd: Command, wf, row: TaskRow, task, decision: str, decider) -> None:
    """The other open reviews of the same parallel step (READY approvals of the same workflow) are
    cancelled: each is completed with the same decision, marked as not given by anyone, so the join
    goes on at once and the step's result is the decider's."""
    for other in wf.get_tasks(state=TaskState.READY, manual=True):
        if other is task or other.workflow is not task.workflow:
            continue
        info = cmd.parsed.tasks.get(other.task_spec.name)
        if info is None or not info.is_approval:
            continue
        other_row = cmd.tasks.get(str(other.id))
        if other_row is None:
            other_row = cmd.tasks[str(other.id)] = task_row(cmd.session, str(other.id))
        if other_row.live:
            other_row.update(status="cancelled", completed_at=cmd.now)
        cmd.record("task_cancelled", info.name, actor=None, because=ACTIONS[decision], by=decider.username)
        answer = {"decision": decision, "comment": f"cancelled: {ACTIONS[decision]} by {decider.username}",
                  "cancelled": True}
        data = {info.data_key: {**answer, "by": None}} if info.data_key else answer
        rt._run(cmd, rt._run_task, other, data)


def _return_to_step(rt, cmd: Command, wf, current, name: str) -> None:
    """Resume the instance at the latest completed run of step `name` (SpiffWorkflow's reset):
    owned by whoever did it before; every later step runs again after it. A step inside a parallel
    block whose join has passed is resumed from the block's split (ENGINE-NOTES reset trap 2)."""
    done = [t for t in wf.get_tasks(state=TaskState.COMPLETED)
            if t.task_spec.name == name and t.workflow in (wf, current.workflow)]
    if not done:
        raise ValidationFailed({"return_to": f"step {name!r} has not been done in this instance"})
    target = max(done, key=lambda t: t.last_state_change)
    point = _split_before(target) or target
    owners = _previous_owners(cmd, name, point is not target)
    saved = dict(target.data)
    rt._run(cmd, wf.reset_from_task_id, point.id)
    flow = point.workflow
    while flow is not None:  # completion flags survive a reset (reset trap 3)
        flow.completed = False
        parent_id = getattr(flow, "parent_task_id", None)
        flow = wf.get_task_from_id(parent_id).workflow if parent_id is not None else None
    wf.completed = False
    if point is target:
        target.data.update(saved)  # the step starts from what it had (reset trap 1: set after)
    cmd.owners = owners
    cmd.instance.last_approver_id = None
    cmd.record("returned_to", name, actor=None, step=name)
    rt._settle(cmd, wf)


def _previous_owners(cmd: Command, name: str, whole_block: bool) -> dict:
    """Who did `name` last (and, when a parallel block re-runs whole, its other steps)."""
    rows = cmd.session.connection().execute(select(TASK_TABLE.c.name, TASK_TABLE.c.completed_by_id, TASK_TABLE.c.process_id)
                               .where(TASK_TABLE.c.instance_id == cmd.instance.id,
                                      TASK_TABLE.c.status == "completed", TASK_TABLE.c.parent_id.is_(None),
                                      TASK_TABLE.c.completed_by_id.is_not(None))
                               .order_by(TASK_TABLE.c.completed_at)).all()
    owners = {}
    target_info = cmd.parsed.tasks_by_name.get(name)
    for row_name, by, _pid in rows:
        info = cmd.parsed.tasks_by_name.get(row_name)
        if row_name == name or (whole_block and info is not None and target_info is not None
                                and info.process == target_info.process and info.is_approval):
            owners[row_name] = by
    return owners


def _split_before(task):
    """The parallel split above `task` whose join has already passed, else None."""
    node = task.parent
    while node is not None and node.workflow is task.workflow:
        spec = node.task_spec
        if isinstance(spec, ParallelGateway):
            if len(spec.inputs) > 1:
                return None  # `task` comes after a join, not inside a branch
            if len(spec.outputs) > 1:
                joined = any(isinstance(t.task_spec, ParallelGateway) and len(t.task_spec.inputs) > 1
                             and t.state == TaskState.COMPLETED for t in node)
                return node if joined else None
        node = node.parent
    return None


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


MAX_COMMENT = 5000  # as comments, CC and urge notes (instances._text)


def optional_comment(value) -> str | None:
    """A comment that may be left out: None, or a string of at most MAX_COMMENT characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed({"comment": "must be a string"})
    if len(value) > MAX_COMMENT:
        raise ValidationFailed({"comment": f"at most {MAX_COMMENT} characters"})
    return value


def delegate(rt, task_id: str, username: str, to: str, comment: str | None = None) -> dict:
    """Transfer (转交): the task moves to another person, its route unchanged, within the limits of
    separation of duties; the new owner is not its natural one (no "not asked twice" shortcut)."""
    with rt.command(username, task_id=task_id) as cmd:
        session, row, actor = cmd.session, cmd.task, cmd.actor
        check_can_act(session, cmd.instance, row, actor)
        if not isinstance(to, str) or not to:
            raise ValidationFailed({"to": "this field is required"})
        comment = optional_comment(comment)
        target = org.user_by_name(session, to)
        if target is None:
            raise ValidationFailed({"to": f"no user {to!r}"})
        if target.id == actor.id:
            raise ValidationFailed({"to": "the task is already yours"})
        why = org.may_take(session, cmd.parsed.lanes, target, cmd.subject, row.lane)
        if why:
            raise ValidationFailed({"to": why})
        row.update(assignee_id=target.id, context=row.with_context(via="transfer"))  # it leaves any claim pool
        session.connection().execute(DELETE_CANDIDATES, {"task_id": row.id})
        rt._participate(cmd, target.id)
        cmd.record("delegated", row.name, **{"from": actor.username, "to": target.username, "comment": comment or None})
        cmd.notify("task_assigned", [target.id], row.id, task=row.name, transferred_by=actor.username)
        rt._save(cmd)
    return task_view(rt, task_id, to)


MAX_BULK = 100


def bulk_complete(rt, ids, username: str, data) -> list[dict]:
    """Complete several tasks with one answer, each in its own transaction: one failure changes
    nothing of the others. Returns one result per id, in order."""
    from ..errors import EngineError
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_BULK or not all(isinstance(i, str) for i in ids):
        raise ValidationFailed({"ids": f"give 1 to {MAX_BULK} task ids"})
    if not isinstance(data, dict):
        raise ValidationFailed({"data": "must be a JSON object"})
    results = []
    for task_id in ids:
        try:
            complete(rt, task_id, username, dict(data))
        except EngineError as exc:
            result = {"id": task_id, "status": exc.status if exc.status in (403, 404, 409, 422) else 422,
                      "error": exc.message}
            if isinstance(exc, ValidationFailed):
                result["errors"] = exc.errors
            results.append(result)
        else:
            results.append({"id": task_id, "status": 200})
    return results
