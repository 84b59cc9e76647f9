"""Shared fixtures. Every test runs on SQLite; with SALESFLOW_TEST_DATABASE_URL set
(CI sets it to the local PostgreSQL) the database tests run on PostgreSQL too.
A PostgreSQL URL that does not answer fails the run: it is never skipped.

Databases come from templates built once per run: migrated (`database` for a test that deploys
workflows of its own), or migrated, deployed and seeded with the demo organisation (`database`
of a test that uses `engine`: the demo's password is hashed and the workflows are deployed once,
not in every setup). SQLite: the template file is copied. PostgreSQL: the tables are emptied and
the template's rows inserted again, with the sequences set past them. Parsed definitions are
shared by every Engine of the run (engine.definitions caches them by content hash).
Helpers every test module shares live in tests/helpers.py."""
from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import func, insert, select, text

from engine.db import Database
from engine.demo import seed_demo
from engine.models import Base
import engine.auth_state  # noqa: F401 - its tables are emptied between PostgreSQL tests too
from engine.runtime import Engine
from tests.helpers import PDF, at, copy_workflows, invoice, invoiced  # noqa: F401 - modules import these from here

PG_URL = os.environ.get("SALESFLOW_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
TABLES = Base.metadata.sorted_tables  # parents first


def _deploy_and_seed(db: Database) -> None:
    eng = Engine(db)
    eng.deploy()
    with db.write() as session:
        seed_demo(session)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated, empty SQLite database file."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def sqlite_seeded_template(tmp_path_factory, sqlite_template):
    """The migrated template, deployed and seeded with the demo organisation."""
    path = tmp_path_factory.mktemp("template") / "seeded.sqlite3"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    _deploy_and_seed(db)
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


def _pg_reset(db: Database, rows: dict | None = None) -> None:
    """Empty every table (identities restarted), then insert `rows` (table name -> rows) and move
    each sequence past the ids inserted: a test starts from exactly the template's state."""
    names = ", ".join(t.name for t in reversed(TABLES))
    with db.write_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        # regions and users refer to each other (a region's manager, a user's region): the foreign
        # keys are checked by triggers, which a replica session skips while the snapshot goes back in
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        if rows is None:  # the org chart's token row, as a migration leaves it
            conn.execute(text("INSERT INTO org_version (id, token) VALUES (1, 'initial')"))
        for table in TABLES:
            if rows and rows.get(table.name):
                conn.execute(insert(table), rows[table.name])
                (key, *more) = table.primary_key.columns
                if not more and key.type.python_type is int:  # no sequence: setval(NULL) does nothing
                    conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, :c), :v)"),
                                 {"t": table.name, "c": key.name, "v": conn.scalar(select(func.max(key)))})


@pytest.fixture(scope="session")
def pg_seeded_rows(pg_migrated):
    """Every row of the deployed and seeded PostgreSQL database, by table (the snapshot tests start from)."""
    db = Database(pg_migrated)
    _pg_reset(db)
    _deploy_and_seed(db)
    with db.write_engine.connect() as conn:
        rows = {t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in TABLES}
    db.dispose()
    return rows


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path, sqlite_template):
    """The test's database: deployed and seeded when the test uses `engine`, else migrated and empty."""
    seeded = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "salesflow.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_seeded_template") if seeded else sqlite_template, path)
        db = Database(f"sqlite:///{path}")
    else:
        db = Database(request.getfixturevalue("pg_migrated"))
        _pg_reset(db, request.getfixturevalue("pg_seeded_rows") if seeded else None)
    db.seeded = seeded
    yield db
    db.dispose()


@pytest.fixture
def engine(database, tmp_path):
    """An Engine on the demo organisation with the workflows deployed; attachments in tmp_path."""
    from engine.attachments import Storage
    eng = Engine(database)
    eng.storage = Storage(f"file://{tmp_path / 'files'}")
    if getattr(database, "seeded", False):
        assert eng.deploy() == [], "the seeded template is older than workflows/"
    else:  # a database fixture of its own (tests/browser): set it up here
        eng.setup()
        with database.write() as session:
            seed_demo(session)
    yield eng
    # whatever the test did, the inbox totals the triggers keep equal a count of the tasks
    assert inbox_counts_drift(database) == [], "inbox_counts drifted from the tasks"


def inbox_counts_drift(db) -> list:
    """Users whose kept inbox counts differ from counting their tasks: (user id, kept, counted)."""
    with db.read() as session:
        rows = session.execute(text("""
            SELECT u.id, COALESCE(k.assigned, 0), COALESCE(k.claimable, 0),
                   (SELECT count(*) FROM human_tasks h WHERE h.assignee_id = u.id AND h.status = 'open'),
                   (SELECT count(*) FROM human_task_candidates c JOIN human_tasks h ON h.id = c.task_id
                    WHERE c.user_id = u.id AND h.status = 'open' AND h.assignee_id IS NULL)
            FROM users u LEFT JOIN (SELECT user_id, sum(assigned) AS assigned, sum(claimable) AS claimable
                                    FROM inbox_counts GROUP BY user_id) k ON k.user_id = u.id""")).all()
        return [(uid, (a, c), (ra, rc)) for uid, a, c, ra, rc in rows if (a, c) != (ra, rc)]


@pytest.fixture
def workflows(tmp_path):
    """A private copy of workflows/ a test may edit (tests.helpers.edit), then deploy with make_engine."""
    return copy_workflows(tmp_path / "workflows")
