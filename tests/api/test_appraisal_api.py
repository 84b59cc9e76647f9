"""performance_appraisal through the JSON API: HR starts it, self-evaluation, the manager's scores, the result
talk, then accept, appeal (upheld or changed) or let the acceptance window expire; score, grade, bonus and PIP
in the finished data; deadlines fired with `salesflow timers run --at`.

The API runs on the real clock: the period ends today (company time zone) and every timer is fired at the
due_at the API reports. Exact due dates around the National Day holiday, the overdue flag and a timer already
due when its task opens need time travel: tests/engine/test_appraisal.py."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from tests.helpers import by_name, events

TZ = ZoneInfo("Asia/Shanghai")
INDICATORS = ["sales_achievement", "new_customers", "collection_rate", "lead_conversion",
              "customer_satisfaction", "compliance", "teamwork", "learning"]
SELF = {"achievements": "完成月度销售目标的92%，新签客户5家", "evidence": "CRM订单报表、回款记录"}
TALK = {"talk_minutes": 45, "improvement_plan": "加强老客户复购，每周跟进重点客户", "talk_notes": "双方一致"}
REASON = "新客户数统计遗漏两家"


def today() -> date:
    return datetime.now(TZ).date()


def appraisal(employee="alice", cycle="monthly", period_end: date | None = None, period="本期"):
    return {"employee": employee, "period": period, "cycle": cycle,
            "period_end": (period_end or today()).isoformat()}


def scores(*values):
    values = values if len(values) == 8 else values * 8
    return dict(zip(INDICATORS, values))


def evaluation(*values):
    return {"scores": scores(*values), "report": "本期表现稳定，详见附件报告。"}


def due(task) -> datetime:
    return datetime.fromisoformat(task["due_at"])


def end_of_working_day(engine, start, n) -> datetime:
    """The company calendar's deadline: the end of the n-th working day after `start`."""
    return engine.calendar.deadline(start, n)


def step(api, inst, name, user, data):
    task = api.open_task(inst, name)
    assert set(by_name(inst)) == {name}, f"expected only {name} open, got {sorted(by_name(inst))}"
    assert task["assignee"] == user
    return api.complete(user, task["id"], data)["instance"]


def start(api, **kw):
    return api.start("ivan", "performance_appraisal", appraisal(**kw))


def to_talk(api, inst, *score_values, employee="alice", manager="dave"):
    inst = step(api, inst, "self_evaluation", employee, SELF)
    return step(api, inst, "manager_evaluation", manager, evaluation(*score_values))


def to_decision(api, inst, *score_values, employee="alice", manager="dave"):
    inst = to_talk(api, inst, *score_values, employee=employee, manager=manager)
    return step(api, inst, "result_talk", manager, TALK)


def appraise_and_accept(api, *score_values, employee="alice", manager="dave", **kw):
    inst = to_decision(api, start(api, employee=employee, **kw), *score_values, employee=employee, manager=manager)
    return step(api, inst, "employee_decision", employee, {"decision": "accept"})


def appeal(api, score_value):
    inst = to_decision(api, start(api), score_value)
    return step(api, inst, "employee_decision", "alice", {"decision": "appeal", "reason": REASON})


# ---------------------------------------------------------------- start, tasks, deadlines

