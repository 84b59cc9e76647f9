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
