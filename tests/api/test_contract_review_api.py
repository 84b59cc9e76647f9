"""contract_review through the JSON API: general and major contracts, every reviewer decision (approve, return,
reject), the parallel legal/manager review, the org chart, and the legal deadline's timer fired by
`salesflow timers run --at`. (The overdue notification itself: test_timers.py; the eight reviewer orderings
and the holiday-calendar due date: tests/engine/test_contract_review.py.)"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from engine.models import User, UserRole
from engine.org import hash_password
from tests.helpers import by_name, events

GENERAL = {"customer": "上海远景贸易有限公司", "amount": 120000, "payment_terms": "standard",
           "customer_has_credit_record": True, "summary": "年度供货合同，月结30天"}


def contract(**changes):
    return {**GENERAL, **changes}


def approve(comment="同意"):
    return {"decision": "approve", "comment": comment}


def decide(api, user, task, data):
    """Complete `task` as `user`; returns the instance."""
    return api.complete(user, task["id"], data)["instance"]


def start(api, data=None, rep="alice"):
    return api.start(rep, "contract_review", data or GENERAL)


# ---------------------------------------------------------------- general contracts

@pytest.mark.parametrize("rep, manager, other_manager", [("alice", "dave", "erin"), ("carol", "erin", "dave")])
def test_general_contract_is_approved_by_the_reps_manager_alone(api, rep, manager, other_manager):
    inst = start(api, rep=rep)
    assert inst["process_id"] == "contract_review" and inst["status"] == "running" and inst["started_by"] == rep
    assert inst["data"]["major"] is False and "review_result" not in inst["data"]
    assert inst["data"]["customer"] == GENERAL["customer"] and inst["data"]["amount"] == 120000
    task = api.open_task(inst, "manager_review_task")
    assert len(inst["tasks"]) == 1
    assert (task["assignee"], task["lane"], task["status"], task["due_at"]) == (manager, "Manager", "open", None)
    assert task["instance_id"] == inst["id"] and task["process_id"] == "contract_review"
    submitted = events(inst, "completed")
    assert submitted[0]["task"] == "submit_contract" and submitted[0]["actor"] == rep

    # the manager's inbox has it, the other region's manager's has not
    assert [t["id"] for t in api.get(manager, "/tasks?process_id=contract_review").get_json()] == [task["id"]]
    assert api.get(other_manager, "/tasks").get_json() == []
    detail = api.get(manager, f"/tasks/{task['id']}").get_json()
    assert detail["form"]["properties"]["decision"]["enum"] == ["approve", "return", "reject"]
    assert detail["data"]["summary"] == GENERAL["summary"] and detail["can_act"] is True

    result = api.complete(manager, task["id"], approve())
    inst = result["instance"]
    assert result["tasks"] == [] and inst["tasks"] == []
    assert inst["status"] == "completed"
    assert inst["data"]["outcome"] == "approved" and inst["data"]["review_result"] == "approved"
    assert inst["data"]["manager_review"]["by"] == manager
    seen = api.instance(rep, inst["id"])
    assert [h["actor"] for h in events(seen, "approved")] == [manager]
    assert events(seen, "instance_completed")[0]["detail"]["outcome"] == "approved"
    assert seen["history"][0]["action"] == "started" and seen["history"][0]["actor"] == rep


def test_general_contract_returned_revised_then_approved(api):
    inst = start(api)
    task = api.open_task(inst, "manager_review_task")
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": {"decision": "return"}})
    assert r.status_code == 422 and "comment" in r.get_json()["errors"]
    inst = decide(api, "dave", task, {"decision": "return", "comment": "请补充交货条款"})
    assert inst["status"] == "running" and set(by_name(inst)) == {"revise_contract"}
    revise = api.open_task(inst, "revise_contract")
    assert revise["assignee"] == "alice"
    assert [t["id"] for t in api.get("alice", "/tasks").get_json()] == [revise["id"]]
    # the revise task shows the submission's fields, pre-filled
    view = api.get("alice", f"/tasks/{revise['id']}").get_json()
    assert view["values"]["customer"] == GENERAL["customer"] and view["values"]["amount"] == 120000
    assert set(view["form"]["properties"]) == set(GENERAL)
    r = api.post("alice", f"/tasks/{revise['id']}/complete", json={"data": {"summary": "只改摘要"}})
    assert r.status_code == 422
    assert set(r.get_json()["errors"]) == {"customer", "amount", "payment_terms", "customer_has_credit_record"}

    inst = decide(api, "alice", revise, contract(summary="年度供货合同，月结30天，含交货条款"))
    task = api.open_task(inst, "manager_review_task")
    assert set(by_name(inst)) == {"manager_review_task"} and task["assignee"] == "dave"
    inst = decide(api, "dave", task, approve())
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    assert inst["data"]["summary"].endswith("含交货条款")
    assert [h["action"] for h in inst["history"] if h["task"] == "manager_review_task"
            and h["action"] in ("approved", "returned")] == ["returned", "approved"]
    assert events(inst, "returned")[0]["detail"]["comment"] == "请补充交货条款"


def test_reject_needs_a_comment_and_ends_rejected(api):
    inst = start(api)
    task = api.open_task(inst, "manager_review_task")
    for data in ({"decision": "reject"}, {"decision": "reject", "comment": "   "}):
        r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": data})
        assert r.status_code == 422 and "comment" in r.get_json()["errors"], data
    assert api.instance("alice", inst["id"])["status"] == "running"

    inst = decide(api, "dave", task, {"decision": "reject", "comment": "客户资信不足"})
    assert inst["status"] == "completed" and inst["tasks"] == []
    assert inst["data"]["outcome"] == "rejected" and inst["data"]["review_result"] == "rejected"
    assert events(inst, "rejected")[0]["detail"]["comment"] == "客户资信不足"
    # decided: a second answer is a conflict
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": approve()})
    assert r.status_code == 409 and r.get_json()["error"]


def test_only_sales_reps_start_contract_review_with_valid_data(api):
    assert "contract_review" in {p["id"] for p in api.get("alice", "/processes").get_json()}
    for user in ("dave", "grace", "heidi"):
        assert "contract_review" not in {p["id"] for p in api.get(user, "/processes").get_json()}
        r = api.post(user, "/processes/contract_review/instances", json={"data": GENERAL})
        assert r.status_code == 403 and r.get_json()["error"], user
    for field, value in [("amount", 0), ("amount", -1), ("payment_terms", "cash"),
                         ("customer_has_credit_record", "yes"), ("customer", "")]:
        r = api.post("alice", "/processes/contract_review/instances", json={"data": contract(**{field: value})})
        assert r.status_code == 422 and list(r.get_json()["errors"]) == [field], (field, value)
    assert api.get("alice", "/instances?process_id=contract_review").get_json() == []  # nothing was created


def test_errors_on_contract_tasks_and_visibility(api):
    inst = start(api)
    task = api.open_task(inst, "manager_review_task")
    for user in ("alice", "erin", "grace"):  # the submitter, another region's manager, legal (not a major one)
        r = api.post(user, f"/tasks/{task['id']}/complete", json={"data": approve()})
        assert r.status_code == 403, user
    assert api.post("dave", "/tasks/00000000-0000-0000-0000-000000000000/complete",
                    json={"data": approve()}).status_code == 404
    path = f"/instances/{inst['id']}"
    for user in ("alice", "dave", "frank"):
        assert api.get(user, path).status_code == 200, user
    for user in ("bob", "carol", "erin", "grace"):
        assert api.get(user, path).status_code == 404, user
    assert api.get("bob", f"/tasks/{task['id']}").status_code == 404


# ---------------------------------------------------------------- major contracts: parallel review

@pytest.mark.parametrize("changes, reason, rep, manager", [
    ({"amount": 500000}, "amount", "alice", "dave"),
    ({"payment_terms": "non_standard"}, "payment_terms", "carol", "erin"),
    ({"customer_has_credit_record": False}, "no_credit_record", "bob", "dave"),
])
def test_major_contract_legal_and_manager_in_parallel_then_director(api, changes, reason, rep, manager):
    inst = start(api, contract(**changes), rep=rep)
    tasks = by_name(inst)
    assert set(tasks) == {"manager_review_task", "legal_review_task"}  # both open at once
    legal, mgr = tasks["legal_review_task"], tasks["manager_review_task"]
    assert (legal["assignee"], legal["lane"]) == ("grace", "Legal")
    assert (mgr["assignee"], mgr["lane"]) == (manager, "Manager")
    assert legal["due_at"] is not None and mgr["due_at"] is None  # only legal has a deadline
    assert inst["data"]["major"] is True and inst["data"]["major_reason"] == reason
    assert [t["id"] for t in api.get("grace", "/tasks").get_json()] == [legal["id"]]
    assert api.get(rep, f"/instances/{inst['id']}").status_code == 200

    inst = decide(api, "grace", legal, approve("条款合规"))
    assert set(by_name(inst)) == {"manager_review_task"}  # the join waits for the manager
    inst = decide(api, manager, mgr, approve())
    director = api.open_task(inst, "director_review_task")
    assert set(by_name(inst)) == {"director_review_task"}
    assert (director["assignee"], director["lane"]) == ("frank", "Director")
    assert [t["id"] for t in api.get("frank", "/tasks").get_json()] == [director["id"]]

    inst = decide(api, "frank", director, approve())
    assert inst["status"] == "completed" and inst["tasks"] == []
    assert inst["data"]["outcome"] == "approved" and inst["data"]["review_result"] == "approved"
    assert {h["actor"] for h in events(inst, "approved")} == {"grace", manager, "frank"}
    assert inst["data"]["legal_review"]["by"] == "grace" and inst["data"]["manager_review"]["by"] == manager
    assert inst["data"]["director_review"]["by"] == "frank"


def test_major_one_reviewer_returns_the_step_ends_at_once_then_review_restarts(api):
    inst = start(api, contract(amount=800000))
    tasks = by_name(inst)
    inst = decide(api, "grace", tasks["legal_review_task"], {"decision": "return", "comment": "违约责任不明确"})
    # a return by one reviewer ends the parallel step now: the manager's review is cancelled, the rep revises
    revise = api.open_task(inst, "revise_contract")
    assert set(by_name(inst)) == {"revise_contract"} and revise["assignee"] == "alice"
    cancelled = [h for h in inst["history"] if h["action"] == "task_cancelled"]
    assert [(h["task"], h["detail"]["because"], h["detail"]["by"]) for h in cancelled] == \
        [("manager_review_task", "returned", "grace")]
    assert api.get("dave", "/tasks").get_json() == []
    r = api.post("dave", f"/tasks/{tasks['manager_review_task']['id']}/complete", json={"data": approve()})
    assert r.status_code == 409
    assert api.get("dave", f"/tasks/{tasks['manager_review_task']['id']}").get_json()["status"] == "cancelled"
    # the rep is told why, on the revise task itself
    assert api.get("alice", f"/tasks/{revise['id']}").get_json()["returned"]["comment"] == "违约责任不明确"

    inst = decide(api, "alice", revise, contract(amount=800000, summary="明确违约责任"))
    tasks = by_name(inst)
    assert set(tasks) == {"manager_review_task", "legal_review_task"}  # review starts over, in parallel again
    inst = decide(api, "dave", tasks["manager_review_task"], {"decision": "reject", "comment": "价格过低"})
    # a reject ends it too: legal's open review is cancelled, the contract is rejected
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "rejected"
    assert inst["data"]["review_result"] == "rejected"
    assert events(inst, "returned")[0]["actor"] == "grace"
    assert "director_review_task" not in {h["task"] for h in inst["history"]}
    assert api.get("grace", "/tasks").get_json() == []


def test_major_the_second_reviewer_cannot_return_a_step_already_returned(api):
    inst = start(api, contract(payment_terms="non_standard"))
    tasks = by_name(inst)
    decide(api, "grace", tasks["legal_review_task"], {"decision": "return", "comment": "a"})
    r = api.post("dave", f"/tasks/{tasks['manager_review_task']['id']}/complete",
                 json={"data": {"decision": "return", "comment": "b"}})
    assert r.status_code == 409
    inst = api.instance("alice", inst["id"])
    assert [t["name"] for t in inst["tasks"]] == ["revise_contract"]
    assert [t["name"] for t in api.get("alice", "/tasks").get_json()] == ["revise_contract"]


def test_director_returns_and_revised_contract_becomes_general(api):
    inst = start(api, contract(amount=600000))
    tasks = by_name(inst)
    decide(api, "grace", tasks["legal_review_task"], approve())
    inst = decide(api, "dave", tasks["manager_review_task"], approve())
    inst = decide(api, "frank", api.open_task(inst, "director_review_task"),
                  {"decision": "return", "comment": "金额拆分为两期"})
    inst = decide(api, "alice", api.open_task(inst, "revise_contract"), contract(amount=300000))
    assert set(by_name(inst)) == {"manager_review_task"}  # general now: no legal, no director
    inst = decide(api, "dave", api.open_task(inst, "manager_review_task"), approve())
    assert inst["data"]["outcome"] == "approved" and inst["data"]["major"] is False


def test_director_rejects(api):
    inst = start(api, contract(customer_has_credit_record=False))
    tasks = by_name(inst)
    decide(api, "grace", tasks["legal_review_task"], approve())
    inst = decide(api, "dave", tasks["manager_review_task"], approve())
    director = api.open_task(inst, "director_review_task")
    r = api.post("frank", f"/tasks/{director['id']}/complete", json={"data": {"decision": "reject"}})
    assert r.status_code == 422 and "comment" in r.get_json()["errors"]
    inst = decide(api, "frank", director, {"decision": "reject", "comment": "无信用记录，风险过高"})
    assert inst["data"]["outcome"] == "rejected" and inst["status"] == "completed"
    assert inst["data"]["review_result"] == "rejected"


def test_returns_are_bounded_by_max_returns(api):
    inst = start(api)
    for _ in range(10):
        inst = decide(api, "dave", api.open_task(inst, "manager_review_task"), {"decision": "return", "comment": "再改"})
        inst = decide(api, "alice", api.open_task(inst, "revise_contract"), GENERAL)
    task = api.open_task(inst, "manager_review_task")
    r = api.post("dave", f"/tasks/{task['id']}/complete", json={"data": {"decision": "return", "comment": "再改"}})
    assert r.status_code == 422 and "returned 10 times" in r.get_json()["errors"]["decision"]
    # the task is untouched and can still be decided
    assert decide(api, "dave", task, approve())["data"]["outcome"] == "approved"


def test_a_major_round_after_a_general_round_waits_for_legal(api):
    """Each round is a fresh call of contract_review_round: no token left by an earlier round's join lets the
    manager's approval pass the join while legal has not decided."""
    inst = start(api)  # general
    inst = decide(api, "dave", api.open_task(inst, "manager_review_task"), {"decision": "return", "comment": "金额有误"})
    inst = decide(api, "alice", api.open_task(inst, "revise_contract"), contract(amount=650000))
    tasks = by_name(inst)
    assert set(tasks) == {"manager_review_task", "legal_review_task"}
    inst = decide(api, "dave", tasks["manager_review_task"], approve())
    assert set(by_name(inst)) == {"legal_review_task"}  # still waiting for legal
    inst = decide(api, "grace", tasks["legal_review_task"], approve())
    assert set(by_name(inst)) == {"director_review_task"}


