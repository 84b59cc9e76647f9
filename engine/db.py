"""Engines, sessions and migrations.

On SQLite, write transactions start with BEGIN IMMEDIATE so two commands never
interleave (the second waits for the first, then sees its result); reads use a
separate engine in autocommit (each statement reads the latest commit, as on
PostgreSQL), so the inbox never waits on a writer. On PostgreSQL one engine serves
both and commands lock the instance row.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import json

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def default_sqlite_url(instance_dir: str | os.PathLike) -> str:
    path = Path(instance_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'salesflow.sqlite3'}"


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _json_default(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")  # json's refusal


def json_dumps(value) -> str:
    """JSON columns (instance data, history details, notification parameters) written by orjson:
    what json.dumps wrote, as UTF-8 rather than \\u escapes (the same value read back); a value json
    could not write (a datetime) is refused as before; an integer beyond 64 bits goes to json."""
    try:
        return orjson.dumps(value, default=_json_default,
                            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except orjson.JSONEncodeError:  # json writes it, or raises TypeError as it always did
        return json.dumps(value)


def json_loads(text):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, in a value json wrote once
        return json.loads(text)


_JSON = {"json_serializer": json_dumps, "json_deserializer": json_loads}


def _sqlite_engine(url: str, write: bool) -> Engine:
    # LIFO: the most recently used connection (its statement and page caches warm) serves next
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_use_lifo=True,
                           **_JSON)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        # the WAL is copied back into the database by the background worker (Database.checkpoint,
        # every pass): a commit that happened to cross SQLite's default 1,000-page mark would do
        # it itself and wait milliseconds (the slowest 1% of completions). 10,000 pages stays as
        # the safety net when no worker runs; the WAL file is cut back to 64 MB afterwards
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.execute("PRAGMA journal_size_limit=67108864")
        # read pages through a shared memory map (one copy for every pooled connection) and keep
        # a bigger private cache: the default 2 MB cache makes each connection re-read hot pages
        cur.execute("PRAGMA mmap_size=268435456")
        cur.execute("PRAGMA cache_size=-2048")
        cur.close()

    if write:
        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    # reads send no BEGIN: each statement is a read transaction of its own and sees the latest
    # commit, as reads do on PostgreSQL (autocommit under READ COMMITTED); a BEGIN and ROLLBACK
    # around them cost two statements an API call. The DBAPI's rollback when the connection goes
    # back to the pool does nothing then (no transaction is open)
    return engine


# a pooled PostgreSQL connection that rested longer than this is pinged before it is handed out
PING_AFTER_REST = 5.0


def _ping_when_rested(engine: Engine, rest: float) -> None:
    """Check a pooled connection before use only when it rested more than `rest` seconds: the
    server (or something between) may have closed it meanwhile. SQLAlchemy's pool_pre_ping checks
    every checkout, and on psycopg that is three round trips (BEGIN, SELECT 1, ROLLBACK) before each
    API call's token check and again before its command. A connection in use a moment ago is
    used as it is; if the server went away even so, SQLAlchemy invalidates the pool on that error,
    so the next call connects afresh. A failed ping raises DisconnectionError: the pool then
    replaces the connection and tries again (SQLAlchemy's documented checkout protocol)."""
    @event.listens_for(engine, "checkin")
    def _rested(_dbapi_conn, record):
        record.info["rested_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn, record, _proxy):
        rested_at = record.info.get("rested_at")
        if rested_at is None or time.monotonic() - rested_at < rest:
            return  # new, or in use a moment ago
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:  # noqa: BLE001 - whatever the driver says, the connection is unusable
            raise DisconnectionError(f"a pooled connection was closed: {exc}") from exc


def _committed(session) -> None:
    for callback in session.info.pop("on_commit", {}).values():
        callback()


_SQLITE_LOCKS: dict[str, threading.RLock] = {}
_SQLITE_LOCKS_GUARD = threading.Lock()


def _sqlite_lock(url: str) -> threading.RLock:
    with _SQLITE_LOCKS_GUARD:
        return _SQLITE_LOCKS.setdefault(url, threading.RLock())


class Database:
    def __init__(self, url: str):
        self.url = normalize_url(url)
        if self.url.startswith("sqlite"):
            self.is_sqlite = True
            self.engine = _sqlite_engine(self.url, write=False)
            self.write_engine = _sqlite_engine(self.url, write=True)
        else:
            self.is_sqlite = False
            # LIFO: the connection used last serves next (its prepared statements are warm)
            self.write_engine = create_engine(self.url, pool_size=10, max_overflow=20, pool_use_lifo=True,
                                              **_JSON)
            _ping_when_rested(self.write_engine, PING_AFTER_REST)
            # reads run in autocommit, on the same pool: under READ COMMITTED every statement reads
            # a fresh snapshot anyway, so a transaction around them would only add BEGIN and
            # ROLLBACK round trips (an inbox page is one statement, a token check one)
            self.engine = self.write_engine.execution_options(isolation_level="AUTOCOMMIT")
        # one lock per SQLite file and process (every Database on the file shares it)
        self._write_lock = _sqlite_lock(self.url) if self.is_sqlite else None
        # sessions know their database: engine/org.py keeps the org chart on it
        self.org_chart = None
        self._read = sessionmaker(self.engine, expire_on_commit=False, info={"database": self})
        self._write = sessionmaker(self.write_engine, expire_on_commit=False, info={"database": self})

    @contextmanager
    def read(self):
        with self._read() as session:
            yield session

    @contextmanager
    def write(self):
        """One command, one transaction: commit at the end, roll back whole on any error. On SQLite
        the writers of one process queue on a Python lock first, so they wait for each other here
        (woken the moment the lock frees), never in SQLite's busy-retry sleep.

        What a transaction puts in `session.info["on_commit"]` (a dict of callables) runs once it has
        committed, and never when it rolled back."""
        if self._write_lock is None:
            with self._write() as session:
                with session.begin():
                    yield session
                _committed(session)
            return
        with self._write_lock:
            with self._write() as session:
                with session.begin():
                    yield session
                _committed(session)

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log back into the database without waiting for anyone
        (PASSIVE); the background worker's every pass. Nothing to do on PostgreSQL."""
        if not self.is_sqlite:
            return
        with self.write_engine.connect() as conn:
            conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.write_engine.connect() as conn:
            if self.is_sqlite:  # a table rebuilt by a migration must not cascade or refuse: keys off
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # (outside a transaction)
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            finally:
                if self.is_sqlite:
                    driver = conn.connection.driver_connection
                    problems = driver.execute("PRAGMA foreign_key_check").fetchall()
                    driver.execute("PRAGMA foreign_keys=ON")
                    if problems:
                        raise RuntimeError(f"the migration left rows whose references are broken: {problems[:5]}")

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.is_sqlite:
            self.engine.dispose()
