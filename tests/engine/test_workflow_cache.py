"""engine/runner.py WorkflowCache: a command takes the workflow object the previous committed command
on the instance saved, instead of restoring it from its state; never an object of a command that
rolled back, never one whose state is no longer the instance's, never one of another definition."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import event, text

from engine.errors import Conflict
from engine.runtime import Engine
from engine.runner import WorkflowCache
from tests.helpers import invoiced

APPROVE = {"decision": "approve", "comment": "ok"}


def claim(engine, incurred_on="2026-11-10"):
    return engine.start("expense_approval", "alice", invoiced(engine, "alice", {
        "category": "travel", "amount": 300, "incurred_on": incurred_on, "description": "cache"}))


def walk(engine, incurred_on):
    """Alice's claim through dave and heidi: what each step answered."""
    inst = claim(engine, incurred_on)
    seen = []
    while inst["status"] == "running":
        task = inst["tasks"][0]
        inst = engine.complete(task["id"], task["assignee"], APPROVE)["instance"]
        data = {k: v for k, v in inst["data"].items() if k not in ("invoices", "incurred_on")}
        seen.append((inst["status"], [(t["name"], t["assignee"]) for t in inst["tasks"]],
                     json.loads(json.dumps(data).replace(incurred_on[:7], "<month>"))))
    return seen


def test_each_command_takes_the_object_the_last_one_saved_and_ends_where_a_restore_would(engine, database):
    before = engine.workflows.hits
    cached = walk(engine, "2026-11-10")
    assert engine.workflows.hits - before == 2  # both completions took the started claim's object
    assert len(engine.workflows) == 0  # a finished workflow is not kept
    uncached_engine = Engine(database, engine.workflows_dir)
    uncached_engine.storage = engine.storage
    uncached_engine.workflows.size = 0
    uncached = walk(uncached_engine, "2026-10-10")  # a budget month of its own
    assert uncached_engine.workflows.hits == 0 and len(uncached_engine.workflows) == 0
    assert cached == uncached
    assert cached[-1][0] == "completed" and cached[-1][2]["outcome"] == "approved"


def test_a_command_that_rolls_back_leaves_no_object_behind(engine, monkeypatch):
    inst = claim(engine)
    task = inst["tasks"][0]
    assert inst["id"] in engine.workflows._items

    def fail(cmd, wf):  # after the workflow ran the approval (the object is changed), before the save
        raise RuntimeError("the database went away")
    monkeypatch.setattr(engine, "_sync_instance", fail)
    with pytest.raises(RuntimeError):
        engine.complete(task["id"], "dave", APPROVE)
    assert inst["id"] not in engine.workflows._items
    monkeypatch.undo()
    # restored from the state that was committed: dave's approval is open there, so it runs again
    after = engine.complete(task["id"], "dave", APPROVE)["instance"]
    assert [t["name"] for t in after["tasks"]] == ["finance_approval"]


def test_a_state_changed_by_anyone_else_is_restored_not_taken(engine, database):
    inst = claim(engine)
    first = inst["tasks"][0]
    with database.read() as s:
        state = s.execute(text("SELECT state FROM process_instances WHERE id = :i"), {"i": inst["id"]}).scalar()
    engine.complete(first["id"], "dave", APPROVE)
    # someone puts the state at dave's step back, with plain SQL (the task row too)
    with database.write() as s:
        s.execute(text("UPDATE process_instances SET state = :s WHERE id = :i"), {"s": state, "i": inst["id"]})
        s.execute(text("UPDATE human_tasks SET status = 'open', completed_at = NULL, completed_by_id = NULL "
                       "WHERE id = :t"), {"t": first["id"]})
        s.execute(text("UPDATE human_tasks SET status = 'cancelled' WHERE instance_id = :i AND id != :t"),
                  {"i": inst["id"], "t": first["id"]})
    misses = engine.workflows.misses
    # the cached object (past dave's step) would refuse this: the restored state has it open
    after = engine.complete(first["id"], "dave", APPROVE)["instance"]
    assert engine.workflows.misses == misses + 1
    assert [t["name"] for t in after["tasks"]] == ["finance_approval"]


class _Parsed:
    def __init__(self, spec, subprocess_specs=None):
        self.spec, self.subprocess_specs = spec, subprocess_specs


class _Workflow:
    def __init__(self, spec, subprocess_specs=None):
        self.spec, self.subprocess_specs = spec, subprocess_specs or {}


