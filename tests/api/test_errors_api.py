"""Engine bugs and database errors through the API: a 500 with a plain message, nothing written."""
from __future__ import annotations

from sqlalchemy.exc import OperationalError

from engine.services import Services
from tests.helpers import CLAIM, counts


def test_a_bug_in_a_service_is_a_500_not_a_422_and_nothing_is_written(api, engine, monkeypatch):
    def broken(self, cmd, **params):
        raise TypeError("'NoneType' object is not subscriptable")  # an engine bug, not the process's
    monkeypatch.setattr(Services, "op_budget_reserve", broken)
    api.app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the 500 handler answers
    before = counts(engine)
    r = api.post("alice", "/processes/expense_approval/instances", json={"data": {**CLAIM, "invoices": [api.invoice("alice")]}})
    assert r.status_code == 500 and "error" in r.get_json()
    assert "NoneType" not in r.get_json()["error"]  # users see a plain message
    assert counts(engine) == before


def test_a_database_error_in_a_service_is_a_500(api, engine, monkeypatch):
    def down(self, cmd, **params):
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    monkeypatch.setattr(Services, "op_budget_reserve", down)
    api.app.config["PROPAGATE_EXCEPTIONS"] = False
    assert api.post("alice", "/processes/expense_approval/instances", json={"data": {**CLAIM, "invoices": [api.invoice("alice")]}}).status_code == 500
