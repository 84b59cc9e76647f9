"""lead_to_aftersales through the JSON API: the eight steps, the ways a lead is lost, contract review as a call
activity, delivery and payment by operations, and the return visit 30 days after delivery, its timer fired with
`salesflow timers run --at`. The API runs on the real clock: the order is delivered today (company time zone)."""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from tests.helpers import by_name, events

TZ = ZoneInfo("Asia/Shanghai")
LEAD = {"company": "苏州华达机械有限公司", "contact": "王经理 13800000000", "source": "trade_show",
        "notes": "展会上索取了报价单"}
QUALIFIED = {"basic_needs": "产线自动化改造", "purchase_intent": "high", "budget": 300000, "qualified": True}
NEEDS = {"business_situation": "年产值2亿，订单增长", "pain_points": "人工成本高", "decision_process": "总经理拍板，采购执行",
         "requirements": "两条产线的自动上下料", "confirmed_with_customer": True}
PROPOSAL = {"products": "自动上下料系统 x2", "quoted_amount": 280000, "delivery_plan": "签约后60天交付",
            "after_sales_terms": "一年质保，7x24小时响应"}
CONTRACT = {"customer": "苏州华达机械有限公司", "amount": 260000, "payment_terms": "standard",
            "customer_has_credit_record": True, "summary": "自动上下料系统两套，30%预付款，验收后付清"}


def step(api, inst, name, user, data):
    """The only open task is `name`, assigned to `user`, who completes it; returns the instance."""
    tasks = by_name(inst)
    assert set(tasks) == {name}, f"expected only {name} open, got {sorted(tasks)}"
    assert tasks[name]["assignee"] == user
    return api.complete(user, tasks[name]["id"], data)["instance"]


def post_complete(api, user, task, data):
    return api.post(user, f"/tasks/{task['id']}/complete", json={"data": data})


def start(api, user="alice", **changes):
    return api.start(user, "lead_to_aftersales", {**LEAD, **changes})


def to_negotiation(api, inst, rep="alice"):
    inst = step(api, inst, "initial_contact", rep, QUALIFIED)
    inst = step(api, inst, "needs_analysis", rep, NEEDS)
    inst = step(api, inst, "proposal", rep, PROPOSAL)
    return step(api, inst, "customer_feedback", rep, {"decision": "approve", "comment": "客户认可"})


def to_contract_review(api, inst, contract=CONTRACT, rep="alice"):
    inst = step(api, inst, "negotiation", rep, contract)
    return step(api, inst, "submit_contract", rep, contract)


# ---------------------------------------------------------------- lost

def test_unqualified_lead_is_lost_with_a_reason(api):
    assert "lead_to_aftersales" in {p["id"] for p in api.get("alice", "/processes").get_json()}
    inst = start(api)
    assert inst["process_id"] == "lead_to_aftersales" and inst["status"] == "running"
    assert (inst["started_by"], inst["subject"]) == ("alice", "alice")
    assert inst["data"]["company"] == LEAD["company"] and inst["data"]["source"] == "trade_show"
    task = api.open_task(inst, "initial_contact")
    assert len(inst["tasks"]) == 1 and (task["assignee"], task["lane"]) == ("alice", "Rep")
    unqualified = {"basic_needs": "随便问问", "purchase_intent": "none", "qualified": False}
    r = post_complete(api, "alice", task, unqualified)
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["lost_reason"]
    inst = api.complete("alice", task["id"], {**unqualified, "lost_reason": "无预算，无采购计划"})["instance"]
    assert inst["status"] == "completed" and inst["tasks"] == []
    assert inst["data"]["outcome"] == "lost" and inst["data"]["lost_reason"] == "无预算，无采购计划"
    assert events(inst, "instance_completed")[0]["detail"]["outcome"] == "lost"


