"""The transaction runner: every command goes through it.

A command locks the instance, loads its SpiffWorkflow state, acts, runs engine steps
(settle), then saves the state, syncs the `human_tasks` and `timers` tables and appends
history — or, on any error, rolls back everything (a workflow that raised is never
persisted: ENGINE-NOTES trap 4). The verbs themselves live in `engine.commands`; each is
a small function over a `Command` that this runner opened.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from pathlib import Path
from uuid import UUID, uuid4

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.defaults import EndEvent
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException, TaskNotFoundException
from SpiffWorkflow.util.task import TaskState

from . import access, clock, org, serializer
from .calendar import BusinessCalendar
from .db import Database
from .definitions import DefinitionRegistry, ParsedDefinition, WorkflowDirectory
from .errors import Conflict, NotFound, ProcessError
from .expressions import ExpressionError, SalesflowScriptEngine
from .models import NO_DUE_DATE, InstanceCopy, InstanceParticipant, Timer, User
from .services import Services, current_command, release_reservations
from .summary import summarize
from .tables import (
    DELETE_CANDIDATES, INSERT_CANDIDATE, INSTANCE, INSTANCE_FOR_UPDATE, INSTANCE_FOR_UPDATE_SKIP_LOCKED,
    INSTANCE_OF_TASK_FOR_UPDATE, INSTANCE_TASKS, LIVE_TASKS_AND_TOKEN, OPEN_BY_TASK, TASK_BY_ID, TASK_COLUMNS,
    TASKS_WITH_IDS, UPDATE_INSTANCE, ADD_HISTORY, ADD_NOTIFICATION, ARCHIVE_TASK, TASK_TABLE, history_event, iso,
    json_safe,
)

log = logging.getLogger("salesflow.engine")

DEFAULT_WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "workflows"
MAX_SETTLE_ROUNDS = 50
LIVE_STATUSES = ("open", "waiting", "held")
ACTOR = object()  # "the command's actor" in Command.record

@dataclass(eq=False)
class TaskRow:
    """A human_tasks row as a command reads and writes it: plain Core rows, no ORM unit of work,
    on the hottest path there is. A command keeps every row it touches in `Command.tasks` and
    writes the new and changed ones when it saves."""
    id: str
    instance_id: int
    process_id: str
    name: str
    title: str
    title_en: str
    lane: str | None
    form: str | None
    data_key: str | None
    is_approval: bool
    assignee_id: int | None
    candidate_role: str | None
    status: str
    due_at: datetime | None
    sort_due: datetime
    created_at: datetime
    completed_at: datetime | None
    completed_by_id: int | None
    parent_id: str | None = None  # an added signer's task: the BPMN task row it signs for
    context: dict | None = None
    reminded_at: datetime | None = None
    overdue_notified_at: datetime | None = None
    new: bool = False  # not in the table yet: inserted on save
    changed: bool = False  # status or assignee changed: updated on save

    def update(self, **values) -> None:
        for key, value in values.items():
            setattr(self, key, value)
        self.changed = True

    def columns(self) -> dict:
        return {name: getattr(self, name) for name in TASK_COLUMNS}

    @property
    def live(self) -> bool:
        """Mirrors a READY BPMN task: open, waiting for signers added before, or held for signers after."""
        return self.status in LIVE_STATUSES

    @property
    def natural(self) -> bool:
        """Whether its owner got it from the lane rules (not by transfer, add-signer or a return)."""
        return not (self.context or {}).get("via")

    def with_context(self, **values) -> dict:
        return {**(self.context or {}), **values}


@dataclass(eq=False)
class InstanceRow:
    """A process_instances row as a command holds it (Core, like TaskRow). Saved with one UPDATE
    that checks and bumps lock_version: a concurrent change makes the command fail whole."""
    id: int
    definition_id: int
    process_id: str
    status: str
    started_by_id: int
    subject_id: int
    region_id: int | None
    data: dict
    state: str
    lock_version: int
    return_count: int
    last_approver_id: int | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    summary_zh: str | None = None
    summary_en: str | None = None
    search_text: str | None = None
    error: dict | None = None  # what failed, when a step the system ran could not continue (status "error")


def _picker(stmt, names, prefix: str = ""):
    """The values of `names` (each with `prefix`) of a row of `stmt`, by position: reading a Row's
    attributes one by one costs more than the rest of turning it into a TaskRow or InstanceRow."""
    keys = list(stmt.selected_columns.keys())
    return itemgetter(*(keys.index(prefix + name) for name in names))


# TaskRow(*values) takes a row's columns in the table's order
if tuple(TaskRow.__dataclass_fields__)[:len(TASK_COLUMNS)] != TASK_COLUMNS:
    raise RuntimeError("TaskRow's fields must begin with human_tasks' columns, in the table's order")
# a command's opening rows (tables.OPEN_BY_TASK on SQLite; on PostgreSQL the locked instance, then
# LIVE_TASKS_AND_TOKEN): their instance and task fields in InstanceRow's and TaskRow's order
_OPEN_INSTANCE = _picker(OPEN_BY_TASK, InstanceRow.__dataclass_fields__)
_OPEN_TASK = _picker(OPEN_BY_TASK, TASK_COLUMNS, "t_")
_LIVE_TASK = _picker(LIVE_TASKS_AND_TOKEN, TASK_COLUMNS, "t_")


@dataclass
class Command:
    """What one command works on; services reach it through `current_command`."""
    session: object
    instance: InstanceRow
    parsed: ParsedDefinition
    actor: User | None
    now: datetime
    history: list = field(default_factory=list)
    fired_timers: list = field(default_factory=list)  # timer event tasks completed during this command
    participants: set = field(default_factory=set)  # user ids taking part, written (if new) on save
    tasks: dict = field(default_factory=dict)  # task id -> TaskRow this command read or created
    candidates: list = field(default_factory=list)  # (task id, user id) of new claim pools, written on save
    had_timers: bool = True  # whether the instance may have waiting timer rows
    task: "TaskRow | None" = None  # the task the command acts on, as of the lock
    # for tasks this command opens: owners by task name (a return resumes a step with whoever did it
    # before) and context (why the task came, e.g. the return's reason)
    owners: dict = field(default_factory=dict)
    new_context: dict | None = None
    notifications: list = field(default_factory=list)  # (user id, kind, task id, params), written on save
    signers_loaded: set = field(default_factory=set)  # step row ids whose added signers' rows are held
    copies: list = field(default_factory=list)  # (user id, by user id or None, comment): CC, written on save
    # every live task row of the instance is in `tasks` (a command on a task loads them with the lock),
    # and `known_ids` are the workflow's task ids (UUIDs) as loaded: a ready task outside both is new
    holds_live_rows: bool = False
    ready: list | None = None  # the READY user tasks found by the last sync of the task rows
    reservation_released: bool = False  # the budget reservation is gone already (engine/services.py)
    known_ids: frozenset = frozenset()
    # the instance's whole history as of a lock_version, when this process knows it without reading:
    # (version, events), each event (at, actor username, action, task, detail as JSON text), in the
    # order the history is read (by time, then as written); None when it must be read
    known_history: tuple | None = None

    def task_completed(self, task) -> None:
        if is_timer(task):
            self.fired_timers.append(task)

    @property
    def subject(self) -> org.Person:
        """The person the instance is about (from the org chart)."""
        return org.chart(self.session).get(self.instance.subject_id)

    def record(self, action: str, task: str | None = None, actor=ACTOR, **detail):
        """Queue a history event; actor defaults to whoever runs the command, None means the system."""
        self.history.append((self.actor if actor is ACTOR else actor, action, task, detail))

    def notify(self, kind: str, user_ids, task_id: str | None = None, **params) -> None:
        """Queue a notification for each user (never for the actor themselves)."""
        me = self.actor.id if self.actor else None
        for uid in dict.fromkeys(user_ids):
            if uid is not None and uid != me:
                self.notifications.append((uid, kind, task_id, params))



class WorkflowCache:
    """The workflows this process saved last, as objects, by instance: a command on one of them
    takes the object instead of restoring it from its state (restoring is the biggest part of
    loading). An entry is only ever one that was saved in a transaction that committed, and it is
    taken only while the instance's state is still exactly the state saved from it (a change by
    anyone else, another process or plain SQL, makes it a miss) and its definition is the same
    parsed one. Taking removes it: a command that fails leaves a changed object nobody reuses;
    a command that commits puts the object back. `size` objects at most (least recently saved
    go first; about 20 KB each for an expense claim); 0 turns the cache off (environment:
    SALESFLOW_WORKFLOW_CACHE, default 256). An instance no longer running is not kept."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def take(self, instance_id: int, state: str, parsed: ParsedDefinition) -> tuple:
        """(the workflow object or None, the history saved with it: (lock_version, events) or None)."""
        with self._lock:
            entry = self._items.pop(instance_id, None)
        if entry is not None:
            saved, wf, history = entry
            if saved == state and wf.spec is parsed.spec and wf.subprocess_specs == (parsed.subprocess_specs or {}):
                self.hits += 1
                return wf, history
        self.misses += 1
        return None, None

    def put(self, instance_id: int, state: str, wf: BpmnWorkflow, history: tuple | None = None) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[instance_id] = (state, wf, history)
            self._items.move_to_end(instance_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _cache_size() -> int:
    try:
        return max(0, int(os.environ.get("SALESFLOW_WORKFLOW_CACHE", "256")))
    except ValueError:
        return 256


class Runner:
    """Opens, runs and saves commands. `Engine` (runtime.py) is this plus the verbs and the read side."""
    def __init__(self, db: Database, workflows_dir: str | Path | None = None, calendar: BusinessCalendar | None = None):
        self.db = db
        self.workflows_dir = Path(workflows_dir or DEFAULT_WORKFLOWS_DIR)
        self.definitions = DefinitionRegistry(WorkflowDirectory(self.workflows_dir))
        self.calendar = calendar or BusinessCalendar(self.workflows_dir / "calendar.json")
        self.script_engine = SalesflowScriptEngine(self.calendar, Services())
        self.workflows = WorkflowCache(_cache_size())
        dialect_insert = sqlite_insert if db.is_sqlite else postgresql_insert
        # the task rows a command created or changed: one statement (new rows inserted, changed ones updated)
        upsert = dialect_insert(TASK_TABLE)
        self._save_tasks = upsert.on_conflict_do_update(index_elements=[TASK_TABLE.c.id], set_={
            name: upsert.excluded[name] for name in ("status", "assignee_id", "context", "completed_at",
                                                     "completed_by_id")})
        self._add_participants = dialect_insert(InstanceParticipant.__table__).on_conflict_do_nothing()
        self._add_copies = dialect_insert(InstanceCopy.__table__).on_conflict_do_nothing()


    # --------------------------------------------------------------- loading
    def _lock(self, session, instance_id: int, *, skip_locked: bool = False) -> InstanceRow | None:
        """The instance row, locked for this transaction: FOR UPDATE on PostgreSQL (with skip_locked,
        None when another transaction holds it); on SQLite the IMMEDIATE transaction is the lock."""
        if self.db.is_sqlite:
            stmt = INSTANCE
        else:
            stmt = INSTANCE_FOR_UPDATE_SKIP_LOCKED if skip_locked else INSTANCE_FOR_UPDATE
        found = session.connection().execute(stmt, {"id": instance_id}).first()
        if found is None:
            if skip_locked:
                return None
            raise NotFound(f"instance {instance_id} not found")
        return InstanceRow(**found._mapping)

    def _load(self, cmd: Command) -> BpmnWorkflow:
        wf, cmd.known_history = self.workflows.take(cmd.instance.id, cmd.instance.state, cmd.parsed)
        if wf is None:
            wf = serializer.loads(cmd.instance.state, cmd.parsed.spec, cmd.parsed.subprocess_specs)
        wf.script_engine = self.script_engine  # not serialized: re-attach after every load
        cmd.had_timers = any(is_timer(t) for t in wf.event_manager.tasks.values())
        if cmd.holds_live_rows:  # every task id of the tree as loaded (subprocesses included)
            cmd.known_ids = frozenset().union(wf.tasks, *(sp.tasks for sp in wf.subprocesses.values()))
        return wf

    def _save(self, cmd: Command, wf: BpmnWorkflow | None = None) -> None:
        """Write the instance (its state too when the workflow changed), its task rows, participants,
        timers and history. The instance UPDATE checks and bumps lock_version."""
        inst = cmd.instance
        values = {"_id": inst.id, "_version": inst.lock_version, "lock_version": inst.lock_version + 1,
                  "status": inst.status, "data": inst.data, "return_count": inst.return_count,
                  "last_approver_id": inst.last_approver_id, "updated_at": cmd.now, "completed_at": inst.completed_at,
                  "summary_zh": inst.summary_zh, "summary_en": inst.summary_en, "search_text": inst.search_text,
                  "definition_id": inst.definition_id, "error": inst.error}
        if wf is not None:
            state = values["state"] = inst.state = serializer.dumps(wf)
            # once committed, the next command on the instance in this process may take the object
            # (the last save of a transaction wins; a rollback drops it); one no longer running has none
            callbacks = cmd.session.info.setdefault("on_commit", {})
            if inst.status != "running":
                callbacks.pop(("workflow", id(self), inst.id), None)
            else:
                callbacks[("workflow", id(self), inst.id)] = lambda: self.workflows.put(inst.id, state, wf,
                                                                                        cmd.known_history)
        if cmd.session.connection().execute(UPDATE_INSTANCE, values).rowcount != 1:
            raise Conflict("the instance was changed concurrently; try again")
        # the history known before holds while nobody saved the instance since: every history event
        # is written here, after the UPDATE that bumps lock_version
        known = cmd.known_history if cmd.known_history and cmd.known_history[0] == inst.lock_version else None
        inst.lock_version, inst.updated_at = inst.lock_version + 1, cmd.now
        cmd.session.flush()  # timer rows (ORM)
        self._write_tasks(cmd)
        if cmd.participants:  # one statement; who is already there is left alone
            cmd.session.connection().execute(self._add_participants, [
                {"instance_id": inst.id, "user_id": uid} for uid in sorted(cmd.participants)])
            cmd.participants.clear()
        written = self._write_history(cmd)
        # what the history is now, when it was known before: the events as read, sorted by time as
        # the read sorts them (stable: at the same time, the earlier written first)
        cmd.known_history = (inst.lock_version, tuple(sorted(known[1] + written, key=_event_at))) \
            if known is not None else None
        if cmd.copies:
            cmd.session.connection().execute(self._add_copies, [
                {"instance_id": inst.id, "user_id": uid, "by_id": by, "at": cmd.now, "comment": comment}
                for uid, by, comment in cmd.copies])
            cmd.copies.clear()
        if cmd.notifications:
            cmd.session.connection().execute(ADD_NOTIFICATION, [
                {"user_id": uid, "kind": kind, "instance_id": inst.id, "task_id": task_id, "at": cmd.now,
                 "actor_id": cmd.actor.id if cmd.actor else None, "params": params, "read_at": None}
                for uid, kind, task_id, params in cmd.notifications])
            cmd.notifications.clear()

    # ------------------------------------------------------------ execution
    def _run(self, cmd: Command, fn, *args):
        """Run engine code. What the process itself got wrong — an expression SpiffWorkflow could not
        evaluate (it wraps those), a restricted expression, a tree too deep — becomes ProcessError
        (422, with its cause); the transaction rolls back. Anything else is a bug or a database error
        and propagates unchanged: a 500 with its traceback logged, nothing half-written."""
        token = current_command.set(cmd)
        try:
            with clock.frozen(cmd.now):
                return fn(*args)
        except (SpiffWorkflowException, ExpressionError, RecursionError) as exc:
            log.warning("process error in instance %s: %s", cmd.instance.id, exc)
            task = getattr(exc, "task", None)
            where = getattr(getattr(task, "task_spec", None), "bpmn_id", None)
            raise ProcessError(f"the process could not continue: {exc}; nothing was changed", where) from exc
        finally:
            current_command.reset(token)

    def _settle(self, cmd: Command, wf: BpmnWorkflow) -> None:
        """Run engine steps until only human tasks and waiting events remain; sync the tables."""
        for _ in range(MAX_SETTLE_ROUNDS):
            self._run(cmd, wf.do_engine_steps, None, cmd.task_completed)
            auto = self._sync_tasks(cmd, wf)
            if not auto:
                break
            for task, data in auto:
                self._run(cmd, self._run_task, task, data)
        else:
            raise ProcessError("the process kept approving itself; giving up, nothing was changed")
        self._sync_timers(cmd, wf)
        self._sync_instance(cmd, wf)

    @staticmethod
    def _run_task(task, data: dict) -> None:
        if task.state != TaskState.READY:  # Task.run() does not check (trap 5)
            raise Conflict("task is no longer open")
        # each answer replaces the previous one whole (SpiffWorkflow's add_data_from_form deep-merges,
        # so a field left out of a new answer would keep its old value)
        task.data.update(data)
        task.run()

    # ------------------------------------------------------------ syncing
    def _ready_user_tasks(self, wf: BpmnWorkflow) -> list:
        return wf.get_tasks(state=TaskState.READY, manual=True)

    def _due_at(self, task) -> datetime | None:
        parent = task.parent
        if parent is None or not isinstance(parent.task_spec, BoundaryEventSplit):
            return None
        dues = []
        for sibling in parent.children:
            # a deadline already past when the task opened has fired at once (COMPLETED): still its due time
            if sibling is task or sibling.state not in (TaskState.WAITING, TaskState.COMPLETED):
                continue
            event = getattr(sibling.task_spec, "event_definition", None)
            if isinstance(event, TimerEventDefinition):
                due = timer_due(sibling)
                if due is not None:
                    dues.append(due)
        return min(dues) if dues else None

    def _sync_tasks(self, cmd: Command, wf: BpmnWorkflow) -> list:
        """Mirror READY user tasks into human_tasks. Returns tasks to auto-approve."""
        session, inst = cmd.session, cmd.instance
        ready = {str(t.id): t for t in self._ready_user_tasks(wf)}
        cmd.ready = list(ready.values())  # as of the last sync: the instance's data is read from them
        # the instance's open rows and the rows of ready ids; a row this command already holds
        # is newer than the table (its changes are written on save)
        with session.no_autoflush:  # human_tasks is written on save, never by the ORM
            if not cmd.holds_live_rows:
                found_rows = session.connection().execute(INSTANCE_TASKS, {"instance_id": inst.id, "ids": list(ready)}).all()
            else:  # only a task reopened by a loop or a reset may have a row this command does not hold
                reopened = [t for t, task in ready.items() if t not in cmd.tasks and task.id in cmd.known_ids]
                found_rows = session.connection().execute(TASKS_WITH_IDS, {"ids": reopened}).all() if reopened else ()
        for found in found_rows:
            if found.id not in cmd.tasks:
                cmd.tasks[found.id] = TaskRow(**found._mapping)
        live = {tid: row for tid, row in cmd.tasks.items() if row.live and row.parent_id is None}
        for task_id, row in live.items():
            if task_id in ready:
                continue
            spiff_task = find_task(wf, task_id)
            done = spiff_task is not None and spiff_task.state == TaskState.COMPLETED and row.status != "waiting"
            row.update(status="completed" if done else "cancelled", completed_at=row.completed_at or cmd.now)
            if not done:
                cmd.record("task_cancelled", row.name, actor=None)
        for row in cmd.tasks.values():  # an added signer's task ends with the step it signs for
            if row.parent_id is not None and row.status == "open" and row.parent_id not in ready:
                row.update(status="cancelled", completed_at=cmd.now)
                cmd.record("task_cancelled", row.name, actor=None, signer=org.chart(session).username(row.assignee_id))
        auto = []
        for task_id, task in ready.items():
            if task_id in live:
                continue
            info = cmd.parsed.tasks.get(task.task_spec.name)
            if info is None:
                raise ProcessError(f"task {task.task_spec.name} has no form definition")
            context = dict(cmd.new_context or {}) or None
            resumed = cmd.owners.get(info.name)
            with session.no_autoflush:  # reads the org chart only
                if resumed is not None:  # a return resumes the step with whoever did it before
                    owners = org.LaneOwners([org.chart(session).get(resumed)])
                    context = {**(context or {}), "via": "return"}
                else:
                    owners = org.resolve_lane(session, cmd.parsed.lanes, info.lane, cmd.subject, decides=True)
                    owners, away = org.stand_in(session, cmd.parsed.lanes, owners, cmd.subject, info.lane, cmd.now)
                    if away is not None:  # out of office: the delegate (or manager) takes it, "for" them
                        context = {**(context or {}), "via": "out_of_office", "for": away.username}
            if owners.note:
                cmd.record("routed", info.name, actor=None, reason=owners.note)
            due = self._due_at(task)
            old = cmd.tasks.get(task_id)
            if old is not None:  # a task reopened by a loop or a reset keeps its id in SpiffWorkflow
                cmd.candidates = [(t, u) for t, u in cmd.candidates if t != task_id]
                if not old.new:  # its finished row stays (已办, history) under a fresh id
                    session.connection().execute(DELETE_CANDIDATES, {"task_id": task_id})
                    session.connection().execute(ARCHIVE_TASK, {"task_id": task_id, "new_id": str(uuid4())})
            row = TaskRow(
                id=task_id, instance_id=inst.id, process_id=inst.process_id, name=info.name, title=info.title,
                title_en=info.title_en, lane=info.lane, form=info.form, data_key=info.data_key,
                is_approval=info.is_approval, status="open", due_at=due, sort_due=due or NO_DUE_DATE, created_at=cmd.now,
                candidate_role=(cmd.parsed.lanes.get(info.lane or "") or {}).get("role"),
                assignee_id=owners.users[0].id if len(owners.users) == 1 else None, completed_at=None,
                completed_by_id=None, context=context, new=True)
            cmd.tasks[task_id] = row
            if len(owners.users) > 1:  # a pool to claim from; a single owner is simply the assignee
                cmd.candidates.extend((task_id, u.id) for u in owners.users)
            for user in owners.users:
                self._participate(cmd, user.id)
            only = owners.users[0] if len(owners.users) == 1 else None
            if info.is_approval and only is not None and only.id == inst.last_approver_id and resumed is None:
                # the same person is not asked twice in a row: their previous approval stands
                data = {"decision": "approve", "comment": "自动通过：与上一步审批人相同 (auto-approved: same approver as the previous step)"}
                row.update(status="completed", completed_at=cmd.now, completed_by_id=only.id)
                cmd.record("auto_approved", info.name, actor=only, **data)
                auto.append((task, form_payload(info, data, only)))
            else:
                cmd.record("task_created", info.name, actor=None,
                           assignee=only.username if only else None,
                           candidates=[u.username for u in owners.users] if not only else None,
                           **{"for": (context or {}).get("for")})
                kind = "returned" if (context or {}).get("returned") else "task_assigned"
                cmd.notify(kind, [u.id for u in owners.users], task_id, task=info.name,
                           pool=None if only else True, **{"for": (context or {}).get("for")})
        return auto

    def _sync_timers(self, cmd: Command, wf: BpmnWorkflow) -> None:
        """Mirror waiting timers into `timers`; record the ones that fired in this command
        (including a deadline already past when its task opened, which fires at once)."""
        session, inst = cmd.session, cmd.instance
        waiting = {}
        for task in wf.event_manager.tasks.values():
            if task.state == TaskState.WAITING and is_timer(task):
                due = timer_due(task)
                if due is not None:
                    waiting[str(task.id)] = (task, due)
        fired = {str(t.id): t for t in cmd.fired_timers}
        cmd.fired_timers.clear()
        if not (waiting or fired or cmd.had_timers):
            return
        cmd.had_timers = True
        rows = {row.id: row for row in session.scalars(
            select(Timer).where(Timer.instance_id == inst.id, Timer.id.in_([*waiting, *fired])
                                | (Timer.status == "waiting")))}
        for timer_id, row in rows.items():
            if row.status == "waiting" and timer_id not in waiting and timer_id not in fired:
                row.status = "cancelled"
        for timer_id, task in fired.items():
            row = rows.get(timer_id)
            event = cmd.parsed.events.get(task.task_spec.name, {})
            if row is None:
                row = Timer(id=timer_id, instance_id=inst.id, name=task.task_spec.bpmn_id,
                            title=event.get("title", task.task_spec.bpmn_id), due_at=timer_due(task) or cmd.now)
                session.add(row)
            row.status, row.fired_at = "fired", cmd.now
            cmd.record("timer_fired", row.name, actor=None, title=row.title, due_at=iso(row.due_at))
            if event.get("notify"):
                owners = org.resolve_lane(session, cmd.parsed.lanes, event["notify"], cmd.subject, decides=False)
                for user in owners.users:
                    self._participate(cmd, user.id)
                cmd.record("notified", row.name, actor=None, to=[u.username for u in owners.users],
                           message=event.get("message", row.title))
                cmd.notify("escalation", [u.id for u in owners.users], None, message=event.get("message", row.title))
        for timer_id, (task, due) in waiting.items():
            row = rows.get(timer_id)
            if row is None:
                event = cmd.parsed.events.get(task.task_spec.name, {})
                session.add(Timer(id=timer_id, instance_id=inst.id, name=task.task_spec.bpmn_id,
                                  title=event.get("title", task.task_spec.bpmn_id), due_at=due, status="waiting"))
            elif row.status != "waiting":  # a timer reused by a loop: waiting again
                row.status, row.due_at, row.fired_at = "waiting", due, None

    def _sync_instance(self, cmd: Command, wf: BpmnWorkflow) -> None:
        inst = cmd.instance
        if wf.is_completed():
            data = dict(wf.data)
            outcome, end = None, {}
            for task in wf.get_tasks(state=TaskState.COMPLETED, spec_class=EndEvent):
                if task.workflow is wf:
                    event = cmd.parsed.events.get(task.task_spec.name, {})
                    if event.get("outcome"):
                        outcome, end = event["outcome"], event
            if outcome:
                data["outcome"] = outcome
            if inst.status == "running":
                inst.status, inst.completed_at = "completed", cmd.now
                cmd.record("instance_completed", None, actor=None, outcome=data.get("outcome"))
                release_reservations(cmd)  # an approved claim's reservation became spending already
                self._copy_declared(cmd, end, data)
                cmd.notify("outcome", [inst.started_by_id, inst.subject_id], outcome=data.get("outcome"))
        else:
            data = {}
            if wf.last_task is not None:
                data.update(wf.last_task.data)
            for task in cmd.ready if cmd.ready is not None else self._ready_user_tasks(wf):
                data.update(task.data)
        data.pop("data_objects", None)
        inst.data = json_safe(data)
        starter = cmd.subject if inst.started_by_id == inst.subject_id else org.chart(cmd.session).get(inst.started_by_id)
        inst.summary_zh, inst.summary_en, inst.search_text = summarize(
            cmd.parsed, inst.data, cmd.subject, starter, inst.id)

    def _copy_declared(self, cmd: Command, end: dict, data: dict) -> None:
        """An end event may copy the finished instance to a lane (`cc`), when `ccCondition` holds."""
        lane = end.get("cc")
        if not lane:
            return
        condition = end.get("ccCondition")
        if condition and not self._run(cmd, self._declared_condition, condition, dict(data)):
            return
        owners = org.resolve_lane(cmd.session, cmd.parsed.lanes, lane, cmd.subject, decides=False)
        if owners.note:
            return  # nobody fits the lane: no copy (never the administrators' fallback)
        copy_to(cmd, owners.users, None, None)

    def _declared_condition(self, condition: str, data: dict) -> bool:
        """A condition the process declares outside SpiffWorkflow (ccCondition): whatever it raises
        (an unknown name, a type error) is the process's error, as SpiffWorkflow treats its own."""
        try:
            return bool(self.script_engine.environment.evaluate(condition, data))
        except ExpressionError:
            raise
        except Exception as exc:  # noqa: BLE001 - an expression's failure, never the engine's
            raise ExpressionError(f"ccCondition {condition!r}: {exc.__class__.__name__}: {exc}") from exc

    @staticmethod
    def _participate(cmd: Command, user_id: int) -> None:
        cmd.participants.add(user_id)

    def _write_tasks(self, cmd: Command) -> None:
        """Write the human task rows the command created or changed (one statement: an insert that
        updates a row already there), then the candidates of new claim pools."""
        rows = [row for row in cmd.tasks.values() if row.new or row.changed]
        if rows:
            cmd.session.connection().execute(self._save_tasks, [row.columns() for row in rows])
        if cmd.candidates:
            cmd.session.connection().execute(INSERT_CANDIDATE, [candidate_row(cmd.tasks[t], u) for t, u in cmd.candidates])
        for row in rows:
            row.new = row.changed = False
        cmd.candidates.clear()

    def _write_history(self, cmd: Command) -> tuple:
        """Append the command's history: one multi-row INSERT. Returns the events as a read of them
        returns them (history_event), for the answer to read none back."""
        if not cmd.history:
            return ()
        rows = [{"instance_id": cmd.instance.id, "at": cmd.now + timedelta(microseconds=offset),
                 "actor_id": actor.id if actor else None, "action": action, "task": task,
                 "detail": {k: v for k, v in detail.items() if v is not None}}
                for offset, (actor, action, task, detail) in enumerate(cmd.history)]
        cmd.session.connection().execute(ADD_HISTORY, rows)
        written = tuple(history_event(row["at"], actor.username if actor else None, row["action"], row["task"],
                                      row["detail"]) for row, (actor, *_rest) in zip(rows, cmd.history))
        cmd.history.clear()
        return written

    # ------------------------------------------------------------ opening a command
    @contextmanager
    def command(self, actor: str | None, *, instance_id=None, task_id=None, at: datetime | None = None):
        """One command, one transaction: the actor, the task row (when given) and the instance,
        locked. The block acts on the yielded Command; leaving it with an exception rolls back whole."""
        with self.db.write() as session:
            if task_id is not None:
                cmd = self._command_on_task(session, actor, str(task_id), at)
            else:
                user = access.actor(session, actor) if actor is not None else None
                cmd = self._command(session, instance_id, user, at)
            yield cmd

    def _command(self, session, instance_id: int, actor, at: datetime | None) -> Command:
        inst = self._lock(session, instance_id)
        parsed = self.definitions.get(session, inst.definition_id)
        return Command(session, inst, parsed, actor, at or clock.now())

    def _command_on_task(self, session, actor: str | None, task_id: str, at: datetime | None) -> Command:
        """A command on a task: the instance locked, with every live task row of it held (the task's
        own row too, whatever its status) and the actor from the org chart. SQLite: one statement
        (the IMMEDIATE transaction began before it, so it is fresh); PostgreSQL: the instance row is
        locked first, then the rows are read as of the lock (another command may have committed
        while we waited)."""
        if self.db.is_sqlite:
            found = session.connection().execute(OPEN_BY_TASK, {"task_id": task_id}).all()
            inst = InstanceRow(*_OPEN_INSTANCE(found[0])) if found else None
            task_of = _OPEN_TASK
        else:
            locked = session.connection().execute(INSTANCE_OF_TASK_FOR_UPDATE, {"task_id": task_id}).first()
            inst = InstanceRow(**locked._mapping) if locked is not None else None
            found = session.connection().execute(LIVE_TASKS_AND_TOKEN, {"instance_id": inst.id if inst else None,
                                                           "task_id": task_id}).all()
            task_of = _LIVE_TASK
        token = found[0].org_token if found else None
        user = access.command_actor(session, actor, token) if actor is not None else None
        if inst is None:
            raise NotFound(f"task {task_id} not found")
        cmd = Command(session, inst, self.definitions.get(session, inst.definition_id), user, at or clock.now())
        for row in found:
            if row.t_id is not None:
                cmd.tasks[row.t_id] = TaskRow(*task_of(row))
        cmd.holds_live_rows = True
        cmd.task = cmd.tasks.get(task_id)
        if cmd.task is None:  # PostgreSQL: the row went between the lock's subquery and the read
            raise NotFound(f"task {task_id} not found")
        return cmd


def _event_at(event: tuple) -> datetime:
    return event[0]


def copy_to(cmd: Command, users, by: User | None, comment: str | None) -> list[str]:
    """CC (抄送): the users may read the instance and comment, are told, and decide nothing."""
    names = []
    for user in users:
        cmd.participants.add(user.id)
        cmd.copies.append((user.id, by.id if by else None, comment))
        names.append(user.username)
    if names:
        cmd.record("copied", None, actor=by, to=names, comment=comment, automatic=True if by is None else None)
        cmd.notify("cc", [u.id for u in users], comment=comment)
    return names


def candidate_row(task: TaskRow, user_id: int) -> dict:
    """A claim-pool row: its task's inbox order, and whether it is claimable now."""
    return {"task_id": task.id, "user_id": user_id, "sort_due": task.sort_due, "created_at": task.created_at,
            "claimable": task.status == "open" and task.assignee_id is None}


def task_row(session, task_id: str) -> TaskRow:
    found = session.connection().execute(TASK_BY_ID, {"id": str(task_id)}).first()
    if found is None:
        raise NotFound(f"task {task_id} not found")
    return TaskRow(**found._mapping)


def form_payload(info, accepted: dict, actor: User) -> dict:
    """The answer as the workflow stores it: under the task's data key (with who gave it), else flat."""
    if info is not None and info.data_key:
        return {info.data_key: {**accepted, "by": actor.username}}
    return dict(accepted)


def find_task(wf: BpmnWorkflow, task_id: str):
    """The SpiffWorkflow task, or None when it is gone from the tree (get_task_from_id raises)."""
    try:
        return wf.get_task_from_id(UUID(task_id))
    except TaskNotFoundException:
        return None


def is_timer(task) -> bool:
    return isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition)


def timer_due(task) -> datetime | None:
    """When a waiting timer falls due. A value that is not a date, a duration or a cycle is the
    process's error (it would never fire): ProcessError, never silently no timer."""
    details = task.task_spec.event_definition.details(task)
    value = details.value
    if isinstance(value, dict):
        value = value.get("next")
    if not value:
        return None
    try:
        return TimerEventDefinition.get_datetime(value) if isinstance(value, str) else value
    except ValueError:
        raise ProcessError(f"timer {task.task_spec.bpmn_id}: {value!r} is not a date, a duration or a cycle") from None
