"""The read side: process lists, instance and task views, the inbox, diagrams.

Nothing here writes. Who may see what is asked of `access`, the same rules the commands use.
"""
from __future__ import annotations

from sqlalchemy import bindparam, select, text

from . import access
from .errors import NotFound
from .models import Comment, HumanTask, InstanceCopy, ProcessInstance
from .tables import (
    HISTORY, OPEN_TASKS_OF, TASK_ROWS, TASK_TABLE, TASKS_BY_ID, USER_TABLE, iso, task_dict, usernames,
)

# The inbox is the hottest read: two index-driven heads (ix_human_tasks_inbox for "assigned to me",
# the candidates' user index for "claimable by me"), merged. Plain SQL, built once: an ORM union
# costs far more to construct per call than to run. {extra} is one of two fixed filter fragments.
_INBOX_HEADS = """
  SELECT * FROM (SELECT h.id, h.sort_due, h.created_at FROM human_tasks h
                 WHERE h.assignee_id = :uid AND h.status = 'open'{extra}
                 ORDER BY h.sort_due, h.created_at, h.id LIMIT :head) AS assigned
  UNION ALL
  SELECT * FROM (SELECT h.id, h.sort_due, h.created_at FROM human_tasks h
                 JOIN human_task_candidates c ON c.task_id = h.id
                 WHERE c.user_id = :uid AND h.assignee_id IS NULL AND h.status = 'open'{extra}
                 ORDER BY h.sort_due, h.created_at, h.id LIMIT :head) AS claimable"""
_INBOX_PAGE = ("SELECT id FROM (" + _INBOX_HEADS + ") AS page "
               "ORDER BY sort_due, created_at, id LIMIT :limit OFFSET :offset")
_INBOX_COUNT = """SELECT
  (SELECT count(*) FROM human_tasks h WHERE h.assignee_id = :uid AND h.status = 'open'{extra}) +
  (SELECT count(*) FROM human_tasks h JOIN human_task_candidates c ON c.task_id = h.id
   WHERE c.user_id = :uid AND h.assignee_id IS NULL AND h.status = 'open'{extra})"""


# the steps of an instance people finished (not added signers), in order: return targets
_DONE_STEPS = select(TASK_TABLE.c.name, TASK_TABLE.c.lane, TASK_TABLE.c.completed_by_id).where(
    TASK_TABLE.c.instance_id == bindparam("instance_id"), TASK_TABLE.c.status == "completed",
    TASK_TABLE.c.parent_id.is_(None), TASK_TABLE.c.completed_by_id.is_not(None),
    TASK_TABLE.c.completed_at <= bindparam("before")).order_by(TASK_TABLE.c.completed_at, TASK_TABLE.c.created_at)
SIGNERS_OF = TASK_ROWS.where(TASK_TABLE.c.parent_id == bindparam("parent_id")).order_by(TASK_TABLE.c.created_at)


def processes(rt, username: str) -> list[dict]:
    with rt.db.read() as session:
        user = access.actor(session, username)
        result = []
        for pid in rt.definitions.process_ids(session):
            definition_id = rt.definitions.latest_id(session, pid)
            parsed = rt.definitions.get(session, definition_id)
            if parsed.catalog.get("startable", True) and access.may_start(session, parsed, user):
                result.append({"id": pid, "name": parsed.name,
                               "names": parsed.catalog.get("name", {}),
                               "version": rt.definitions.version_of(session, definition_id),
                               "start_form": parsed.forms.get(parsed.catalog.get("start_form"))
                               or _first_form(parsed)})
        return result


def process_names(rt) -> dict[str, dict]:
    """process id -> {"zh", "en"} names of every deployed process (latest version)."""
    with rt.db.read() as session:
        return {pid: rt.definitions.get(session, rt.definitions.latest_id(session, pid)).catalog.get("name", {})
                for pid in rt.definitions.process_ids(session)}


def _first_form(parsed):
    first = parsed.catalog.get("first_task")
    info = next((i for i in parsed.tasks.values() if i.name == first), None)
    return parsed.forms.get(info.form) if info else None


def instance(rt, instance_id, username: str, *, labels: bool = False) -> dict:
    """The instance object; with labels, also the titles and form schemas of its definition
    version ("fields", "steps", "forms") that a UI needs to label its data."""
    with rt.db.read() as session:
        user = access.actor(session, username)
        inst = session.get(ProcessInstance, instance_id)
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        result = instance_dict(rt, session, inst, with_history=True)
        if labels:
            parsed = rt.definitions.get(session, inst.definition_id)
            result.update(fields=parsed.fields, steps=parsed.steps, forms=parsed.form_properties)
        return result