def test_hr_starts_and_the_full_path_is_accepted_with_the_weighted_score(api, engine):
    assert "performance_appraisal" in {p["id"] for p in api.get("ivan", "/processes").get_json()}
    inst = start(api)
    assert inst["process_id"] == "performance_appraisal" and inst["status"] == "running"
    assert inst["started_by"] == "ivan" and inst["subject"] == "alice"
    assert inst["data"]["employee"] == "alice" and inst["data"]["cycle"] == "monthly"
    self_eval = api.open_task(inst, "self_evaluation")
    assert len(inst["tasks"]) == 1 and (self_eval["assignee"], self_eval["lane"]) == ("alice", "Employee")
    # due 3 working days after the end of the period, at the end of that day
    assert due(self_eval) == end_of_working_day(engine, today(), 3)
    assert due(self_eval).astimezone(TZ).time() == time(23, 59, 59)
    assert due(self_eval).date() - today() >= timedelta(days=3)
    assert [t["id"] for t in api.get("alice", "/tasks").get_json()] == [self_eval["id"]]
    assert api.get("ivan", "/tasks").get_json() == []

    inst = api.complete("alice", self_eval["id"], SELF)["instance"]
    manager = api.open_task(inst, "manager_evaluation")
    assert (manager["assignee"], manager["lane"]) == ("dave", "Manager")
    # 5 more working days: 8 after the end of the period
    assert due(manager) == end_of_working_day(engine, today(), 8)
    form = api.get("dave", f"/tasks/{manager['id']}").get_json()["form"]
    assert set(form["properties"]["scores"]["required"]) == set(INDICATORS)

    # quantitative 100, 80, 60, 40 (average 70, weight 60%); qualitative all 90 (weight 40%): 42 + 36 = 78 -> B
    inst = api.complete("dave", manager["id"], evaluation(100, 80, 60, 40, 90, 90, 90, 90))["instance"]
    data = inst["data"]
    assert (data["quantitative_score"], data["qualitative_score"]) == (70.0, 90.0)
    assert (data["score"], data["grade"], data["bonus_multiplier"], data["pip"]) == (78.0, "B", 0.8, False)
    assert data["previous_grade"] is None
    talk = api.open_task(inst, "result_talk")
    assert talk["assignee"] == "dave"

    inst = api.complete("dave", talk["id"], TALK)["instance"]
    decision = api.open_task(inst, "employee_decision")
    assert decision["assignee"] == "alice"
    # 3 working days from the day of the talk
    assert due(decision) == end_of_working_day(engine, datetime.fromisoformat(decision["created_at"]), 3)

    result = api.complete("alice", decision["id"], {"decision": "accept"})
    inst = result["instance"]
    assert result["tasks"] == [] and inst["status"] == "completed" and inst["data"]["outcome"] == "approved"
    data = inst["data"]
    assert (data["score"], data["grade"], data["bonus_multiplier"], data["pip"]) == (78.0, "B", 0.8, False)
    assert data["employee_decision"]["decision"] == "accept"
    assert events(inst, "instance_completed")[0]["detail"]["outcome"] == "approved"


def test_only_hr_starts_and_the_employee_needs_a_manager(api):
    for user in ("dave", "alice", "frank", "judy"):
        assert "performance_appraisal" not in {p["id"] for p in api.get(user, "/processes").get_json()}
        r = api.post(user, "/processes/performance_appraisal/instances", json={"data": appraisal()})
        assert r.status_code == 403 and r.get_json()["error"], user
    for changes, field in [({"employee": "judy"}, "employee"),  # the general manager has no manager
                           ({"employee": "nobody"}, "employee"), ({"cycle": "weekly"}, "cycle"),
                           ({"period_end": "2025-13-01"}, "period_end"), ({"period": " "}, "period")]:
        r = api.post("ivan", "/processes/performance_appraisal/instances", json={"data": {**appraisal(), **changes}})
        assert r.status_code == 422 and field in r.get_json()["errors"], (changes, r.get_json())
    r = api.post("ivan", "/processes/performance_appraisal/instances", json={"data": {"employee": "alice"}})
    assert r.status_code == 422 and {"period", "cycle", "period_end"} <= set(r.get_json()["errors"])
    assert api.get("ivan", "/instances?process_id=performance_appraisal").get_json() == []