def test_customer_declining_the_proposal_loses_the_lead(api):
    inst = step(api, start(api), "initial_contact", "alice", QUALIFIED)
    inst = step(api, inst, "needs_analysis", "alice", NEEDS)
    inst = step(api, inst, "proposal", "alice", PROPOSAL)
    task = api.open_task(inst, "customer_feedback")
    for data in ({"decision": "reject"}, {"decision": "reject", "comment": " "}):
        r = post_complete(api, "alice", task, data)
        assert r.status_code == 422 and list(r.get_json()["errors"]) == ["comment"]
    inst = api.complete("alice", task["id"], {"decision": "reject", "comment": "客户选择了竞争对手"})["instance"]
    assert inst["status"] == "completed"
    assert inst["data"]["outcome"] == "lost" and inst["data"]["lost_reason"] == "客户选择了竞争对手"


def test_needs_must_be_confirmed_with_the_customer(api):
    inst = step(api, start(api), "initial_contact", "alice", QUALIFIED)
    task = api.open_task(inst, "needs_analysis")
    r = post_complete(api, "alice", task, {**NEEDS, "confirmed_with_customer": False})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["confirmed_with_customer"]
    r = post_complete(api, "alice", task, {k: v for k, v in NEEDS.items() if k != "pain_points"})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["pain_points"]
    assert set(by_name(api.instance("alice", inst["id"]))) == {"needs_analysis"}


def test_rejected_contract_renegotiated_then_given_up(api):
    inst = to_negotiation(api, start(api))
    inst = to_contract_review(api, inst)
    inst = step(api, inst, "manager_review_task", "dave", {"decision": "reject", "comment": "毛利太低"})
    assert inst["status"] == "running" and inst["data"]["review_result"] == "rejected"
    assert "outcome" not in inst["data"]  # the called review's end is not the lead's
    inst = step(api, inst, "contract_rejected", "alice", {"decision": "return", "comment": "与客户重新谈价格"})
    # renegotiation: back to negotiation, then a fresh contract review
    inst = to_contract_review(api, inst, {**CONTRACT, "amount": 290000})
    inst = step(api, inst, "manager_review_task", "dave", {"decision": "reject", "comment": "仍不可接受"})
    task = api.open_task(inst, "contract_rejected")
    r = post_complete(api, "alice", task, {"decision": "reject"})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["comment"]
    inst = step(api, inst, "contract_rejected", "alice", {"decision": "reject", "comment": "客户不接受我方底价"})
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "lost"
    assert inst["data"]["lost_reason"] == "客户不接受我方底价"
    assert [h["actor"] for h in events(inst, "rejected") if h["task"] == "manager_review_task"] == ["dave", "dave"]


def test_proposal_revisions_are_bounded(api):
    inst = step(api, start(api), "initial_contact", "alice", QUALIFIED)
    inst = step(api, inst, "needs_analysis", "alice", NEEDS)
    for _ in range(20):  # max_returns of lead_to_aftersales
        inst = step(api, inst, "proposal", "alice", PROPOSAL)
        inst = step(api, inst, "customer_feedback", "alice", {"decision": "return", "comment": "再改"})
    inst = step(api, inst, "proposal", "alice", PROPOSAL)
    task = api.open_task(inst, "customer_feedback")
    r = post_complete(api, "alice", task, {"decision": "return", "comment": "再改"})
    assert r.status_code == 422 and "returned 20 times" in r.get_json()["errors"]["decision"]
    inst = api.complete("alice", task["id"], {"decision": "reject", "comment": "客户迟迟不定，放弃"})["instance"]
    assert inst["data"]["outcome"] == "lost" and inst["data"]["lost_reason"] == "客户迟迟不定，放弃"


def test_the_rep_withdraws_a_lead(api):
    inst = step(api, start(api), "initial_contact", "alice", QUALIFIED)
    assert api.post("dave", f"/instances/{inst['id']}/withdraw").status_code == 403
    r = api.post("alice", f"/instances/{inst['id']}/withdraw")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "cancelled" and body["data"]["outcome"] == "withdrawn" and body["tasks"] == []
    assert api.get("alice", "/tasks").get_json() == []


