"""lead_to_aftersales: the eight steps, contract review as a call activity, the return-visit timer."""
from __future__ import annotations

from datetime import datetime

import pytest

from engine.errors import Forbidden, NotFound, ValidationFailed
from tests.conftest import at

DEFAULT_AT = at("2025-03-03T12:00")
LEAD = {"company": "苏州华达机械有限公司", "contact": "王经理 13800000000", "source": "trade_show",
        "notes": "展会上索取了报价单"}
QUALIFIED = {"basic_needs": "产线自动化改造", "purchase_intent": "high", "budget": 300000, "qualified": True}
NEEDS = {"business_situation": "年产值2亿，订单增长", "pain_points": "人工成本高", "decision_process": "总经理拍板，采购执行",
         "requirements": "两条产线的自动上下料", "confirmed_with_customer": True}
PROPOSAL = {"products": "自动上下料系统 x2", "quoted_amount": 280000, "delivery_plan": "签约后60天交付",
            "after_sales_terms": "一年质保，7x24小时响应"}
CONTRACT = {"customer": "苏州华达机械有限公司", "amount": 260000, "payment_terms": "standard",
            "customer_has_credit_record": True, "summary": "自动上下料系统两套，30%预付款，验收后付清"}


def complete(engine, task_id, user, data, at=None):
    """engine.complete on the test's clock."""
    return engine.complete(task_id, user, data, at=at or DEFAULT_AT)


def open_tasks(engine, iid):
    return {t["name"]: t for t in engine.instance(iid, "admin")["tasks"]}


def history(engine, iid, action=None):
    return [e for e in engine.instance(iid, "admin")["history"] if action is None or e["action"] == action]


def step(engine, iid, name, user, data, when=None):
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {name}, f"expected only {name} open, got {sorted(tasks)}"
    assert tasks[name]["assignee"] == user
    return complete(engine, tasks[name]["id"], user, data, at=at(when) if when else None)["instance"]


def start(engine, user="alice", **changes):
    return engine.start("lead_to_aftersales", user, {**LEAD, **changes}, at=DEFAULT_AT)["id"]


def to_negotiation(engine, iid, user="alice"):
    step(engine, iid, "initial_contact", user, QUALIFIED)
    step(engine, iid, "needs_analysis", user, NEEDS)
    step(engine, iid, "proposal", user, PROPOSAL)
    step(engine, iid, "customer_feedback", user, {"decision": "approve", "comment": "客户认可"})


# ---------------------------------------------------------------- lost early

def test_unqualified_lead_is_lost_with_a_reason(engine):
    iid = start(engine)
    inst = engine.instance(iid, "alice")
    assert inst["data"]["company"] == LEAD["company"] and inst["data"]["source"] == "trade_show"
    [task] = inst["tasks"]
    assert task["name"] == "initial_contact" and task["assignee"] == "alice"
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task["id"], "alice", {"basic_needs": "随便问问", "purchase_intent": "none", "qualified": False})
    assert "lost_reason" in exc.value.errors
    inst = complete(engine, task["id"], "alice", {"basic_needs": "随便问问", "purchase_intent": "none", "qualified": False,
                                                 "lost_reason": "无预算，无采购计划"})["instance"]
    assert inst["status"] == "completed"
    assert inst["data"]["outcome"] == "lost"
    assert inst["data"]["lost_reason"] == "无预算，无采购计划"


def test_customer_declining_the_proposal_loses_the_lead(engine):
    iid = start(engine)
    step(engine, iid, "initial_contact", "alice", QUALIFIED)
    step(engine, iid, "needs_analysis", "alice", NEEDS)
    step(engine, iid, "proposal", "alice", PROPOSAL)
    task = open_tasks(engine, iid)["customer_feedback"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task["id"], "alice", {"decision": "reject"})
    assert "comment" in exc.value.errors
    inst = complete(engine, task["id"], "alice", {"decision": "reject", "comment": "客户选择了竞争对手"})["instance"]
    assert inst["data"]["outcome"] == "lost" and inst["data"]["lost_reason"] == "客户选择了竞争对手"


def test_needs_must_be_confirmed_with_the_customer(engine):
    iid = start(engine)
    step(engine, iid, "initial_contact", "alice", QUALIFIED)
    task = open_tasks(engine, iid)["needs_analysis"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task["id"], "alice", {**NEEDS, "confirmed_with_customer": False})
    assert "confirmed_with_customer" in exc.value.errors


# ---------------------------------------------------------------- won

