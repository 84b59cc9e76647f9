"""Fuzz the JSON API from its own description (webui/openapi.py) with schemathesis: requests
that fit the description and requests that do not (negative mode, wrong types, missing
fields, other methods, no or a bad token), against the Flask app in-process, signed in as a
demo user. Every response must be one the description lists for the operation, with its
schema and content type, never a 5xx; and a 4xx changes nothing in the database.

Path ids are steered: most drawn ids are replaced by ids that exist (the caller's own tasks,
someone else's, instances the caller can and cannot see), the rest stay as drawn (404s).

Bounded (MAX_EXAMPLES per operation, derandomized: a run draws the same requests) and on
SQLite only: the point is the web layer and the engine's input checks, not the backend.
SALESFLOW_FUZZ_EXAMPLES=N runs N examples per operation with a random seed instead."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
from contextlib import closing

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from engine.db import Database
from engine.demo import seed_demo
from engine.models import Base
from engine.runtime import Engine
from webui import create_app, openapi
from webui.auth import issue_token

from .conftest import Api
from .test_expense_api import CLAIM

# a deeper, random run: SALESFLOW_FUZZ_EXAMPLES=500 pytest tests/api/test_fuzz.py
MAX_EXAMPLES = int(os.environ.get("SALESFLOW_FUZZ_EXAMPLES") or 20)
DERANDOMIZE = not os.environ.get("SALESFLOW_FUZZ_EXAMPLES")
USER = "dave"  # a manager: an approval task of alice's claim to act on, and a claim of his own
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance, negative_data_rejection, unsupported_method, ignored_auth]
# tables a refused request may still write: failed sign-ins are counted (that is the throttle)
MAY_CHANGE_ON_4XX = {"login_failures"}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

schema = schemathesis.openapi.from_dict(openapi.document())
pytestmark = pytest.mark.fuzz


# tables a refused request may still write: failed sign-ins are counted (that is the throttle);
# and tables no API route writes, left out of the digest for speed (the definitions are large)
NOT_COMPARED = MAY_CHANGE_ON_4XX | {"process_definitions", "regions", "budgets", "user_roles"}


@pytest.fixture(scope="module")
def world_template(tmp_path_factory, sqlite_template):
    """A SQLite database with the demo organisation and three claims in it, made once; each
    operation gets a copy. alice's claim waits for dave, dave's own waits for frank, carol's
    (north) is one dave may not see. Returns the file and the ids to steer path parameters to."""
    path = tmp_path_factory.mktemp("fuzz") / "world.sqlite3"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    eng = Engine(db)
    eng.setup()
    with db.write() as session:
        seed_demo(session)
    app = create_app({"INSTANCE_PATH": str(path.parent), "SECRET_KEY": "test-secret", "TESTING": True}, engine=eng)
    api = Api(app)
    own = api.start("alice", "expense_approval", CLAIM)
    mine = api.start(USER, "expense_approval", CLAIM)
    other = api.start("carol", "expense_approval", CLAIM)
    ids = {
        "instance_id": [own["id"], mine["id"], other["id"]],
        "task_id": [t["id"] for inst in (own, mine, other) for t in inst["tasks"]],
        "notification_id": [n["id"] for n in api.get(USER, "/notifications").get_json()] or [1],
    }
    db.dispose()
    return path, ids


@pytest.fixture
def database(tmp_path, world_template):
    """SQLite only (overrides the conftest fixture, which runs on every backend): a copy of the world."""
    path = tmp_path / "salesflow.sqlite3"
    shutil.copy(world_template[0], path)
    db = Database(f"sqlite:///{path}")
    yield db
    db.dispose()


@pytest.fixture
def engine(database):
    """The world is seeded already (overrides the conftest fixture, which seeds)."""
    eng = Engine(database)
    eng.setup()
    return eng


class World:
    """The app with something in it, and the ids to steer the fuzzer's path parameters to."""

    def __init__(self, api, engine, ids):
        self.api, self.app, self.engine, self.ids = api, api.app, engine, ids
        self.path = engine.db.write_engine.url.database
        self.tables = [t.name for t in Base.metadata.sorted_tables if t.name not in NOT_COMPARED]

    def steer(self, case) -> None:
        """Replace most drawn ids by existing ones (chosen by the drawn value: reproducible)."""
        for name, value in list((case.path_parameters or {}).items()):
            known = self.ids.get(name)
            if not known:
                continue
            if name == "task_id":
                if isinstance(value, str) and _UUID.fullmatch(value):
                    pick = int(hashlib.sha256(value.encode()).hexdigest(), 16) % (len(known) + 1)
                    if pick < len(known):
                        case.path_parameters[name] = known[pick]
            elif isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= openapi.MAX_ID:
                pick = value % (len(known) + 1)
                if pick < len(known):
                    case.path_parameters[name] = known[pick]

    def snapshot(self) -> dict[str, str]:
        """A digest of every table's rows but NOT_COMPARED (read with sqlite3 itself: building ORM
        rows for every table around every request cost more than the requests)."""
        digests = {}
        with closing(sqlite3.connect(self.path)) as conn:
            for name in self.tables:
                rows = conn.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall()
                digests[name] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return digests

    def headers(self, case) -> dict:
        if case.operation.definition.raw.get("security") == []:
            return {}
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
            return {}  # the drawn headers stand: no or a wrong Authorization (401 expected)
        if case.method.upper() == "DELETE" and case.path == "/auth/token":
            with self.app.test_request_context():  # a token of its own: revoking it leaves the others
                return {"Authorization": f"Bearer {issue_token(USER)}"}
        return {"Authorization": f"Bearer {self.api.token(USER)}"}


@pytest.fixture
def world(api, engine, world_template):
    return World(api, engine, world_template[1])


@schema.parametrize()
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, database=None,
                     suppress_health_check=list(HealthCheck))
def test_api_answers_as_described_and_a_refusal_changes_nothing(case, world):
    world.steer(case)
    writes = case.method.upper() not in ("GET", "HEAD", "OPTIONS")
    before = world.snapshot() if writes else None
    case.operation.app = case.operation.schema.app = world.app  # this test's app (checks send probes too)
    response = case.call_and_validate(headers=world.headers(case), checks=CHECKS)
    if writes and 400 <= response.status_code < 500:
        after = world.snapshot()
        changed = sorted(name for name in before if before[name] != after[name])
        assert not changed, (f"{case.method} {case.formatted_path} answered {response.status_code} "
                             f"but changed {changed}: {response.text[:300]}")


def test_the_snapshot_sees_what_a_request_writes(world):
    """The 'a 4xx changes nothing' check is not vacuous: an accepted change shows in the digest."""
    before = world.snapshot()
    r = world.api.client.patch("/api/v1/me", json={"locale": "en"},
                               headers={"Authorization": f"Bearer {world.api.token(USER)}"})
    assert r.status_code == 200
    after = world.snapshot()
    # a user changed, and with it the org chart's token (the trigger the in-memory chart relies on)
    assert [name for name in before if before[name] != after[name]] == ["org_version", "users"]
