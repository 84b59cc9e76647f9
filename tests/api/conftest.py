from __future__ import annotations

import pytest
from click.testing import CliRunner

from webui import create_app
from webui.cli import main as salesflow_main


@pytest.fixture
def app(engine, tmp_path):
    return create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "test-secret", "TESTING": True},
                      engine=engine)


_TOKENS: dict[str, str] = {}  # signed with the fixed test secret: valid in every test's app


class Api:
    """A tiny client: logs in once per user (per run: password checks are slow on purpose)
    and sends JSON with the bearer token."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.tokens = _TOKENS

    def token(self, user):
        if user not in self.tokens:
            r = self.client.post("/api/v1/auth/token", json={"username": user, "password": "salesflow-demo"})
            assert r.status_code == 200, r.get_json()
            self.tokens[user] = r.get_json()["token"]
        return self.tokens[user]

    def _headers(self, user):
        return {"Authorization": f"Bearer {self.token(user)}"} if user else {}

    def get(self, user, path, **kw):
        return self.client.get("/api/v1" + path, headers=self._headers(user), **kw)

    def post(self, user, path, json=None, **kw):
        return self.client.post("/api/v1" + path, headers=self._headers(user), json=json, **kw)

    # shortcuts that assert success
    def start(self, user, process_id, data=None):
        r = self.post(user, f"/processes/{process_id}/instances", json={"data": data} if data is not None else {})
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    def complete(self, user, task_id, data):
        r = self.post(user, f"/tasks/{task_id}/complete", json={"data": data})
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def instance(self, user, instance_id):
        r = self.get(user, f"/instances/{instance_id}")
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def open_task(self, instance, name):
        tasks = [t for t in instance["tasks"] if t["name"] == name]
        assert len(tasks) == 1, f"expected one open {name}, got {instance['tasks']}"
        return tasks[0]


@pytest.fixture
def api(app):
    return Api(app)


@pytest.fixture
def cli(engine, monkeypatch, tmp_path):
    """`salesflow ...` through click's CliRunner against the test database; returns the output."""
    monkeypatch.setenv("SALESFLOW_DATABASE_URL", engine.db.url)
    monkeypatch.setenv("SALESFLOW_INSTANCE_DIR", str(tmp_path))

    def run(*args):
        result = CliRunner().invoke(salesflow_main, list(args))
        assert result.exit_code == 0, result.output
        return result.output
    return run