# ---------------------------------------------------------------- won

def test_won_through_revision_contract_review_delivery_and_return_visit(api, cli):
    inst = step(api, start(api), "initial_contact", "alice", QUALIFIED)
    inst = step(api, inst, "needs_analysis", "alice", NEEDS)
    inst = step(api, inst, "proposal", "alice", PROPOSAL)
    inst = step(api, inst, "customer_feedback", "alice", {"decision": "return", "comment": "希望降价并缩短交期"})
    # the customer asked for a revision: back to the proposal, pre-filled with the previous one
    proposal = api.open_task(inst, "proposal")
    assert api.get("alice", f"/tasks/{proposal['id']}").get_json()["values"]["quoted_amount"] == 280000
    inst = step(api, inst, "proposal", "alice", {**PROPOSAL, "quoted_amount": 260000, "delivery_plan": "签约后45天交付"})
    inst = step(api, inst, "customer_feedback", "alice", {"decision": "approve", "comment": "客户确认"})
    inst = step(api, inst, "negotiation", "alice", {**CONTRACT, "negotiation_notes": "预付款比例谈定30%"})

    # contract review runs as a call activity: its submit task comes to the rep, pre-filled from the negotiation
    submit = api.open_task(inst, "submit_contract")
    assert submit["assignee"] == "alice" and submit["process_id"] == "lead_to_aftersales"
    assert submit["instance_id"] == inst["id"]
    assert api.get("alice", f"/tasks/{submit['id']}").get_json()["values"] == CONTRACT
    inst = step(api, inst, "submit_contract", "alice", CONTRACT)
    review = api.open_task(inst, "manager_review_task")
    assert review["lane"] == "Manager" and [t["id"] for t in api.get("dave", "/tasks").get_json()] == [review["id"]]
    inst = step(api, inst, "manager_review_task", "dave", {"decision": "approve", "comment": "同意签约"})
    assert inst["status"] == "running" and "outcome" not in inst["data"]  # the called process's end is not the lead's
    assert inst["data"]["review_result"] == "approved" and inst["data"]["major"] is False
    # contract review inside the lead is not a separate instance
    assert api.get("alice", "/instances?process_id=contract_review").get_json() == []

    signed_on = datetime.fromisoformat(api.open_task(inst, "sign_contract")["created_at"]).astimezone(TZ).date()
    inst = step(api, inst, "sign_contract", "alice", {"contract_no": "HT-0318", "signed_on": signed_on.isoformat()})
    # order execution belongs to operations
    deliver = api.open_task(inst, "deliver_order")
    assert (deliver["assignee"], deliver["lane"]) == ("oscar", "Operations")
    assert [t["id"] for t in api.get("oscar", "/tasks").get_json()] == [deliver["id"]]
    assert api.get("alice", "/tasks").get_json() == []
    assert post_complete(api, "alice", deliver, {"order_no": "SO-0101", "delivery_date": "2025-04-01"}).status_code == 403
    delivered_on = datetime.fromisoformat(deliver["created_at"]).astimezone(TZ).date()
    inst = step(api, inst, "deliver_order", "oscar", {"order_no": "SO-0101", "delivery_date": delivered_on.isoformat()})
    r = post_complete(api, "oscar", api.open_task(inst, "record_payment"), {"collected_amount": -1,
                                                                            "collected_on": delivered_on.isoformat(),
                                                                            "fully_collected": True})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["collected_amount"]
    inst = step(api, inst, "record_payment", "oscar", {"collected_amount": 260000,
                                                       "collected_on": delivered_on.isoformat(), "fully_collected": True})

    # waiting for the return visit: 30 calendar days after delivery, at the end of that day
    assert inst["tasks"] == [] and inst["status"] == "running"
    due = datetime.combine(delivered_on + timedelta(days=30), time(23, 59, 59), tzinfo=TZ)
    assert "no timers due" in cli("timers", "run", "--at", (due - timedelta(minutes=1)).isoformat())
    assert api.get("alice", "/tasks").get_json() == []
    out = cli("timers", "run", "--at", due.isoformat())
    assert f"fired lead_to_aftersales #{inst['id']} wait_return_visit" in out
    assert f"due {due.strftime('%Y-%m-%d %H:%M')} CST" in out  # in the company's time zone, as the UI shows it
    assert "no timers due" in cli("timers", "run", "--at", (due + timedelta(days=60)).isoformat())  # never twice

    inst = api.instance("alice", inst["id"])
    fired = events(inst, "timer_fired")
    assert [h["task"] for h in fired] == ["wait_return_visit"]
    assert datetime.fromisoformat(fired[0]["detail"]["due_at"]) == due
    visit = api.open_task(inst, "return_visit")
    assert (visit["assignee"], visit["lane"]) == ("alice", "Rep")
    assert [t["id"] for t in api.get("alice", "/tasks").get_json()] == [visit["id"]]
    visited = (delivered_on + timedelta(days=31)).isoformat()
    r = post_complete(api, "alice", visit, {"visited_on": visited, "satisfaction": 6})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["satisfaction"]
    r = post_complete(api, "alice", visit, {"visited_on": visited, "satisfaction": 3, "complaints": "噪音偏大"})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["complaint_handling"]
    inst = step(api, inst, "return_visit", "alice", {"visited_on": visited, "satisfaction": 4,
                                                     "complaints": "噪音偏大", "complaint_handling": "已更换减震垫"})
    assert inst["status"] == "completed" and inst["tasks"] == []
    assert inst["data"]["outcome"] == "won"
    assert inst["data"]["satisfaction"] == 4 and inst["data"]["complaint_handling"] == "已更换减震垫"
    assert inst["data"]["delivery_date"] == delivered_on.isoformat() and inst["data"]["contract_no"] == "HT-0318"
    assert inst["data"]["quoted_amount"] == 260000 and inst["data"]["amount"] == 260000
    actions = [(h["action"], h["task"]) for h in inst["history"]]
    assert ("returned", "customer_feedback") in actions and ("approved", "manager_review_task") in actions
    assert ("timer_fired", "wait_return_visit") in actions
    assert events(inst, "instance_completed")[0]["detail"]["outcome"] == "won"
    # operations took part: oscar sees the lead; the other rep does not
    assert api.get("oscar", f"/instances/{inst['id']}").status_code == 200
    assert api.get("bob", f"/instances/{inst['id']}").status_code == 404


