"""What one completion costs the database, counted (a count, not a timing): the command opens with
one statement on SQLite (instance, its live task rows and the org token), routes from the in-memory
org chart, writes each kind of row once, and reads nothing back for its answer (the history it
answers with is what this process read or wrote before, and what the command wrote). The org
chart is read again only when the organisation changed — by the engine or behind its back."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event, text

from tests.helpers import APPROVE, CLAIM, by_name, invoiced


@contextmanager
def statements(db):
    """The statements sent while the block runs (BEGIN excluded: the transaction, not a statement)."""
    seen: list[str] = []

    def count(_conn, _cursor, statement, _params, _context, _many):
        if statement.strip().upper() not in ("BEGIN", "BEGIN IMMEDIATE"):
            seen.append(statement)
    # PostgreSQL's read engine is the write engine with autocommit: it runs the write engine's listeners
    engines = {db.engine, db.write_engine} if db.is_sqlite else {db.write_engine}
    for e in engines:
        event.listen(e, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        for e in engines:
            event.remove(e, "before_cursor_execute", count)


def _claim_at_manager(engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    return by_name(inst)["manager_approval"]


def test_a_completion_costs_six_statements_on_sqlite(engine):
    _claim_at_manager(engine)  # the org chart is in memory from here on
    task = _claim_at_manager(engine)
    with statements(engine.db) as seen:
        result = engine.complete(task["id"], "dave", APPROVE)
    assert [t["name"] for t in result["tasks"]] == ["finance_approval"]
    writes = [" ".join(s.split()[:3:2] if s.startswith("INSERT") else s.split()[:2])
              for s in seen if s.split()[0] in ("INSERT", "UPDATE")]
    assert sorted(writes) == sorted(["UPDATE process_instances", "INSERT human_tasks", "INSERT instance_participants",
                                     "INSERT history_events", "INSERT notifications"]), seen
    # reads: the command's opening only (one on SQLite; on PostgreSQL the lock, then the rows as of
    # it); nobody is looked up, the org chart is in memory, and the history is known
    assert not any("FROM users" in s or "FROM history_events" in s for s in seen), seen
    assert len(seen) == (6 if engine.db.is_sqlite else 7), "\n".join(s.splitlines()[0] for s in seen)
    assert result["instance"]["history"][-1]["action"] == "task_created"
    # the last step books the claim's budget too: its reservation becomes spending in the statement
    # that also says what is left (one more on PostgreSQL: the region lock)
    with statements(engine.db) as seen:
        done = engine.complete(result["tasks"][0]["id"], "heidi", APPROVE)
    assert done["instance"]["status"] == "completed" and done["instance"]["data"]["budget_booking"]["booked"]
    assert len(seen) == (6 if engine.db.is_sqlite else 8), "\n".join(s.splitlines()[0] for s in seen)


def test_the_org_chart_is_read_again_after_any_change_to_the_organisation(engine):
    first, task = _claim_at_manager(engine), _claim_at_manager(engine)
    with statements(engine.db) as seen:  # the chart is current: no user is read
        engine.complete(first["id"], "dave", APPROVE)
    assert not any("FROM users" in s for s in seen)
    # a change made behind the engine's back (plain SQL): the token trigger still sees it
    with engine.db.write() as s:
        s.execute(text("UPDATE users SET email = 'finance-new@example.com' WHERE username = 'judy'"))
    with statements(engine.db) as seen:
        engine.complete(task["id"], "dave", APPROVE)
    assert any("FROM users" in s for s in seen), "a changed organisation must be read again"
    # and routing follows such a change at once: heidi, the only finance, leaves (plain SQL again);
    # the next finance step goes up the submitter's chain (to dave, who approved just before: his
    # approval stands), never to her
    assert by_name(engine.instance(task["instance_id"], "admin"))["finance_approval"]["assignee"] == "heidi"
    with engine.db.write() as s:
        s.execute(text("UPDATE users SET active = false WHERE username = 'heidi'"))
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    done = engine.complete(by_name(inst)["manager_approval"]["id"], "dave", APPROVE)
    routed = [e["detail"]["reason"] for e in done["instance"]["history"] if e["action"] == "routed"]
    assert routed == ["no finance other than alice; routed to dave"]
    assert done["instance"]["status"] == "completed"


def test_without_its_token_row_the_chart_is_read_once_a_transaction(engine):
    """Someone deleted the org token's row: nothing can be kept across transactions any more, so
    each transaction reads the chart (once) — routing stays right, never stale."""
    with engine.db.write() as s:
        s.execute(text("DELETE FROM org_version"))
    with engine.db.read() as s:
        with statements(engine.db) as seen:
            from engine import org
            first = org.chart(s)
            assert org.chart(s) is first and first.token is None
        assert sum("FROM users" in q for q in seen) == 1
    task = _claim_at_manager(engine)
    with statements(engine.db) as seen:
        done = engine.complete(task["id"], "dave", APPROVE)
    assert [t["assignee"] for t in done["tasks"]] == ["heidi"]
    assert sum("FROM users" in q for q in seen) == 1, "\n".join(q.splitlines()[0][:120] for q in seen)


def test_a_read_sends_no_begin_on_sqlite(engine):
    """SQLite reads run in autocommit, as on PostgreSQL: each statement reads the latest commit, and
    no BEGIN and ROLLBACK are sent around an inbox or an instance view."""
    if not engine.db.is_sqlite:
        pytest.skip("SQLite's read engine")
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    sent = []
    listener = lambda _c, _cur, statement, *_a: sent.append(statement.split()[0].upper())  # noqa: E731
    event.listen(engine.db.engine, "before_cursor_execute", listener)
    try:
        engine.tasks("dave", with_total=True)
        engine.instance(inst["id"], "alice")
    finally:
        event.remove(engine.db.engine, "before_cursor_execute", listener)
    assert sent and "BEGIN" not in sent, sent