def instances(rt, username: str, process_id: str | None = None, status: str | None = None,
              mine: bool = False, limit: int = 200, offset: int = 0) -> list[dict]:
    with rt.db.read() as session:
        user = access.actor(session, username)
        stmt = select(ProcessInstance)
        if mine:
            stmt = stmt.where(ProcessInstance.started_by_id == user.id)
        else:
            cond = access.visible_filter(session, user)
            if cond is not True:
                stmt = stmt.where(cond)
        if process_id:
            stmt = stmt.where(ProcessInstance.process_id == process_id)
        if status:
            stmt = stmt.where(ProcessInstance.status == status)
        rows = session.scalars(stmt.order_by(ProcessInstance.id.desc()).limit(limit).offset(offset)).all()
        open_tasks = open_tasks_by_instance(session, [r.id for r in rows])
        names = usernames(session, {r.started_by_id for r in rows} | {r.subject_id for r in rows})
        return [instance_dict(rt, session, r, with_history=False, tasks=open_tasks.get(r.id, []), names=names)
                for r in rows]


def tasks(rt, username: str, process_id: str | None = None, instance_id=None,
          limit: int = 200, offset: int = 0, with_total: bool = False):
    """Open tasks the user can act on: assigned to them, or unassigned with them as a candidate.
    Soonest due first (no due date last), then oldest. With with_total, returns (tasks, total)."""
    with rt.db.read() as session:
        user = access.actor(session, username)
        params = {"uid": user.id, "head": limit + offset, "limit": limit, "offset": offset}
        extra = ""
        if process_id:
            extra += " AND h.process_id = :pid"
            params["pid"] = process_id
        if instance_id is not None:
            extra += " AND h.instance_id = :iid"
            params["iid"] = instance_id
        ids = session.scalars(text(_INBOX_PAGE.format(extra=extra)), params).all()
        rows = {r.id: r for r in session.execute(TASKS_BY_ID, {"ids": ids})} if ids else {}
        found = [task_dict(rows[i]) for i in ids]
        if not with_total:
            return found
        if len(found) < limit:
            return found, offset + len(found)
        return found, session.scalar(text(_INBOX_COUNT.format(extra=extra)), params)


def task(rt, task_id: str, username: str) -> dict:
    with rt.db.read() as session:
        user = access.actor(session, username)
        row = session.execute(TASKS_BY_ID, {"ids": [str(task_id)]}).first()
        if row is None:
            raise NotFound(f"task {task_id} not found")
        inst = session.get(ProcessInstance, row.instance_id)
        if not access.may_view_task(session, row, inst, user):
            raise NotFound(f"task {task_id} not found")
        parsed = rt.definitions.get(session, inst.definition_id)
        result = task_dict(row)
        result["form"] = parsed.forms.get(row.form)
        result["data"] = dict(inst.data or {})
        if row.status == "open" and not row.is_approval:
            # a form step starts from what is already known (a revision starts from the submission);
            # an approval always starts blank
            props = (result["form"] or {}).get("properties", {})
            source = result["data"].get(row.data_key) if row.data_key else result["data"]
            source = source if isinstance(source, dict) else {}
            result["values"] = {k: v for k, v in source.items() if k in props}
        result["instance_status"] = inst.status
        result["can_act"] = access.can_act(session, row, user)
        context = row.context or {}
        result["returned"] = context.get("returned")  # why the work came back, shown to whoever gets it
        result["via"] = context.get("via")
        if row.parent_id is not None:
            result["signer"] = {"mode": context.get("mode"), "added_by": context.get("added_by"),
                                "comment": context.get("comment"), "step": row.parent_id}
        if row.is_approval:
            step = row if row.parent_id is None else session.execute(TASKS_BY_ID, {"ids": [row.parent_id]}).first()
            result["signers"] = [
                {"id": s.id, "username": s.assignee, "mode": (s.context or {}).get("mode"), "status": s.status}
                for s in session.execute(SIGNERS_OF, {"parent_id": step.id})] if step is not None else []
            if row.status in ("open", "waiting") and step is not None:
                result["return_targets"] = return_targets(session, parsed, inst, step)
                result["can_add_signer"] = bool(result["can_act"] and row.parent_id is None)
        return result


def return_targets(session, parsed, inst, step) -> list[dict]:
    """The earlier user steps an approval step may send the work back to, oldest first: the
    submitter's step always, then each step done since the latest (re)submission — of the top-level
    process or of the step's own called process, finished before this step opened (never a
    parallel sibling) — with whoever did it last."""
    submitter = parsed.catalog.get("submitter_step") or parsed.catalog.get("first_task")
    subject_lanes = {name for name, rule in parsed.lanes.items()
                     if isinstance(rule, dict) and rule.get("relation") == "subject"}
    mine = parsed.tasks_by_name.get(step.name)
    subject = usernames(session, {inst.subject_id}).get(inst.subject_id)

    def entry(name, by):
        info = parsed.tasks_by_name.get(name)
        return {"name": name, "title": info.title if info else name, "title_en": info.title_en if info else name,
                "assignee": by}
    found = {submitter: entry(submitter, subject)} if submitter else {}
    rows = session.execute(_DONE_STEPS, {"instance_id": inst.id, "before": step.created_at}).all()
    names = usernames(session, {r.completed_by_id for r in rows})
    for r in rows:
        info = parsed.tasks_by_name.get(r.name)
        if info is None or r.name == step.name:
            continue
        if parsed.catalog.get("submitter_step") and r.lane in subject_lanes:
            found = {submitter: entry(submitter, names.get(r.completed_by_id, subject))}  # a new pass begins
            continue
        if mine is not None and info.process not in (parsed.process_id, mine.process):
            continue
        found.pop(r.name, None)
        found[r.name] = entry(r.name, names.get(r.completed_by_id))
    return list(found.values())


