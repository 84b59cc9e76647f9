"""performance_appraisal: deadlines in working days, score/grade/bonus/PIP from the DMNs, acceptance and appeal."""
from __future__ import annotations

from datetime import datetime

import pytest

from engine.errors import Forbidden, NotFound, ValidationFailed
from tests.conftest import at

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


def mentioned(errors: dict) -> str:
    """Field names and messages of a ValidationFailed, to look for the field a problem is about."""
    return " ".join([*errors, *errors.values()])


def open_tasks(engine, iid):
    return {t["name"]: t for t in engine.instance(iid, "admin")["tasks"]}


def history(engine, iid, action=None):
    return [e for e in engine.instance(iid, "admin")["history"] if action is None or e["action"] == action]


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


def appraise_and_accept(engine, start_data, *score_values):
    iid = start(engine, start_data)
    decision = to_decision(engine, iid, *score_values)
    return complete(engine, decision["id"], "alice", {"decision": "accept"}, at=at("2025-10-21T10:00"))["instance"]


# ---------------------------------------------------------------- start, tasks, deadlines

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


def test_only_hr_starts_and_the_employee_needs_a_manager(engine):
    with pytest.raises(Forbidden):
        engine.start("performance_appraisal", "dave", Q3)
    with pytest.raises(ValidationFailed) as exc:
        engine.start("performance_appraisal", "ivan", {**Q3, "employee": "judy"})
    assert "employee" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        engine.start("performance_appraisal", "ivan", {**Q3, "cycle": "weekly"})
    assert "cycle" in exc.value.errors


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


def test_scores_are_validated(engine):
    iid = start(engine)
    complete(engine, open_tasks(engine, iid)["self_evaluation"]["id"], "alice", SELF)
    task_id = open_tasks(engine, iid)["manager_evaluation"]["id"]
    bad = evaluation(80)
    bad["scores"]["sales_achievement"] = 150
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", bad)
    assert "sales_achievement" in mentioned(exc.value.errors)
    assert "new_customers" not in mentioned(exc.value.errors)
    bad["scores"]["sales_achievement"] = -1
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", bad)
    assert "sales_achievement" in mentioned(exc.value.errors)
    bad["scores"]["sales_achievement"] = "很好"
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", bad)
    assert "sales_achievement" in mentioned(exc.value.errors)
    missing = evaluation(80)
    del missing["scores"]["learning"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", missing)
    assert "learning" in mentioned(exc.value.errors)
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, task_id, "dave", {"scores": scores(80)})
    assert "report" in exc.value.errors
    with pytest.raises(Forbidden):
        complete(engine, task_id, "alice", evaluation(80))  # not hers
    assert set(open_tasks(engine, iid)) == {"manager_evaluation"}


def test_result_talk_needs_thirty_minutes_and_an_improvement_plan(engine):
    iid = start(engine)
    to_talk(engine, iid, 85)
    talk = open_tasks(engine, iid)["result_talk"]
    assert talk["assignee"] == "dave"
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, talk["id"], "dave", {**TALK, "talk_minutes": 20})
    assert "talk_minutes" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, talk["id"], "dave", {"talk_minutes": 30})
    assert "improvement_plan" in exc.value.errors
    complete(engine, talk["id"], "dave", {**TALK, "talk_minutes": 30})
    assert set(open_tasks(engine, iid)) == {"employee_decision"}


# ---------------------------------------------------------------- score, grade, consequences

def test_full_path_accepted_with_weighted_score(engine):
    iid = start(engine)
    # quantitative 100, 80, 60, 40 (average 70, weight 60%); qualitative all 90 (weight 40%): 42 + 36 = 78 -> B
    inst = to_talk(engine, iid, 100, 80, 60, 40, 90, 90, 90, 90)
    assert inst["data"]["quantitative_score"] == 70.0
    assert inst["data"]["qualitative_score"] == 90.0
    assert inst["data"]["score"] == 78.0
    assert inst["data"]["grade"] == "B"
    assert inst["data"]["bonus_multiplier"] == 0.8
    assert inst["data"]["pip"] is False
    assert inst["data"]["previous_grade"] is None
    complete(engine, open_tasks(engine, iid)["result_talk"]["id"], "dave", TALK, at=at("2025-10-20T10:00"))
    decision = open_tasks(engine, iid)["employee_decision"]
    assert decision["assignee"] == "alice"
    assert datetime.fromisoformat(decision["due_at"]) == at("2025-10-23T23:59:59")

    inst = complete(engine, decision["id"], "alice", {"decision": "accept"}, at=at("2025-10-21T10:00"))["instance"]
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    assert (inst["data"]["score"], inst["data"]["grade"], inst["data"]["bonus_multiplier"], inst["data"]["pip"]) \
        == (78.0, "B", 0.8, False)
    assert inst["data"]["employee_decision"]["decision"] == "accept"


