"""SQLite's write-ahead log goes back into the database in the background worker's pass, not in
whichever user's commit crosses a threshold (that commit would wait: the slowest completions)."""
from __future__ import annotations

import os

import pytest

from tests.helpers import CLAIM, invoiced


def test_the_worker_pass_copies_the_log_into_the_database(engine):
    if not engine.db.is_sqlite:
        pytest.skip("SQLite's write-ahead log")
    path = engine.db.url.removeprefix("sqlite:///")
    with engine.db.write_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10000
    engine.db.checkpoint()
    before = os.path.getsize(path)
    for _ in range(20):
        engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    assert os.path.getsize(path) == before, "a commit copied the log back itself"
    engine.work()
    assert os.path.getsize(path) > before, "the worker's pass left the log where it was"


def test_a_pass_with_nothing_to_do_takes_no_write_lock(engine):
    # the worker's pass runs every 2 seconds beside every command: one with nothing due, nothing to
    # remind, no stale upload and no inbox rows to fold opens no write transaction (on SQLite each
    # would hold up every command for its while)
    if not engine.db.is_sqlite:
        pytest.skip("SQLite's one writer at a time (on PostgreSQL reads fire the same begin event)")
    from datetime import timedelta
    from sqlalchemy import event
    from engine import clock
    engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    engine.work()  # what there was to do (the new rows of the inbox totals) is done
    began = []
    listener = lambda *_a: began.append(1)  # noqa: E731
    event.listen(engine.db.write_engine, "begin", listener)
    try:
        engine.work(at=clock.now() + timedelta(minutes=1))
    finally:
        event.remove(engine.db.write_engine, "begin", listener)
    assert began == []
