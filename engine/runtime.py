"""Commands on process instances, each one transaction.

Every command: lock the instance, load its SpiffWorkflow state, act, run engine
steps, then save the state, sync the `human_tasks` and `timers` tables and append
history — or, on any error, roll back everything (a workflow that raised is never
persisted: ENGINE-NOTES trap 4).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.defaults import EndEvent
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException, TaskNotFoundException
from SpiffWorkflow.util.task import TaskState

from . import clock, org, serializer
from .calendar import BusinessCalendar
from .db import Database
from .definitions import DefinitionRegistry, ParsedDefinition, WorkflowDirectory
from .errors import BadRequest, Conflict, Forbidden, NotFound, ProcessError, Unauthorized, ValidationFailed
from .expressions import ExpressionError, SalesflowScriptEngine
from .forms import validate_form
from .models import (
    NO_DUE_DATE, HistoryEvent, HumanTask, HumanTaskCandidate, InstanceParticipant, ProcessInstance, Timer, User,
)
from .services import Services, current_command

log = logging.getLogger("salesflow.engine")

DEFAULT_WORKFLOWS_DIR = Path(__file__).resolve().parent.parent / "workflows"
MAX_SETTLE_ROUNDS = 50
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
    region_id: int | None
    status: str
    due_at: datetime | None
    sort_due: datetime
    created_at: datetime
    completed_at: datetime | None
    completed_by_id: int | None
    new: bool = False  # not in the table yet: inserted on save
    changed: bool = False  # status or assignee changed: updated on save

    def update(self, **values) -> None:
        for key, value in values.items():
            setattr(self, key, value)
        self.changed = True

    def columns(self) -> dict:
        return {name: getattr(self, name) for name in _TASK_COLUMNS}


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

    def task_completed(self, task) -> None:
        if _is_timer(task):
            self.fired_timers.append(task)

    @property
    def subject(self) -> User:
        """The person the instance is about (from the session's identity map after the first use)."""
        return self.session.get(User, self.instance.subject_id)

    def record(self, action: str, task: str | None = None, actor=ACTOR, **detail):
        """Queue a history event; actor defaults to whoever runs the command, None means the system."""
        self.history.append((self.actor if actor is ACTOR else actor, action, task, detail))


class Engine:
    def __init__(self, db: Database, workflows_dir: str | Path | None = None, calendar: BusinessCalendar | None = None):
        self.db = db
        self.workflows_dir = Path(workflows_dir or DEFAULT_WORKFLOWS_DIR)
        self.definitions = DefinitionRegistry(WorkflowDirectory(self.workflows_dir))
        self.calendar = calendar or BusinessCalendar(self.workflows_dir / "calendar.json")
        self.script_engine = SalesflowScriptEngine(self.calendar, Services())
        dialect_insert = sqlite_insert if db.is_sqlite else postgresql_insert
        self._add_participants = dialect_insert(InstanceParticipant.__table__).on_conflict_do_nothing()

    # ------------------------------------------------------------------ setup
    def setup(self) -> list[str]:
        """Migrate the database and deploy what changed in workflows/. Returns the new versions."""
        self.db.migrate()
        return self.deploy()

    def deploy(self) -> list[str]:
        with self.db.write() as session:
            created = self.definitions.deploy(session)
            names = [f"{row.process_id} v{row.version}" for row in created]
        with self.db.read() as session:
            self.definitions.refresh_latest(session)
        return names

    # --------------------------------------------------------------- loading
    def _lock(self, session, instance_id: int, *, skip_locked: bool = False) -> InstanceRow | None:
        """The instance row, locked for this transaction: FOR UPDATE on PostgreSQL (with skip_locked,
        None when another transaction holds it); on SQLite the IMMEDIATE transaction is the lock."""
        if self.db.is_sqlite:
            stmt = _INSTANCE
        else:
            stmt = _INSTANCE_FOR_UPDATE_SKIP_LOCKED if skip_locked else _INSTANCE_FOR_UPDATE
        found = session.execute(stmt, {"id": instance_id}).first()
        if found is None:
            if skip_locked:
                return None
            raise NotFound(f"instance {instance_id} not found")
        return InstanceRow(**found._mapping)

    def _load(self, cmd: Command) -> BpmnWorkflow:
        wf = serializer.loads(cmd.instance.state, cmd.parsed.spec, cmd.parsed.subprocess_specs)
        wf.script_engine = self.script_engine  # not serialized: re-attach after every load
        cmd.had_timers = any(_is_timer(t) for t in wf.event_manager.tasks.values())
        return wf

    def _save(self, cmd: Command, wf: BpmnWorkflow | None = None) -> None:
        """Write the instance (its state too when the workflow changed), its task rows, participants,
        timers and history. The instance UPDATE checks and bumps lock_version."""
        inst = cmd.instance
        values = {"_id": inst.id, "_version": inst.lock_version, "lock_version": inst.lock_version + 1,
                  "status": inst.status, "data": inst.data, "return_count": inst.return_count,
                  "last_approver_id": inst.last_approver_id, "updated_at": cmd.now, "completed_at": inst.completed_at}
        if wf is not None:
            values["state"] = inst.state = serializer.dumps(wf)
        if cmd.session.execute(_UPDATE_INSTANCE, values).rowcount != 1:
            raise Conflict("the instance was changed concurrently; try again")
        inst.lock_version, inst.updated_at = inst.lock_version + 1, cmd.now
        cmd.session.flush()  # timer rows (ORM)
        self._write_tasks(cmd)
        if cmd.participants:  # one statement; who is already there is left alone
            cmd.session.execute(self._add_participants, [
                {"instance_id": inst.id, "user_id": uid} for uid in sorted(cmd.participants)])
            cmd.participants.clear()
        self._write_history(cmd)

    # ------------------------------------------------------------ execution
    def _run(self, cmd: Command, fn, *args):
        """Run engine code; any failure becomes ProcessError (and the transaction rolls back)."""
        token = current_command.set(cmd)
        try:
            with clock.frozen(cmd.now):
                return fn(*args)
        except (SpiffWorkflowException, ExpressionError, ValueError, TypeError, KeyError, NameError,
                AttributeError, ZeroDivisionError, RecursionError) as exc:
            log.warning("process error in instance %s: %s", cmd.instance.id, exc)
            raise ProcessError(f"the process could not continue: {exc}; nothing was changed") from exc
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
                due = _timer_due(sibling)
                if due is not None:
                    dues.append(due)
        return min(dues) if dues else None

    def _sync_tasks(self, cmd: Command, wf: BpmnWorkflow) -> list:
        """Mirror READY user tasks into human_tasks. Returns tasks to auto-approve."""
        session, inst = cmd.session, cmd.instance
        ready = {str(t.id): t for t in self._ready_user_tasks(wf)}
        # the instance's open rows and the rows of ready ids; a row this command already holds
        # is newer than the table (its changes are written on save)
        with session.no_autoflush:  # human_tasks is written on save, never by the ORM
            found_rows = session.execute(_INSTANCE_TASKS, {"instance_id": inst.id, "ids": list(ready)}).all()
        for found in found_rows:
            if found.id not in cmd.tasks:
                cmd.tasks[found.id] = TaskRow(**found._mapping)
        open_rows = {tid: row for tid, row in cmd.tasks.items() if row.status == "open"}
        for task_id, row in open_rows.items():
            if task_id in ready:
                continue
            spiff_task = _find_task(wf, task_id)
            status = "completed" if spiff_task is not None and spiff_task.state == TaskState.COMPLETED else "cancelled"
            row.update(status=status, completed_at=cmd.now)
            if status == "cancelled":
                cmd.record("task_cancelled", row.name, actor=None)
        auto = []
        for task_id, task in ready.items():
            if task_id in open_rows:
                continue
            info = cmd.parsed.tasks.get(task.task_spec.name)
            if info is None:
                raise ProcessError(f"task {task.task_spec.name} has no form definition")
            with session.no_autoflush:  # reads the org chart only
                owners = org.resolve_lane(session, cmd.parsed.lanes, info.lane, cmd.subject, approval=info.is_approval)
            if owners.note:
                cmd.record("routed", info.name, actor=None, reason=owners.note)
            due = self._due_at(task)
            old = cmd.tasks.get(task_id)
            if old is not None:  # a task reopened by a loop keeps its id in SpiffWorkflow: its row starts afresh
                cmd.candidates = [(t, u) for t, u in cmd.candidates if t != task_id]
                if not old.new:
                    session.execute(_DELETE_CANDIDATES, {"task_id": task_id})
                    session.execute(_DELETE_TASK, {"task_id": task_id})
            row = TaskRow(
                id=task_id, instance_id=inst.id, process_id=inst.process_id, name=info.name, title=info.title,
                title_en=info.title_en, lane=info.lane, form=info.form, data_key=info.data_key,
                is_approval=info.is_approval, status="open", due_at=due, sort_due=due or NO_DUE_DATE, created_at=cmd.now,
                candidate_role=(cmd.parsed.lanes.get(info.lane or "") or {}).get("role"), region_id=inst.region_id,
                assignee_id=owners.users[0].id if len(owners.users) == 1 else None, completed_at=None,
                completed_by_id=None, new=True)
            cmd.tasks[task_id] = row
            if len(owners.users) > 1:  # a pool to claim from; a single owner is simply the assignee
                cmd.candidates.extend((task_id, u.id) for u in owners.users)
            for user in owners.users:
                self._participate(cmd, user.id)
            only = owners.users[0] if len(owners.users) == 1 else None
            if info.is_approval and only is not None and only.id == inst.last_approver_id:
                # the same person is not asked twice in a row: their previous approval stands
                data = {"decision": "approve", "comment": "自动通过：与上一步审批人相同 (auto-approved: same approver as the previous step)"}
                row.update(status="completed", completed_at=cmd.now, completed_by_id=only.id)
                cmd.record("auto_approved", info.name, actor=only, **data)
                auto.append((task, self._form_payload(info, data, only)))
            else:
                cmd.record("task_created", info.name, actor=None,
                           assignee=only.username if only else None,
                           candidates=[u.username for u in owners.users] if not only else None)
        return auto

    def _sync_timers(self, cmd: Command, wf: BpmnWorkflow) -> None:
        """Mirror waiting timers into `timers`; record the ones that fired in this command
        (including a deadline already past when its task opened, which fires at once)."""
        session, inst = cmd.session, cmd.instance
        waiting = {}
        for task in wf.event_manager.tasks.values():
            if task.state == TaskState.WAITING and _is_timer(task):
                due = _timer_due(task)
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
                            title=event.get("title", task.task_spec.bpmn_id), due_at=_timer_due(task) or cmd.now)
                session.add(row)
            row.status, row.fired_at = "fired", cmd.now
            cmd.record("timer_fired", row.name, actor=None, title=row.title, due_at=_iso(row.due_at))
            if event.get("notify"):
                owners = org.resolve_lane(session, cmd.parsed.lanes, event["notify"], cmd.subject, approval=False)
                for user in owners.users:
                    self._participate(cmd, user.id)
                cmd.record("notified", row.name, actor=None, to=[u.username for u in owners.users],
                           message=event.get("message", row.title))
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
            outcome = None
            for task in wf.get_tasks(state=TaskState.COMPLETED, spec_class=EndEvent):
                if task.workflow is wf:
                    outcome = cmd.parsed.events.get(task.task_spec.name, {}).get("outcome") or outcome
            if outcome:
                data["outcome"] = outcome
            inst.status, inst.completed_at = "completed", cmd.now
            cmd.record("instance_completed", None, actor=None, outcome=data.get("outcome"))
        else:
            data = {}
            if wf.last_task is not None:
                data.update(wf.last_task.data)
            for task in self._ready_user_tasks(wf):
                data.update(task.data)
        data.pop("data_objects", None)
        inst.data = _json_safe(data)

    @staticmethod
    def _participate(cmd: Command, user_id: int) -> None:
        cmd.participants.add(user_id)

    @staticmethod
    def _write_tasks(cmd: Command) -> None:
        """Insert the human task rows the command created (then their candidates), update the changed ones."""
        new = [row for row in cmd.tasks.values() if row.new]
        changed = [row for row in cmd.tasks.values() if row.changed and not row.new]
        if new:
            cmd.session.execute(_INSERT_TASK, [row.columns() for row in new])
        if cmd.candidates:
            cmd.session.execute(_INSERT_CANDIDATE, [{"task_id": t, "user_id": u} for t, u in cmd.candidates])
        if changed:
            cmd.session.execute(_UPDATE_TASK, [
                {"_id": row.id, "status": row.status, "assignee_id": row.assignee_id,
                 "completed_at": row.completed_at, "completed_by_id": row.completed_by_id} for row in changed])
        for row in new + changed:
            row.new = row.changed = False
        cmd.candidates.clear()

    def _write_history(self, cmd: Command) -> None:
        """Append the command's history: one multi-row INSERT (the rows are never read back here)."""
        if cmd.history:
            cmd.session.execute(_ADD_HISTORY, [
                {"instance_id": cmd.instance.id, "at": cmd.now + timedelta(microseconds=offset),
                 "actor_id": actor.id if actor else None, "action": action, "task": task,
                 "detail": {k: v for k, v in detail.items() if v is not None}}
                for offset, (actor, action, task, detail) in enumerate(cmd.history)])
        cmd.history.clear()

    # ------------------------------------------------------------ commands
    def start(self, process_id: str, username: str, data: dict | None = None, *, at: datetime | None = None) -> dict:
        with self.db.write() as session:
            actor = self._actor(session, username)
            definition_id = self.definitions.latest_id(session, process_id)
            if definition_id is None:
                raise NotFound(f"process {process_id!r} not found")
            parsed = self.definitions.get(session, definition_id)
            if not self._may_start(session, parsed, actor):
                raise Forbidden(f"{username} may not start {process_id}")
            if data is not None and not isinstance(data, dict):
                raise ValidationFailed({"_form": "data must be a JSON object"})
            start_form = parsed.catalog.get("start_form")
            initial = validate_form(parsed.forms[start_form], data or {}) if start_form else {}
            subject = self._subject(session, parsed, actor, initial)
            now = at or clock.now()
            inst = InstanceRow(
                id=0, definition_id=definition_id, process_id=process_id, status="running", started_by_id=actor.id,
                subject_id=subject.id, region_id=subject.region_id, data={}, state="", lock_version=0,
                return_count=0, last_approver_id=None, created_at=now, updated_at=now, completed_at=None)
            inserted = {k: v for k, v in vars(inst).items() if k != "id"}
            inst.id = session.execute(_INSERT_INSTANCE, inserted).inserted_primary_key[0]
            cmd = Command(session, inst, parsed, actor, now, had_timers=False)
            meta = {"submitter": subject.username, "started_by": actor.username,
                    "region": subject.region.code if subject.region else None}
            wf = BpmnWorkflow(parsed.spec, parsed.subprocess_specs, script_engine=self.script_engine)
            wf.task_tree.data.update({**meta, **initial})
            self._participate(cmd, actor.id)
            self._participate(cmd, subject.id)
            cmd.record("started", None, subject=subject.username if subject.id != actor.id else None)
            self._settle(cmd, wf)
            if data and not start_form:
                first = [row for row in cmd.tasks.values() if row.status == "open"]
                if len(first) != 1 or first[0].assignee_id != actor.id:
                    raise BadRequest("this process does not start with a task of yours; start it without data")
                self._complete_loaded(cmd, wf, first[0], data)
            self._save(cmd, wf)
            return self._instance_dict(session, inst, with_history=True)

    def complete(self, task_id: str, username: str, data: dict | None, *, at: datetime | None = None) -> dict:
        expired = None
        with self.db.write() as session:
            actor = self._actor(session, username)
            row = self._task_row(session, task_id)
            cmd = self._command(session, row.instance_id, actor, at)
            row = self._locked_task(cmd, row)
            self._check_can_act(cmd, row)
            wf = self._load(cmd)
            if cmd.had_timers:  # a due timer wins over the user (trap 3): fire it first, then look again
                self._run(cmd, wf.refresh_timers)
                self._run(cmd, wf.do_engine_steps, None, cmd.task_completed)
                if cmd.fired_timers:
                    self._settle(cmd, wf)
            if row.status != "open":
                expired = f"task {task_id} closed before your action: {row.title_en} is past its deadline"
            else:
                self._complete_loaded(cmd, wf, row, data)
            self._save(cmd, wf)
            instance = self._instance_dict(session, cmd.instance, with_history=True)
        if expired:
            raise Conflict(expired)
        return {"instance": instance, "tasks": instance["tasks"]}

    def _complete_loaded(self, cmd: Command, wf: BpmnWorkflow, row: TaskRow, data) -> None:
        info = next((i for i in cmd.parsed.tasks.values() if i.name == row.name), None)
        task = _find_task(wf, row.id)
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
        self._participate(cmd, cmd.actor.id)
        self._run(cmd, self._run_task, task, self._form_payload(info, accepted, cmd.actor))
        self._settle(cmd, wf)

    @staticmethod
    def _form_payload(info, accepted: dict, actor: User) -> dict:
        if info is not None and info.data_key:
            return {info.data_key: {**accepted, "by": actor.username}}
        return dict(accepted)

    def claim(self, task_id: str, username: str) -> dict:
        with self.db.write() as session:
            actor = self._actor(session, username)
            row = self._task_row(session, task_id)
            cmd = self._command(session, row.instance_id, actor, None)
            row = self._locked_task(cmd, row)
            if row.status != "open":
                raise Conflict(f"task {task_id} is already {row.status}")
            if row.assignee_id != actor.id and not self._is_candidate(session, row, actor):
                raise Forbidden(f"task {task_id} is not yours to claim")
            if row.assignee_id not in (None, actor.id):
                raise Conflict(f"task {task_id} is held by {_username(session, row.assignee_id)}")
            if row.assignee_id is None:
                row.update(assignee_id=actor.id)
                cmd.record("claimed", row.name)
                self._save(cmd)
        return self.task(task_id, username)

    def delegate(self, task_id: str, username: str, to: str, comment: str | None = None) -> dict:
        with self.db.write() as session:
            actor = self._actor(session, username)
            row = self._task_row(session, task_id)
            cmd = self._command(session, row.instance_id, actor, None)
            row = self._locked_task(cmd, row)
            self._check_can_act(cmd, row)
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
            session.execute(_DELETE_CANDIDATES, {"task_id": row.id})
            self._participate(cmd, target.id)
            cmd.record("delegated", row.name, **{"from": actor.username, "to": target.username, "comment": comment or None})
            self._save(cmd)
        return self.task(task_id, to)

    def withdraw(self, instance_id, username: str) -> dict:
        with self.db.write() as session:
            actor = self._actor(session, username)
            cmd = self._command(session, _int(instance_id), actor, None)
            inst = cmd.instance
            if not self._can_see(session, inst, actor):
                raise NotFound(f"instance {instance_id} not found")
            if inst.started_by_id != actor.id:
                raise Forbidden("only the person who started it may withdraw it")
            if inst.status != "running":
                raise Conflict(f"instance {instance_id} is {inst.status}, not running")
            wf = self._load(cmd)
            self._run(cmd, wf.cancel)
            session.execute(update(_TASK_TABLE).where(_TASK_TABLE.c.instance_id == inst.id,
                                                      _TASK_TABLE.c.status == "open")
                            .values(status="cancelled", completed_at=cmd.now))
            session.execute(update(Timer).where(Timer.instance_id == inst.id, Timer.status == "waiting")
                            .values(status="cancelled"))
            data = dict(inst.data or {})
            data["outcome"] = "withdrawn"
            inst.data, inst.status, inst.completed_at = data, "cancelled", cmd.now
            cmd.record("withdrawn", None)
            self._save(cmd, wf)
            return self._instance_dict(session, inst, with_history=True)

    def fire_due_timers(self, at: datetime | None = None, limit: int = 1000) -> list[dict]:
        """Fire every timer due at or before `at`, each in its own transaction. Safe to run concurrently."""
        at = at or clock.now()
        with self.db.read() as session:
            due = session.execute(select(Timer.id, Timer.instance_id).where(
                Timer.status == "waiting", Timer.due_at <= at).order_by(Timer.due_at).limit(limit)).all()
        fired = []
        for timer_id, instance_id in due:
            try:
                result = self._fire_one(timer_id, instance_id, at)
            except ProcessError as exc:
                log.error("timer %s of instance %s failed: %s", timer_id, instance_id, exc)
                fired.append({"timer": timer_id, "instance_id": instance_id, "error": exc.message})
                continue
            if result:
                fired.append(result)
        return fired

    def _fire_one(self, timer_id: str, instance_id: int, at: datetime) -> dict | None:
        """Lock order as in every command: the instance first, then its rows (no deadlock with a user).
        On PostgreSQL an instance another worker or a user's command holds is skipped, not waited
        for: whoever holds it fires its due timers (a command fires due timers before acting)."""
        with self.db.write() as session:
            inst = self._lock(session, instance_id, skip_locked=True)
            if inst is None:
                return None
            timer = session.scalar(select(Timer).where(Timer.id == timer_id, Timer.status == "waiting")
                                   .execution_options(populate_existing=True))
            if timer is None:
                return None  # fired or cancelled meanwhile
            # Spiff compares with "<": a timer due exactly at `at` must fire, so look a microsecond later
            cmd = Command(session, inst, self.definitions.get(session, inst.definition_id), None,
                          at + timedelta(microseconds=1))
            if inst.status != "running":
                timer.status = "cancelled"
                return None
            wf = self._load(cmd)
            self._run(cmd, wf.refresh_timers)
            self._settle(cmd, wf)
            self._save(cmd, wf)
            if timer.status != "fired":
                return None
            return {"timer": timer.id, "instance_id": instance_id, "process_id": inst.process_id,
                    "name": timer.name, "title": timer.title, "due_at": _iso(timer.due_at)}

    # ------------------------------------------------------------ helpers
    def _command(self, session, instance_id: int, actor: User | None, at: datetime | None) -> Command:
        inst = self._lock(session, instance_id)
        parsed = self.definitions.get(session, inst.definition_id)
        return Command(session, inst, parsed, actor, at or clock.now())

    def _locked_task(self, cmd: Command, row: TaskRow) -> TaskRow:
        """The task row (read before the instance lock) as of the lock, held by the command from
        now on. On SQLite the IMMEDIATE transaction began before that read, so it is fresh
        already; on PostgreSQL another command may have committed while we waited: read again."""
        if not self.db.is_sqlite:
            row = self._task_row(cmd.session, row.id)
        cmd.tasks[row.id] = row
        return row

    def _actor(self, session, username: str) -> User:
        user = org.user_by_name(session, username)
        if user is None or not user.active:
            raise Unauthorized(f"unknown or inactive user {username!r}")
        return user

    def _task_row(self, session, task_id: str) -> TaskRow:
        found = session.execute(_TASK_BY_ID, {"id": str(task_id)}).first() if _is_uuid(task_id) else None
        if found is None:
            raise NotFound(f"task {task_id} not found")
        return TaskRow(**found._mapping)

    def _is_candidate(self, session, row, user: User) -> bool:
        return session.execute(_IS_CANDIDATE, {"task_id": row.id, "user_id": user.id}).first() is not None

    def _check_can_act(self, cmd: Command, row: TaskRow) -> None:
        session, actor = cmd.session, cmd.actor
        if row.status != "open":
            if not self._is_candidate(session, row, actor) and row.assignee_id != actor.id \
                    and not self._can_see(session, cmd.instance, actor):
                raise NotFound(f"task {row.id} not found")
            raise Conflict(f"task {row.id} is already {row.status}")
        if row.assignee_id == actor.id:
            return
        if row.assignee_id is None and self._is_candidate(session, row, actor):
            return
        if row.assignee_id is not None and self._is_candidate(session, row, actor):
            raise Forbidden(f"task {row.id} is held by {_username(session, row.assignee_id)}")
        raise Forbidden(f"task {row.id} is not yours")

    def _may_start(self, session, parsed: ParsedDefinition, user: User) -> bool:
        rule = parsed.catalog.get("starters", {})
        roles = set(rule.get("roles", []))
        if roles and not (roles & user.role_names):
            return False
        if rule.get("requires_manager") and org.first_active_manager(session, user) is None:
            return False
        return True

    def _subject(self, session, parsed: ParsedDefinition, actor: User, initial: dict) -> User:
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

    # ------------------------------------------------------------ accounts
    def authenticate(self, username: str, password: str) -> dict | None:
        with self.db.read() as session:
            user = org.user_by_name(session, username or "")
            return _user_dict(user) if org.verify_password(user, password or "") else None

    def user_info(self, username: str) -> dict | None:
        with self.db.read() as session:
            user = org.user_by_name(session, username or "")
            return _user_dict(user) if user is not None and user.active else None

    def users(self) -> list[dict]:
        with self.db.read() as session:
            return [_user_dict(u) for u in session.scalars(select(User).where(User.active.is_(True))
                                                           .order_by(User.username))]

    def set_locale(self, username: str, locale: str | None) -> None:
        with self.db.write() as session:
            user = self._actor(session, username)
            user.locale = locale

    def seed_demo(self, only_if_empty: bool = False) -> int:
        from .demo import is_empty, seed_demo
        with self.db.write() as session:
            if only_if_empty and not is_empty(session):
                return 0
            return seed_demo(session)

    # ------------------------------------------------------------ queries
    def _can_see(self, session, inst: ProcessInstance, user: User) -> bool:
        if org.ADMIN_ROLE in user.role_names:
            return True
        if session.get(InstanceParticipant, (inst.id, user.id)) is not None:
            return True
        team = org.reports_of(session, user)
        return inst.subject_id in team or inst.started_by_id in team

    def visible_filter(self, session, user: User):
        """SQL condition: instances `user` may see."""
        if org.ADMIN_ROLE in user.role_names:
            return True
        team = org.reports_of(session, user)
        participant = select(InstanceParticipant.instance_id).where(InstanceParticipant.user_id == user.id)
        cond = ProcessInstance.id.in_(participant)
        if team:
            cond = cond | ProcessInstance.subject_id.in_(team) | ProcessInstance.started_by_id.in_(team)
        return cond

    def processes(self, username: str) -> list[dict]:
        with self.db.read() as session:
            user = self._actor(session, username)
            result = []
            for pid in self.definitions.process_ids(session):
                definition_id = self.definitions.latest_id(session, pid)
                parsed = self.definitions.get(session, definition_id)
                if parsed.catalog.get("startable", True) and self._may_start(session, parsed, user):
                    result.append({"id": pid, "name": parsed.name,
                                   "names": parsed.catalog.get("name", {}),
                                   "version": self.definitions.version_of(session, definition_id),
                                   "start_form": parsed.forms.get(parsed.catalog.get("start_form"))
                                   or self._first_form(parsed)})
            return result

    def process_names(self) -> dict[str, dict]:
        """process id -> {"zh", "en"} names of every deployed process (latest version)."""
        with self.db.read() as session:
            return {pid: self.definitions.get(session, self.definitions.latest_id(session, pid)).catalog.get("name", {})
                    for pid in self.definitions.process_ids(session)}

    def _first_form(self, parsed: ParsedDefinition):
        first = parsed.catalog.get("first_task")
        info = next((i for i in parsed.tasks.values() if i.name == first), None)
        return parsed.forms.get(info.form) if info else None

    def instance(self, instance_id, username: str, *, labels: bool = False) -> dict:
        """The instance object; with labels, also the titles and form schemas of its definition
        version ("fields", "steps", "forms") that a UI needs to label its data."""
        with self.db.read() as session:
            user = self._actor(session, username)
            inst = session.get(ProcessInstance, _int(instance_id))
            if inst is None or not self._can_see(session, inst, user):
                raise NotFound(f"instance {instance_id} not found")
            result = self._instance_dict(session, inst, with_history=True)
            if labels:
                parsed = self.definitions.get(session, inst.definition_id)
                result.update(fields=parsed.fields, steps=parsed.steps, forms=parsed.form_properties)
            return result

    def instances(self, username: str, process_id: str | None = None, status: str | None = None,
                  mine: bool = False, limit: int = 200, offset: int = 0) -> list[dict]:
        with self.db.read() as session:
            user = self._actor(session, username)
            stmt = select(ProcessInstance)
            if mine:
                stmt = stmt.where(ProcessInstance.started_by_id == user.id)
            else:
                cond = self.visible_filter(session, user)
                if cond is not True:
                    stmt = stmt.where(cond)
            if process_id:
                stmt = stmt.where(ProcessInstance.process_id == process_id)
            if status:
                stmt = stmt.where(ProcessInstance.status == status)
            rows = session.scalars(stmt.order_by(ProcessInstance.id.desc()).limit(limit).offset(offset)).all()
            open_tasks = self._open_tasks_by_instance(session, [r.id for r in rows])
            names = _usernames(session, {r.started_by_id for r in rows} | {r.subject_id for r in rows})
            return [self._instance_dict(session, r, with_history=False, tasks=open_tasks.get(r.id, []), names=names)
                    for r in rows]

    def tasks(self, username: str, process_id: str | None = None, instance_id=None,
              limit: int = 200, offset: int = 0, with_total: bool = False):
        """Open tasks the user can act on: assigned to them, or unassigned with them as a candidate.
        Soonest due first (no due date last), then oldest. With with_total, returns (tasks, total)."""
        with self.db.read() as session:
            user = self._actor(session, username)
            params = {"uid": user.id, "head": limit + offset, "limit": limit, "offset": offset}
            extra = ""
            if process_id:
                extra += " AND h.process_id = :pid"
                params["pid"] = process_id
            if instance_id not in (None, ""):
                extra += " AND h.instance_id = :iid"
                params["iid"] = _int(instance_id)
            ids = session.scalars(text(_INBOX_PAGE.format(extra=extra)), params).all()
            rows = {r.id: r for r in session.execute(_TASKS_BY_ID, {"ids": ids})} if ids else {}
            tasks = [_task_dict(rows[i]) for i in ids]
            if not with_total:
                return tasks
            if len(tasks) < limit:
                return tasks, offset + len(tasks)
            return tasks, session.scalar(text(_INBOX_COUNT.format(extra=extra)), params)

    def task(self, task_id: str, username: str) -> dict:
        with self.db.read() as session:
            user = self._actor(session, username)
            row = session.execute(_TASKS_BY_ID, {"ids": [str(task_id)]}).first() if _is_uuid(task_id) else None
            if row is None:
                raise NotFound(f"task {task_id} not found")
            inst = session.get(ProcessInstance, row.instance_id)
            if not (row.assignee_id == user.id or self._is_candidate(session, row, user)
                    or self._can_see(session, inst, user)):
                raise NotFound(f"task {task_id} not found")
            parsed = self.definitions.get(session, inst.definition_id)
            result = _task_dict(row)
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
            result["can_act"] = row.status == "open" and (
                row.assignee_id == user.id or (row.assignee_id is None and self._is_candidate(session, row, user)))
            return result

    def diagram(self, instance_id, username: str, titles_lang: str = "zh") -> str:
        from .diagram import render_svg
        with self.db.read() as session:
            user = self._actor(session, username)
            inst = session.get(ProcessInstance, _int(instance_id))
            if inst is None or not self._can_see(session, inst, user):
                raise NotFound(f"instance {instance_id} not found")
            parsed = self.definitions.get(session, inst.definition_id)
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

    def _open_tasks_by_instance(self, session, ids: list[int]) -> dict[int, list[dict]]:
        result: dict[int, list[dict]] = {}
        if not ids:
            return result
        for row in session.execute(_OPEN_TASKS_OF, {"ids": ids}):
            result.setdefault(row.instance_id, []).append(_task_dict(row))
        return result

    def _instance_dict(self, session, inst: ProcessInstance | InstanceRow, *, with_history: bool, tasks=None,
                       names: dict[int, str] | None = None) -> dict:
        """The instance object. Read with Core rows, not ORM objects: this is on every command's path."""
        if tasks is None:
            tasks = self._open_tasks_by_instance(session, [inst.id]).get(inst.id, [])
        if names is None:
            names = _usernames(session, {inst.started_by_id, inst.subject_id})
        parsed = self.definitions.get(session, inst.definition_id)
        result = {
            "id": inst.id, "process_id": inst.process_id, "status": inst.status,
            "process_name": parsed.catalog.get("name", {}), "version": self.definitions.version_of(session, inst.definition_id),
            "started_by": names[inst.started_by_id], "subject": names[inst.subject_id],
            "data": dict(inst.data or {}), "tasks": tasks,
            "created_at": _iso(inst.created_at), "updated_at": _iso(inst.updated_at),
            "completed_at": _iso(inst.completed_at),
        }
        if with_history:
            events = session.execute(_HISTORY, {"instance_id": inst.id})
            titles = parsed.titles
            result["history"] = [{"at": _iso(e.at), "actor": e.actor, "action": e.action, "task": e.task,
                                  "detail": e.detail or {}, "task_title": titles.get(e.task)} for e in events]
        return result