def test_the_cache_gives_an_object_once_for_its_own_state_and_spec_and_keeps_the_latest_few():
    cache = WorkflowCache(2)
    spec, other = object(), object()
    wf = _Workflow(spec)
    history = (3, (("at", "alice", "started", None, "{}"),))
    cache.put(1, "state", wf, history)
    assert cache.take(1, "state", _Parsed(spec)) == (wf, history)
    assert cache.take(1, "state", _Parsed(spec)) == (None, None)  # taken: a second command restores
    cache.put(1, "state", wf)
    assert cache.take(1, "another state", _Parsed(spec)) == (None, None)
    cache.put(1, "state", wf)
    assert cache.take(1, "state", _Parsed(other)) == (None, None)  # another definition (a migration)
    cache.put(1, "state", wf)
    assert cache.take(1, "state", _Parsed(spec, {"call": object()})) == (None, None)
    for iid in (1, 2, 3):
        cache.put(iid, "s", _Workflow(spec))
    assert len(cache) == 2 and cache.take(1, "s", _Parsed(spec))[0] is None  # the oldest went
    assert cache.take(3, "s", _Parsed(spec))[0] is not None
    off = WorkflowCache(0)
    off.put(1, "state", wf)
    assert len(off) == 0


def _history_reads(db):
    """A list that collects the statements reading history_events while the listener is on."""
    seen = []

    def watch(_conn, _cursor, statement, *_args):
        if "FROM history_events" in statement:
            seen.append(statement)
    engines = {db.engine, db.write_engine}
    for e in engines:
        event.listen(e, "before_cursor_execute", watch)
    return seen, lambda: [event.remove(e, "before_cursor_execute", watch) for e in engines]


def test_a_command_answers_with_the_history_a_read_gives_without_reading_what_it_wrote(engine):
    seen, stop = _history_reads(engine.db)
    try:
        inst = claim(engine)
        answers = [inst["history"]]
        # a return to the submitter, her resubmission, both approvals: every kind of event, twice over
        task = inst["tasks"][0]
        inst = engine.complete(task["id"], "dave", {"decision": "return", "comment": "receipt?"})["instance"]
        answers.append(inst["history"])
        while inst["status"] == "running":
            task = inst["tasks"][0]
            data = {k: v for k, v in inst["data"].items() if k in (
                "category", "amount", "incurred_on", "description", "invoices")} \
                if task["name"] == "revise_claim" else {**APPROVE, "comment": "again"}
            inst = engine.complete(task["id"], task["assignee"], data)["instance"]
            answers.append(inst["history"])
        assert seen == []  # this process wrote all of it: nothing was read back
    finally:
        stop()
    assert inst["status"] == "completed" and len(answers) == 5
    # what a read of the rows gives, to the character: times, order, details, actors, titles
    assert answers[-1] == engine.instance(inst["id"], "admin")["history"]
    for shorter, longer in zip(answers, answers[1:]):
        assert longer[:len(shorter)] == shorter  # each answer is the one before and what came since


def test_history_another_process_wrote_is_read_and_a_rolled_back_command_leaves_none(engine, database, monkeypatch):
    inst = claim(engine)
    other = Engine(database, engine.workflows_dir)  # another server process on the same database
    other.storage = engine.storage
    other.copy(inst["id"], "alice", ["bob"], "for your information")  # history the first never saw
    task = inst["tasks"][0]
    seen, stop = _history_reads(database)
    try:
        after = engine.complete(task["id"], "dave", APPROVE)["instance"]
    finally:
        stop()
    assert len(seen) == 1  # the instance changed since this process saved it: read
    assert "copied" in [e["action"] for e in after["history"]]
    assert after["history"] == engine.instance(inst["id"], "admin")["history"]
    # a command that rolls back after its save leaves no history behind to answer with
    finance = after["tasks"][0]

    def fail(rt, cmd):
        raise RuntimeError("the answer could not be built")
    from engine.commands import tasks
    monkeypatch.setattr(tasks, "command_instance_dict", fail)
    with pytest.raises(RuntimeError):
        engine.complete(finance["id"], "heidi", APPROVE)
    assert inst["id"] not in engine.workflows._items  # neither the object nor its history
    monkeypatch.undo()
    done = engine.complete(finance["id"], "heidi", APPROVE)["instance"]
    assert done["status"] == "completed"
    assert done["history"] == engine.instance(inst["id"], "admin")["history"]
    assert [e["action"] for e in done["history"]].count("approved") == 2


def test_what_a_transaction_leaves_for_its_commit_runs_after_it_and_never_after_a_rollback(database):
    ran = []
    with database.write() as s:
        s.info.setdefault("on_commit", {})["a"] = lambda: ran.append("committed")
        s.execute(text("SELECT 1"))
        assert ran == []
    assert ran == ["committed"]
    with pytest.raises(Conflict):
        with database.write() as s:
            s.info.setdefault("on_commit", {})["b"] = lambda: ran.append("rolled back")
            raise Conflict("no")
    assert ran == ["committed"]
