"""lead_to_aftersales at engine level: what the API cannot show. The return visit's timer as the `timers` table
holds it while the lead waits (no task is open, so the API has no due_at to report), on fixed dates with time
travel: 30 calendar days, not working days, even across the National Day holiday.

Every branch (lost unqualified, lost when the customer declines, lost after a rejected contract, proposal
revisions and their bound, renegotiation, contract review as a call activity with its major route, delivery and
payment by operations, the return visit fired by `salesflow timers run --at`, won; who may start, assign and see
a lead) is walked through the JSON API in tests/api/test_lead_api.py."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from engine.models import HumanTask, Timer
from tests.helpers import at

LEAD = {"company": "苏州华达机械有限公司", "contact": "王经理 13800000000", "source": "trade_show"}
CONTRACT = {"customer": "苏州华达机械有限公司", "amount": 260000, "payment_terms": "standard",
            "customer_has_credit_record": True, "summary": "自动上下料系统两套，30%预付款，验收后付清"}
STEPS = [
    ("initial_contact", "alice", {"basic_needs": "产线自动化改造", "purchase_intent": "high", "qualified": True}),
    ("needs_analysis", "alice", {"business_situation": "年产值2亿", "pain_points": "人工成本高",
                                 "decision_process": "总经理拍板", "requirements": "自动上下料",
                                 "confirmed_with_customer": True}),
    ("proposal", "alice", {"products": "自动上下料系统 x2", "quoted_amount": 260000, "delivery_plan": "签约后15天交付",
                           "after_sales_terms": "一年质保"}),
    ("customer_feedback", "alice", {"decision": "approve"}),
    ("negotiation", "alice", CONTRACT),
    ("submit_contract", "alice", CONTRACT),
    ("manager_review_task", "dave", {"decision": "approve"}),
    ("sign_contract", "alice", {"contract_no": "HT-2025-0901", "signed_on": "2025-09-02"}),
    # delivered the Saturday before the National Day holiday (1-8 October 2025)
    ("deliver_order", "oscar", {"order_no": "SO-2025-0920", "delivery_date": "2025-09-20"}),
    ("record_payment", "oscar", {"collected_amount": 260000, "collected_on": "2025-09-22", "fully_collected": True}),
]


def timers(engine, iid):
    with engine.db.read() as s:
        return [(t.name, t.status, t.due_at, t.fired_at) for t in
                s.scalars(select(Timer).where(Timer.instance_id == iid).order_by(Timer.due_at))]


def test_return_visit_timer_waits_thirty_calendar_days_after_delivery(engine):
    iid = engine.start("lead_to_aftersales", "alice", LEAD, at=at("2025-09-01T09:00"))["id"]
    for name, user, data in STEPS:
        [task] = engine.tasks(user, instance_id=iid)
        assert task["name"] == name
        engine.complete(task["id"], user, data, at=at("2025-09-22T10:00"))

    inst = engine.instance(iid, "admin")
    assert inst["status"] == "running" and inst["tasks"] == []
    # 20 September + 30 calendar days: the holiday does not push it back (working days would end in November)
    due = at("2025-10-20T23:59:59")
    assert timers(engine, iid) == [("wait_return_visit", "waiting", due, None)]

    assert engine.fire_due_timers(at=at("2025-10-20T23:00")) == []
    fired = engine.fire_due_timers(at=at("2025-10-21T00:00"))
    assert [(f["instance_id"], f["name"]) for f in fired] == [(iid, "wait_return_visit")]
    assert datetime.fromisoformat(fired[0]["due_at"]) == due
    [(name, status, due_at, fired_at)] = timers(engine, iid)
    assert (name, status, due_at) == ("wait_return_visit", "fired", due)
    assert fired_at > due
    assert engine.fire_due_timers(at=at("2025-12-31T00:00")) == []  # fires once

    with engine.db.read() as s:
        row = s.scalar(select(HumanTask).where(HumanTask.instance_id == iid, HumanTask.status == "open"))
        assert (row.name, row.assignee.username, row.due_at) == ("return_visit", "alice", None)
