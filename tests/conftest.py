"""Shared fixtures. Every test runs on SQLite; with SALESFLOW_TEST_DATABASE_URL set
(CI sets it to the local PostgreSQL) the database tests run on PostgreSQL too.
A PostgreSQL URL that does not answer fails the run: it is never skipped."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from engine.db import Database
from engine.demo import seed_demo
from engine.models import Base
import engine.auth_state  # noqa: F401 - its tables are truncated between PostgreSQL tests too
from engine.runtime import Engine

PG_URL = os.environ.get("SALESFLOW_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_migrated():
    """A schema of this run's own in the test database (concurrent runs never meet), migrated once."""
    schema = f"salesflow_test_{os.getpid()}"
    admin = Database(PG_URL)
    with admin.write_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    db = Database(url)
    db.migrate()
    db.dispose()
    yield url
    with admin.write_engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path, sqlite_template):
    if request.param == "sqlite":
        path = tmp_path / "salesflow.sqlite3"
        shutil.copy(sqlite_template, path)
        db = Database(f"sqlite:///{path}")
    else:
        url = request.getfixturevalue("pg_migrated")
        db = Database(url)
        names = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        with db.write_engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield db
    db.dispose()


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"


def invoice(engine, username: str, name: str = "发票.pdf") -> str:
    """Upload a (tiny, real) PDF invoice as `username`; returns its attachment id."""
    import io
    return engine.upload(username, io.BytesIO(PDF), name)["id"]


def invoiced(engine, username: str, data: dict) -> dict:
    """An expense claim's data with an invoice of `username`'s attached (expense claims require one)."""
    return {**data, "invoices": data.get("invoices") or [invoice(engine, username)]}


@pytest.fixture
def engine(database, tmp_path):
    from engine.attachments import Storage
    eng = Engine(database)
    eng.storage = Storage(f"file://{tmp_path / 'files'}")
    eng.setup()
    with database.write() as session:
        seed_demo(session)
    return eng


def at(text_value: str) -> datetime:
    """An aware datetime from 'YYYY-MM-DDTHH:MM' (+08:00 unless given)."""
    value = datetime.fromisoformat(text_value)
    if value.tzinfo is None:
        from zoneinfo import ZoneInfo
        value = value.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return value.astimezone(timezone.utc)
