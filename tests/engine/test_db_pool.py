"""engine/db.py on PostgreSQL: a pooled connection that rested is checked before use (a dead one is
replaced, the caller never sees it); one in use a moment ago is used as it is (no round trips)."""
from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from engine import db as db_module
from engine.db import Database


@pytest.fixture
def pg_database(database):
    if database.is_sqlite:
        pytest.skip("PostgreSQL's connection pool; SQLite opens files")
    return database


def backend_pid(db) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar()


def terminate(db, pid: int) -> None:
    other = Database(db.url)
    try:
        with other.engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        other.dispose()


def test_a_rested_connection_the_server_closed_is_replaced_before_use(pg_database, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_REST", 0.0)  # every checkout counts as rested
    db = Database(pg_database.url)
    try:
        first = backend_pid(db)
        assert backend_pid(db) == first  # the pool hands the same connection out again
        terminate(db, first)
        assert backend_pid(db) != first  # pinged, found dead, replaced: the caller saw no error
    finally:
        db.dispose()


def test_a_connection_in_use_a_moment_ago_is_not_pinged(pg_database, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_REST", 3600.0)
    db = Database(pg_database.url)
    try:
        first = backend_pid(db)
        terminate(db, first)
        # not checked: the dead connection is used, the call fails and SQLAlchemy drops the pool...
        with pytest.raises(OperationalError):
            backend_pid(db)
        assert backend_pid(db) != first  # ...so the next call connects afresh
    finally:
        db.dispose()
