"""The instance lock on PostgreSQL, each safeguard on its own (the others would hide a missing one):
a command waits for the instance row (`SELECT … FOR UPDATE`) before it loads anything; the timer
runner skips an instance someone holds (`FOR UPDATE SKIP LOCKED`) instead of waiting; a command
reads its task row again once it holds the lock. Another connection holds the row lock in a real
transaction; who waits on whom is read from pg_stat_activity / pg_blocking_pids, never guessed
from sleeping. On SQLite the write transaction itself (BEGIN IMMEDIATE) is the lock, taken before
the first read: these orderings cannot arise there."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from engine.errors import Forbidden
from engine.models import Timer
from engine.runtime import Engine
from tests.helpers import APPROVE, CLAIM, by_name, history, invoiced

MAJOR = {"customer": "华东重工 East Heavy Industry", "amount": 600000, "payment_terms": "standard",
         "customer_has_credit_record": True, "summary": "三年供货框架协议"}


@pytest.fixture
def pg_engine(engine):
    if engine.db.is_sqlite:
        pytest.skip("PostgreSQL's row locks; on SQLite BEGIN IMMEDIATE serialises every command")
    return engine


_HOLDERS: dict[int, object] = {}


@contextmanager
def instance_locked(engine, instance_id: int):
    """Another transaction holding the instance row (as a command or a worker would); yields its
    backend pid (holder_connection gives its connection, to write in that transaction)."""
    with engine.db.write_engine.connect() as conn:
        with conn.begin():
            conn.execute(text("SELECT id FROM process_instances WHERE id = :id FOR UPDATE"), {"id": instance_id})
            pid = conn.scalar(text("SELECT pg_backend_pid()"))
            _HOLDERS[pid] = conn
            try:
                yield pid
            finally:
                _HOLDERS.pop(pid, None)


def holder_connection(pid: int):
    return _HOLDERS[pid]


def blocked_by(engine, holder_pid: int) -> list[str]:
    """The statements of the backends waiting for a lock `holder_pid` holds."""
    with engine.db.engine.connect() as conn:
        return list(conn.scalars(text("SELECT query FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                                 {"pid": holder_pid}))


def until(condition, what: str, timeout: float = 30.0):
    """Poll until `condition()` is truthy (returns it); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


class InThread(threading.Thread):
    """Runs fn in a thread; keeps its result or exception; `done` is set when it ends."""

    def __init__(self, fn, *args, name: str | None = None, **kwargs):
        super().__init__(daemon=True, name=name)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.result = self.error = None
        self.done = threading.Event()
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            self.error = exc
        finally:
            self.done.set()

    def outcome(self):
        self.join(30)
        assert not self.is_alive(), "the command never finished"
        return self.result, self.error


def test_a_command_waits_for_the_instance_row_before_it_loads_anything(pg_engine, monkeypatch):
    inst = pg_engine.start("expense_approval", "alice", invoiced(pg_engine, "alice", CLAIM))
    task = by_name(inst)["manager_approval"]
    loaded = threading.Event()
    real_load = Engine._load

    def load(self, cmd):
        loaded.set()
        return real_load(self, cmd)
    monkeypatch.setattr(Engine, "_load", load)
    with instance_locked(pg_engine, inst["id"]) as holder:
        racer = InThread(pg_engine.complete, task["id"], "dave", APPROVE)
        waiting = until(lambda: blocked_by(pg_engine, holder), "the command to wait for the instance row")
        # it waits at the lock itself: nothing loaded, nothing done (without FOR UPDATE it would have
        # loaded and acted on the state, and wait only when it writes the instance)
        assert not loaded.is_set()
        assert "FOR NO KEY UPDATE" in waiting[0] and "process_instances" in waiting[0]
    result, error = racer.outcome()
    assert error is None and by_name(result["instance"]) == {"finance_approval": by_name(result["instance"])["finance_approval"]}


def test_the_timer_runner_skips_an_instance_someone_holds(pg_engine):
    inst = pg_engine.start("contract_review", "alice", MAJOR)
    with pg_engine.db.read() as s:
        due = s.scalar(select(Timer.due_at).where(Timer.instance_id == inst["id"], Timer.status == "waiting"))
    with instance_locked(pg_engine, inst["id"]) as holder:
        worker = InThread(pg_engine.fire_due_timers, due + timedelta(minutes=1))
        until(lambda: worker.done.is_set() or blocked_by(pg_engine, holder), "the worker to skip or wait")
        assert worker.done.is_set(), "the timer runner waits for a held instance instead of skipping it"
        assert worker.outcome() == ([], None)
    with pg_engine.db.read() as s:  # skipped, not lost: the next run fires it
        assert s.scalar(select(Timer.status).where(Timer.instance_id == inst["id"])) == "waiting"
    assert [f["instance_id"] for f in pg_engine.fire_due_timers(due + timedelta(minutes=1))] == [inst["id"]]


