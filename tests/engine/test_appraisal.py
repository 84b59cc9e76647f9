"""performance_appraisal at engine level: what needs time travel (`at=`) and a fixed calendar. Exact due dates
in working days around the National Day holiday (1-8 October 2025, Saturday 11 October a 调休 working day),
the overdue flag, and a deadline already past when its task opens.

Every branch (start rights, self-evaluation, scores and their 422s, the talk, grades, bonus and PIP, accept,
appeal upheld and changed, the acceptance window expiring, overdue notices fired by `salesflow timers run --at`,
visibility) is walked through the JSON API in tests/api/test_appraisal_api.py."""
from __future__ import annotations

from datetime import datetime

import pytest

from engine.errors import Conflict
from tests.helpers import at, history, open_tasks

INDICATORS = ["sales_achievement", "new_customers", "collection_rate", "lead_conversion",
              "customer_satisfaction", "compliance", "teamwork", "learning"]
# Q3 2025 ends on Tuesday 30 September, the eve of the National Day holiday (1-8 October 2025);
# Saturday 11 October is a 调休 working day.
Q3 = {"employee": "alice", "period": "2025-Q3", "cycle": "quarterly", "period_end": "2025-09-30"}
SELF = {"achievements": "完成季度销售目标的92%，新签客户5家", "evidence": "CRM订单报表、回款记录"}
TALK = {"talk_minutes": 45, "improvement_plan": "加强老客户复购，每周跟进重点客户", "talk_notes": "双方一致"}


DEFAULT_AT = at("2025-10-10T12:00")


def complete(engine, task_id, user, data, at=None):
    """engine.complete on the test's clock (the real clock is past every deadline used here)."""
    return engine.complete(task_id, user, data, at=at or DEFAULT_AT)


def scores(*values):
    values = values if len(values) == 8 else values * 8
    return dict(zip(INDICATORS, values))


def evaluation(*values):
    return {"scores": scores(*values), "report": "本季度表现稳定，详见附件报告。"}


def start(engine, start_data=Q3, when="2025-09-30T18:00"):
    inst = engine.start("performance_appraisal", "ivan", start_data, at=at(when))
    return inst["id"]


def to_talk(engine, iid, *score_values, self_at="2025-10-09T10:00", eval_at="2025-10-13T10:00"):
    """Self-evaluation and manager evaluation done; returns the instance with the result talk open."""
    tasks = open_tasks(engine, iid)
    complete(engine, tasks["self_evaluation"]["id"], "alice", SELF, at=at(self_at))
    tasks = open_tasks(engine, iid)
    return complete(engine, tasks["manager_evaluation"]["id"], "dave", evaluation(*score_values), at=at(eval_at))["instance"]


def to_decision(engine, iid, *score_values, talk_at="2025-10-20T10:00"):
    to_talk(engine, iid, *score_values)
    talk = open_tasks(engine, iid)["result_talk"]
    complete(engine, talk["id"], "dave", TALK, at=at(talk_at))
    return open_tasks(engine, iid)["employee_decision"]


# ---------------------------------------------------------------- deadlines of the evaluations

def test_hr_starts_self_evaluation_due_three_working_days_after_period_end(engine):
    iid = start(engine)
    inst = engine.instance(iid, "ivan")
    assert inst["subject"] == "alice" and inst["started_by"] == "ivan"
    [task] = inst["tasks"]
    assert task["name"] == "self_evaluation" and task["assignee"] == "alice"
    # 30 Sep + 3 working days skips the 1-8 October holiday and counts Saturday 11 October (调休)
    assert datetime.fromisoformat(task["due_at"]) == at("2025-10-11T23:59:59")

    complete(engine, task["id"], "alice", SELF, at=at("2025-10-09T10:00"))
    [task] = engine.instance(iid, "ivan")["tasks"]
    assert task["name"] == "manager_evaluation" and task["assignee"] == "dave"
    # 5 more working days: 13, 14, 15, 16, 17 October
    assert datetime.fromisoformat(task["due_at"]) == at("2025-10-17T23:59:59")


