"""The inbox totals (migration 0010): every change adds a row of differences, a person's total is the
sum of their rows, the background worker folds them into one row each; no two transactions that give
or take one person's tasks wait for each other (with 0009's one row per person they queued on it).
Every engine test's teardown also compares the totals with a real count (tests/conftest.py)."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from engine.tables import compact_inbox_counts
from tests.engine.test_locking import InThread, blocked_by, until
from tests.helpers import APPROVE, CLAIM, by_name, invoiced, user_id


def rows_of(engine, username: str) -> int:
    with engine.db.read() as s:
        return s.execute(text("SELECT count(*) FROM inbox_counts WHERE user_id = :u"),
                         {"u": user_id(engine, username)}).scalar()


def total(engine, username: str) -> int:
    return engine.tasks(username, limit=1, with_total=True)[1]


def claim(engine):
    return engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))


def test_changes_add_rows_the_worker_folds_them_into_one_per_person(engine):
    claims = [claim(engine) for _ in range(3)]
    engine.complete(by_name(claims[0])["manager_approval"]["id"], "dave", APPROVE)
    assert rows_of(engine, "dave") >= 4 and rows_of(engine, "heidi") >= 1  # +1 three times, -1 once
    before = {name: total(engine, name) for name in ("dave", "heidi", "alice")}
    assert before["dave"] >= 2 and before["heidi"] >= 1
    assert compact_inbox_counts(engine.db) >= 1
    assert rows_of(engine, "dave") == 1
    assert {name: total(engine, name) for name in before} == before
    assert compact_inbox_counts(engine.db) == 0  # nothing left to fold
    # counting goes on from the folded rows; engine.work() folds on its every pass
    engine.complete(by_name(claims[1])["manager_approval"]["id"], "dave", APPROVE)
    assert total(engine, "dave") == before["dave"] - 1 and total(engine, "heidi") == before["heidi"] + 1
    engine.work()
    assert rows_of(engine, "dave") == 1 and rows_of(engine, "heidi") == 1


def test_an_update_that_changes_neither_status_nor_assignee_counts_nothing(engine):
    task = by_name(claim(engine))["manager_approval"]
    rows = rows_of(engine, "dave")
    with engine.db.write() as s:
        s.execute(text("UPDATE human_tasks SET status = status, assignee_id = assignee_id, title = 'x' "
                       "WHERE id = :t"), {"t": task["id"]})
    assert rows_of(engine, "dave") == rows


def test_two_transactions_giving_one_person_tasks_do_not_wait_for_each_other(engine):
    if engine.db.is_sqlite:
        pytest.skip("one writer at a time on SQLite (BEGIN IMMEDIATE): nothing can wait on a row there")
    first, second = claim(engine), claim(engine)
    heidi = user_id(engine, "heidi")
    with engine.db.write_engine.connect() as holder:
        with holder.begin():
            # a transaction giving heidi a task, not committed yet (as a command in flight would)
            holder.execute(text("UPDATE human_tasks SET assignee_id = :h WHERE id = :t"),
                           {"h": heidi, "t": by_name(first)["manager_approval"]["id"]})
            pid = holder.scalar(text("SELECT pg_backend_pid()"))
            # dave's approval gives heidi the finance step: it must not wait for the holder
            racer = InThread(engine.complete, by_name(second)["manager_approval"]["id"], "dave", APPROVE)
            until(lambda: racer.done.is_set() or blocked_by(engine, pid), "the approval to finish or wait")
            assert racer.done.is_set(), f"the approval waits for the holder: {blocked_by(engine, pid)}"
            result, error = racer.outcome()
            assert error is None and by_name(result["instance"])["finance_approval"]["assignee"] == "heidi"
            holder.rollback()
    assert total(engine, "heidi") == 1