def test_a_new_decision_does_not_keep_the_previous_comment(api):
    inst = start(api, contract(amount=600000))
    tasks = by_name(inst)
    decide(api, "grace", tasks["legal_review_task"], approve())
    inst = decide(api, "dave", tasks["manager_review_task"], approve())
    inst = decide(api, "frank", api.open_task(inst, "director_review_task"),
                  {"decision": "return", "comment": "请补充担保条款"})
    inst = decide(api, "alice", api.open_task(inst, "revise_contract"), contract(amount=600000))
    tasks = by_name(inst)
    decide(api, "grace", tasks["legal_review_task"], approve())
    inst = decide(api, "dave", tasks["manager_review_task"], approve())
    inst = decide(api, "frank", api.open_task(inst, "director_review_task"), {"decision": "approve"})
    assert inst["data"]["outcome"] == "approved"
    assert inst["data"]["director_review"] == {"decision": "approve", "by": "frank"}


# ---------------------------------------------------------------- delegate / claim

def test_manager_delegates_the_review(api):
    inst = start(api)
    task = api.open_task(inst, "manager_review_task")
    r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "alice"})
    assert r.status_code == 422 and "to" in r.get_json()["errors"]  # nobody approves their own contract
    r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "erin", "comment": "我出差，请代审"})
    assert r.status_code == 200 and r.get_json()["assignee"] == "erin"
    assert api.get("dave", "/tasks").get_json() == []
    assert api.post("dave", f"/tasks/{task['id']}/complete", json={"data": approve()}).status_code == 403
    inst = decide(api, "erin", task, approve())
    assert inst["data"]["outcome"] == "approved" and inst["data"]["manager_review"]["by"] == "erin"
    delegated = events(inst, "delegated")[0]
    assert delegated["actor"] == "dave" and delegated["detail"]["to"] == "erin"