# Statements on every command's path, built once (building one costs more than running it on SQLite).
_INSTANCE_TABLE = ProcessInstance.__table__
_INSTANCE = select(_INSTANCE_TABLE).where(_INSTANCE_TABLE.c.id == bindparam("id"))
_INSTANCE_FOR_UPDATE = _INSTANCE.with_for_update()
_INSTANCE_FOR_UPDATE_SKIP_LOCKED = _INSTANCE.with_for_update(skip_locked=True)
_INSERT_INSTANCE = insert(_INSTANCE_TABLE)
_UPDATE_INSTANCE = update(_INSTANCE_TABLE).where(_INSTANCE_TABLE.c.id == bindparam("_id"),
                                                 _INSTANCE_TABLE.c.lock_version == bindparam("_version"))
_TASK_TABLE, _USER_TABLE, _HISTORY_TABLE = HumanTask.__table__, User.__table__, HistoryEvent.__table__
_CANDIDATE_TABLE = HumanTaskCandidate.__table__
_TASK_COLUMNS = tuple(column.name for column in _TASK_TABLE.columns)
_TASK_BY_ID = select(_TASK_TABLE).where(_TASK_TABLE.c.id == bindparam("id"))
_INSTANCE_TASKS = select(_TASK_TABLE).where(  # its open tasks, and rows of ids SpiffWorkflow reports ready
    _TASK_TABLE.c.instance_id == bindparam("instance_id"),
    (_TASK_TABLE.c.status == "open") | _TASK_TABLE.c.id.in_(bindparam("ids", expanding=True)))