def test_overdue_self_evaluation_notifies_the_manager_and_stays_open(api, cli):
    inst = start(api)
    task = api.open_task(inst, "self_evaluation")
    assert "no timers due" in cli("timers", "run", "--at", (due(task) - timedelta(minutes=1)).isoformat())
    out = cli("timers", "run", "--at", task["due_at"])
    assert f"performance_appraisal #{inst['id']} self_evaluation_overdue" in out
    assert "no timers due" in cli("timers", "run", "--at", task["due_at"])  # never twice
    seen = api.instance("ivan", inst["id"])
    notified = events(seen, "notified")
    assert len(notified) == 1 and notified[0]["detail"]["to"] == ["dave"]
    assert [h["task"] for h in events(seen, "timer_fired")] == ["self_evaluation_overdue"]
    # a notification only: the self-evaluation is still open and still hers
    assert set(by_name(seen)) == {"self_evaluation"} and by_name(seen)["self_evaluation"]["id"] == task["id"]
    inst = api.complete("alice", task["id"], SELF)["instance"]
    assert set(by_name(inst)) == {"manager_evaluation"}


# ---------------------------------------------------------------- 422 on the manager's scores and the talk

@pytest.mark.parametrize("field", ["sales_achievement", "learning"])
def test_scores_out_of_range_are_422_naming_the_field(api, field):
    inst = step(api, start(api), "self_evaluation", "alice", SELF)
    task = api.open_task(inst, "manager_evaluation")

    def post(data, user="dave"):
        return api.post(user, f"/tasks/{task['id']}/complete", json={"data": data})

    for bad_value in (150, 100.5, -1, "很好", None):
        bad = evaluation(80)
        bad["scores"][field] = bad_value
        r = post(bad)
        assert r.status_code == 422, bad_value
        errors = r.get_json()["errors"]
        assert list(errors) == [f"scores.{field}"], (bad_value, errors)
        assert field in errors[f"scores.{field}"]
    missing = evaluation(80)
    del missing["scores"][field]
    r = post(missing)
    assert r.status_code == 422 and list(r.get_json()["errors"]) == [f"scores.{field}"]
    r = post({"scores": scores(80)})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["report"]
    r = post({**evaluation(80), "scores": {**scores(80), "charisma": 90}})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["scores"]  # no unknown indicator
    assert post(evaluation(80), user="alice").status_code == 403  # not hers
    assert post(evaluation(80), user="erin").status_code == 403  # not her team
    seen = api.instance("ivan", inst["id"])
    assert set(by_name(seen)) == {"manager_evaluation"} and "score" not in seen["data"]
    assert post(evaluation(0)).status_code == 200 and post(evaluation(100)).status_code == 409


def test_result_talk_needs_thirty_minutes_and_an_improvement_plan(api):
    inst = to_talk(api, start(api), 85)
    talk = api.open_task(inst, "result_talk")
    assert talk["assignee"] == "dave"
    for data, field in [({**TALK, "talk_minutes": 20}, "talk_minutes"), ({**TALK, "talk_minutes": 29}, "talk_minutes"),
                        ({**TALK, "talk_minutes": 45.5}, "talk_minutes"), ({"talk_minutes": 30}, "improvement_plan"),
                        ({**TALK, "improvement_plan": "  "}, "improvement_plan")]:
        r = api.post("dave", f"/tasks/{talk['id']}/complete", json={"data": data})
        assert r.status_code == 422 and list(r.get_json()["errors"]) == [field], data
        if data.get("talk_minutes") in (20, 29):  # the form's own message, not jsonschema's
            assert r.get_json()["errors"]["talk_minutes"] == "the result talk must last at least 30 minutes"
    assert api.post("alice", f"/tasks/{talk['id']}/complete", json={"data": TALK}).status_code == 403
    inst = api.complete("dave", talk["id"], {**TALK, "talk_minutes": 30})["instance"]
    assert set(by_name(inst)) == {"employee_decision"} and inst["data"]["result_talk"]["talk_minutes"] == 30


# ---------------------------------------------------------------- score, grade, consequences

