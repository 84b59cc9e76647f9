"""contract_review: general and major contracts, every reviewer decision, the legal deadline."""
from __future__ import annotations

from datetime import datetime

import pytest

from engine.errors import Forbidden, ValidationFailed
from tests.conftest import at

T0 = "2025-03-03T10:00"  # a Monday
GENERAL = {"customer": "上海远景贸易有限公司", "amount": 120000, "payment_terms": "standard",
           "customer_has_credit_record": True, "summary": "年度供货合同，月结30天"}


DEFAULT_AT = at("2025-03-03T12:00")


def complete(engine, task_id, user, data, at=None):
    """engine.complete on the test's clock (the real clock is past every deadline used here)."""
    return engine.complete(task_id, user, data, at=at or DEFAULT_AT)


def contract(**changes):
    return {**GENERAL, **changes}


def open_tasks(engine, instance_id, user="admin"):
    return {t["name"]: t for t in engine.instance(instance_id, user)["tasks"]}


def history(engine, instance_id, action=None):
    events = engine.instance(instance_id, "admin")["history"]
    return [e for e in events if action is None or e["action"] == action]


def approve(comment="同意"):
    return {"decision": "approve", "comment": comment}


def start(engine, data=None, user="alice", when=T0):
    inst = engine.start("contract_review", user, data or GENERAL, at=at(when))
    return inst["id"], {t["name"]: t for t in inst["tasks"]}


# ---------------------------------------------------------------- general contracts

def test_general_contract_is_approved_by_the_reps_manager_alone(engine):
    iid, tasks = start(engine)
    assert set(tasks) == {"manager_review_task"}
    assert tasks["manager_review_task"]["assignee"] == "dave"
    inst = engine.instance(iid, "alice")
    assert inst["data"]["major"] is False and "review_result" not in inst["data"]
    submitted = [e for e in inst["history"] if e["action"] == "completed"]
    assert submitted[0]["task"] == "submit_contract" and submitted[0]["actor"] == "alice"

    result = complete(engine, tasks["manager_review_task"]["id"], "dave", approve(), at=at("2025-03-03T15:00"))
    inst = result["instance"]
    assert inst["status"] == "completed"
    assert inst["data"]["outcome"] == "approved"
    assert inst["data"]["review_result"] == "approved"
    assert inst["data"]["manager_review"]["by"] == "dave"
    assert result["tasks"] == []
    assert [e["actor"] for e in history(engine, iid, "approved")] == ["dave"]


def test_general_contract_returned_revised_then_approved(engine):
    iid, tasks = start(engine)
    complete(engine, tasks["manager_review_task"]["id"], "dave",
                    {"decision": "return", "comment": "请补充交货条款"}, at=at("2025-03-03T11:00"))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"revise_contract"}
    assert tasks["revise_contract"]["assignee"] == "alice"
    # the revise task shows the submission's fields, pre-filled
    view = engine.task(tasks["revise_contract"]["id"], "alice")
    assert view["values"]["customer"] == GENERAL["customer"]
    assert set(view["form"]["properties"]) == set(GENERAL)

    complete(engine, tasks["revise_contract"]["id"], "alice", contract(summary="年度供货合同，月结30天，含交货条款"),
                    at=at("2025-03-03T12:00"))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"manager_review_task"} and tasks["manager_review_task"]["assignee"] == "dave"
    inst = complete(engine, tasks["manager_review_task"]["id"], "dave", approve(), at=at("2025-03-03T13:00"))["instance"]
    assert inst["data"]["outcome"] == "approved"
    assert inst["data"]["summary"].endswith("含交货条款")
    assert [e["action"] for e in history(engine, iid) if e["task"] == "manager_review_task"
            and e["action"] in ("approved", "returned")] == ["returned", "approved"]