_INSERT_TASK = insert(_TASK_TABLE)
_UPDATE_TASK = update(_TASK_TABLE).where(_TASK_TABLE.c.id == bindparam("_id"))
_DELETE_TASK = delete(_TASK_TABLE).where(_TASK_TABLE.c.id == bindparam("task_id"))
_INSERT_CANDIDATE = insert(_CANDIDATE_TABLE)
_DELETE_CANDIDATES = delete(_CANDIDATE_TABLE).where(_CANDIDATE_TABLE.c.task_id == bindparam("task_id"))
_IS_CANDIDATE = select(_CANDIDATE_TABLE.c.task_id).where(
    _CANDIDATE_TABLE.c.task_id == bindparam("task_id"), _CANDIDATE_TABLE.c.user_id == bindparam("user_id"))
_ADD_HISTORY = insert(_HISTORY_TABLE)  # one executemany, whichever keys are None
# Reads for responses: Core rows (no ORM identity map or object loading), usernames joined in.
_ASSIGNEE = _USER_TABLE.alias("assignee")
_TASK_ROWS = select(_TASK_TABLE, _ASSIGNEE.c.username.label("assignee")) \
    .outerjoin(_ASSIGNEE, _ASSIGNEE.c.id == _TASK_TABLE.c.assignee_id)