def test_won_through_revision_contract_review_delivery_and_return_visit(engine):
    iid = start(engine)
    step(engine, iid, "initial_contact", "alice", QUALIFIED)
    step(engine, iid, "needs_analysis", "alice", NEEDS)
    step(engine, iid, "proposal", "alice", PROPOSAL)
    step(engine, iid, "customer_feedback", "alice", {"decision": "return", "comment": "希望降价并缩短交期"})
    # the customer asked for a revision: back to the proposal, pre-filled with the previous one
    proposal = open_tasks(engine, iid)["proposal"]
    assert engine.task(proposal["id"], "alice")["values"]["quoted_amount"] == 280000
    step(engine, iid, "proposal", "alice", {**PROPOSAL, "quoted_amount": 260000, "delivery_plan": "签约后45天交付"})
    step(engine, iid, "customer_feedback", "alice", {"decision": "approve", "comment": "客户确认"})
    step(engine, iid, "negotiation", "alice", {**CONTRACT, "negotiation_notes": "预付款比例谈定30%"})

    # contract review runs as a call activity: its submit task comes to the rep, pre-filled from the negotiation
    submit = open_tasks(engine, iid)["submit_contract"]
    assert submit["assignee"] == "alice" and submit["process_id"] == "lead_to_aftersales"
    assert engine.task(submit["id"], "alice")["values"] == CONTRACT
    step(engine, iid, "submit_contract", "alice", CONTRACT)
    step(engine, iid, "manager_review_task", "dave", {"decision": "approve", "comment": "同意签约"})
    inst = engine.instance(iid, "alice")
    assert inst["status"] == "running" and "outcome" not in inst["data"]  # the called process's end is not the lead's
    assert inst["data"]["review_result"] == "approved" and inst["data"]["major"] is False

    step(engine, iid, "sign_contract", "alice", {"contract_no": "HT-2025-0318", "signed_on": "2025-03-18"})
    step(engine, iid, "deliver_order", "oscar", {"order_no": "SO-2025-0101", "delivery_date": "2025-04-01"},
         when="2025-04-01T17:00")
    step(engine, iid, "record_payment", "oscar", {"collected_amount": 260000, "collected_on": "2025-04-10",
                                                  "fully_collected": True}, when="2025-04-10T10:00")
    # waiting for the return visit: 30 days after delivery
    inst = engine.instance(iid, "alice")
    assert inst["tasks"] == [] and inst["status"] == "running"
    assert engine.fire_due_timers(at=at("2025-05-01T12:00")) == []
    fired = engine.fire_due_timers(at=at("2025-05-02T00:00"))
    assert [(f["instance_id"], f["name"]) for f in fired] == [(iid, "wait_return_visit")]
    assert datetime.fromisoformat(fired[0]["due_at"]) == at("2025-05-01T23:59:59")
    visit = open_tasks(engine, iid)["return_visit"]
    assert visit["assignee"] == "alice"
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, visit["id"], "alice", {"visited_on": "2025-05-06", "satisfaction": 6}, at=at("2025-05-06T10:00"))
    assert "satisfaction" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, visit["id"], "alice", {"visited_on": "2025-05-06", "satisfaction": 3, "complaints": "噪音偏大"},
                 at=at("2025-05-06T10:00"))
    assert "complaint_handling" in exc.value.errors
    inst = step(engine, iid, "return_visit", "alice", {"visited_on": "2025-05-06", "satisfaction": 4,
                                                       "complaints": "噪音偏大", "complaint_handling": "已更换减震垫"},
                when="2025-05-06T10:00")
    assert inst["status"] == "completed"
    assert inst["data"]["outcome"] == "won"
    assert inst["data"]["satisfaction"] == 4 and inst["data"]["complaint_handling"] == "已更换减震垫"
    assert inst["data"]["delivery_date"] == "2025-04-01" and inst["data"]["contract_no"] == "HT-2025-0318"
    actions = [(e["action"], e["task"]) for e in inst["history"]]
    assert ("returned", "customer_feedback") in actions and ("approved", "manager_review_task") in actions
    assert ("timer_fired", "wait_return_visit") in actions
    # operations took part: oscar sees the lead
    assert engine.instance(iid, "oscar")["id"] == iid


def test_major_contract_inside_a_lead_goes_to_legal_and_the_director(engine):
    iid = start(engine)
    to_negotiation(engine, iid)
    big = {**CONTRACT, "amount": 750000}
    step(engine, iid, "negotiation", "alice", big)
    step(engine, iid, "submit_contract", "alice", big)
    tasks = open_tasks(engine, iid)
    assert {n: t["assignee"] for n, t in tasks.items()} == {"manager_review_task": "dave", "legal_review_task": "grace"}
    complete(engine, tasks["legal_review_task"]["id"], "grace", {"decision": "approve"})
    complete(engine, tasks["manager_review_task"]["id"], "dave", {"decision": "approve"})
    step(engine, iid, "director_review_task", "frank", {"decision": "approve"})
    assert set(open_tasks(engine, iid)) == {"sign_contract"}