@pytest.mark.parametrize("rep, manager", [("alice", "dave"), ("carol", "erin")])
def test_major_contract_inside_a_lead_goes_to_legal_and_the_director(api, rep, manager):
    inst = to_negotiation(api, start(api, user=rep), rep=rep)
    inst = to_contract_review(api, inst, {**CONTRACT, "amount": 750000}, rep=rep)
    tasks = by_name(inst)
    assert {n: t["assignee"] for n, t in tasks.items()} == {"manager_review_task": manager, "legal_review_task": "grace"}
    assert inst["data"]["major"] is True and inst["data"]["major_reason"] == "amount"
    inst = api.complete("grace", tasks["legal_review_task"]["id"], {"decision": "approve"})["instance"]
    assert set(by_name(inst)) == {"manager_review_task"}
    inst = api.complete(manager, tasks["manager_review_task"]["id"], {"decision": "approve"})["instance"]
    inst = step(api, inst, "director_review_task", "frank", {"decision": "approve"})
    assert set(by_name(inst)) == {"sign_contract"} and by_name(inst)["sign_contract"]["assignee"] == rep
    assert inst["data"]["review_result"] == "approved"


def test_renegotiated_contract_can_be_approved(api):
    inst = to_negotiation(api, start(api))
    inst = to_contract_review(api, inst)
    inst = step(api, inst, "manager_review_task", "dave", {"decision": "reject", "comment": "毛利太低"})
    inst = step(api, inst, "contract_rejected", "alice", {"decision": "return", "comment": "重新谈"})
    negotiation = api.open_task(inst, "negotiation")
    assert api.get("alice", f"/tasks/{negotiation['id']}").get_json()["values"]["amount"] == 260000
    inst = to_contract_review(api, inst, {**CONTRACT, "amount": 300000})
    inst = step(api, inst, "manager_review_task", "dave", {"decision": "approve"})
    assert set(by_name(inst)) == {"sign_contract"}
    assert inst["data"]["review_result"] == "approved" and inst["data"]["amount"] == 300000


