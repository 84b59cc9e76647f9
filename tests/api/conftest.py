from __future__ import annotations

import io

import pytest
from click.testing import CliRunner

from tests.conftest import PDF

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

    def upload(self, user, content: bytes = PDF, filename: str = "发票.pdf", path: str = "/attachments"):
        return self.client.post("/api/v1" + path, headers=self._headers(user),
                                data={"file": (io.BytesIO(content), filename)}, content_type="multipart/form-data")

    def invoice(self, user) -> str:
        r = self.upload(user)
        assert r.status_code == 201, r.get_json()
        return r.get_json()["id"]

    # shortcuts that assert success. Expense claims require an invoice: a claim's data without
    # `invoices` gets one uploaded by its submitter (tests about invoices themselves pass their own);
    # a revision without `invoices` keeps the claim's
    def start(self, user, process_id, data=None):
        if process_id == "expense_approval" and data is not None and "invoices" not in data:
            data = {**data, "invoices": [self.invoice(user)]}
        r = self.post(user, f"/processes/{process_id}/instances", json={"data": data} if data is not None else {})
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    def complete(self, user, task_id, data):
        r = self.post(user, f"/tasks/{task_id}/complete", json={"data": self._with_invoices(user, task_id, data)})
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    def _with_invoices(self, user, task_id, data):
        if not isinstance(data, dict) or "invoices" in data or "amount" not in data or "category" not in data:
            return data
        task = self.get(user, f"/tasks/{task_id}").get_json()
        if task.get("process_id") != "expense_approval":
            return data
        return {**data, "invoices": (task.get("data") or {}).get("invoices") or [self.invoice(user)]}

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