@pytest.mark.parametrize("value, grade, bonus", [(95, "S", 1.2), (90, "S", 1.2), (89.9, "A", 1.0), (80, "A", 1.0),
                                                 (70, "B", 0.8), (60, "C", 0.6), (59.9, "D", 0.0)])
def test_grade_bands_and_bonus(engine, value, grade, bonus):
    iid = start(engine)
    data = to_talk(engine, iid, value)["data"]
    assert (data["score"], data["grade"], data["bonus_multiplier"]) == (value, grade, bonus)
    assert data["pip"] is (grade == "D")


def test_pip_for_d(engine):
    inst = appraise_and_accept(engine, Q3, 50)
    assert (inst["data"]["grade"], inst["data"]["bonus_multiplier"], inst["data"]["pip"]) == ("D", 0.0, True)


def test_pip_for_a_second_c_in_a_row_of_the_same_cycle(engine):
    q2 = {**Q3, "period": "2025-Q2", "period_end": "2025-06-30"}
    first = appraise_and_accept(engine, q2, 65)
    assert (first["data"]["grade"], first["data"]["pip"]) == ("C", False)
    # a monthly C in between does not count for the quarterly cycle
    monthly = appraise_and_accept(engine, {**Q3, "period": "2025-08", "cycle": "monthly", "period_end": "2025-08-31"}, 65)
    assert (monthly["data"]["previous_grade"], monthly["data"]["pip"]) == (None, False)

    second = appraise_and_accept(engine, Q3, 62)
    assert second["data"]["previous_grade"] == "C"
    assert (second["data"]["grade"], second["data"]["bonus_multiplier"], second["data"]["pip"]) == ("C", 0.6, True)


def test_c_after_a_better_grade_is_no_pip_and_other_employees_do_not_count(engine):
    appraise_and_accept(engine, {**Q3, "period": "2025-Q2", "period_end": "2025-06-30"}, 75)  # alice: B
    bob_c = {**Q3, "employee": "bob", "period": "2025-Q2", "period_end": "2025-06-30"}
    iid = start(engine, bob_c)
    complete(engine, open_tasks(engine, iid)["self_evaluation"]["id"], "bob", SELF)
    complete(engine, open_tasks(engine, iid)["manager_evaluation"]["id"], "dave", evaluation(65))
    complete(engine, open_tasks(engine, iid)["result_talk"]["id"], "dave", TALK)
    complete(engine, open_tasks(engine, iid)["employee_decision"]["id"], "bob", {"decision": "accept"},
             at=at("2025-10-11T10:00"))

    inst = appraise_and_accept(engine, Q3, 65)  # alice: C after B
    assert (inst["data"]["previous_grade"], inst["data"]["grade"], inst["data"]["pip"]) == ("B", "C", False)


# ---------------------------------------------------------------- acceptance window

def test_no_answer_within_three_working_days_means_accepted(engine):
    iid = start(engine)
    decision = to_decision(engine, iid, 85, talk_at="2025-10-20T10:00")  # Monday
    assert engine.fire_due_timers(at=at("2025-10-23T23:00")) == []
    fired = engine.fire_due_timers(at=at("2025-10-24T08:00"))
    assert [(f["instance_id"], f["name"]) for f in fired] == [(iid, "acceptance_deadline")]
    inst = engine.instance(iid, "alice")
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    assert (inst["data"]["score"], inst["data"]["grade"], inst["data"]["bonus_multiplier"], inst["data"]["pip"]) \
        == (85.0, "A", 1.0, False)
    assert "employee_decision" not in inst["data"]
    assert [e["task"] for e in inst["history"] if e["action"] == "task_cancelled"] == ["employee_decision"]
    # too late to appeal now
    with pytest.raises(Exception) as exc:
        complete(engine, decision["id"], "alice", {"decision": "appeal", "reason": "不同意"}, at=at("2025-10-24T09:00"))
    assert getattr(exc.value, "status", None) == 409


def test_appeal_needs_a_reason(engine):
    iid = start(engine)
    decision = to_decision(engine, iid, 65)
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, decision["id"], "alice", {"decision": "appeal"}, at=at("2025-10-21T09:00"))
    assert "reason" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, decision["id"], "alice", {"decision": "maybe"}, at=at("2025-10-21T09:00"))
    assert "decision" in exc.value.errors


# ---------------------------------------------------------------- appeal

def appeal(engine, iid, score_value, at_text="2025-10-21T10:00"):
    decision = to_decision(engine, iid, score_value)
    complete(engine, decision["id"], "alice", {"decision": "appeal", "reason": "新客户数统计遗漏两家"}, at=at(at_text))
    return open_tasks(engine, iid)


