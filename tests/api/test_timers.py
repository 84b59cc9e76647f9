"""Timers: fired by `salesflow timers run --at`, exactly once, each in its own transaction;
a user and a timer racing on one task, and several workers racing on many timers."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from engine.models import HistoryEvent, Timer, User

MAJOR = {"customer": "华东重工 East Heavy Industry", "amount": 600000, "payment_terms": "standard",
         "customer_has_credit_record": True, "summary": "三年供货框架协议"}
SCORES = {"sales_achievement": 80, "new_customers": 80, "collection_rate": 80, "lead_conversion": 80,
          "customer_satisfaction": 80, "compliance": 80, "teamwork": 80, "learning": 80}


def iso(value: datetime) -> str:
    return value.isoformat()


def test_legal_review_overdue_notifies_the_director_once(api, cli):
    inst = api.start("alice", "contract_review", MAJOR)
    legal = next(t for t in api.get("grace", "/tasks").get_json() if t["instance_id"] == inst["id"])
    assert legal["due_at"] is not None and not legal["overdue"]
    due = datetime.fromisoformat(legal["due_at"])

    out = cli("timers", "run", "--at", iso(due - timedelta(minutes=1)))
    assert "no timers due" in out
    out = cli("timers", "run", "--at", iso(due))
    assert f"#{inst['id']}" in out and "fired" in out
    assert "no timers due" in cli("timers", "run", "--at", iso(due + timedelta(days=30)))  # never twice

    history = api.get("alice", f"/instances/{inst['id']}").get_json()["history"]
    assert [h["action"] for h in history].count("timer_fired") == 1
    notified = [h for h in history if h["action"] == "notified"]
    assert len(notified) == 1 and notified[0]["detail"]["to"] == ["frank"]
    # escalation, not auto-approval: legal's task is still open and still grace's to decide
    legal_now = api.get("grace", f"/tasks/{legal['id']}").get_json()
    assert legal_now["status"] == "open" and legal_now["can_act"]
    assert api.get("frank", f"/instances/{inst['id']}").status_code == 200  # the director may now look at it
    api.complete("grace", legal["id"], {"decision": "approve", "comment": "条款合规"})


def test_whom_a_timer_notifies_may_then_open_the_instance(api, engine, cli):
    """The director is told about an overdue legal review and becomes a participant: here frank is
    not above the rep (dave reports to judy), so only being notified lets him open the instance."""
    with engine.db.write() as s:
        s.scalar(select(User).where(User.username == "dave")).manager_id = \
            s.scalar(select(User.id).where(User.username == "judy"))
    inst = api.start("alice", "contract_review", MAJOR)
    assert api.get("frank", f"/instances/{inst['id']}").status_code == 404
    legal = next(t for t in api.get("grace", "/tasks").get_json() if t["instance_id"] == inst["id"])
    assert f"#{inst['id']}" in cli("timers", "run", "--at", legal["due_at"])
    r = api.get("frank", f"/instances/{inst['id']}")
    assert r.status_code == 200
    assert [h["detail"]["to"] for h in r.get_json()["history"] if h["action"] == "notified"] == [["frank"]]
    assert inst["id"] in [i["id"] for i in api.get("frank", "/instances").get_json()]


def appraisal_at_decision(engine):
    """An appraisal of alice that waits for her accept-or-appeal decision; returns (instance id, task)."""
    inst = engine.start("performance_appraisal", "ivan", {"employee": "alice", "period": "2026-10", "cycle": "monthly",
                                                         "period_end": "2026-10-31"})
    steps = [("alice", {"achievements": "签约 3 家新客户", "evidence": "合同编号 C-101, C-102, C-103"}),
             ("dave", {"scores": SCORES, "report": "表现稳定"}),
             ("dave", {"talk_minutes": 45, "improvement_plan": "提升回款率"})]
    for user, data in steps:
        (task,) = engine.tasks(user, instance_id=inst["id"])
        engine.complete(task["id"], user, data)
    (decision,) = engine.tasks("alice", instance_id=inst["id"])
    assert decision["name"] == "employee_decision" and decision["due_at"]
    return inst["id"], decision


def test_a_due_timer_wins_over_a_late_user(engine):
    """The worker has not run yet, but the deadline has passed: the user's command fires the timer first."""
    instance_id, decision = appraisal_at_decision(engine)
    late = datetime.fromisoformat(decision["due_at"]) + timedelta(minutes=5)
    from engine.errors import Conflict
    with pytest.raises(Conflict) as err:
        engine.complete(decision["id"], "alice", {"decision": "appeal", "reason": "不同意"}, at=late)
    assert "deadline" in err.value.message
    inst = engine.instance(instance_id, "alice")
    fired = [h for h in inst["history"] if h["action"] == "timer_fired" and h["task"] == "acceptance_deadline"]
    assert inst["status"] == "completed" and len(fired) == 1
    assert engine.fire_due_timers(late + timedelta(days=1)) == []  # already fired: never twice


@pytest.mark.parametrize("repeat", range(3))
def test_user_and_timer_racing_one_wins_cleanly(engine, repeat):
    instance_id, decision = appraisal_at_decision(engine)
    due = datetime.fromisoformat(decision["due_at"])
    barrier = threading.Barrier(2)
    outcome = {}

    def user():
        barrier.wait()
        try:
            engine.complete(decision["id"], "alice", {"decision": "appeal", "reason": "评分偏低"},
                            at=due - timedelta(seconds=1))
            outcome["user"] = "won"
        except Exception as exc:  # noqa: BLE001 - the loser must get a conflict
            outcome["user"] = type(exc).__name__

    def worker():
        barrier.wait()
        outcome["timer"] = engine.fire_due_timers(due + timedelta(seconds=1))

    threads = [threading.Thread(target=user), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    inst = engine.instance(instance_id, "ivan")
    fired = [h for h in inst["history"] if h["action"] == "timer_fired" and h["task"] == "acceptance_deadline"]
    if outcome["user"] == "won":
        assert outcome["timer"] == [] and fired == []
        assert inst["status"] == "running" and inst["tasks"][0]["name"] == "hr_appeal_review"
    else:
        assert outcome["user"] == "Conflict"
        assert len(outcome["timer"]) == 1 and len(fired) == 1
        assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"


def test_two_workers_fire_each_timer_exactly_once(engine):
    ids = [engine.start("contract_review", rep, dict(MAJOR, customer=f"客户{i}"))["id"]
           for i, rep in enumerate(["alice", "bob", "carol", "alice", "bob", "carol"])]
    with engine.db.read() as s:
        latest = s.scalar(select(func.max(Timer.due_at)).where(Timer.status == "waiting"))
    at = latest + timedelta(minutes=1)
    results, barrier = [], threading.Barrier(3)

    def work():
        barrier.wait()
        results.append(engine.fire_due_timers(at))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fired = [item for batch in results for item in batch]
    assert sorted(item["instance_id"] for item in fired) == sorted(ids)
    with engine.db.read() as s:
        per_instance = dict(s.execute(select(HistoryEvent.instance_id, func.count())
                                      .where(HistoryEvent.action == "timer_fired")
                                      .group_by(HistoryEvent.instance_id)).all())
        assert s.scalar(select(func.count()).select_from(Timer).where(Timer.status == "waiting")) == 0
    assert per_instance == {i: 1 for i in ids}
