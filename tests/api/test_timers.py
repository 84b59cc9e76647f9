"""Timers: fired by `salesflow timers run --at`, exactly once, each in its own transaction;
a user and a timer racing on one task, and several workers racing on many timers."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from engine.errors import Conflict
from engine.models import HistoryEvent, Timer, User
from engine.runtime import Engine

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
    with pytest.raises(Conflict) as err:
        engine.complete(decision["id"], "alice", {"decision": "appeal", "reason": "不同意"}, at=late)
    assert "deadline" in err.value.message
    inst = engine.instance(instance_id, "alice")
    fired = [h for h in inst["history"] if h["action"] == "timer_fired" and h["task"] == "acceptance_deadline"]
    assert inst["status"] == "completed" and len(fired) == 1
    assert engine.fire_due_timers(late + timedelta(days=1)) == []  # already fired: never twice


class Paused:
    """Makes the command of one thread stop once it holds the instance (in `_load`, right after the
    lock) until the test says go: the race's order is set by the test, not by thread scheduling."""

    def __init__(self, monkeypatch, thread_name: str):
        self.name, self.holding, self.go = thread_name, threading.Event(), threading.Event()
        real_load = Engine._load

        def load(rt, cmd):
            if threading.current_thread().name == self.name:
                self.holding.set()
                assert self.go.wait(30), "never released"
            return real_load(rt, cmd)
        monkeypatch.setattr(Engine, "_load", load)


def run(name, fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    outcome = {}

    def target():
        try:
            outcome["result"] = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the loser must get a conflict
            outcome["error"] = exc
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread, outcome


def appeal(engine, decision, when):
    return engine.complete(decision["id"], "alice", {"decision": "appeal", "reason": "评分偏低"}, at=when)


def deadline_fired(engine, instance_id):
    inst = engine.instance(instance_id, "ivan")
    return inst, [h for h in inst["history"] if h["action"] == "timer_fired" and h["task"] == "acceptance_deadline"]


def waiting_for_a_lock(engine) -> bool:
    with engine.db.engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0 "
                                     "AND query LIKE '%FOR NO KEY UPDATE%'")))


def test_a_timer_holding_the_instance_wins_over_the_user(engine, monkeypatch):
    """The worker fires the deadline while alice's appeal comes in: her command waits for the instance,
    then finds her task closed by the deadline (409) and changes nothing."""
    instance_id, decision = appraisal_at_decision(engine)
    due = datetime.fromisoformat(decision["due_at"])
    paused = Paused(monkeypatch, "worker")
    worker, fired_out = run("worker", engine.fire_due_timers, due + timedelta(seconds=1))
    assert paused.holding.wait(30)
    user, user_out = run("user", appeal, engine, decision, due - timedelta(seconds=1))
    if not engine.db.is_sqlite:  # PostgreSQL shows the user's command waiting for the row lock
        deadline = datetime.now() + timedelta(seconds=30)
        while not waiting_for_a_lock(engine):
            assert datetime.now() < deadline, "the user's command never waited for the instance"
            time.sleep(0.02)
    assert "result" not in user_out  # it cannot have acted while the worker holds the instance
    paused.go.set()
    worker.join(30), user.join(30)
    assert not worker.is_alive() and not user.is_alive()
    assert isinstance(user_out.get("error"), Conflict), user_out
    assert [f["name"] for f in fired_out["result"]] == ["acceptance_deadline"]
    inst, fired = deadline_fired(engine, instance_id)
    assert len(fired) == 1 and inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    assert not [h for h in inst["history"] if h["action"] == "completed" and h["task"] == "employee_decision"]


def test_a_user_holding_the_instance_wins_over_the_timer(engine, monkeypatch):
    """alice's appeal holds the instance when the worker comes: on PostgreSQL the worker skips it at
    once (SKIP LOCKED) while she still holds it; on SQLite it waits for her. Her appeal stands and the
    deadline, cancelled with her task, never fires."""
    instance_id, decision = appraisal_at_decision(engine)
    due = datetime.fromisoformat(decision["due_at"])
    paused = Paused(monkeypatch, "user")
    user, user_out = run("user", appeal, engine, decision, due - timedelta(seconds=1))
    assert paused.holding.wait(30)
    worker, fired_out = run("worker", engine.fire_due_timers, due + timedelta(seconds=1))
    if not engine.db.is_sqlite:
        worker.join(30)
        assert fired_out == {"result": []}  # skipped while alice holds the instance
    paused.go.set()
    user.join(30), worker.join(30)
    assert not worker.is_alive() and not user.is_alive()
    assert "error" not in user_out, user_out
    assert fired_out == {"result": []}
    inst, fired = deadline_fired(engine, instance_id)
    assert fired == [] and inst["status"] == "running" and inst["tasks"][0]["name"] == "hr_appeal_review"
    later = engine.fire_due_timers(due + timedelta(days=30))  # the deadline went with her task
    assert "acceptance_deadline" not in [f["name"] for f in later]


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