def test_reject_needs_a_comment_and_ends_rejected(engine):
    iid, tasks = start(engine)
    task_id = tasks["manager_review_task"]["id"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", {"decision": "reject"})
    assert "comment" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", {"decision": "reject", "comment": "   "})
    assert "comment" in exc.value.errors
    assert engine.instance(iid, "alice")["status"] == "running"

    inst = complete(engine, task_id, "dave", {"decision": "reject", "comment": "客户资信不足"})["instance"]
    assert inst["status"] == "completed"
    assert inst["data"]["outcome"] == "rejected"
    assert inst["data"]["review_result"] == "rejected"
    assert history(engine, iid, "rejected")[0]["detail"]["comment"] == "客户资信不足"


def test_only_sales_reps_start_contract_review(engine):
    with pytest.raises(Forbidden):
        engine.start("contract_review", "dave", GENERAL)
    with pytest.raises(ValidationFailed) as exc:
        engine.start("contract_review", "alice", contract(amount=0))
    assert "amount" in exc.value.errors


# ---------------------------------------------------------------- major contracts

@pytest.mark.parametrize("changes, reason", [
    ({"amount": 500000}, "amount"),
    ({"payment_terms": "non_standard"}, "payment_terms"),
    ({"customer_has_credit_record": False}, "no_credit_record"),
])
def test_major_contract_legal_and_manager_in_parallel_then_director(engine, changes, reason):
    iid, tasks = start(engine, contract(**changes))
    assert set(tasks) == {"manager_review_task", "legal_review_task"}  # both open at once
    assert tasks["legal_review_task"]["assignee"] == "grace"
    assert tasks["manager_review_task"]["assignee"] == "dave"
    data = engine.instance(iid, "alice")["data"]
    assert data["major"] is True and data["major_reason"] == reason

    complete(engine, tasks["legal_review_task"]["id"], "grace", approve("条款合规"), at=at("2025-03-03T11:00"))
    assert set(open_tasks(engine, iid)) == {"manager_review_task"}  # the join waits for the manager
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve(), at=at("2025-03-03T12:00"))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"director_review_task"} and tasks["director_review_task"]["assignee"] == "frank"

    inst = complete(engine, tasks["director_review_task"]["id"], "frank", approve(), at=at("2025-03-03T13:00"))["instance"]
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    assert inst["data"]["review_result"] == "approved"
    assert {e["actor"] for e in history(engine, iid, "approved")} == {"grace", "dave", "frank"}
    assert inst["data"]["legal_review"]["by"] == "grace" and inst["data"]["manager_review"]["by"] == "dave"


def test_major_one_reviewer_returns_the_other_still_decides_then_review_restarts(engine):
    iid, tasks = start(engine, contract(amount=800000))
    complete(engine, tasks["legal_review_task"]["id"], "grace", {"decision": "return", "comment": "违约责任不明确"},
                    at=at("2025-03-03T11:00"))
    # the manager's branch is not left dangling: it stays open and must be decided
    assert set(open_tasks(engine, iid)) == {"manager_review_task"}
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve(), at=at("2025-03-03T12:00"))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"revise_contract"} and tasks["revise_contract"]["assignee"] == "alice"

    complete(engine, tasks["revise_contract"]["id"], "alice", contract(amount=800000, summary="明确违约责任"),
                    at=at("2025-03-03T14:00"))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"manager_review_task", "legal_review_task"}  # review starts over, in parallel again
    complete(engine, tasks["manager_review_task"]["id"], "dave", {"decision": "reject", "comment": "价格过低"},
                    at=at("2025-03-03T15:00"))
    assert set(open_tasks(engine, iid)) == {"legal_review_task"}
    inst = complete(engine, tasks["legal_review_task"]["id"], "grace", approve(), at=at("2025-03-03T16:00"))["instance"]
    # any reject wins over approvals
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "rejected"
    assert inst["data"]["review_result"] == "rejected"
    assert history(engine, iid, "returned")[0]["actor"] == "grace"


def test_major_both_return_goes_to_revision_once(engine):
    iid, tasks = start(engine, contract(payment_terms="non_standard"))
    complete(engine, tasks["legal_review_task"]["id"], "grace", {"decision": "return", "comment": "a"})
    complete(engine, tasks["manager_review_task"]["id"], "dave", {"decision": "return", "comment": "b"})
    tasks = engine.instance(iid, "alice")["tasks"]
    assert [t["name"] for t in tasks] == ["revise_contract"]


def test_director_returns_and_revised_contract_becomes_general(engine):
    iid, tasks = start(engine, contract(amount=600000))
    complete(engine, tasks["legal_review_task"]["id"], "grace", approve())
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve())
    director = open_tasks(engine, iid)["director_review_task"]
    complete(engine, director["id"], "frank", {"decision": "return", "comment": "金额拆分为两期"})
    revise = open_tasks(engine, iid)["revise_contract"]
    complete(engine, revise["id"], "alice", contract(amount=300000))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"manager_review_task"}  # general now: no legal, no director
    inst = complete(engine, tasks["manager_review_task"]["id"], "dave", approve())["instance"]
    assert inst["data"]["outcome"] == "approved" and inst["data"]["major"] is False


def test_director_rejects(engine):
    iid, tasks = start(engine, contract(customer_has_credit_record=False))
    complete(engine, tasks["legal_review_task"]["id"], "grace", approve())
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve())
    director = open_tasks(engine, iid)["director_review_task"]
    inst = complete(engine, director["id"], "frank", {"decision": "reject", "comment": "无信用记录，风险过高"})["instance"]
    assert inst["data"]["outcome"] == "rejected" and inst["status"] == "completed"


