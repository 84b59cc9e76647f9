"""contract_review at engine level: what needs time travel or fixed dates. The legal deadline over the National
Day holiday, and the eight orders in which two review rounds can be decided.

Every branch (general and major contracts, approve / return / reject, parallel review, director, org chart,
bounded returns, withdrawal, the legal timer fired by `salesflow timers run --at`) is walked through the JSON API
in tests/api/test_contract_review_api.py and tests/api/test_timers.py."""
from __future__ import annotations

from datetime import datetime

import pytest

from engine.errors import Conflict

from tests.helpers import at, history, open_tasks

T0 = "2025-03-03T10:00"  # a Monday
GENERAL = {"customer": "上海远景贸易有限公司", "amount": 120000, "payment_terms": "standard",
           "customer_has_credit_record": True, "summary": "年度供货合同，月结30天"}


DEFAULT_AT = at("2025-03-03T12:00")


def complete(engine, task_id, user, data, at=None):
    """engine.complete on the test's clock (the real clock is past every deadline used here)."""
    return engine.complete(task_id, user, data, at=at or DEFAULT_AT)


def contract(**changes):
    return {**GENERAL, **changes}


def approve(comment="同意"):
    return {"decision": "approve", "comment": comment}


def start(engine, data=None, user="alice", when=T0):
    inst = engine.start("contract_review", user, data or GENERAL, at=at(when))
    return inst["id"], {t["name"]: t for t in inst["tasks"]}


# ---------------------------------------------------------------- the legal deadline

def test_legal_review_late_escalates_to_the_director_without_approving(engine):
    # started the day before the National Day holiday (2025-10-01..08): 2 working days end on Friday 10 October
    iid, tasks = start(engine, contract(amount=900000), when="2025-09-30T10:00")
    legal = tasks["legal_review_task"]
    due = datetime.fromisoformat(legal["due_at"])
    assert due == at("2025-10-10T23:59:59")

    assert engine.fire_due_timers(at=at("2025-10-10T23:00")) == []
    fired = engine.fire_due_timers(at=at("2025-10-11T09:00"))
    assert [(f["instance_id"], f["name"]) for f in fired] == [(iid, "legal_review_overdue")]
    assert engine.fire_due_timers(at=at("2025-10-12T09:00")) == []  # fires once

    events = history(engine, iid)
    timer_fired = [e for e in events if e["action"] == "timer_fired"]
    notified = [e for e in events if e["action"] == "notified"]
    assert len(timer_fired) == 1 and timer_fired[0]["task"] == "legal_review_overdue"
    assert len(notified) == 1 and notified[0]["detail"]["to"] == ["frank"]
    assert "法务审核" in notified[0]["detail"]["message"]
    assert not [e for e in events if e["action"] in ("approved", "auto_approved")]  # escalation, never approval
    engine.instance(iid, "frank")  # the director was notified, so he can see it

    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"legal_review_task", "manager_review_task"}  # still open
    assert tasks["legal_review_task"]["id"] == legal["id"]
    complete(engine, legal["id"], "grace", approve("已审"), at=at("2025-10-11T10:00"))
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve(), at=at("2025-10-11T11:00"))
    assert set(open_tasks(engine, iid)) == {"director_review_task"}
    assert [e["actor"] for e in history(engine, iid, "approved")] == ["grace", "dave"]


# ---------------------------------------------------------------- two rounds, every order of the reviewers

@pytest.mark.parametrize("first_in_round_1", ["legal_review_task", "manager_review_task"])
@pytest.mark.parametrize("first_in_round_2", ["legal_review_task", "manager_review_task"])
@pytest.mark.parametrize("manager_round_2", ["approve", "reject"])
def test_only_the_current_rounds_decisions_count_whatever_the_order(engine, first_in_round_1, first_in_round_2,
                                                                    manager_round_2):
    """SpiffWorkflow's parallel join merges every branch's copy of the data; the model clears the previous round's
    decisions before each split, so a stale 'return' from round 1 never decides round 2. A return or reject ends
    the parallel step at once: the other reviewer's task is cancelled and is not theirs to decide any more."""
    reviewers = {"legal_review_task": "grace", "manager_review_task": "dave"}
    iid, tasks = start(engine, contract(amount=700000))
    round_1 = {"legal_review_task": {"decision": "return", "comment": "第一轮退回"},
               "manager_review_task": {"decision": "approve", "comment": "第一轮同意"}}
    order = [first_in_round_1, *(n for n in reviewers if n != first_in_round_1)]
    for name in order:
        if name in open_tasks(engine, iid):
            complete(engine, tasks[name]["id"], reviewers[name], round_1[name])
        else:  # legal returned first: the manager's review was cancelled with it
            assert first_in_round_1 == "legal_review_task"
            with pytest.raises(Conflict):
                complete(engine, tasks[name]["id"], reviewers[name], round_1[name])
    complete(engine, open_tasks(engine, iid)["revise_contract"]["id"], "alice", contract(amount=700000))

    tasks = open_tasks(engine, iid)
    round_2 = {"legal_review_task": {"decision": "approve"},
               "manager_review_task": {"decision": manager_round_2, "comment": "第二轮"}}
    order = [first_in_round_2, *(n for n in reviewers if n != first_in_round_2)]
    for name in order:
        if name in open_tasks(engine, iid):
            complete(engine, tasks[name]["id"], reviewers[name], round_2[name])
    inst = engine.instance(iid, "alice")
    legal_cancelled = manager_round_2 == "reject" and first_in_round_2 == "manager_review_task"
    assert inst["data"]["legal_review"]["decision"] == ("reject" if legal_cancelled else "approve")
    assert inst["data"]["legal_review"].get("cancelled", False) is legal_cancelled
    assert inst["data"]["manager_review"]["decision"] == manager_round_2
    if manager_round_2 == "approve":
        assert [t["name"] for t in inst["tasks"]] == ["director_review_task"]
    else:
        assert inst["status"] == "completed" and inst["data"]["outcome"] == "rejected"