@pytest.mark.parametrize("value, grade, bonus", [(95, "S", 1.2), (90, "S", 1.2), (89.9, "A", 1.0), (80, "A", 1.0),
                                                 (70, "B", 0.8), (60, "C", 0.6), (59.9, "D", 0.0),
                                                 # the exact score is banded, never a rounded one
                                                 (79.99, "B", 0.8), (59.99, "D", 0.0), (89.95, "A", 1.0)])
def test_grade_bands_and_bonus(api, value, grade, bonus):
    data = to_talk(api, start(api), value)["data"]
    assert (data["score"], data["grade"], data["bonus_multiplier"]) == (value, grade, bonus)
    assert data["pip"] is (grade == "D")


def test_pip_for_d(api):
    inst = appraise_and_accept(api, 50)
    data = inst["data"]
    assert inst["status"] == "completed" and data["outcome"] == "approved"
    assert (data["score"], data["grade"], data["bonus_multiplier"], data["pip"]) == (50.0, "D", 0.0, True)


def test_pip_for_a_second_c_in_a_row_of_the_same_cycle(api):
    first = appraise_and_accept(api, 65, cycle="quarterly", period="上季度", period_end=today() - timedelta(days=91))
    assert (first["data"]["grade"], first["data"]["pip"]) == ("C", False)
    # a monthly C in between does not count for the quarterly cycle
    monthly = appraise_and_accept(api, 65, period="上月", period_end=today() - timedelta(days=30))
    assert (monthly["data"]["previous_grade"], monthly["data"]["grade"], monthly["data"]["pip"]) == (None, "C", False)

    second = appraise_and_accept(api, 62, cycle="quarterly", period="本季度")
    assert second["data"]["previous_grade"] == "C"
    assert (second["data"]["grade"], second["data"]["bonus_multiplier"], second["data"]["pip"]) == ("C", 0.6, True)


def test_c_after_a_better_grade_is_no_pip_and_other_employees_do_not_count(api):
    earlier = today() - timedelta(days=91)
    appraise_and_accept(api, 75, cycle="quarterly", period_end=earlier)  # alice: B
    bob = appraise_and_accept(api, 65, employee="bob", cycle="quarterly", period_end=earlier)  # bob: C
    assert (bob["subject"], bob["data"]["grade"]) == ("bob", "C")

    inst = appraise_and_accept(api, 65, cycle="quarterly")  # alice: C after B
    assert (inst["data"]["previous_grade"], inst["data"]["grade"], inst["data"]["pip"]) == ("B", "C", False)


# ---------------------------------------------------------------- the acceptance window

def test_appeal_window_expiring_accepts_the_result(api, cli):
    inst = to_decision(api, start(api), 85)
    decision = api.open_task(inst, "employee_decision")
    assert "no timers due" in cli("timers", "run", "--at", (due(decision) - timedelta(minutes=1)).isoformat())
    out = cli("timers", "run", "--at", decision["due_at"])
    assert f"performance_appraisal #{inst['id']} acceptance_deadline" in out and "fired" in out
    assert "no timers due" in cli("timers", "run", "--at", (due(decision) + timedelta(days=30)).isoformat())

    inst = api.instance("alice", inst["id"])
    assert inst["status"] == "completed" and inst["data"]["outcome"] == "approved" and inst["tasks"] == []
    data = inst["data"]
    assert (data["score"], data["grade"], data["bonus_multiplier"], data["pip"]) == (85.0, "A", 1.0, False)
    assert "employee_decision" not in data
    assert [h["task"] for h in events(inst, "timer_fired")] == ["acceptance_deadline"]
    assert [h["task"] for h in events(inst, "task_cancelled")] == ["employee_decision"]
    assert api.get("alice", "/tasks").get_json() == []
    # too late to appeal now
    r = api.post("alice", f"/tasks/{decision['id']}/complete", json={"data": {"decision": "appeal", "reason": "不同意"}})
    assert r.status_code == 409 and r.get_json()["error"]
    assert api.get("alice", f"/tasks/{decision['id']}").get_json()["status"] == "cancelled"


