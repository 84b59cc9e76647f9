"""People and notifications through the JSON API (CONTRACT "Notifications", "People")."""
from __future__ import annotations

from tests.helpers import CLAIM


def test_me_get_and_patch(api):
    me = api.get("alice", "/me").get_json()
    assert me == {"username": "alice", "display_name": me["display_name"], "email": "alice@salesflow.example",
                  "roles": ["sales_rep"], "region": "east", "manager": "dave", "locale": None,
                  "mail_notifications": True, "out_of_office": None}
    r = api.client.patch("/api/v1/me", headers=api._headers("alice"),
                         json={"locale": "en", "mail_notifications": False, "email": "alice@corp.example",
                               "out_of_office": {"from": "2026-12-24T00:00:00+08:00", "until": "2027-01-04T00:00:00+08:00",
                                                 "delegate": "bob"}})
    assert r.status_code == 200, r.get_json()
    me = r.get_json()
    assert (me["locale"], me["mail_notifications"], me["email"]) == ("en", False, "alice@corp.example")
    assert me["out_of_office"]["delegate"] == "bob" and me["out_of_office"]["from"].startswith("2026-12-23T16:00")
    r = api.client.patch("/api/v1/me", headers=api._headers("alice"), json={"locale": "fr", "email": "x"})
    assert r.status_code == 422 and set(r.get_json()["errors"]) == {"locale", "email"}
    assert api.get("alice", "/me").get_json()["locale"] == "en"  # nothing of a refused PATCH is kept
    r = api.client.patch("/api/v1/me", headers=api._headers("alice"), json={"out_of_office": None})
    assert r.get_json()["out_of_office"] is None
    assert api.client.patch("/api/v1/me", json={"locale": "en"}).status_code == 401


def test_password_change(api):
    path = "/me/password"
    assert api.post("bob", path, json={"old": "wrong-password", "new": "a-new-password-1"}).status_code == 403
    r = api.post("bob", path, json={"old": "salesflow-demo", "new": "short"})
    assert r.status_code == 422 and "new" in r.get_json()["errors"]
    assert api.post("bob", path, json={"old": "salesflow-demo"}).status_code == 422
    r = api.post("bob", path, json={"old": "salesflow-demo", "new": "a-new-password-1"})
    assert r.status_code == 204 and r.data == b""
    login = api.client.post("/api/v1/auth/token", json={"username": "bob", "password": "a-new-password-1"})
    assert login.status_code == 200
    assert api.client.post("/api/v1/auth/token", json={"username": "bob", "password": "salesflow-demo"}).status_code == 401


def test_notifications_routes(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    assert api.post("alice", f"/instances/{inst['id']}/urge", json={"comment": "请尽快"}).status_code == 200
    items = api.get("dave", "/notifications").get_json()
    assert [n["kind"] for n in items] == ["urge", "task_assigned"]
    assert set(items[0]) == {"id", "at", "kind", "text", "instance_id", "task_id", "read"}
    assert items[0]["instance_id"] == inst["id"] and items[1]["task_id"] == inst["tasks"][0]["id"]
    assert api.post("alice", f"/notifications/{items[0]['id']}/read").status_code == 404  # not hers
    assert api.post("dave", "/notifications/abc/read").status_code == 404
    assert api.post("dave", f"/notifications/{items[0]['id']}/read").status_code == 200
    assert [n["kind"] for n in api.get("dave", "/notifications?unread=1").get_json()] == ["task_assigned"]
    assert api.post("dave", "/notifications/read-all").get_json() == {"read": 1}
    assert api.get("dave", "/notifications?unread=1").get_json() == []
    assert all(n["read"] for n in api.get("dave", "/notifications").get_json())
