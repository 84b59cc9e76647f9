"""The administration area's pages: admins only (403 for everyone else, no link in their header),
every page renders in zh and en with no raw keys, forms refuse with translated reasons, the
operations page retries, cancels and reassigns, and the budgets page follows who may see what."""
from __future__ import annotations

import re

import pytest

from tests.test_views import app, login, text_of  # noqa: F401 (fixtures)
from tests.conftest import invoiced

PAGES = ["/admin/users", "/admin/users?q=alice", "/admin/users/new", "/admin/users/alice", "/admin/org",
         "/admin/regions", "/admin/roles", "/admin/definitions", "/admin/instances", "/admin/instances?status=running",
         "/admin/audit", "/budgets"]


@pytest.mark.parametrize("lang", ["zh-CN", "en-US"])
def test_every_admin_page_renders_for_an_admin(app, lang):
    client = login(app, "admin", lang)
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        text = text_of(r)
        assert "系统管理" in text if lang == "zh-CN" else "Administration" in text
        assert not re.search(r"\b(msgid|_\(|\{\{)", r.get_data(as_text=True)), path
    inbox = text_of(client.get("/start"))
    assert ("系统管理" if lang == "zh-CN" else "Administration") in inbox


def test_admin_pages_are_refused_to_everyone_else(app):
    for user in ("alice", "dave", "judy", "heidi"):
        client = login(app, user)
        for path in PAGES[:-1]:
            assert client.get(path).status_code == 403, (user, path)
        assert 'id="nav-admin"' not in client.get("/").get_data(as_text=True)
    assert app.test_client().get("/admin/users").status_code == 302  # to the login page


def test_budgets_page_follows_the_roles(app):
    assert login(app, "alice").get("/budgets").status_code == 403
    assert 'id="nav-budgets"' not in login(app, "alice").get("/").get_data(as_text=True)
    dave = login(app, "dave").get("/budgets?month=2026-11").get_data(as_text=True)
    assert 'data-region="east"' in dave and 'data-region="north"' not in dave
    heidi = login(app, "heidi")
    page = heidi.get("/budgets?month=2026-11").get_data(as_text=True)
    assert 'data-region="east"' in page and 'data-region="north"' in page and 'id="plan-budget"' in page
    only = heidi.get("/budgets?month=2026-11&region=north").get_data(as_text=True)
    assert only.count('class="card budget-region"') == 1 and 'budget-region" data-region="north"' in only


def test_edit_form_refuses_a_cycle_in_chinese_and_saves_a_new_manager(app):
    client = login(app, "admin")
    base = {"csrf_token": client.token, "display_name": "Frank 方总监", "roles": ["sales_director"], "active": "on"}
    r = client.post("/admin/users/frank", data={**base, "manager": "alice"})
    assert r.status_code == 422 and "上下级关系形成循环" in text_of(r)
    r = client.post("/admin/users/alice", data={**base, "display_name": "Alice 艾丽斯", "roles": ["sales_rep"],
                                                "region": "east", "manager": "erin", "email": "alice@salesflow.example"})
    assert r.status_code == 302
    page = text_of(client.get("/admin/users/alice"))
    assert "直属上级: dave" in page and "直属上级: erin" in page
    r = client.post("/admin/users/new", data={"csrf_token": client.token, "username": "zoe", "display_name": "Zoe",
                                              "roles": ["wizard"], "password": "short", "active": "on"})
    assert r.status_code == 422
    text = text_of(r)
    assert "未知角色：wizard" in text and "至少 10 个字符" in text


def test_operations_page_reassigns_and_cancels(app):
    engine = app.extensions["salesflow"]
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", {
        "category": "travel", "amount": 100, "incurred_on": "2026-11-02", "description": "出租车"}))
    (task,) = inst["tasks"]
    client = login(app, "admin")
    page = client.get(f"/admin/instances/{inst['id']}").get_data(as_text=True)
    assert f'data-task-id="{task["id"]}"' in page
    r = client.post(f"/admin/tasks/{task['id']}/reassign", data={"csrf_token": client.token, "to": "frank",
                                                                 "instance_id": inst["id"]})
    assert r.status_code == 302
    assert engine.task(task["id"], "admin")["assignee"] == "frank"
    r = client.post(f"/admin/instances/{inst['id']}/cancel", data={"csrf_token": client.token, "comment": ""})
    assert engine.instance(inst["id"], "admin")["status"] == "running"  # a comment is required
    r = client.post(f"/admin/instances/{inst['id']}/cancel", data={"csrf_token": client.token, "comment": "重复"})
    assert r.status_code == 302 and engine.instance(inst["id"], "admin")["status"] == "cancelled"
    history = text_of(client.get(f"/admin/instances/{inst['id']}"))
    assert "管理员终止" in history and "重复" in history and "已改派" in history


def test_mail_given_up_on_is_shown_to_the_administrator(app):
    import socket
    from datetime import timedelta

    from sqlalchemy import select

    from engine.models import OutboxMail
    from tests.conftest import at
    engine = app.extensions["salesflow"]
    engine.start("expense_approval", "alice", invoiced(engine, "alice", {
        "category": "travel", "amount": 100, "incurred_on": "2026-11-02", "description": "出租车"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"smtp://127.0.0.1:{s.getsockname()[1]}"
    now = at("2026-12-01T10:00")
    with engine.db.write() as s:
        for m in s.scalars(select(OutboxMail)):
            m.created_at = m.next_attempt_at = now
    engine.work(smtp_url=dead, at=now)
    engine.work(smtp_url=dead, at=now + timedelta(days=1, minutes=1))
    text = text_of(login(app, "admin").get("/admin/instances"))
    assert "未能送达的邮件" in text and "dave@salesflow.example" in text