def test_appeal_upheld(engine):
    iid = start(engine)
    tasks = appeal(engine, iid, 65)
    assert set(tasks) == {"hr_appeal_review"} and tasks["hr_appeal_review"]["assignee"] == "ivan"
    # answered within 5 working days of the appeal (Tue 21 Oct -> Tue 28 Oct)
    assert datetime.fromisoformat(tasks["hr_appeal_review"]["due_at"]) == at("2025-10-28T23:59:59")
    complete(engine, tasks["hr_appeal_review"]["id"], "ivan", {"decision": "uphold", "comment": "数据核实无误"},
             at=at("2025-10-22T10:00"))
    tasks = open_tasks(engine, iid)
    assert set(tasks) == {"director_appeal_decision"} and tasks["director_appeal_decision"]["assignee"] == "frank"
    inst = complete(engine, tasks["director_appeal_decision"]["id"], "frank",
                           {"decision": "uphold", "comment": "维持"}, at=at("2025-10-23T10:00"))["instance"]
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    assert inst["data"]["appeal_result"] == "upheld"
    assert (inst["data"]["grade"], inst["data"]["original_grade"], inst["data"]["bonus_multiplier"]) == ("C", "C", 0.6)
    assert inst["data"]["score"] == 65.0


def test_appeal_changed_recomputes_bonus_and_pip(engine):
    iid = start(engine)
    tasks = appeal(engine, iid, 55)  # D: no bonus, PIP
    assert engine.instance(iid, "alice")["data"]["pip"] is True
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, tasks["hr_appeal_review"]["id"], "ivan", {"decision": "change", "comment": "建议调整"},
                 at=at("2025-10-22T10:00"))
    assert "grade" in exc.value.errors
    # HR recommends A, the director decides B: the director's grade is final
    complete(engine, tasks["hr_appeal_review"]["id"], "ivan", {"decision": "change", "grade": "A", "comment": "建议调整"},
             at=at("2025-10-22T10:00"))
    director = open_tasks(engine, iid)["director_appeal_decision"]
    with pytest.raises(ValidationFailed) as exc:
        complete(engine, director["id"], "frank", {"decision": "change", "grade": "B"}, at=at("2025-10-23T10:00"))
    assert "comment" in exc.value.errors
    inst = complete(engine, director["id"], "frank", {"decision": "change", "grade": "B", "comment": "补录新客户后调整"},
                    at=at("2025-10-23T10:00"))["instance"]
    data = inst["data"]
    assert data["outcome"] == "approved" and data["appeal_result"] == "changed"
    assert (data["original_grade"], data["grade"], data["bonus_multiplier"], data["pip"]) == ("D", "B", 0.8, False)
    assert data["hr_appeal_review"]["grade"] == "A" and data["director_appeal_decision"]["by"] == "frank"


def test_appeal_overdue_notifies_the_general_manager(engine):
    iid = start(engine)
    tasks = appeal(engine, iid, 65, at_text="2025-10-21T10:00")
    assert engine.fire_due_timers(at=at("2025-10-28T23:00")) == []
    fired = engine.fire_due_timers(at=at("2025-10-29T08:00"))
    assert [f["name"] for f in fired] == ["hr_appeal_overdue"]
    assert history(engine, iid, "notified")[-1]["detail"]["to"] == ["judy"]
    assert set(open_tasks(engine, iid)) == {"hr_appeal_review"}  # notification only, no decision taken
    assert engine.instance(iid, "judy")["id"] == iid


def test_director_late_on_the_appeal_notifies_the_general_manager(engine):
    iid = start(engine)
    tasks = appeal(engine, iid, 65, at_text="2025-10-21T10:00")
    complete(engine, tasks["hr_appeal_review"]["id"], "ivan", {"decision": "uphold"}, at=at("2025-10-22T09:00"))
    director = open_tasks(engine, iid)["director_appeal_decision"]
    # the same 5 working days from the appeal, not from HR's answer
    assert datetime.fromisoformat(director["due_at"]) == at("2025-10-28T23:59:59")
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


# ---------------------------------------------------------------- visibility

def test_only_the_employee_their_manager_and_reviewers_see_the_appraisal(engine):
    iid = start(engine)
    for user in ("alice", "dave", "ivan", "frank"):
        assert engine.instance(iid, user)["id"] == iid
    for user in ("bob", "carol", "erin", "grace"):
        with pytest.raises(NotFound):
            engine.instance(iid, user)
    assert iid not in [i["id"] for i in engine.instances("bob")]
    assert iid in [i["id"] for i in engine.instances("dave")]