@pytest.fixture
def second_lawyer(engine):
    with engine.db.write() as s:
        user = User(username="lena", display_name="Lena 林律师", password_hash=hash_password("salesflow-demo"),
                    manager_id=s.scalar(select(User.id).where(User.username == "judy")), active=True)
        user.roles = [UserRole(role="legal")]
        s.add(user)
    return "lena"


def test_legal_review_is_claimed_when_two_lawyers_could_take_it(api, second_lawyer):
    inst = start(api, contract(amount=900000))
    legal = api.open_task(inst, "legal_review_task")
    assert legal["assignee"] is None and legal["lane"] == "Legal"
    assert [t["id"] for t in api.get("grace", "/tasks").get_json()] == [legal["id"]]
    assert [t["id"] for t in api.get("lena", "/tasks").get_json()] == [legal["id"]]
    assert api.post("dave", f"/tasks/{legal['id']}/claim").status_code == 403
    r = api.post("lena", f"/tasks/{legal['id']}/claim")
    assert r.status_code == 200 and r.get_json()["assignee"] == "lena"
    assert api.post("grace", f"/tasks/{legal['id']}/claim").status_code == 409
    assert api.post("grace", f"/tasks/{legal['id']}/complete", json={"data": approve()}).status_code == 403
    decide(api, "lena", legal, approve())
    inst = decide(api, "dave", api.open_task(api.instance("alice", inst["id"]), "manager_review_task"), approve())
    assert inst["data"]["legal_review"]["by"] == "lena"
    assert api.open_task(inst, "director_review_task")["assignee"] == "frank"