def test_a_command_reads_its_task_once_it_holds_the_instance(pg_engine):
    """dave's completion waits for the instance while another transaction holding it transfers the
    task to heidi: once dave's command holds the lock it reads the task as of then — heidi's — and
    dave may not decide it (rows read with or before the lock would still say dave)."""
    inst = pg_engine.start("expense_approval", "alice", invoiced(pg_engine, "alice", CLAIM))
    task = by_name(inst)["manager_approval"]
    with instance_locked(pg_engine, inst["id"]) as holder:
        racer = InThread(pg_engine.complete, task["id"], "dave", APPROVE, name="racer")
        until(lambda: blocked_by(pg_engine, holder), "the completion to wait for the instance row")
        conn = holder_connection(holder)
        conn.execute(text("UPDATE human_tasks SET assignee_id = (SELECT id FROM users WHERE username = 'heidi') "
                          "WHERE id = :id"), {"id": task["id"]})  # as a transfer writes it; commits on leaving
    result, error = racer.outcome()
    assert isinstance(error, Forbidden) and "is not yours" in error.message, error
    after = pg_engine.instance(inst["id"], "admin")
    assert by_name(after)["manager_approval"]["assignee"] == "heidi"
    assert [e["actor"] for e in history(pg_engine, inst["id"], "approved")] == []


def test_a_claim_reads_its_regions_budget_only_holding_the_region_row(pg_engine):
    """Two claims of one region must not read the budget at once: budget.reserve locks the region row
    first (on SQLite the write transaction serialises them already)."""
    data = invoiced(pg_engine, "alice", CLAIM)  # its invoice uploaded before: an upload touches no region
    with pg_engine.db.write_engine.connect() as conn:
        with conn.begin():
            # as another claim's update would: the new claim's rows may still refer to the region
            # (FOR KEY SHARE), but its FOR UPDATE must wait
            conn.execute(text("SELECT id FROM regions WHERE code = 'east' FOR NO KEY UPDATE"))
            holder = conn.scalar(text("SELECT pg_backend_pid()"))
            claim = InThread(pg_engine.start, "expense_approval", "alice", data)
            until(lambda: claim.done.is_set() or blocked_by(pg_engine, holder), "the claim to wait or finish")
            assert not claim.done.is_set(), "the claim read the budget without locking the region"
            waiting = blocked_by(pg_engine, holder)
            assert "FROM regions" in waiting[0] and "FOR NO KEY UPDATE" in waiting[0], waiting
    result, error = claim.outcome()
    assert error is None and by_name(result)["manager_approval"]["assignee"] == "dave"


@contextmanager
def key_shared(engine, table: str, where: str, params: dict):
    """Another transaction holding a key-share lock on a row, as inserting a row that refers to it
    does (its foreign key check); yields its backend pid."""
    with engine.db.write_engine.connect() as conn:
        with conn.begin():
            conn.execute(text(f"SELECT id FROM {table} WHERE {where} FOR KEY SHARE"), params)
            yield conn.scalar(text("SELECT pg_backend_pid()"))


def test_a_claim_does_not_wait_for_rows_that_merely_refer_to_its_region(pg_engine):
    """A new claim's instance row refers to its region (a key-share lock until it commits). Another
    claim of the region must not wait for that: with FOR UPDATE on the region it would, and two claims
    starting at once would each hold what the other waits for (a deadlock, one of them a 500)."""
    data = invoiced(pg_engine, "alice", CLAIM)
    with key_shared(pg_engine, "regions", "code = 'east'", {}) as holder:
        claim = InThread(pg_engine.start, "expense_approval", "alice", data)
        until(lambda: claim.done.is_set() or blocked_by(pg_engine, holder), "the claim to finish or wait")
        assert claim.done.is_set(), "the claim waits for a reference to its region: concurrent claims deadlock"
    result, error = claim.outcome()
    assert error is None and result["status"] == "running"


def test_a_command_does_not_wait_for_rows_that_merely_refer_to_its_instance(pg_engine):
    inst = pg_engine.start("expense_approval", "alice", invoiced(pg_engine, "alice", CLAIM))
    task = by_name(inst)["manager_approval"]
    with key_shared(pg_engine, "process_instances", "id = :id", {"id": inst["id"]}) as holder:
        racer = InThread(pg_engine.complete, task["id"], "dave", APPROVE)
        until(lambda: racer.done.is_set() or blocked_by(pg_engine, holder), "the completion to finish or wait")
        assert racer.done.is_set(), "a completion waits for a row that only refers to its instance"
    result, error = racer.outcome()
    assert error is None and "finance_approval" in by_name(result["instance"])


def test_concurrent_claims_of_one_region_all_succeed(pg_engine):
    datas = [invoiced(pg_engine, rep, CLAIM) for rep in ("alice", "bob") for _ in range(3)]
    racers = [InThread(pg_engine.start, "expense_approval", rep, data)
              for rep, data in zip(["alice"] * 3 + ["bob"] * 3, datas)]
    outcomes = [r.outcome() for r in racers]
    assert [error for _result, error in outcomes] == [None] * 6