_OPEN_TASKS_OF = _TASK_ROWS.where(_TASK_TABLE.c.instance_id.in_(bindparam("ids", expanding=True)),
                                  _TASK_TABLE.c.status == "open").order_by(_TASK_TABLE.c.created_at)
_TASKS_BY_ID = _TASK_ROWS.where(_TASK_TABLE.c.id.in_(bindparam("ids", expanding=True)))
_ACTOR = _USER_TABLE.alias("actor")
_HISTORY = select(_HISTORY_TABLE.c.at, _ACTOR.c.username.label("actor"), _HISTORY_TABLE.c.action,
                  _HISTORY_TABLE.c.task, _HISTORY_TABLE.c.detail) \
    .outerjoin(_ACTOR, _ACTOR.c.id == _HISTORY_TABLE.c.actor_id) \
    .where(_HISTORY_TABLE.c.instance_id == bindparam("instance_id")) \
    .order_by(_HISTORY_TABLE.c.at, _HISTORY_TABLE.c.id)
_USERNAMES = select(_USER_TABLE.c.id, _USER_TABLE.c.username).where(
    _USER_TABLE.c.id.in_(bindparam("ids", expanding=True)))

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


def _username(session, user_id: int | None) -> str | None:
    return _usernames(session, {user_id}).get(user_id) if user_id is not None else None