def test_overdue_self_evaluation_notifies_the_manager_and_stays_open(engine):
    iid = start(engine)
    assert engine.fire_due_timers(at=at("2025-10-11T23:00")) == []
    fired = engine.fire_due_timers(at=at("2025-10-12T08:00"))
    assert [f["name"] for f in fired] == ["self_evaluation_overdue"]
    notified = history(engine, iid, "notified")
    assert len(notified) == 1 and notified[0]["detail"]["to"] == ["dave"]
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"self_evaluation"} and tasks["self_evaluation"]["overdue"] is True
    complete(engine, tasks["self_evaluation"]["id"], "alice", SELF, at=at("2025-10-13T09:00"))
    assert set(open_tasks(engine, iid)) == {"manager_evaluation"}


# ---------------------------------------------------------------- the acceptance window

def test_acceptance_window_is_three_working_days_after_the_talk(engine):
    iid = start(engine)
    decision = to_decision(engine, iid, 85, talk_at="2025-10-20T10:00")  # Monday
    assert decision["assignee"] == "alice"
    assert datetime.fromisoformat(decision["due_at"]) == at("2025-10-23T23:59:59")
    assert engine.fire_due_timers(at=at("2025-10-23T23:00")) == []
    fired = engine.fire_due_timers(at=at("2025-10-24T08:00"))
    assert [(f["instance_id"], f["name"]) for f in fired] == [(iid, "acceptance_deadline")]
    inst = engine.instance(iid, "alice")
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    # too late to appeal now
    with pytest.raises(Conflict) as exc:
        complete(engine, decision["id"], "alice", {"decision": "appeal", "reason": "不同意"}, at=at("2025-10-24T09:00"))
    assert exc.value.status == 409


# ---------------------------------------------------------------- appeal deadlines

def appeal(engine, iid, score_value, at_text="2025-10-21T10:00"):
    decision = to_decision(engine, iid, score_value)
    complete(engine, decision["id"], "alice", {"decision": "appeal", "reason": "新客户数统计遗漏两家"}, at=at(at_text))
    return open_tasks(engine, iid)


def test_appeal_deadlines_count_from_the_appeal_and_the_director_late_notifies_the_general_manager(engine):
    iid = start(engine)
    tasks = appeal(engine, iid, 65, at_text="2025-10-21T10:00")
    # answered within 5 working days of the appeal (Tue 21 Oct -> Tue 28 Oct)
    assert datetime.fromisoformat(tasks["hr_appeal_review"]["due_at"]) == at("2025-10-28T23:59:59")
    complete(engine, tasks["hr_appeal_review"]["id"], "ivan", {"decision": "uphold"}, at=at("2025-10-22T09:00"))
    director = open_tasks(engine, iid)["director_appeal_decision"]
    # the same 5 working days from the appeal, not from HR's answer
    assert datetime.fromisoformat(director["due_at"]) == at("2025-10-28T23:59:59")
    assert engine.fire_due_timers(at=at("2025-10-28T23:00")) == []
    fired = engine.fire_due_timers(at=at("2025-10-29T10:00"))
    assert [f["name"] for f in fired] == ["director_appeal_overdue"]
    assert [e["detail"]["to"] for e in history(engine, iid, "notified")] == [["judy"]]
    inst = complete(engine, director["id"], "frank", {"decision": "uphold"}, at=at("2025-10-29T11:00"))["instance"]
    assert inst["data"]["grade"] == "C" and inst["status"] == "completed" and inst["data"]["appeal_result"] == "upheld"


def test_timer_already_due_when_the_task_starts_is_still_recorded(engine):
    iid = start(engine)
    tasks = appeal(engine, iid, 65, at_text="2025-10-21T10:00")
    engine.fire_due_timers(at=at("2025-10-29T08:00"))  # HR late: notified
    complete(engine, tasks["hr_appeal_review"]["id"], "ivan", {"decision": "uphold"}, at=at("2025-10-29T09:00"))
    # the director's task starts after the appeal deadline: its overdue notice should be recorded too
    assert len(history(engine, iid, "notified")) == 2