def test_returns_are_bounded_by_max_returns(engine):
    iid, tasks = start(engine)
    for _ in range(10):
        complete(engine, open_tasks(engine, iid)["manager_review_task"]["id"], "dave", {"decision": "return", "comment": "再改"})
        complete(engine, open_tasks(engine, iid)["revise_contract"]["id"], "alice", GENERAL)
    task_id = open_tasks(engine, iid)["manager_review_task"]["id"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", {"decision": "return", "comment": "再改"})
    assert "decision" in exc.value.errors
    assert complete(engine, task_id, "dave", approve())["instance"]["data"]["outcome"] == "approved"


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


def test_legal_timer_is_cancelled_when_legal_decides_in_time(engine):
    iid, tasks = start(engine, contract(amount=900000))
    complete(engine, tasks["legal_review_task"]["id"], "grace", approve(), at=at("2025-03-04T10:00"))
    assert engine.fire_due_timers(at=at("2025-03-20T10:00")) == []
    assert not history(engine, iid, "timer_fired")


@pytest.mark.parametrize("first_in_round_1", ["legal_review_task", "manager_review_task"])
@pytest.mark.parametrize("first_in_round_2", ["legal_review_task", "manager_review_task"])
@pytest.mark.parametrize("manager_round_2", ["approve", "reject"])
def test_only_the_current_rounds_decisions_count_whatever_the_order(engine, first_in_round_1, first_in_round_2,
                                                                    manager_round_2):
    """SpiffWorkflow's parallel join merges every branch's copy of the data; the model clears the previous round's
    decisions before each split, so a stale 'return' from round 1 never decides round 2."""
    reviewers = {"legal_review_task": "grace", "manager_review_task": "dave"}
    iid, tasks = start(engine, contract(amount=700000))
    round_1 = {"legal_review_task": {"decision": "return", "comment": "第一轮退回"},
               "manager_review_task": {"decision": "approve", "comment": "第一轮同意"}}
    order = [first_in_round_1, *(n for n in reviewers if n != first_in_round_1)]
    for name in order:
        complete(engine, tasks[name]["id"], reviewers[name], round_1[name])
    complete(engine, open_tasks(engine, iid)["revise_contract"]["id"], "alice", contract(amount=700000))

    tasks = open_tasks(engine, iid)
    round_2 = {"legal_review_task": {"decision": "approve"},
               "manager_review_task": {"decision": manager_round_2, "comment": "第二轮"}}
    order = [first_in_round_2, *(n for n in reviewers if n != first_in_round_2)]
    for name in order:
        complete(engine, tasks[name]["id"], reviewers[name], round_2[name])
    inst = engine.instance(iid, "alice")
    assert inst["data"]["legal_review"]["decision"] == "approve"
    assert inst["data"]["manager_review"]["decision"] == manager_round_2
    if manager_round_2 == "approve":
        assert [t["name"] for t in inst["tasks"]] == ["director_review_task"]
    else:
        assert inst["status"] == "completed" and inst["data"]["outcome"] == "rejected"


def test_a_major_round_after_a_general_round_waits_for_legal(engine):
    """Each round is a fresh call of contract_review_round: no token left by an earlier round's join lets the
    manager's approval pass the join while legal has not decided."""
    iid, tasks = start(engine)  # general
    complete(engine, tasks["manager_review_task"]["id"], "dave", {"decision": "return", "comment": "金额有误"})
    complete(engine, open_tasks(engine, iid)["revise_contract"]["id"], "alice", contract(amount=650000))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"manager_review_task", "legal_review_task"}
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve())
    assert set(open_tasks(engine, iid)) == {"legal_review_task"}  # still waiting for legal
    complete(engine, tasks["legal_review_task"]["id"], "grace", approve())
    assert set(open_tasks(engine, iid)) == {"director_review_task"}


def test_a_new_decision_does_not_keep_the_previous_comment(engine):
    iid, tasks = start(engine, contract(amount=600000))
    complete(engine, tasks["legal_review_task"]["id"], "grace", approve())
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve())
    complete(engine, open_tasks(engine, iid)["director_review_task"]["id"], "frank",
             {"decision": "return", "comment": "请补充担保条款"})
    complete(engine, open_tasks(engine, iid)["revise_contract"]["id"], "alice", contract(amount=600000))
    tasks = open_tasks(engine, iid)
    complete(engine, tasks["legal_review_task"]["id"], "grace", approve())
    complete(engine, tasks["manager_review_task"]["id"], "dave", approve())
    inst = complete(engine, open_tasks(engine, iid)["director_review_task"]["id"], "frank",
                    {"decision": "approve"})["instance"]
    assert inst["data"]["outcome"] == "approved"
    assert inst["data"]["director_review"] == {"decision": "approve", "by": "frank"}


def test_withdrawn_during_review_cancels_the_round_and_its_timer(engine):
    iid, tasks = start(engine, contract(amount=900000))
    with pytest.raises(Forbidden):
        engine.withdraw(iid, "dave")
    inst = engine.withdraw(iid, "alice")
    assert inst["status"] == "cancelled" and inst["data"]["outcome"] == "withdrawn"
    assert inst["tasks"] == []
    assert engine.fire_due_timers(at=at("2025-04-01T10:00")) == []
    assert engine.tasks("grace") == [] and engine.tasks("dave") == []