def test_a_contract_returned_inside_the_lead_is_revised_by_the_rep(api):
    inst = to_negotiation(api, start(api))
    inst = to_contract_review(api, inst)
    inst = step(api, inst, "manager_review_task", "dave", {"decision": "return", "comment": "补充交付条款"})
    inst = step(api, inst, "revise_contract", "alice", {**CONTRACT, "summary": "补充交付条款"})
    inst = step(api, inst, "manager_review_task", "dave", {"decision": "approve"})
    assert set(by_name(inst)) == {"sign_contract"} and inst["data"]["summary"] == "补充交付条款"


# ---------------------------------------------------------------- who starts, who sees

def test_region_manager_assigns_a_lead_to_a_rep(api):
    inst = start(api, user="dave", rep="alice")
    assert inst["started_by"] == "dave" and inst["subject"] == "alice"
    task = api.open_task(inst, "initial_contact")
    assert len(inst["tasks"]) == 1 and task["assignee"] == "alice"
    assert api.instance("alice", inst["id"])["id"] == inst["id"]
    assert [t["instance_id"] for t in api.get("alice", "/tasks").get_json()] == [inst["id"]]
    assert api.get("dave", "/tasks").get_json() == []
    for outsider in ("bob", "erin", "carol"):
        assert api.get(outsider, f"/instances/{inst['id']}").status_code == 404, outsider
    assert post_complete(api, "dave", task, QUALIFIED).status_code == 403
    assert api.complete("alice", task["id"], QUALIFIED)["instance"]["tasks"][0]["name"] == "needs_analysis"


def test_region_manager_cannot_assign_outside_the_team(api):
    r = api.post("dave", "/processes/lead_to_aftersales/instances", json={"data": {**LEAD, "rep": "carol"}})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["rep"]
    r = api.post("alice", "/processes/lead_to_aftersales/instances", json={"data": {**LEAD, "rep": "bob"}})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["rep"]  # a rep has no team
    r = api.post("dave", "/processes/lead_to_aftersales/instances", json={"data": {**LEAD, "rep": "nobody"}})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["rep"]
    assert api.get("dave", "/instances?process_id=lead_to_aftersales").get_json() == []
    assert api.get("carol", "/tasks").get_json() == []


def test_lead_start_data_is_validated_and_staff_cannot_start_leads(api):
    r = api.post("alice", "/processes/lead_to_aftersales/instances", json={"data": {**LEAD, "source": "newspaper"}})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["source"]
    r = api.post("alice", "/processes/lead_to_aftersales/instances", json={"data": {"company": "X", "contact": "Y"}})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["source"]
    for user in ("heidi", "oscar", "grace"):
        assert "lead_to_aftersales" not in {p["id"] for p in api.get(user, "/processes").get_json()}
        r = api.post(user, "/processes/lead_to_aftersales/instances", json={"data": LEAD})
        assert r.status_code == 403, user
    assert api.get("alice", "/instances?process_id=lead_to_aftersales").get_json() == []