def test_appeal_needs_a_reason(api):
    inst = to_decision(api, start(api), 65)
    decision = api.open_task(inst, "employee_decision")
    for data, field in [({"decision": "appeal"}, "reason"), ({"decision": "appeal", "reason": "  "}, "reason"),
                        ({"decision": "maybe"}, "decision"), ({}, "decision")]:
        r = api.post("alice", f"/tasks/{decision['id']}/complete", json={"data": data})
        assert r.status_code == 422 and list(r.get_json()["errors"]) == [field], data
    assert api.post("dave", f"/tasks/{decision['id']}/complete", json={"data": {"decision": "accept"}}).status_code == 403
    assert set(by_name(api.instance("alice", inst["id"]))) == {"employee_decision"}


# ---------------------------------------------------------------- appeal

def test_appeal_upheld(api, engine):
    inst = appeal(api, 65)
    hr = api.open_task(inst, "hr_appeal_review")
    assert set(by_name(inst)) == {"hr_appeal_review"} and (hr["assignee"], hr["lane"]) == ("ivan", "HR")
    # answered within 5 working days of the appeal
    filed_on = inst["data"]["appeal_filed_on"]
    assert filed_on == datetime.fromisoformat(hr["created_at"]).astimezone(TZ).date().isoformat()
    assert due(hr) == end_of_working_day(engine, filed_on, 5)
    assert inst["data"]["employee_decision"] == {"decision": "appeal", "reason": REASON, "by": "alice"}

    inst = api.complete("ivan", hr["id"], {"decision": "uphold", "comment": "数据核实无误"})["instance"]
    director = api.open_task(inst, "director_appeal_decision")
    assert set(by_name(inst)) == {"director_appeal_decision"}
    assert (director["assignee"], director["lane"]) == ("frank", "Director")
    assert due(director) == due(hr)  # the same deadline: 5 working days from the appeal
    inst = api.complete("frank", director["id"], {"decision": "uphold", "comment": "维持"})["instance"]
    data = inst["data"]
    assert inst["status"] == "completed" and data["outcome"] == "approved" and data["appeal_result"] == "upheld"
    assert (data["score"], data["grade"], data["original_grade"], data["bonus_multiplier"], data["pip"]) \
        == (65.0, "C", "C", 0.6, False)
    assert [h["actor"] for h in events(inst, "completed") if h["task"] in ("hr_appeal_review", "director_appeal_decision")] \
        == ["ivan", "frank"]


def test_appeal_changed_recomputes_bonus_and_pip(api):
    inst = appeal(api, 55)  # D: no bonus, PIP
    assert (inst["data"]["grade"], inst["data"]["pip"]) == ("D", True)
    hr = api.open_task(inst, "hr_appeal_review")
    for data, field in [({"decision": "change", "comment": "建议调整"}, "grade"),
                        ({"decision": "change", "grade": "E", "comment": "建议调整"}, "grade"),
                        ({"decision": "overrule"}, "decision")]:
        r = api.post("ivan", f"/tasks/{hr['id']}/complete", json={"data": data})
        assert r.status_code == 422 and field in r.get_json()["errors"], data
    # HR recommends A, the director decides B: the director's grade is final
    inst = api.complete("ivan", hr["id"], {"decision": "change", "grade": "A", "comment": "建议调整"})["instance"]
    director = api.open_task(inst, "director_appeal_decision")
    r = api.post("frank", f"/tasks/{director['id']}/complete", json={"data": {"decision": "change", "grade": "B"}})
    assert r.status_code == 422 and "comment" in r.get_json()["errors"]
    inst = api.complete("frank", director["id"], {"decision": "change", "grade": "B", "comment": "补录新客户后调整"})["instance"]
    data = inst["data"]
    assert inst["status"] == "completed" and data["outcome"] == "approved" and data["appeal_result"] == "changed"
    assert (data["original_grade"], data["grade"], data["bonus_multiplier"], data["pip"]) == ("D", "B", 0.8, False)
    assert data["hr_appeal_review"]["grade"] == "A" and data["director_appeal_decision"]["by"] == "frank"
    assert data["score"] == 55.0  # the score stands; only the grade changed


