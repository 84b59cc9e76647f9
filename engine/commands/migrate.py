"""Moving running instances to a newer version of their process (`salesflow migrate`).

SpiffWorkflow's own diff and migration (SpiffWorkflow.bpmn.util.diff), one transaction per
instance, as ENGINE-NOTES measured it: diff the workflow and each subprocess against the new
specs, refuse what cannot be migrated safely *before* touching the workflow (migrate_workflow
swaps the spec first and raises later: a half-migrated object), migrate the top level and every
subprocess, set the subprocess specs ourselves, run engine steps, save the state with the new
definition, and load it back with the new spec before committing.

Refused (the instance is kept on its version, with the reason):
- an open step (READY or WAITING) or a finished step no longer exists in the new version
  (a finished step that is gone leaves a state the new spec cannot load);
- a called process is gone, or a step predicted inside a running call activity was removed;
- a deadline (boundary timer) was added to the open step (it would never be armed).
Only READY tasks are re-predicted (reset_mask=READY): waiting timers keep their due times.
"""
from __future__ import annotations

from sqlalchemy import select, update
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.util.diff import diff_workflow, migrate_workflow
from SpiffWorkflow.util.task import TaskState

from .. import audit, serializer
from ..errors import EngineError, NotFound, ProcessError
from ..models import ProcessInstance
from ..tables import TASK_TABLE


class Kept(Exception):
    """This instance cannot move to the new version; the message says why."""


def migrate(rt, process_id: str, to_version: int | None = None, dry_run: bool = False,
            actor=None, source: str = "cli") -> list[dict]:
    """Move every running instance of `process_id` to `to_version` (default: the newest), each in its
    own transaction. Returns [{"instance_id", "from", "to", "result": "migrated"|"kept"|"would migrate",
    "why"?}]."""
    with rt.db.read() as session:
        rt.definitions.refresh_latest(session)
        if to_version is None:
            target_id = rt.definitions.latest_id(session, process_id)
        else:
            target_id = rt.definitions.id_of(session, process_id, to_version)
        if target_id is None:
            raise NotFound(f"process {process_id!r} has no version {to_version}" if to_version
                           else f"process {process_id!r} not found")
        version = rt.definitions.version_of(session, target_id)
        rows = session.execute(select(ProcessInstance.id, ProcessInstance.definition_id).where(
            ProcessInstance.process_id == process_id, ProcessInstance.status.in_(("running", "error")),
            ProcessInstance.definition_id != target_id).order_by(ProcessInstance.id)).all()
        versions = {did: rt.definitions.version_of(session, did) for _i, did in rows}
    results = []
    for instance_id, definition_id in rows:
        entry = {"instance_id": instance_id, "from": versions[definition_id], "to": version}
        try:
            _migrate_one(rt, instance_id, target_id, dry_run, actor, source)
        except Kept as exc:
            entry.update(result="kept", why=str(exc))
        except (EngineError, ProcessError) as exc:
            entry.update(result="kept", why=exc.message)
        else:
            entry["result"] = "would migrate" if dry_run else "migrated"
        results.append(entry)
    return results


class _DryRun(Exception):
    pass


def _migrate_one(rt, instance_id: int, target_id: int, dry_run: bool, actor, source: str) -> None:
    try:
        with rt.db.write() as session:
            cmd = rt._command(session, instance_id, None, None)
            inst = cmd.instance
            if inst.definition_id == target_id:
                return
            old_version = rt.definitions.version_of(session, inst.definition_id)
            new = rt.definitions.get(session, target_id)
            wf = rt._load(cmd)
            top, subs = diff_workflow(serializer.registry(), wf, new.spec, new.subprocess_specs)
            _check(wf, top, subs, new)
            rt._run(cmd, migrate_workflow, top, wf, new.spec, TaskState.READY)
            for sp_id, sp_diff in subs.items():
                sp = wf.subprocesses[sp_id]
                rt._run(cmd, migrate_workflow, sp_diff, sp, new.subprocess_specs[sp.spec.name], TaskState.READY)
            wf.subprocess_specs = new.subprocess_specs  # migrate_workflow does not
            cmd.parsed = new
            inst.definition_id = target_id
            _relabel_open_tasks(cmd, new)
            cmd.record("migrated", None, actor=actor, **{"from": old_version,
                                                        "to": rt.definitions.version_of(session, target_id)})
            rt._settle(cmd, wf)
            rt._save(cmd, wf)
            try:  # the saved state loads with the new spec, or nothing is committed
                serializer.loads(inst.state, new.spec, new.subprocess_specs)
            except Exception as exc:  # noqa: BLE001 - any failure to load means: keep the old version
                raise Kept(f"the migrated state does not load with the new version: {exc}") from exc
            audit.record(session, actor, source, "instance", str(instance_id), "migrated",
                         {"version": old_version}, {"version": rt.definitions.version_of(session, target_id)})
            if dry_run:
                raise _DryRun()
    except _DryRun:
        return


def _check(wf, top, subs, new) -> None:
    live = TaskState.READY | TaskState.WAITING | TaskState.STARTED
    for diff, flow in [(top, wf), *[(d, wf.subprocesses[i]) for i, d in subs.items()]]:
        if diff is None:
            raise Kept(f"the called process {flow.spec.name} no longer exists")
        for task in diff.removed:
            name = task.task_spec.bpmn_id or task.task_spec.name
            if task.state & live and task.task_spec.manual:
                raise Kept(f"the open step {name} no longer exists in the new version")
            if task.state & live or task.state == TaskState.COMPLETED:
                if task.task_spec.bpmn_id:  # BPMN elements; SpiffWorkflow's own helper specs do not count
                    raise Kept(f"step {name} ({TaskState.get_name(task.state).lower()}) no longer exists in the new version")
            if flow is not wf and task.state & TaskState.PREDICTED_MASK and task.task_spec.bpmn_id:
                raise Kept(f"step {name} of the running call activity {flow.spec.name} was removed")
        for task, new_spec in diff.alignment.items():
            if new_spec is None or not (task.state == TaskState.READY and task.task_spec.manual):
                continue
            had = any(isinstance(i, BoundaryEventSplit) for i in task.task_spec.inputs)
            has = any(isinstance(i, BoundaryEventSplit) for i in new_spec.inputs)
            if has and not had:
                raise Kept(f"a deadline was added to the open step {task.task_spec.bpmn_id}; "
                           "it would never be armed")


def _relabel_open_tasks(cmd, new) -> None:
    """Open task rows take their titles, form and lane from the new version."""
    rows = cmd.session.execute(select(TASK_TABLE.c.id, TASK_TABLE.c.name).where(
        TASK_TABLE.c.instance_id == cmd.instance.id, TASK_TABLE.c.status.in_(("open", "waiting", "held")))).all()
    for task_id, name in rows:
        info = new.tasks_by_name.get(name)
        if info is None:
            continue
        values = {"title": info.title, "title_en": info.title_en, "form": info.form, "lane": info.lane,
                  "data_key": info.data_key, "is_approval": info.is_approval}
        cmd.session.execute(update(TASK_TABLE).where(TASK_TABLE.c.id == task_id).values(**values))
        row = cmd.tasks.get(task_id)
        if row is not None:
            for key, value in values.items():
                setattr(row, key, value)
