"""The administrator's API (CONTRACT "Additions: the organisation, budgets, versions, operations"):
people and the org chart, regions, budgets, versions, instances in error — and every refusal."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest


CLAIM = {"category": "travel", "amount": 1200, "incurred_on": "2026-11-10", "description": "拜访客户 client visit"}
APPROVE = {"decision": "approve", "comment": "同意"}
NEW_USER = {"username": "mia", "display_name": "Mia 米娅", "email": "mia@salesflow.example", "roles": ["sales_rep"],
            "region": "east", "manager": "dave", "active": True, "password": "salesflow-demo"}


# ---------------------------------------------------------------- who may
ADMIN_ROUTES = [
    ("get", "/admin/users", None),
    ("post", "/admin/users", NEW_USER),
    ("patch", "/admin/users/alice", {"display_name": "A"}),
    ("get", "/admin/regions", None),
    ("post", "/admin/regions", {"id": "south", "name": {"zh": "华南", "en": "South"}}),
    ("get", "/admin/definitions", None),
    ("get", "/admin/instances?status=error", None),
    ("post", "/admin/instances/1/retry", {}),
    ("post", "/admin/instances/1/cancel", {"comment": "x"}),
    ("post", "/admin/tasks/00000000-0000-0000-0000-000000000000/reassign", {"to": "bob"}),
    ("get", "/admin/org-chart", None),
    ("get", "/admin/audit", None),
]


@pytest.mark.parametrize("method,path,body", ADMIN_ROUTES)
def test_admin_routes_are_403_for_everyone_else(api, method, path, body):
    for user in ("alice", "dave", "judy", "heidi"):
        r = getattr(api.client, method)("/api/v1" + path, headers=api._headers(user), json=body)
        assert r.status_code == 403, (user, path, r.get_json())
        assert "error" in r.get_json()
    assert api.client.get("/api/v1/admin/users").status_code == 401


def test_admin_lists_people(api):
    users = {u["username"]: u for u in api.get("admin", "/admin/users").get_json()}
    assert users["alice"] == {"username": "alice", "display_name": "Alice 艾丽斯", "email": "alice@salesflow.example",
                              "roles": ["sales_rep"], "region": "east", "manager": "dave", "active": True}
    assert users["judy"]["manager"] is None and users["admin"]["roles"] == ["admin"]
    found = api.get("admin", "/admin/users?q=艾丽").get_json()
    assert [u["username"] for u in found] == ["alice"]


# ---------------------------------------------------------------- users
def test_create_a_user_who_then_logs_in_and_starts_a_claim(api):
    r = api.post("admin", "/admin/users", json=NEW_USER)
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created == {k: v for k, v in NEW_USER.items() if k != "password"}
    api.tokens.pop("mia", None)
    inst = api.start("mia", "expense_approval", CLAIM)
    assert api.open_task(inst, "manager_approval")["assignee"] == "dave"
    again = api.post("admin", "/admin/users", json=NEW_USER)
    assert again.status_code == 422 and "username" in again.get_json()["errors"]
    api.tokens.pop("mia", None)


@pytest.mark.parametrize("change,field", [
    ({"roles": ["sales_rep", "wizard"]}, "roles"),
    ({"region": "atlantis"}, "region"),
    ({"manager": "nobody"}, "manager"),
    ({"manager": "mia"}, "manager"),  # herself
    ({"email": "not-an-address"}, "email"),
    ({"password": "short"}, "password"),
    ({"active": "yes"}, "active"),
    ({"shoe_size": 42}, "shoe_size"),
])
def test_create_refuses_bad_fields(api, change, field):
    r = api.post("admin", "/admin/users", json={**NEW_USER, **change})
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"]
    assert "mia" not in {u["username"] for u in api.get("admin", "/admin/users").get_json()}


def test_a_manager_cycle_is_refused(api):
    # dave manages alice: making alice dave's manager closes a loop
    r = api.client.patch("/api/v1/admin/users/dave", headers=api._headers("admin"), json={"manager": "alice"})
    assert r.status_code == 422
    assert "cycle" in r.get_json()["errors"]["manager"] and "dave" in r.get_json()["errors"]["manager"]
    # two levels up too: frank under alice (alice -> dave -> frank -> alice)
    r = api.client.patch("/api/v1/admin/users/frank", headers=api._headers("admin"), json={"manager": "alice"})
    assert r.status_code == 422 and "cycle" in r.get_json()["errors"]["manager"]
    users = {u["username"]: u for u in api.get("admin", "/admin/users").get_json()}
    assert users["dave"]["manager"] == "frank" and users["frank"]["manager"] == "judy"
    r = api.client.patch("/api/v1/admin/users/ghost", headers=api._headers("admin"), json={"manager": "dave"})
    assert r.status_code == 404


def test_patch_changes_the_next_route_and_is_audited(api):
    r = api.client.patch("/api/v1/admin/users/alice", headers=api._headers("admin"), json={"manager": "erin"})
    assert r.status_code == 200 and r.get_json()["manager"] == "erin"
    inst = api.start("alice", "expense_approval", CLAIM)
    assert api.open_task(inst, "manager_approval")["assignee"] == "erin"
    events = api.get("admin", "/admin/audit?entity=user&key=alice").get_json()
    assert events[0]["actor"] == "admin" and events[0]["action"] == "changed"
    assert events[0]["before"] == {"manager": "dave"} and events[0]["after"] == {"manager": "erin"}


def test_deactivating_a_manager_hands_their_tasks_up_and_they_cannot_log_in(api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    assert task["assignee"] == "dave"
    dave_token = api.token("dave")
    r = api.client.patch("/api/v1/admin/users/dave", headers=api._headers("admin"), json={"active": False})
    assert r.status_code == 200 and r.get_json()["active"] is False
    now = api.instance("alice", inst["id"])
    moved = api.open_task(now, "manager_approval")
    assert moved["id"] == task["id"] and moved["assignee"] == "frank"  # dave's manager
    event = [h for h in now["history"] if h["action"] == "reassigned"][-1]
    assert event["actor"] == "admin" and event["detail"]["from"] == "dave" and event["detail"]["to"] == "frank"
    assert event["detail"]["reason"] == "deactivated"
    api.complete("frank", moved["id"], APPROVE)
    # an inactive user can neither get a token nor use one
    assert api.client.post("/api/v1/auth/token", json={"username": "dave", "password": "salesflow-demo"}).status_code == 401
    assert api.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {dave_token}"}).status_code == 401
    api.tokens.pop("dave", None)
    # and a new claim of alice's goes to frank from the start
    assert api.open_task(api.start("alice", "expense_approval", CLAIM), "manager_approval")["assignee"] == "frank"
    r = api.client.patch("/api/v1/admin/users/dave", headers=api._headers("admin"), json={"active": True})
    assert r.status_code == 200


def test_deactivating_a_role_holder_leaves_the_pool_to_the_others(api):
    r = api.post("admin", "/admin/users", json={**NEW_USER, "username": "fiona", "display_name": "Fiona 财务",
                                                 "roles": ["finance"], "region": None, "manager": "judy"})
    assert r.status_code == 201
    inst = api.start("alice", "expense_approval", CLAIM)
    api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)
    pool = api.open_task(api.instance("alice", inst["id"]), "finance_approval")
    assert pool["assignee"] is None
    r = api.client.patch("/api/v1/admin/users/heidi", headers=api._headers("admin"), json={"active": False})
    assert r.status_code == 200
    after = api.open_task(api.instance("alice", inst["id"]), "finance_approval")
    assert after["assignee"] == "fiona"
    api.tokens.pop("fiona", None)
    api.complete("fiona", after["id"], APPROVE)
    api.client.patch("/api/v1/admin/users/heidi", headers=api._headers("admin"), json={"active": True})
    api.tokens.pop("fiona", None)


def test_a_role_taken_away_hands_that_role_s_tasks_over(api):
    inst = api.start("alice", "expense_approval", {**CLAIM, "amount": 30000})
    api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)
    director = api.open_task(api.instance("alice", inst["id"]), "director_approval")
    assert director["assignee"] == "frank"
    r = api.client.patch("/api/v1/admin/users/frank", headers=api._headers("admin"), json={"roles": ["sales_manager"]})
    assert r.status_code == 200
    moved = api.open_task(api.instance("alice", inst["id"]), "director_approval")
    assert moved["assignee"] == "dave"  # nobody holds the role any more: the lane rule goes up alice's chain
    history = api.instance("alice", inst["id"])["history"]
    assert [h["detail"]["reason"] for h in history if h["action"] == "reassigned"] == ["role removed"]


def test_an_admin_cannot_deactivate_themselves(api):
    r = api.client.patch("/api/v1/admin/users/admin", headers=api._headers("admin"), json={"active": False})
    assert r.status_code == 422 and "active" in r.get_json()["errors"]


# ---------------------------------------------------------------- regions
def test_regions(api):
    regions = {r["id"]: r for r in api.get("admin", "/admin/regions").get_json()}
    assert regions["east"]["name"] == {"zh": "华东大区", "en": "East"} and regions["east"]["manager"] == "dave"
    r = api.post("admin", "/admin/regions", json={"id": "south", "name": {"zh": "华南大区", "en": "South"},
                                                  "manager": "erin"})
    assert r.status_code == 201, r.get_json()
    assert r.get_json() == {"id": "south", "name": {"zh": "华南大区", "en": "South"}, "manager": "erin"}
    assert api.post("admin", "/admin/regions", json={"id": "south", "name": {"zh": "x", "en": "y"}}).status_code == 409
    bad = api.post("admin", "/admin/regions", json={"id": "West Coast", "name": {"zh": ""}, "manager": "nobody"})
    assert bad.status_code == 422 and {"id", "name.zh", "name.en", "manager"} <= set(bad.get_json()["errors"])
    # a user may now be placed in the new region
    r = api.client.patch("/api/v1/admin/users/carol", headers=api._headers("admin"), json={"region": "south"})
    assert r.status_code == 200 and r.get_json()["region"] == "south"


# ---------------------------------------------------------------- budgets
def test_budgets_for_the_roles_contract_names(api):
    rows = api.get("heidi", "/budgets?month=2026-11").get_json()
    assert {(r["region"], r["category"]) for r in rows} >= {("east", "travel"), ("north", "other")}
    east = next(r for r in rows if r["region"] == "east" and r["category"] == "travel")
    assert east == {"region": "east", "category": "travel", "month": "2026-11", "amount": 10000.0,
                    "reserved": 0.0, "spent": 0.0, "remaining": 10000.0}
    for user in ("judy", "frank", "admin"):
        assert api.get(user, "/budgets?month=2026-11").status_code == 200
    own = api.get("dave", "/budgets?month=2026-11").get_json()
    assert {r["region"] for r in own} == {"east"}
    assert api.get("dave", "/budgets?month=2026-11&region=north").status_code == 403
    assert api.get("alice", "/budgets?month=2026-11").status_code == 403
    assert api.get("grace", "/budgets").status_code == 403
    assert api.get("heidi", "/budgets?month=2026-13").status_code == 422
    assert [r["region"] for r in api.get("heidi", "/budgets?month=2026-11&region=north").get_json()] == ["north"] * 5


def test_budget_plan_sets_the_month_and_keeps_spending_and_reservations(api):
    inst = api.start("alice", "expense_approval", {**CLAIM, "amount": 3000})  # reserves 3,000 of east/travel
    assert "budget_plan" in {p["id"] for p in api.get("heidi", "/processes").get_json()}
    assert "budget_plan" not in {p["id"] for p in api.get("alice", "/processes").get_json()}
    assert api.post("alice", "/processes/budget_plan/instances", json={"data": {}}).status_code == 403
    plan = {"month": "2026-11", "lines": [{"region": "east", "category": "travel", "amount": 5000},
                                          {"region": "north", "category": "marketing", "amount": 20000.5}]}
    started = api.start("heidi", "budget_plan", plan)
    gm = api.open_task(started, "gm_budget_approval")
    assert gm["assignee"] == "judy"
    before = next(r for r in api.get("heidi", "/budgets?month=2026-11&region=east").get_json()
                  if r["category"] == "travel")
    assert before["amount"] == 10000 and before["reserved"] == 3000  # nothing changes until approval
    # returned to finance, revised, approved
    api.complete("judy", gm["id"], {"decision": "return", "comment": "北区市场预算过高"})
    revise = api.open_task(api.instance("heidi", started["id"]), "revise_budget")
    assert revise["assignee"] == "heidi"
    plan["lines"][1]["amount"] = 15000
    api.complete("heidi", revise["id"], plan)
    gm = api.open_task(api.instance("heidi", started["id"]), "gm_budget_approval")
    done = api.complete("judy", gm["id"], APPROVE)
    assert done["instance"]["status"] == "completed" and done["instance"]["data"]["outcome"] == "approved"
    rows = {(r["region"], r["category"]): r for r in api.get("heidi", "/budgets?month=2026-11").get_json()}
    assert rows[("east", "travel")] == {"region": "east", "category": "travel", "month": "2026-11", "amount": 5000.0,
                                        "reserved": 3000.0, "spent": 0.0, "remaining": 2000.0}
    assert rows[("north", "marketing")]["amount"] == 15000
    assert rows[("east", "other")]["amount"] == 10000  # lines not in the plan keep the standing budget
    assert api.get("heidi", "/budgets?month=2026-12&region=east").get_json()[0]["amount"] == 10000
    events = api.get("admin", "/admin/audit?entity=budget").get_json()
    assert {e["key"] for e in events} == {"east/travel/2026-11", "north/marketing/2026-11"}
    assert all(e["actor"] == "judy" for e in events)
    api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)


def test_budget_plan_refuses_bad_lines(api):
    bad = api.post("heidi", "/processes/budget_plan/instances", json={"data": {
        "month": "2026-11", "lines": [{"region": "atlantis", "category": "travel", "amount": 1},
                                      {"region": "east", "category": "travel", "amount": -5}]}})
    assert bad.status_code == 422 and "lines.1.amount" in bad.get_json()["errors"]
    bad = api.post("heidi", "/processes/budget_plan/instances", json={"data": {
        "month": "2026-11", "lines": [{"region": "atlantis", "category": "travel", "amount": 1},
                                      {"region": "east", "category": "travel", "amount": 5},
                                      {"region": "east", "category": "travel", "amount": 6}]}})
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]) == {"lines.0.region", "lines.2"}
    assert api.post("heidi", "/processes/budget_plan/instances",
                    json={"data": {"month": "2026-11", "lines": []}}).status_code == 422
    assert api.get("heidi", "/instances?process_id=budget_plan").get_json() == []


# ---------------------------------------------------------------- versions
def test_definitions_list_versions_and_running_instances(api):
    api.start("alice", "expense_approval", CLAIM)
    api.start("bob", "expense_approval", CLAIM)
    rows = api.get("admin", "/admin/definitions").get_json()
    expense = next(r for r in rows if r["process_id"] == "expense_approval")
    assert set(expense) == {"process_id", "version", "deployed_at", "running_instances"}
    assert expense["version"] == 1 and expense["running_instances"] == 2 and expense["deployed_at"].endswith("+00:00")
    assert {r["process_id"] for r in rows} >= {"budget_plan", "contract_review", "lead_to_aftersales"}


# ---------------------------------------------------------------- operations
SCORES = {"sales_achievement": 80, "new_customers": 80, "collection_rate": 80, "lead_conversion": 80,
          "customer_satisfaction": 80, "compliance": 80, "teamwork": 80, "learning": 80}


def _appraisal_waiting_for_alice(engine):
    inst = engine.start("performance_appraisal", "ivan", {"employee": "alice", "period": "2026-10",
                                                         "cycle": "monthly", "period_end": "2026-10-31"})
    for user, data in [("alice", {"achievements": "签约 3 家新客户", "evidence": "合同编号 C-101"}),
                       ("dave", {"scores": SCORES, "report": "表现稳定"}),
                       ("dave", {"talk_minutes": 45, "improvement_plan": "提升回款率"})]:
        (task,) = engine.tasks(user, instance_id=inst["id"])
        engine.complete(task["id"], user, data)
    (decision,) = engine.tasks("alice", instance_id=inst["id"])
    return inst["id"], decision


def test_an_instance_whose_timer_fails_is_in_error_then_retried(api, engine, monkeypatch):
    instance_id, decision = _appraisal_waiting_for_alice(engine)
    due = datetime.fromisoformat(decision["due_at"]) + timedelta(minutes=1)
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.exceptions import WorkflowException
    real = BpmnWorkflow.refresh_timers

    def broken(self, *args, **kwargs):  # the workflow fails while the system fires its deadline
        raise WorkflowException("the ledger service is offline")
    monkeypatch.setattr(BpmnWorkflow, "refresh_timers", broken)
    fired = engine.fire_due_timers(due)
    assert fired and "error" in fired[0]
    assert engine.fire_due_timers(due) == []  # an instance in error does not fire again and again
    rows = api.get("admin", "/admin/instances?status=error").get_json()
    assert [r["id"] for r in rows] == [instance_id]
    assert rows[0]["status"] == "error" and "ledger" in rows[0]["error"] and "during timer" in rows[0]["error"]
    assert rows[0]["error_detail"]["during"].startswith("timer")
    # still broken: the retry fails, says why, and the instance stays in error
    r = api.post("admin", f"/admin/instances/{instance_id}/retry")
    assert r.status_code == 422 and "ledger" in r.get_json()["error"]
    assert api.instance("admin", instance_id)["status"] == "error"
    monkeypatch.setattr(BpmnWorkflow, "refresh_timers", real)
    r = api.post("admin", f"/admin/instances/{instance_id}/retry")
    assert r.status_code == 200, r.get_json()
    inst = r.get_json()
    assert inst["status"] == "running" and inst["tasks"][0]["name"] == "employee_decision"  # not due yet now
    fired = engine.fire_due_timers(due)  # its timer is waiting again: the worker fires it when due
    assert [f["instance_id"] for f in fired] == [instance_id] and "error" not in fired[0]
    assert api.instance("alice", instance_id)["status"] == "completed"  # the result is accepted
    actions = [(h["action"], h["actor"]) for h in inst["history"]]
    assert ("error", None) in actions and ("retried", "admin") in actions
    assert api.get("admin", "/admin/instances?status=error").get_json() == []
    assert api.post("admin", f"/admin/instances/{instance_id}/retry").status_code == 409


def test_admin_cancels_an_instance_with_a_comment(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    assert api.post("admin", f"/admin/instances/{inst['id']}/cancel", json={}).status_code == 422
    r = api.post("admin", f"/admin/instances/{inst['id']}/cancel", json={"comment": "重复提交 duplicate"})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["status"] == "cancelled" and body["data"]["outcome"] == "cancelled" and body["tasks"] == []
    event = [h for h in body["history"] if h["action"] == "cancelled"][0]
    assert event["actor"] == "admin" and event["detail"]["comment"] == "重复提交 duplicate"
    assert api.get("dave", "/tasks").get_json() == []
    assert api.post("admin", f"/admin/instances/{inst['id']}/cancel", json={"comment": "again"}).status_code == 409
    assert api.get("heidi", "/budgets?month=2026-11&region=east").get_json()[0]["reserved"] == 0


def test_admin_reassigns_a_task(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    for to, why in (("alice", "own"), ("admin", "administrators"), ("nobody", "no such user")):
        r = api.post("admin", f"/admin/tasks/{task['id']}/reassign", json={"to": to})
        assert r.status_code == 422 and why in r.get_json()["errors"]["to"], (to, r.get_json())
    r = api.post("admin", f"/admin/tasks/{task['id']}/reassign", json={"to": "frank"})
    assert r.status_code == 200 and r.get_json()["assignee"] == "frank"
    history = api.instance("alice", inst["id"])["history"]
    event = [h for h in history if h["action"] == "reassigned"][-1]
    assert event["actor"] == "admin" and event["detail"] == {"from": "dave", "to": "frank"}
    assert api.get("dave", "/tasks").get_json() == []
    api.complete("frank", task["id"], APPROVE)
    assert api.post("admin", f"/admin/tasks/{task['id']}/reassign", json={"to": "erin"}).status_code == 409
