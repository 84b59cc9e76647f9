"""expense_approval through the JSON API: every route, rule and error code of CONTRACT.md."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from engine.models import BudgetEntry, HistoryEvent, HumanTask, ProcessInstance, User, UserRole
from engine.org import hash_password
from tests.helpers import APPROVE, CLAIM, counts


# ---------------------------------------------------------------- auth
def test_token_and_authentication(api):
    client = api.client
    assert client.post("/api/v1/auth/token", json={"username": "alice", "password": "nope"}).status_code == 401
    assert client.post("/api/v1/auth/token", json={"username": "nobody", "password": "salesflow-demo"}).status_code == 401
    assert client.post("/api/v1/auth/token", data="not json").status_code == 400
    r = client.post("/api/v1/auth/token", json={"username": "alice", "password": "salesflow-demo"})
    assert r.status_code == 200 and r.get_json()["token"]
    assert client.get("/api/v1/processes").status_code == 401
    assert client.get("/api/v1/processes", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert client.get("/api/v1/tasks", headers={"Authorization": "Basic abc"}).status_code == 401
    body = client.get("/api/v1/processes").get_json()
    assert "error" in body


def test_processes_lists_what_the_caller_may_start(api):
    ids = {p["id"]: p for p in api.get("alice", "/processes").get_json()}
    assert ids["expense_approval"]["version"] == 1
    assert ids["expense_approval"]["name"]
    # the general manager has no manager: nobody could approve her claim as "her manager"
    assert "expense_approval" not in {p["id"] for p in api.get("judy", "/processes").get_json()}


# ------------------------------------------------------- the happy path
def test_alice_dave_heidi_story(api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    assert inst["status"] == "running" and inst["started_by"] == "alice"
    assert inst["data"]["amount"] == 1200 and inst["data"]["category"] == "travel"
    task = api.open_task(inst, "manager_approval")
    assert task["assignee"] == "dave" and task["lane"] == "Manager" and task["status"] == "open"
    assert task["created_at"].endswith("+00:00")

    # dave's inbox has it, the north manager's has not
    assert [t["id"] for t in api.get("dave", "/tasks").get_json()] == [task["id"]]
    assert api.get("erin", "/tasks").get_json() == []
    detail = api.get("dave", f"/tasks/{task['id']}").get_json()
    assert detail["form"]["properties"]["decision"]["enum"] == ["approve", "return", "reject"]
    assert detail["data"]["description"] == CLAIM["description"]

    result = api.complete("dave", task["id"], {"decision": "approve", "comment": "属实"})
    finance = api.open_task(result["instance"], "finance_approval")
    assert result["tasks"] == result["instance"]["tasks"]
    assert finance["assignee"] == "heidi"

    result = api.complete("heidi", finance["id"], APPROVE)
    inst = result["instance"]
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved" and result["tasks"] == []
    seen = api.get("alice", f"/instances/{inst['id']}").get_json()
    actions = [(h["actor"], h["action"], h["task"]) for h in seen["history"]]
    assert ("dave", "approved", "manager_approval") in actions
    assert ("heidi", "approved", "finance_approval") in actions
    assert actions[0] == ("alice", "started", None)
    comment = next(h for h in seen["history"] if h["action"] == "approved" and h["actor"] == "dave")
    assert comment["detail"]["comment"] == "属实"
    # the approved claim consumed the east/travel budget of November
    with engine.db.read() as s:
        assert float(s.scalar(select(func.sum(BudgetEntry.amount)))) == 1200.0


def test_start_without_data_leaves_the_draft_with_the_submitter(api):
    inst = api.start("alice", "expense_approval")
    draft = api.open_task(inst, "submit_claim")
    assert draft["assignee"] == "alice"
    result = api.complete("alice", draft["id"], CLAIM)
    assert api.open_task(result["instance"], "manager_approval")["assignee"] == "dave"


# ----------------------------------------------------------- routing
def walk(api, inst):
    """Approve every step; return the task names in order and the final instance."""
    names = []
    while inst["status"] == "running":
        (task,) = inst["tasks"]
        names.append(task["name"])
        inst = api.complete(task["assignee"], task["id"], APPROVE)["instance"]
    return names, inst


@pytest.fixture
def big_marketing_budget(engine):
    from engine.models import Budget, Region
    with engine.db.write() as s:
        east = s.scalar(select(Region).where(Region.code == "east"))
        s.add(Budget(region_id=east.id, category="marketing", period="2026-11", amount=100000))


@pytest.mark.parametrize("amount, route", [
    (20000, ["manager_approval", "finance_approval"]),
    (20000.01, ["manager_approval", "director_approval", "finance_approval"]),
])
def test_sales_director_above_20000(api, big_marketing_budget, amount, route):
    inst = api.start("alice", "expense_approval", dict(CLAIM, category="marketing", amount=amount))
    assert walk(api, inst)[0] == route


@pytest.mark.parametrize("amount, route", [
    (10000, ["manager_approval", "finance_approval"]),
    (10000.5, ["manager_approval", "gm_approval", "finance_approval"]),
    (25000, ["manager_approval", "director_approval", "gm_approval", "finance_approval"]),
])
def test_general_manager_special_approval_beyond_budget(api, amount, route):
    inst = api.start("bob", "expense_approval", dict(CLAIM, amount=amount))
    names, inst = walk(api, inst)
    assert names == route and inst["data"]["outcome"] == "approved"
    assert inst["data"]["budget_remaining"] == 10000


def test_approved_claims_consume_the_budget(api):
    def run(amount, category="travel", day="2026-11-10"):
        inst = api.start("alice", "expense_approval", dict(CLAIM, amount=amount, category=category, incurred_on=day))
        return walk(api, inst)[0]
    assert run(6000) == ["manager_approval", "finance_approval"]
    # 6,000 of 10,000 spent: 5,000 more is over what is left
    assert run(5000) == ["manager_approval", "gm_approval", "finance_approval"]
    # another category and another month are untouched
    assert run(5000, category="entertainment") == ["manager_approval", "finance_approval"]
    assert run(5000, day="2026-12-01") == ["manager_approval", "finance_approval"]


def test_org_chart_routing_manager_chain_and_no_self_approval(api):
    # dave's own claim goes to his manager frank; above 20,000 the director is frank again:
    # the same person is not asked twice in a row, so his first approval stands
    inst = api.start("dave", "expense_approval", dict(CLAIM, amount=25000))
    task = api.open_task(inst, "manager_approval")
    assert task["assignee"] == "frank"
    inst = api.complete("frank", task["id"], APPROVE)["instance"]
    assert api.open_task(inst, "gm_approval")["assignee"] == "judy"
    history = api.get("dave", f"/instances/{inst['id']}").get_json()["history"]
    assert any(h["action"] == "auto_approved" and h["task"] == "director_approval" and h["actor"] == "frank"
               for h in history)
    # carol (north) goes to erin, never to dave
    inst = api.start("carol", "expense_approval", CLAIM)
    assert api.open_task(inst, "manager_approval")["assignee"] == "erin"


def test_director_never_approves_his_own_claim(api):
    inst = api.start("frank", "expense_approval", dict(CLAIM, amount=25000))
    task = api.open_task(inst, "manager_approval")
    assert task["assignee"] == "judy"
    inst = api.complete("judy", task["id"], APPROVE)["instance"]
    # director step: frank is the submitter, so it goes up to judy, who just approved: auto-approved;
    # special approval by judy again: auto-approved; then finance
    task = api.open_task(inst, "finance_approval")
    assert task["assignee"] == "heidi"
    history = api.get("frank", f"/instances/{inst['id']}").get_json()["history"]
    assert all(h["actor"] != "frank" for h in history if h["action"] in ("approved", "auto_approved"))


# ------------------------------------------------------ return / reject
def test_return_and_revise_then_approve(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": {"decision": "return"}})
    assert r.status_code == 422 and "comment" in r.get_json()["errors"]
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": {"decision": "return", "comment": "  "}})
    assert r.status_code == 422 and "comment" in r.get_json()["errors"]
    inst = api.complete("dave", task["id"], {"decision": "return", "comment": "请补充发票"})["instance"]
    revise = api.open_task(inst, "revise_claim")
    assert revise["assignee"] == "alice"
    form = api.get("alice", f"/tasks/{revise['id']}").get_json()
    assert set(form["form"]["required"]) == {"category", "amount", "incurred_on", "description", "invoices"}
    assert form["values"]["amount"] == 1200  # the revise form starts from the submitted claim
    assert form["values"]["invoices"] == inst["data"]["invoices"]  # and keeps its invoices
    r = api.post("alice", f"/tasks/{revise['id']}/complete", json={"data": {"amount": 1100}})
    assert r.status_code == 422 and set(r.get_json()["errors"]) == {"category", "incurred_on", "description", "invoices"}
    inst = api.complete("alice", revise["id"], dict(CLAIM, amount=1100, description="附发票"))["instance"]
    task = api.open_task(inst, "manager_approval")
    assert task["assignee"] == "dave"
    inst = api.complete("dave", task["id"], APPROVE)["instance"]
    inst = api.complete("heidi", api.open_task(inst, "finance_approval")["id"], APPROVE)["instance"]
    assert inst["data"]["outcome"] == "approved" and inst["data"]["amount"] == 1100


def test_reject_needs_a_comment_and_ends_rejected(api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": {"decision": "reject"}})
    assert r.status_code == 422 and r.get_json()["errors"]["comment"]
    inst = api.complete("dave", task["id"], {"decision": "reject", "comment": "非业务支出"})["instance"]
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "rejected" and inst["tasks"] == []
    with engine.db.read() as s:
        assert s.scalar(select(func.count()).select_from(BudgetEntry)) == 0


def test_rework_loop_is_bounded(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    for _ in range(10):
        task = api.open_task(inst, "manager_approval")
        inst = api.complete("dave", task["id"], {"decision": "return", "comment": "again"})["instance"]
        inst = api.complete("alice", api.open_task(inst, "revise_claim")["id"], CLAIM)["instance"]
    task = api.open_task(inst, "manager_approval")
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": {"decision": "return", "comment": "11th"}})
    assert r.status_code == 422 and "returned 10 times" in r.get_json()["errors"]["decision"]
    # the task is untouched and can still be decided
    assert api.complete("dave", task["id"], APPROVE)["instance"]["status"] == "running"


# ------------------------------------------------------------ 422 per field
@pytest.mark.parametrize("field, value", [
    ("category", "food"), ("category", None), ("amount", 0), ("amount", -5), ("amount", "12"),
    ("incurred_on", "2026-13-01"), ("incurred_on", "yesterday"), ("description", ""), ("description", 7),
])
def test_invalid_start_data_is_422_per_field_and_creates_nothing(api, engine, field, value):
    before = counts(engine, ProcessInstance, HumanTask, HistoryEvent)
    data = dict(CLAIM, invoices=[api.invoice("alice")], **{field: value})
    r = api.post("alice", "/processes/expense_approval/instances", json={"data": data})
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert list(body["errors"]) == [field] and body["error"]
    assert counts(engine, ProcessInstance, HumanTask, HistoryEvent) == before


def test_missing_and_unknown_fields(api, engine):
    before = counts(engine, ProcessInstance, HumanTask, HistoryEvent)
    r = api.post("alice", "/processes/expense_approval/instances", json={"data": {"amount": 5}})
    assert r.status_code == 422
    assert set(r.get_json()["errors"]) == {"category", "incurred_on", "description", "invoices"}
    r = api.post("alice", "/processes/expense_approval/instances",
                 json={"data": dict(CLAIM, is_admin=True, invoices=[api.invoice("alice")])})
    assert r.status_code == 422 and r.get_json()["errors"] == {"is_admin": "unknown field"}
    r = api.post("alice", "/processes/expense_approval/instances", json={"data": [1, 2]})
    assert r.status_code == 422
    r = api.post("alice", "/processes/expense_approval/instances", data="{oops", content_type="application/json")
    assert r.status_code == 422
    assert counts(engine, ProcessInstance, HumanTask, HistoryEvent) == before


def test_unknown_process_and_forbidden_start(api):
    assert api.post("alice", "/processes/nope/instances", json={}).status_code == 404
    assert api.post("admin", "/processes/expense_approval/instances", json={"data": CLAIM}).status_code == 403


# ------------------------------------------------------------ 403 / 404 / 409
def test_errors_on_tasks(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    assert api.post("alice", f"/tasks/{task['id']}/complete", json={"data": APPROVE}).status_code == 403
    assert api.post("erin", f"/tasks/{task['id']}/complete", json={"data": APPROVE}).status_code == 403
    assert api.post("dave", "/tasks/00000000-0000-0000-0000-000000000000/complete", json={"data": APPROVE}).status_code == 404
    assert api.post("dave", "/tasks/not-a-task/complete", json={"data": APPROVE}).status_code == 404
    assert api.get("dave", "/tasks/not-a-task").status_code == 404
    assert api.get("carol", f"/tasks/{task['id']}").status_code == 404
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": {"decision": "maybe"}})
    assert r.status_code == 422 and "decision" in r.get_json()["errors"]
    api.complete("dave", task["id"], APPROVE)
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": APPROVE})
    assert r.status_code == 409 and r.get_json()["error"]


def test_instance_visibility(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    path = f"/instances/{inst['id']}"
    assert api.get("alice", path).status_code == 200
    assert api.get("dave", path).status_code == 200  # her manager
    assert api.get("frank", path).status_code == 200  # his manager, up the chain
    for outsider in ("bob", "carol", "erin", "grace"):
        assert api.get(outsider, path).status_code == 404, outsider
    assert api.get("alice", "/instances/999999").status_code == 404
    assert api.get("alice", "/instances/abc").status_code == 404
    assert [i["id"] for i in api.get("bob", "/instances").get_json()] == []
    mine = api.get("alice", "/instances?process_id=expense_approval&status=running").get_json()
    assert [i["id"] for i in mine] == [inst["id"]]
    assert api.get("alice", "/instances?status=completed").get_json() == []
    assert api.get("alice", "/instances?status=bogus").status_code == 400
    # finance sees it once finance reviews it
    inst = api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)["instance"]
    assert api.get("heidi", path).status_code == 200


def test_task_list_filters(api):
    a = api.start("alice", "expense_approval", CLAIM)
    b = api.start("bob", "expense_approval", CLAIM)
    assert len(api.get("dave", "/tasks").get_json()) == 2
    only = api.get("dave", f"/tasks?instance_id={b['id']}").get_json()
    assert [t["instance_id"] for t in only] == [b["id"]]
    assert api.get("dave", "/tasks?process_id=contract_review").get_json() == []
    assert len(api.get("dave", "/tasks?process_id=expense_approval").get_json()) == 2
    assert a["id"] != b["id"]


# ---------------------------------------------------------------- withdraw
def test_withdraw(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    path = f"/instances/{inst['id']}/withdraw"
    assert api.post("dave", path).status_code == 403
    assert api.post("bob", path).status_code == 404
    r = api.post("alice", path)
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "cancelled" and body["data"]["outcome"] == "withdrawn" and body["tasks"] == []
    assert api.get("dave", "/tasks").get_json() == []
    assert api.post("alice", path).status_code == 409
    task_id = inst["tasks"][0]["id"]
    assert api.post("dave", f"/tasks/{task_id}/complete", json={"data": APPROVE}).status_code == 409
    assert api.post("alice", "/instances/424242/withdraw").status_code == 404


# -------------------------------------------------------- delegate / claim
def test_delegate(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "nobody"})
    assert r.status_code == 422 and "to" in r.get_json()["errors"]
    r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "alice"})
    assert r.status_code == 422  # nobody approves their own claim
    assert api.post("erin", f"/tasks/{task['id']}/delegate", json={"to": "erin"}).status_code == 403
    # separation of duties: not to the submitter's peer, another region's rep, or an administrator
    for who, why in (("bob", "holds no role"), ("carol", "holds no role"), ("admin", "administrators")):
        r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": who})
        assert r.status_code == 422 and why in r.get_json()["errors"]["to"], who
    r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "frank", "comment": "你熟悉这个客户"})
    assert r.status_code == 200 and r.get_json()["assignee"] == "frank"
    assert api.get("dave", "/tasks").get_json() == []
    assert [t["id"] for t in api.get("frank", "/tasks").get_json()] == [task["id"]]
    assert api.post("dave", f"/tasks/{task['id']}/complete", json={"data": APPROVE}).status_code == 403
    history = api.get("alice", f"/instances/{inst['id']}").get_json()["history"]
    event = next(h for h in history if h["action"] == "delegated")
    assert event["actor"] == "dave" and event["detail"]["to"] == "frank" and event["detail"]["comment"] == "你熟悉这个客户"
    assert api.complete("frank", task["id"], APPROVE)["instance"]["tasks"][0]["name"] == "finance_approval"


@pytest.fixture
def second_finance(engine):
    with engine.db.write() as s:
        user = User(username="hank", display_name="Hank 韩会计", password_hash=hash_password("salesflow-demo"),
                    manager_id=s.scalar(select(User.id).where(User.username == "judy")), active=True)
        user.roles = [UserRole(role="finance")]
        s.add(user)
    return "hank"


def test_claim_a_role_task(api, second_finance):
    inst = api.start("alice", "expense_approval", CLAIM)
    inst = api.complete("dave", api.open_task(inst, "manager_approval")["id"], APPROVE)["instance"]
    task = api.open_task(inst, "finance_approval")
    assert task["assignee"] is None  # two finance people: claimable by either
    assert [t["id"] for t in api.get("heidi", "/tasks").get_json()] == [task["id"]]
    assert [t["id"] for t in api.get("hank", "/tasks").get_json()] == [task["id"]]
    assert api.post("dave", f"/tasks/{task['id']}/claim").status_code == 403
    r = api.post("heidi", f"/tasks/{task['id']}/claim")
    assert r.status_code == 200 and r.get_json()["assignee"] == "heidi"
    assert api.post("heidi", f"/tasks/{task['id']}/claim").status_code == 200  # idempotent for the holder
    assert api.post("hank", f"/tasks/{task['id']}/claim").status_code == 409
    assert api.get("hank", "/tasks").get_json() == []
    assert api.post("hank", f"/tasks/{task['id']}/complete", json={"data": APPROVE}).status_code == 403
    assert api.complete("heidi", task["id"], APPROVE)["instance"]["data"]["outcome"] == "approved"
    assert api.post("hank", f"/tasks/{task['id']}/claim").status_code == 409


# ---------------------------------------------------------------- the race
def test_racing_completions_exactly_one_wins(app, api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    task = api.open_task(inst, "manager_approval")
    token = api.token("dave")
    barrier = threading.Barrier(2)
    results = []

    def racer(decision):
        client = app.test_client()
        barrier.wait()
        r = client.post(f"/api/v1/tasks/{task['id']}/complete", headers={"Authorization": f"Bearer {token}"},
                        json={"data": {"decision": decision, "comment": decision}})
        results.append((decision, r.status_code))

    threads = [threading.Thread(target=racer, args=(d,)) for d in ("approve", "reject")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(code for _, code in results)
    assert codes == [200, 409], results
    winner = next(d for d, code in results if code == 200)
    final = api.get("alice", f"/instances/{inst['id']}").get_json()
    decided = [h for h in final["history"] if h["task"] == "manager_approval" and h["action"] in ("approved", "rejected")]
    assert len(decided) == 1
    if winner == "approve":
        assert api.open_task(final, "finance_approval")
    else:
        assert final["data"]["outcome"] == "rejected"


# ---------------------------------------------------------------- diagram
def test_diagram_svg_highlights_open_tasks(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    r = api.get("alice", f"/instances/{inst['id']}/diagram.svg")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    from lxml import etree
    svg = etree.fromstring(r.data)
    active = svg.xpath("//*[@data-element-id='manager_approval']")[0]
    assert "active" in active.get("class")
    assert "active" not in svg.xpath("//*[@data-element-id='finance_approval']")[0].get("class")
    assert api.get("carol", f"/instances/{inst['id']}/diagram.svg").status_code == 404


def test_inbox_paging(api):
    ids = [api.start("alice", "expense_approval", CLAIM)["tasks"][0]["id"] for _ in range(3)]
    r = api.get("dave", "/tasks?limit=2")
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "3"
    page1 = [t["id"] for t in r.get_json()]
    page2 = [t["id"] for t in api.get("dave", "/tasks?limit=2&offset=2").get_json()]
    assert page1 + page2 == ids  # oldest first when nothing is due
    assert api.get("dave", "/tasks?limit=0").status_code == 422
    assert api.get("dave", "/tasks?limit=x").status_code == 422


def test_a_deactivated_user_token_is_refused(api, engine):
    token = api.token("bob")
    with engine.db.write() as s:
        s.scalar(select(User).where(User.username == "bob")).active = False
    r = api.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "inactive" in r.get_json()["error"]
    assert api.client.post("/api/v1/auth/token", json={"username": "bob", "password": "salesflow-demo"}).status_code == 401