# ---------------------------------------------------------------- the legal deadline and withdrawal

def test_legal_timer_is_cancelled_when_legal_decides_in_time(api, engine, cli):
    inst = start(api, contract(amount=900000))
    legal = api.open_task(inst, "legal_review_task")
    due = datetime.fromisoformat(legal["due_at"])
    # legal is due by the end of the second working day after the contract arrived
    assert due == engine.calendar.deadline(datetime.fromisoformat(legal["created_at"]), 2)
    decide(api, "grace", legal, approve())
    assert "no timers due" in cli("timers", "run", "--at", (due + timedelta(days=30)).isoformat())
    seen = api.instance("alice", inst["id"])
    assert events(seen, "timer_fired") == [] and events(seen, "notified") == []
    assert set(by_name(seen)) == {"manager_review_task"}


def test_withdrawn_during_review_cancels_the_round_and_its_timer(api, cli):
    inst = start(api, contract(amount=900000))
    tasks = by_name(inst)
    path = f"/instances/{inst['id']}/withdraw"
    assert api.post("dave", path).status_code == 403
    assert api.post("bob", path).status_code == 404
    r = api.post("alice", path)
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "cancelled" and body["data"]["outcome"] == "withdrawn" and body["tasks"] == []
    assert api.post("alice", path).status_code == 409
    due = datetime.fromisoformat(tasks["legal_review_task"]["due_at"])
    assert "no timers due" in cli("timers", "run", "--at", (due + timedelta(days=1)).isoformat())
    assert api.get("grace", "/tasks").get_json() == [] and api.get("dave", "/tasks").get_json() == []
    r = api.post("grace", f"/tasks/{tasks['legal_review_task']['id']}/complete", json={"data": approve()})
    assert r.status_code == 409
    seen = api.instance("alice", inst["id"])
    assert events(seen, "timer_fired") == [] and events(seen, "withdrawn")[0]["actor"] == "alice"