def test_appeal_overdue_at_hr_notifies_the_general_manager(api, cli):
    inst = appeal(api, 65)
    hr = api.open_task(inst, "hr_appeal_review")
    assert "no timers due" in cli("timers", "run", "--at", (due(hr) - timedelta(minutes=1)).isoformat())
    out = cli("timers", "run", "--at", hr["due_at"])
    assert f"#{inst['id']} hr_appeal_overdue" in out
    assert "no timers due" in cli("timers", "run", "--at", hr["due_at"])
    seen = api.instance("judy", inst["id"])
    assert events(seen, "notified")[-1]["detail"]["to"] == ["judy"]
    assert set(by_name(seen)) == {"hr_appeal_review"}  # notification only, no decision taken
    assert seen["status"] == "running" and "appeal_result" not in seen["data"]
    inst = api.complete("ivan", hr["id"], {"decision": "uphold"})["instance"]
    assert set(by_name(inst)) == {"director_appeal_decision"}


def test_director_late_on_the_appeal_notifies_the_general_manager(api, cli):
    inst = appeal(api, 65)
    hr = api.open_task(inst, "hr_appeal_review")
    inst = api.complete("ivan", hr["id"], {"decision": "uphold"})["instance"]
    director = api.open_task(inst, "director_appeal_decision")
    out = cli("timers", "run", "--at", director["due_at"])
    assert f"#{inst['id']} director_appeal_overdue" in out and "hr_appeal_overdue" not in out
    assert "no timers due" in cli("timers", "run", "--at", (due(director) + timedelta(days=30)).isoformat())
    seen = api.instance("judy", inst["id"])
    assert [h["detail"]["to"] for h in events(seen, "notified")] == [["judy"]]
    assert set(by_name(seen)) == {"director_appeal_decision"}
    inst = api.complete("frank", director["id"], {"decision": "uphold"})["instance"]
    assert inst["status"] == "completed" and inst["data"]["grade"] == "C" and inst["data"]["appeal_result"] == "upheld"


# ---------------------------------------------------------------- visibility, withdrawal

def test_only_the_employee_their_manager_and_reviewers_see_the_appraisal(api):
    inst = start(api)
    path = f"/instances/{inst['id']}"
    for user in ("alice", "dave", "ivan", "frank"):  # frank: dave's manager
        assert api.get(user, path).status_code == 200, user
    for user in ("bob", "carol", "erin", "grace", "heidi"):
        assert api.get(user, path).status_code == 404, user
        assert api.get(user, f"{path}/diagram.svg").status_code == 404, user
    task = api.open_task(inst, "self_evaluation")
    assert api.get("bob", f"/tasks/{task['id']}").status_code == 404
    assert api.post("bob", f"/tasks/{task['id']}/complete", json={"data": SELF}).status_code == 403
    assert inst["id"] not in [i["id"] for i in api.get("bob", "/instances").get_json()]
    assert inst["id"] in [i["id"] for i in api.get("dave", "/instances?process_id=performance_appraisal").get_json()]


def test_hr_withdraws_an_appraisal(api):
    inst = step(api, start(api), "self_evaluation", "alice", SELF)
    path = f"/instances/{inst['id']}/withdraw"
    for user in ("alice", "dave"):  # only the starter
        assert api.post(user, path).status_code == 403, user
    r = api.post("ivan", path)
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "cancelled" and body["data"]["outcome"] == "withdrawn" and body["tasks"] == []
    assert api.get("dave", "/tasks").get_json() == []
