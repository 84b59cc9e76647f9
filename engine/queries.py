"""The read side: process lists, instance and task views, the inbox, diagrams.

Nothing here writes. Who may see what is asked of `access`, the same rules the commands use.
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Integer, bindparam, column, select, text

from . import access, clock, org
from .definitions import merge_vocabularies
from .errors import NotFound, ValidationFailed
from .models import Comment, HumanTask, InstanceCopy, ProcessInstance, User, UTCDateTime
from .tables import (
    HISTORY, OPEN_TASKS_OF, TASK_PAGE, TASK_ROWS, TASK_TABLE, TASKS_BY_ID, history_event, summary_of,
    english, instance_id as parse_instance_id, iso, task_columns, task_dict, task_object, usernames,
)
from .db import json_loads

# The inbox is the hottest read: two index-driven heads merged — ix_human_tasks_inbox for "assigned to
# me", ix_candidates_inbox for "claimable by me" (the caller's own pool rows, in inbox order, never
# every unassigned task). Plain SQL, built once: an ORM union costs far more to construct per call than
# to run. {extra} is one of a few fixed filter fragments on h.
_INBOX_HEADS = """
  SELECT * FROM (SELECT h.id, h.sort_due, h.created_at FROM human_tasks h
                 WHERE h.assignee_id = :uid AND h.status = 'open'{extra}
                 ORDER BY h.sort_due, h.created_at, h.id LIMIT :head) AS assigned
  UNION ALL
  SELECT * FROM (SELECT c.task_id AS id, c.sort_due, c.created_at FROM human_task_candidates c
                 JOIN human_tasks h ON h.id = c.task_id
                 WHERE c.user_id = :uid AND c.claimable = :yes AND h.assignee_id IS NULL AND h.status = 'open'{extra}
                 ORDER BY c.sort_due, c.created_at, c.task_id LIMIT :head) AS claimable"""
_INBOX_PAGE = ("SELECT id, sort_due, created_at FROM (" + _INBOX_HEADS + ") AS heads "
               "ORDER BY sort_due, created_at, id LIMIT :limit OFFSET :offset")
_MATCHES = (" AND EXISTS (SELECT 1 FROM process_instances i WHERE i.id = h.instance_id"
            " AND i.search_text LIKE :q ESCAPE '\\')")
# 已办: what the user completed (an approval held for added signers counts), newest first
_DONE_PAGE = """SELECT h.id, h.completed_at FROM human_tasks h WHERE h.completed_by_id = :uid AND h.status IN ('completed', 'held'){extra}
  ORDER BY h.completed_at DESC, h.id LIMIT :limit OFFSET :offset"""
_DONE_COUNT = """SELECT count(*) FROM human_tasks h
  WHERE h.completed_by_id = :uid AND h.status IN ('completed', 'held'){extra}"""
_INBOX_COUNT = """SELECT
  (SELECT count(*) FROM human_tasks h WHERE h.assignee_id = :uid AND h.status = 'open'{extra}) +
  (SELECT count(*) FROM human_task_candidates c JOIN human_tasks h ON h.id = c.task_id
   WHERE c.user_id = :uid AND c.claimable = :yes AND h.assignee_id IS NULL AND h.status = 'open'{extra})"""
# the whole inbox's total: the sum of the rows the triggers add (migrations 0009, 0010), not a count
_INBOX_TOTAL = "SELECT sum(assigned + claimable) FROM inbox_counts WHERE user_id = :uid"


# the steps of an instance people finished (not added signers), in order: return targets
_DONE_STEPS = select(TASK_TABLE.c.name, TASK_TABLE.c.lane, TASK_TABLE.c.completed_by_id).where(
    TASK_TABLE.c.instance_id == bindparam("instance_id"), TASK_TABLE.c.status == "completed",
    TASK_TABLE.c.parent_id.is_(None), TASK_TABLE.c.completed_by_id.is_not(None),
    TASK_TABLE.c.completed_at <= bindparam("before")).order_by(TASK_TABLE.c.completed_at, TASK_TABLE.c.created_at)
SIGNERS_OF = TASK_ROWS.where(TASK_TABLE.c.parent_id == bindparam("parent_id")).order_by(TASK_TABLE.c.created_at)


def processes(rt, username: str) -> list[dict]:
    with rt.db.read() as session:
        user = access.reader(session, username)
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


def vocabulary(rt) -> dict:
    """The words of every deployed process (latest versions) as one vocabulary (see
    ParsedDefinition.vocabulary): for what a page shows of several processes at once (a list's
    outcomes, a bulk approval's refusals)."""
    with rt.db.read() as session:
        return merge_vocabularies(*(rt.definitions.get(session, rt.definitions.latest_id(session, pid)).vocabulary
                                    for pid in rt.definitions.process_ids(session)))


def lane_titles(rt) -> dict[str, dict]:
    """Each lane's name in zh and en, as lanes.json declares it (latest versions)."""
    titles: dict[str, dict] = {}
    with rt.db.read() as session:
        for pid in rt.definitions.process_ids(session):
            for name, rule in rt.definitions.get(session, rt.definitions.latest_id(session, pid)).lanes.items():
                if isinstance(rule, dict) and isinstance(rule.get("title"), dict):
                    titles.setdefault(name, rule["title"])
    return titles


def subject_choices(rt, process_id: str, username: str) -> list[dict]:
    """The people a start form's subject field (an appraisal's employee, a lead's rep) may name, by
    the process's subject rule: active, never an administrator."""
    with rt.db.read() as session:
        actor = access.reader(session, username)
        parsed = rt.definitions.get(session, rt.definitions.latest_id(session, process_id))
        rule = parsed.catalog.get("subject_rule")
        team = org.reports_of(session, actor) if rule == "self_or_report" else set()
        chosen = []
        for user in session.scalars(select(User).where(User.active.is_(True)).order_by(User.username)):
            if org.ADMIN_ROLE in user.role_names:
                continue
            if rule == "self_or_report" and user.id != actor.id and user.id not in team:
                continue
            if rule == "has_manager" and org.first_active_manager(session, user) is None:
                continue
            if rule == "not_self" and user.id == actor.id:
                continue
            chosen.append(org.user_dict(user))
        return chosen


def _first_form(parsed):
    first = parsed.catalog.get("first_task")
    info = next((i for i in parsed.tasks.values() if i.name == first), None)
    return parsed.forms.get(info.form) if info else None


def instance(rt, instance_id, username: str, *, labels: bool = False) -> dict:
    """The instance object; with labels, also the titles and form schemas of its definition
    version ("fields", "steps", "forms") and the words of its data ("vocabulary": its version's,
    over the latest version's for what an older version did not declare) that a UI needs to label
    its data."""
    with rt.db.read() as session:
        user = access.reader(session, username)
        inst = session.get(ProcessInstance, instance_id)
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        result = instance_dict(rt, session, inst, with_history=True)
        if labels:
            parsed = rt.definitions.get(session, inst.definition_id)
            latest = rt.definitions.get(session, rt.definitions.latest_id(session, inst.process_id))
            result.update(fields=parsed.fields, steps=parsed.steps, forms=parsed.form_properties,
                          vocabulary=parsed.vocabulary if latest is parsed
                          else merge_vocabularies(latest.vocabulary, parsed.vocabulary))
        return result


INSTANCE_SCOPES = ("all", "started", "involved", "cc")


def instances(rt, username: str, process_id: str | None = None, status: str | None = None,
              mine: bool = False, limit: int = 200, offset: int = 0, *, scope: str = "all",
              q: str | None = None) -> list[dict]:
    """scope "all": every instance the user can see; "started": they started it; "involved": they
    decided a task of it; "cc": it was copied to them. Newest first; `q` as for tasks."""
    if mine:
        scope = "started"
    if scope not in INSTANCE_SCOPES:
        raise ValidationFailed({"scope": "must be all, started, involved or cc"})
    with rt.db.read() as session:
        user = access.reader(session, username)
        stmt = select(ProcessInstance)
        if scope == "started":
            stmt = stmt.where(ProcessInstance.started_by_id == user.id)
        elif scope == "involved":
            stmt = stmt.where(ProcessInstance.id.in_(select(HumanTask.instance_id).where(
                HumanTask.completed_by_id == user.id)))
        elif scope == "cc":
            stmt = stmt.where(ProcessInstance.id.in_(select(InstanceCopy.instance_id).where(
                InstanceCopy.user_id == user.id)))
        else:
            cond = access.visible_filter(session, user)
            if cond is not True:
                stmt = stmt.where(cond)
        if process_id:
            stmt = stmt.where(ProcessInstance.process_id == process_id)
        if status:
            stmt = stmt.where(ProcessInstance.status == status)
        if q and q.strip():
            stmt = stmt.where(ProcessInstance.search_text.like(_like(q), escape="\\"))
        rows = session.scalars(stmt.order_by(ProcessInstance.id.desc()).limit(limit).offset(offset)).all()
        open_tasks = open_tasks_by_instance(session, [r.id for r in rows])
        names = usernames(session, {r.started_by_id for r in rows} | {r.subject_id for r in rows})
        return [instance_dict(rt, session, r, with_history=False, tasks=open_tasks.get(r.id, []), names=names)
                for r in rows]


def tasks(rt, username: str, process_id: str | None = None, instance_id=None,
          limit: int = 200, offset: int = 0, with_total: bool = False, *, scope: str = "open",
          q: str | None = None, overdue: bool = False):
    """scope "open": the tasks the user can act on — assigned to them, or unassigned with them as a
    candidate — soonest due first (no due date last), then oldest. scope "done" (已办): the tasks they
    completed, newest first. `q` matches the summary, the people's names and the instance id;
    `overdue` keeps open tasks past their due time. With with_total, returns (tasks, total)."""
    if scope not in ("open", "done"):
        raise ValidationFailed({"scope": "must be open or done"})
    with rt.db.read() as session:
        user = access.reader(session, username)
        params = {"uid": user.id, "head": limit + offset, "limit": limit, "offset": offset, "yes": True}
        extra = ""
        if process_id:
            extra += " AND h.process_id = :pid"
            params["pid"] = process_id
        if instance_id is not None:
            extra += " AND h.instance_id = :iid"
            params["iid"] = parse_instance_id(instance_id)
        if overdue:
            extra += " AND h.due_at IS NOT NULL AND h.due_at < :now"
            params["now"] = clock.now()
        if q and q.strip():
            extra += _MATCHES
            params["q"] = _like(q)
        page, count = (_INBOX_PAGE, _INBOX_COUNT) if scope == "open" else (_DONE_PAGE, _DONE_COUNT)
        conn = session.connection()  # Core rows all through: the hottest read
        rows = conn.execute(_page_rows(page, extra, "now" in params), params).all()
        now, en = clock.now(), english()
        found = [task_object(row, now, en) for row in rows]
        if not with_total:
            return found
        if len(found) < limit and (found or offset == 0):
            return found, offset + len(found)
        if scope == "open" and not extra:  # the page's rows carry it (_page_rows)
            return found, (rows[0].total if rows else
                           conn.execute(_statement(_INBOX_TOTAL, "", False), params).scalar()) or 0
        return found, conn.execute(_statement(count, extra, "now" in params), params).scalar()


@lru_cache(maxsize=64)
def _page_rows(sql: str, extra: str, with_now: bool):
    """One statement for a page of tasks: the page (an _INBOX_PAGE or _DONE_PAGE, its ids and the
    keys it is sorted by) joined to its task rows (TASK_PAGE's columns), in the page's order. The
    whole inbox's page carries the inbox's total too (a column after the task's: one statement less
    whenever the page is full)."""
    keys = ("id", "sort_due", "created_at") if sql is _INBOX_PAGE else ("id", "completed_at")
    page = _statement(sql, extra, with_now).columns(*(column(key) for key in keys)).subquery("page")
    order = (page.c.sort_due, page.c.created_at, page.c.id) if sql is _INBOX_PAGE \
        else (page.c.completed_at.desc(), page.c.id)
    stmt = TASK_PAGE.where(TASK_TABLE.c.id == page.c.id).order_by(*order)
    if sql is _INBOX_PAGE and not extra:
        stmt = stmt.add_columns(_statement(_INBOX_TOTAL, "", False).columns(column("total", Integer))
                                .scalar_subquery().label("total"))
    return stmt


@lru_cache(maxsize=64)
def _statement(sql: str, extra: str, with_now: bool):
    """The inbox's text statements, built once per filter combination (text() parses its SQL)."""
    stmt = text(sql.format(extra=extra))
    return stmt.bindparams(bindparam("now", type_=UTCDateTime())) if with_now else stmt


def _like(q: str) -> str:
    """A LIKE pattern for `q` (lowercase; % and _ taken literally)."""
    q = q.strip().lower()[:100].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{q}%"


def task(rt, task_id: str, username: str) -> dict:
    with rt.db.read() as session:
        user = access.reader(session, username)
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


WAITING_UNTIL = {"zh": "等待至 {at}（北京时间）", "en": "waiting until {at} (UTC+8)"}


def diagram(rt, instance_id, username: str, titles_lang: str = "zh", process: str | None = None,
            link=None) -> str:
    """The instance's diagram (or, with `process`, that of a process it calls): open tasks highlighted,
    done ones green; a call activity is highlighted while the called process has an open task (`link`:
    called process id -> the address that opens its diagram); a waiting timer says until when. Labels
    in `titles_lang`: lanes from lanes.json, elements by their titleEn in English."""
    from zoneinfo import ZoneInfo

    from .diagram import render_svg
    from .models import Timer
    with rt.db.read() as session:
        user = access.reader(session, username)
        inst = session.get(ProcessInstance, instance_id)
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        parsed = rt.definitions.get(session, inst.definition_id)
        shown = process or inst.process_id
        active = set(session.scalars(select(HumanTask.name).where(
            HumanTask.instance_id == inst.id, HumanTask.status.in_(("open", "waiting")))))
        done = set(session.scalars(select(HumanTask.name).where(
            HumanTask.instance_id == inst.id, HumanTask.status.in_(("completed", "held")))))
        timers = list(session.scalars(select(Timer).where(Timer.instance_id == inst.id, Timer.status == "waiting")))
        process_of = {t.name: t.process for t in parsed.tasks.values()}
        calls, catches = _calls(parsed)
        for name in list(active) + list(done):  # a step inside a called process marks its call activity
            owner = process_of.get(name)
            while owner and owner != shown:
                call = next(((cid, caller) for cid, (caller, called) in calls.items() if called == owner), None)
                if call is None:
                    break
                (active if name in active else done).add(call[0])
                owner = call[1]
        lang = "en" if titles_lang == "en" else "zh"
        lane_titles = {k: v["title"][lang] for k, v in parsed.lanes.items()
                       if isinstance(v, dict) and isinstance(v.get("title"), dict) and v["title"].get(lang)}
        tz = ZoneInfo("Asia/Shanghai")
        notes = {t.name: WAITING_UNTIL[lang].format(at=t.due_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"))
                 for t in timers if t.name in catches}
        active |= set(notes)
        links = {cid: link(called) for cid, (caller, called) in calls.items() if caller == shown and link} if link else {}
        return render_svg(parsed.process_bpmn(shown), shown, active=active, completed=done - active,
                          lang=lang, lane_titles=lane_titles, notes=notes, links=links)


_CALL_TITLES: dict[str, dict] = {}


def _calls(parsed) -> tuple[dict, set]:
    """call activity id -> (the process it is in, the process it calls), and the ids of intermediate
    catch events (a timer there is a wait, not a task's deadline), for the instance's processes."""
    from lxml import etree
    from .diagram import BPMN_NS, _title_en
    result, catches = {}, set()
    seen = set()
    for source in parsed.bundle["bpmn"].values():
        if source in seen:
            continue
        seen.add(source)
        root = etree.fromstring(source.encode(), etree.XMLParser(resolve_entities=False, no_network=True))
        for proc in root.iter(f"{{{BPMN_NS}}}process"):
            for call in proc.iter(f"{{{BPMN_NS}}}callActivity"):
                result[call.get("id")] = (proc.get("id"), call.get("calledElement"))
                _CALL_TITLES[call.get("id")] = {"zh": call.get("name") or call.get("id"),
                                                "en": _title_en(call) or call.get("name") or call.get("id")}
            catches |= {e.get("id") for e in proc.iter(f"{{{BPMN_NS}}}intermediateCatchEvent")}
    return result, catches


def called_processes(rt, instance_id, username: str) -> list[dict]:
    """The processes an instance's process calls (for links to their diagrams): [{"id", "name"}]."""
    with rt.db.read() as session:
        user = access.reader(session, username)
        inst = session.get(ProcessInstance, parse_instance_id(instance_id))
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        parsed = rt.definitions.get(session, inst.definition_id)
        names = {}
        for pid in {called for _caller, called in _calls(parsed)[0].values()}:
            entry = rt.definitions.process_ids(session)
            names[pid] = rt.definitions.get(session, rt.definitions.latest_id(session, pid)).catalog.get("name", {}) \
                if pid in entry else {}
        return [{"id": called, "caller": caller, "call": cid, "name": names.get(called) or _CALL_TITLES.get(cid, {})}
                for cid, (caller, called) in _calls(parsed)[0].items()]


def open_tasks_by_instance(session, ids: list[int]) -> dict[int, list[dict]]:
    result: dict[int, list[dict]] = {}
    if not ids:
        return result
    for row in session.execute(OPEN_TASKS_OF, {"ids": ids}):
        result.setdefault(row.instance_id, []).append(task_dict(row))
    return result


def instance_dict(rt, session, inst, *, with_history: bool, tasks=None, names: dict[int, str] | None = None,
                  events: tuple | None = None) -> dict:
    """The instance object (of an ORM ProcessInstance or a command's InstanceRow). Read with Core
    rows, not ORM objects: this is on every command's path. `events`: its history as a command
    holds it (command_history), else the history is read."""
    if tasks is None:
        tasks = open_tasks_by_instance(session, [inst.id]).get(inst.id, [])
    if names is None:
        names = usernames(session, {inst.started_by_id, inst.subject_id})
    parsed = rt.definitions.get(session, inst.definition_id)
    result = {
        "id": inst.id, "process_id": inst.process_id, "status": inst.status,
        "process_name": parsed.catalog.get("name", {}), "version": rt.definitions.version_of(session, inst.definition_id),
        "started_by": names[inst.started_by_id], "subject": names[inst.subject_id],
        "summary": summary_of(inst), "data": dict(inst.data or {}), "tasks": tasks,
        "created_at": iso(inst.created_at), "updated_at": iso(inst.updated_at),
        "completed_at": iso(inst.completed_at),
    }
    if with_history:
        titles = parsed.titles
        if events is None:
            rows = ((e.at, e.actor, e.action, e.task, e.detail)
                    for e in session.connection().execute(HISTORY, {"instance_id": inst.id}))
        else:  # as a command keeps them (tables.history_event): the detail as JSON text
            rows = ((at, actor, action, task, json_loads(detail)) for at, actor, action, task, detail in events)
        result["history"] = [{"at": iso(at), "actor": actor, "action": action, "task": task,
                              "detail": detail or {}, "task_title": titles.get(task)}
                             for at, actor, action, task, detail in rows]
        result["copied_to"] = copied_to(result["history"])
    return result


def command_history(session, cmd) -> tuple:
    """The instance's history after the command (tables.history_event tuples): as the command knows
    it without reading (the process wrote all of it since its last read), else read, and known
    from then on (the object cache keeps it for the next command on the instance)."""
    known = cmd.known_history
    if known is None or known[0] != cmd.instance.lock_version:
        rows = session.connection().execute(HISTORY, {"instance_id": cmd.instance.id})
        known = cmd.known_history = (cmd.instance.lock_version, tuple(
            history_event(e.at, e.actor, e.action, e.task, e.detail) for e in rows))
    return known[1]


def command_instance_dict(rt, cmd) -> dict:
    """The instance object after a command on a task, from what the command holds — every live task
    row of the instance, the org chart's names — so that only its history is read."""
    from . import org
    chart = org.chart(cmd.session)
    inst = cmd.instance
    subject = chart.username(inst.subject_id)
    rows = sorted((r for r in cmd.tasks.values() if r.status == "open" and r.instance_id == inst.id),
                  key=lambda r: r.created_at)
    now, en = clock.now(), english()
    tasks = [task_object((*task_columns(r), chart.username(r.assignee_id), subject, inst.summary_zh, inst.summary_en),
                         now, en) for r in rows]
    names = {inst.started_by_id: chart.username(inst.started_by_id), inst.subject_id: subject}
    return instance_dict(rt, cmd.session, inst, with_history=True, tasks=tasks, names=names,
                         events=command_history(cmd.session, cmd))


def comments(rt, instance_id, username: str) -> list[dict]:
    with rt.db.read() as session:
        user = access.reader(session, username)
        inst = session.get(ProcessInstance, instance_id)
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        from .commands.instances import comment_dict
        rows = session.scalars(select(Comment).where(Comment.instance_id == inst.id).order_by(Comment.at, Comment.id)).all()
        names = usernames(session, {r.author_id for r in rows})
        return [comment_dict(session, r, names.get(r.author_id)) for r in rows]


def copied_to(history: list[dict]) -> list[str]:
    """Everyone the instance was copied to (CC), first copy first: every copy is in the history
    (runner.copy_to records it), so the instance_copies rows need not be read again."""
    names: dict[str, None] = {}
    for event in history:
        if event["action"] == "copied":
            names.update(dict.fromkeys(sorted(event["detail"].get("to") or ())))
    return list(names)


def eligible_users(rt, task_id: str, username: str) -> list[dict]:
    """Who may take the task by transfer or as an added signer (separation of duties: org.may_take),
    for the pickers: active people other than the caller, by username."""
    from . import org
    from .models import User
    with rt.db.read() as session:
        user = access.reader(session, username)
        row = session.execute(TASKS_BY_ID, {"ids": [str(task_id)]}).first()
        inst = session.get(ProcessInstance, row.instance_id) if row is not None else None
        if row is None or not access.may_view_task(session, row, inst, user):
            raise NotFound(f"task {task_id} not found")
        parsed = rt.definitions.get(session, inst.definition_id)
        subject = session.get(User, inst.subject_id)
        people = session.scalars(select(User).where(User.active.is_(True)).order_by(User.username)).all()
        return [org.user_dict(p) for p in people
                if p.id != user.id and org.may_take(session, parsed.lanes, p, subject, row.lane) is None]