def _usernames(session, ids) -> dict[int, str]:
    return dict(session.execute(_USERNAMES, {"ids": sorted(ids)}).all()) if ids else {}


def _task_dict(row) -> dict:
    """The task object of a _TASK_ROWS row (a human_tasks row, its assignee's username joined in)."""
    now = clock.now()
    return {
        "id": row.id, "instance_id": row.instance_id, "process_id": row.process_id, "name": row.name,
        "title": row.title, "title_en": row.title_en, "lane": row.lane,
        "assignee": row.assignee, "status": row.status,
        "due_at": _iso(row.due_at), "overdue": bool(row.status == "open" and row.due_at and row.due_at < now),
        "created_at": _iso(row.created_at), "completed_at": _iso(row.completed_at),
        "is_approval": row.is_approval,
    }


def _user_dict(user: User) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "roles": sorted(user.role_names), "region": user.region.code if user.region else None,
            "locale": user.locale}


def _find_task(wf: BpmnWorkflow, task_id: str):
    """The SpiffWorkflow task, or None when it is gone from the tree (get_task_from_id raises)."""
    try:
        return wf.get_task_from_id(UUID(task_id))
    except TaskNotFoundException:
        return None


def _is_timer(task) -> bool:
    return isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition)


def _timer_due(task) -> datetime | None:
    details = task.task_spec.event_definition.details(task)
    value = details.value
    if isinstance(value, dict):
        value = value.get("next")
    if not value:
        return None
    try:
        return TimerEventDefinition.get_datetime(value) if isinstance(value, str) else value
    except ValueError:
        return None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _is_uuid(value) -> bool:
    try:
        UUID(str(value))
        return True
    except ValueError:
        return False


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NotFound(f"instance {value} not found") from None


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