def test_rejected_contract_renegotiated_then_given_up(engine):
    iid = start(engine)
    to_negotiation(engine, iid)
    step(engine, iid, "negotiation", "alice", CONTRACT)
    step(engine, iid, "submit_contract", "alice", CONTRACT)
    step(engine, iid, "manager_review_task", "dave", {"decision": "reject", "comment": "毛利太低"})
    inst = engine.instance(iid, "alice")
    assert inst["status"] == "running" and inst["data"]["review_result"] == "rejected"
    step(engine, iid, "contract_rejected", "alice", {"decision": "return", "comment": "与客户重新谈价格"})
    # renegotiation: back to negotiation, then a fresh contract review
    step(engine, iid, "negotiation", "alice", {**CONTRACT, "amount": 290000})
    step(engine, iid, "submit_contract", "alice", {**CONTRACT, "amount": 290000})
    step(engine, iid, "manager_review_task", "dave", {"decision": "reject", "comment": "仍不可接受"})
    task = open_tasks(engine, iid)["contract_rejected"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task["id"], "alice", {"decision": "reject"})
    assert "comment" in exc.value.errors
    inst = step(engine, iid, "contract_rejected", "alice", {"decision": "reject", "comment": "客户不接受我方底价"})
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "lost"
    assert inst["data"]["lost_reason"] == "客户不接受我方底价"


def test_renegotiated_contract_can_be_approved(engine):
    iid = start(engine)
    to_negotiation(engine, iid)
    step(engine, iid, "negotiation", "alice", CONTRACT)
    step(engine, iid, "submit_contract", "alice", CONTRACT)
    step(engine, iid, "manager_review_task", "dave", {"decision": "reject", "comment": "毛利太低"})
    step(engine, iid, "contract_rejected", "alice", {"decision": "return", "comment": "重新谈"})
    step(engine, iid, "negotiation", "alice", {**CONTRACT, "amount": 300000})
    step(engine, iid, "submit_contract", "alice", {**CONTRACT, "amount": 300000})
    step(engine, iid, "manager_review_task", "dave", {"decision": "approve"})
    assert set(open_tasks(engine, iid)) == {"sign_contract"}
    assert engine.instance(iid, "alice")["data"]["review_result"] == "approved"


def test_proposal_revisions_are_bounded(engine):
    iid = start(engine)
    step(engine, iid, "initial_contact", "alice", QUALIFIED)
    step(engine, iid, "needs_analysis", "alice", NEEDS)
    for _ in range(20):  # max_returns of lead_to_aftersales
        step(engine, iid, "proposal", "alice", PROPOSAL)
        step(engine, iid, "customer_feedback", "alice", {"decision": "return", "comment": "再改"})
    step(engine, iid, "proposal", "alice", PROPOSAL)
    task = open_tasks(engine, iid)["customer_feedback"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task["id"], "alice", {"decision": "return", "comment": "再改"})
    assert "decision" in exc.value.errors
    inst = complete(engine, task["id"], "alice", {"decision": "reject", "comment": "客户迟迟不定，放弃"})["instance"]
    assert inst["data"]["outcome"] == "lost"


# ---------------------------------------------------------------- who starts, who sees

def test_region_manager_assigns_a_lead_to_a_rep(engine):
    iid = start(engine, user="dave", rep="alice")
    inst = engine.instance(iid, "dave")
    assert inst["started_by"] == "dave" and inst["subject"] == "alice"
    [task] = inst["tasks"]
    assert task["name"] == "initial_contact" and task["assignee"] == "alice"
    assert engine.instance(iid, "alice")["id"] == iid
    assert [t["instance_id"] for t in engine.tasks("alice")] == [iid]
    assert engine.tasks("dave") == []
    with pytest.raises(NotFound):
        engine.instance(iid, "bob")
    with pytest.raises(NotFound):
        engine.instance(iid, "erin")
    with pytest.raises(Forbidden):
        complete(engine, task["id"], "dave", QUALIFIED)


def test_region_manager_cannot_assign_outside_the_team(engine):
    with pytest.raises(ValidationFailed) as exc:
        start(engine, user="dave", rep="carol")
    assert "rep" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        start(engine, user="alice", rep="bob")  # a rep has no team
    assert "rep" in exc.value.errors
    assert engine.instances("dave", process_id="lead_to_aftersales") == []


def test_lead_start_data_is_validated_and_staff_cannot_start_leads(engine):
    with pytest.raises(ValidationFailed) as exc:
        start(engine, source="newspaper")
    assert "source" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        engine.start("lead_to_aftersales", "alice", {"company": "X", "contact": "Y"})
    assert "source" in exc.value.errors
    with pytest.raises(Forbidden):
        engine.start("lead_to_aftersales", "heidi", LEAD)