def diagram(rt, instance_id, username: str, titles_lang: str = "zh") -> str:
    from .diagram import render_svg
    with rt.db.read() as session:
        user = access.actor(session, username)
        inst = session.get(ProcessInstance, instance_id)
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        parsed = rt.definitions.get(session, inst.definition_id)
        active = set(session.scalars(select(HumanTask.name).where(
            HumanTask.instance_id == inst.id, HumanTask.status == "open")))
        done = set(session.scalars(select(HumanTask.name).where(
            HumanTask.instance_id == inst.id, HumanTask.status == "completed")))
        titles = None
        if titles_lang == "en":
            titles = {i.name: i.title_en for i in parsed.tasks.values()}
            titles.update({k.split(".")[0]: v["title_en"] for k, v in parsed.events.items()})
        return render_svg(parsed.process_bpmn(), inst.process_id, active=active, completed=done - active,
                          titles=titles)


def open_tasks_by_instance(session, ids: list[int]) -> dict[int, list[dict]]:
    result: dict[int, list[dict]] = {}
    if not ids:
        return result
    for row in session.execute(OPEN_TASKS_OF, {"ids": ids}):
        result.setdefault(row.instance_id, []).append(task_dict(row))
    return result


def instance_dict(rt, session, inst, *, with_history: bool, tasks=None, names: dict[int, str] | None = None) -> dict:
    """The instance object (of an ORM ProcessInstance or a command's InstanceRow). Read with Core
    rows, not ORM objects: this is on every command's path."""
    if tasks is None:
        tasks = open_tasks_by_instance(session, [inst.id]).get(inst.id, [])
    if names is None:
        names = usernames(session, {inst.started_by_id, inst.subject_id})
    parsed = rt.definitions.get(session, inst.definition_id)
    result = {
        "id": inst.id, "process_id": inst.process_id, "status": inst.status,
        "process_name": parsed.catalog.get("name", {}), "version": rt.definitions.version_of(session, inst.definition_id),
        "started_by": names[inst.started_by_id], "subject": names[inst.subject_id],
        "data": dict(inst.data or {}), "tasks": tasks,
        "created_at": iso(inst.created_at), "updated_at": iso(inst.updated_at),
        "completed_at": iso(inst.completed_at),
    }
    if with_history:
        events = session.execute(HISTORY, {"instance_id": inst.id})
        titles = parsed.titles
        result["history"] = [{"at": iso(e.at), "actor": e.actor, "action": e.action, "task": e.task,
                              "detail": e.detail or {}, "task_title": titles.get(e.task)} for e in events]
        result["copied_to"] = copied_to(session, inst.id)
    return result


def comments(rt, instance_id, username: str) -> list[dict]:
    with rt.db.read() as session:
        user = access.actor(session, username)
        inst = session.get(ProcessInstance, instance_id)
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        rows = session.scalars(select(Comment).where(Comment.instance_id == inst.id).order_by(Comment.at, Comment.id)).all()
        names = usernames(session, {r.author_id for r in rows})
        return [{"id": r.id, "at": iso(r.at), "author": names.get(r.author_id), "text": r.text, "attachments": []}
                for r in rows]


def copied_to(session, instance_id: int) -> list[str]:
    rows = session.execute(select(USER_TABLE.c.username).join(
        InstanceCopy, InstanceCopy.user_id == USER_TABLE.c.id).where(InstanceCopy.instance_id == instance_id)
        .order_by(InstanceCopy.at, USER_TABLE.c.username)).all()
    return [r.username for r in rows]


def eligible_users(rt, task_id: str, username: str) -> list[dict]:
    """Who may take the task by transfer or as an added signer (separation of duties: org.may_take),
    for the pickers: active people other than the caller, by username."""
    from . import org
    from .models import User
    with rt.db.read() as session:
        user = access.actor(session, username)
        row = session.execute(TASKS_BY_ID, {"ids": [str(task_id)]}).first()
        inst = session.get(ProcessInstance, row.instance_id) if row is not None else None
        if row is None or not access.may_view_task(session, row, inst, user):
            raise NotFound(f"task {task_id} not found")
        parsed = rt.definitions.get(session, inst.definition_id)
        subject = session.get(User, inst.subject_id)
        people = session.scalars(select(User).where(User.active.is_(True)).order_by(User.username)).all()
        return [org.user_dict(p) for p in people
                if p.id != user.id and org.may_take(session, parsed.lanes, p, subject, row.lane) is None]
