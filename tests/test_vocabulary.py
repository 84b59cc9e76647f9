"""The words of a process's data come from workflows/, not from webui/: a new process (its BPMN, its form and
its entry in vocabulary.json, nothing else) is shown with its own words in Chinese and English, and the
processes SalesFlow ships read exactly as before, in both languages."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import invoiced
from tests.helpers import at, make_engine, with_words, without_words
from tests.test_views import login, text_of
from webui import create_app

WEBUI = Path(__file__).resolve().parent.parent / "webui"

TRIP_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:di="http://www.omg.org/spec/DD/20100524/DI" xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="Definitions_trip" targetNamespace="http://salesflow.example/bpmn">
  <bpmn:collaboration id="Collaboration_trip">
    <bpmn:participant id="Participant_trip" name="出差申请 Trip request" processRef="trip_request" />
  </bpmn:collaboration>
  <bpmn:process id="trip_request" name="出差申请 Trip request" isExecutable="true">
    <bpmn:laneSet id="LaneSet_trip">
      <bpmn:lane id="Lane_trip_Submitter" name="Traveller">
        <bpmn:flowNodeRef>trip_start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>plan_trip</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>count_days</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>pick_class</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>trip_settled</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="trip_start" name="出差申请">
      <bpmn:extensionElements><spiffworkflow:properties><spiffworkflow:property name="titleEn" value="Trip requested" /></spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:outgoing>ft_1</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:userTask id="plan_trip" name="填写行程">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="forms/trip.json" />
        <spiffworkflow:property name="titleEn" value="Plan the trip" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>ft_1</bpmn:incoming>
      <bpmn:outgoing>ft_2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:serviceTask id="count_days" name="计算天数">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="process.record" resultVariable="trip_days"><spiffworkflow:parameters><spiffworkflow:parameter id="value" type="any" value="nights + 1" /></spiffworkflow:parameters></spiffworkflow:serviceTaskOperator>
        <spiffworkflow:properties><spiffworkflow:property name="titleEn" value="Count the days" /></spiffworkflow:properties>
      </bpmn:extensionElements>
      <bpmn:incoming>ft_2</bpmn:incoming>
      <bpmn:outgoing>ft_3</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:serviceTask id="pick_class" name="确定舱位">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="process.record" resultVariable="travel_class"><spiffworkflow:parameters><spiffworkflow:parameter id="value" type="any" value="'economy'" /></spiffworkflow:parameters></spiffworkflow:serviceTaskOperator>
        <spiffworkflow:properties><spiffworkflow:property name="titleEn" value="Pick the class" /></spiffworkflow:properties>
      </bpmn:extensionElements>
      <bpmn:incoming>ft_3</bpmn:incoming>
      <bpmn:outgoing>ft_4</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:endEvent id="trip_settled" name="行程已定">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="outcome" value="settled" />
        <spiffworkflow:property name="titleEn" value="Trip settled" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>ft_4</bpmn:incoming>
    </bpmn:endEvent>
    <bpmn:sequenceFlow id="ft_1" sourceRef="trip_start" targetRef="plan_trip" />
    <bpmn:sequenceFlow id="ft_2" sourceRef="plan_trip" targetRef="count_days" />
    <bpmn:sequenceFlow id="ft_3" sourceRef="count_days" targetRef="pick_class" />
    <bpmn:sequenceFlow id="ft_4" sourceRef="pick_class" targetRef="trip_settled" />
  </bpmn:process>
  <bpmndi:BPMNDiagram id="BPMNDiagram_trip">
    <bpmndi:BPMNPlane id="BPMNPlane_trip" bpmnElement="Collaboration_trip">
      <bpmndi:BPMNShape id="Participant_trip_di" bpmnElement="Participant_trip" isHorizontal="true"><dc:Bounds x="130" y="60" width="760" height="180" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Lane_trip_Submitter_di" bpmnElement="Lane_trip_Submitter" isHorizontal="true"><dc:Bounds x="160" y="60" width="730" height="180" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="trip_start_di" bpmnElement="trip_start"><dc:Bounds x="192" y="132" width="36" height="36" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="plan_trip_di" bpmnElement="plan_trip"><dc:Bounds x="270" y="110" width="100" height="80" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="count_days_di" bpmnElement="count_days"><dc:Bounds x="420" y="110" width="100" height="80" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="pick_class_di" bpmnElement="pick_class"><dc:Bounds x="570" y="110" width="100" height="80" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="trip_settled_di" bpmnElement="trip_settled"><dc:Bounds x="742" y="132" width="36" height="36" /></bpmndi:BPMNShape>
      <bpmndi:BPMNEdge id="ft_1_di" bpmnElement="ft_1"><di:waypoint x="228" y="150" /><di:waypoint x="270" y="150" /></bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="ft_2_di" bpmnElement="ft_2"><di:waypoint x="370" y="150" /><di:waypoint x="420" y="150" /></bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="ft_3_di" bpmnElement="ft_3"><di:waypoint x="520" y="150" /><di:waypoint x="570" y="150" /></bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="ft_4_di" bpmnElement="ft_4"><di:waypoint x="670" y="150" /><di:waypoint x="742" y="150" /></bpmndi:BPMNEdge>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
"""
TRIP_FORM = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Trip", "x-title-zh": "行程", "type": "object",
    "properties": {"nights": {"type": "integer", "minimum": 1, "maximum": 60, "title": "Nights", "x-title-zh": "住宿晚数",
                              "x-error": "at least one night", "x-error-zh": "至少住一晚"}},
    "required": ["nights"],
}
TRIP_WORDS = {
    "data": {
        "travel_class": {"title": "Travel class", "x-title-zh": "舱位",
                         "x-enum-titles": {"economy": {"en": "Economy", "zh": "经济舱"}}},
        "outcome": {"x-enum-titles": {"settled": {"en": "Trip settled", "zh": "行程已定"}}},
    },
    "card": {"id": "trip-card", "when": ["trip_days"],
             "rows": [{"key": "trip_days", "title": "Days away", "x-title-zh": "出差天数", "main": True}]},
}
# what the new process's pages must show, by language: none of it is in webui/
TRIP_TEXT = {"en": ("at least one night", "Travel class", "Economy", "Trip settled", "Days away", "Traveller"),
             "zh-CN": ("至少住一晚", "舱位", "经济舱", "行程已定", "出差天数", "出差人")}


@pytest.fixture
def trip_app(database, workflows, tmp_path):
    """SalesFlow on workflows/ with one process more: a BPMN, a form and an entry in vocabulary.json."""
    (workflows / "trip_request.bpmn").write_text(TRIP_BPMN, encoding="utf-8")
    (workflows / "forms" / "trip.json").write_text(json.dumps(TRIP_FORM, ensure_ascii=False), encoding="utf-8")
    catalog = json.loads((workflows / "processes.json").read_text(encoding="utf-8"))
    catalog["trip_request"] = {"name": {"en": "Trip request", "zh": "出差申请"}, "starters": {},
                               "first_task": "plan_trip", "submitter_step": "plan_trip"}
    (workflows / "processes.json").write_text(json.dumps(catalog, ensure_ascii=False), encoding="utf-8")
    words = json.loads((workflows / "vocabulary.json").read_text(encoding="utf-8"))
    words["trip_request"] = TRIP_WORDS
    (workflows / "vocabulary.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
    lanes = json.loads((workflows / "lanes.json").read_text(encoding="utf-8"))
    lanes["Traveller"] = {"relation": "subject", "title": {"zh": "出差人", "en": "Traveller"}}  # a lane of its own
    (workflows / "lanes.json").write_text(json.dumps(lanes, ensure_ascii=False), encoding="utf-8")
    eng = make_engine(database, workflows)
    return create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "test", "TESTING": True}, engine=eng)


def test_a_new_process_shows_its_own_words_with_no_edit_in_webui(trip_app):
    webui_text = "\n".join(p.read_text(encoding="utf-8") for p in WEBUI.rglob("*")
                           if p.is_file() and p.suffix in (".py", ".html", ".po", ".pot"))
    for words in TRIP_TEXT.values():
        for word in words:
            assert word not in webui_text, word
    eng = trip_app.extensions["salesflow"]
    inst = eng.start("trip_request", "alice")
    [task] = eng.tasks("alice", instance_id=inst["id"])
    for lang, (message, class_label, economy, outcome, days, lane) in TRIP_TEXT.items():
        client = login(trip_app, "alice", lang)
        refused = client.post(f"/tasks/{task['id']}/complete", data={"nights": "0", "csrf_token": client.token})
        assert refused.status_code == 422
        assert message in text_of(refused)  # the form's x-error (en) or x-error-zh
        assert lane in text_of(client.get(f"/tasks/{task['id']}"))  # its lane's name, from lanes.json
    client = login(trip_app, "alice")
    done = client.post(f"/tasks/{task['id']}/complete", data={"nights": "3", "csrf_token": client.token})
    assert done.status_code == 302
    data = eng.instance(inst["id"], "alice")["data"]
    assert (data["trip_days"], data["travel_class"], data["outcome"]) == (4, "economy", "settled")
    for lang, (message, class_label, economy, outcome, days, _lane) in TRIP_TEXT.items():
        client = login(trip_app, "alice", lang)
        html = client.get(f"/instances/{inst['id']}").get_data(as_text=True)
        card = re.search(r'<dl class="datalist result-card" id="trip-card">(.*?)</dl>', html, re.S)
        assert card and _row(card.group(1), "trip_days") == (days, "4")
        assert _row(html, "travel_class") == (class_label, economy)
        assert html.count('data-key="trip_days"') == 1  # on the card, not again in the list
        assert outcome in text_of(re.search(r'<dd id="outcome">.*?</dd>', html, re.S).group(0))
        started = text_of(client.get("/?tab=started"))
        assert outcome in started
        for raw in ("travel_class", "economy", "trip_days"):  # no raw key or value
            assert not re.search(rf"\b{raw}\b", text_of(html)), raw


# ---------------------------------------------------------------- the shipped processes read as before
APPROVE = {"decision": "approve", "comment": "同意"}
MAJOR_CONTRACT = {"customer": "苏州华达机械", "amount": 600000, "payment_terms": "non_standard",
                  "customer_has_credit_record": False, "summary": "两套设备"}
SCORES = dict(zip(["sales_achievement", "new_customers", "collection_rate", "lead_conversion",
                   "customer_satisfaction", "compliance", "teamwork", "learning"], [70, 75, 72, 68, 80, 85, 78, 82]))


def _row(html: str, key: str) -> tuple[str, str]:
    """(label, text) of the data row of `key` (the first one)."""
    match = re.search(rf'data-key="{key}">\s*<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>', html, re.S)
    assert match, f"no row {key}"
    return text_of(match.group(1)).strip(), text_of(match.group(2)).strip()


@pytest.fixture
def app(engine, tmp_path):
    return create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "test", "TESTING": True}, engine=engine)


def test_the_shipped_processes_words_are_unchanged_in_both_languages(app):
    eng = app.extensions["salesflow"]
    claim = eng.start("expense_approval", "alice", invoiced(eng, "alice", {
        "category": "travel", "amount": 25000, "incurred_on": "2025-03-03", "description": "高铁票"}))
    contract = eng.start("contract_review", "alice")
    [task] = eng.tasks("alice", instance_id=contract["id"])
    eng.complete(task["id"], "alice", MAJOR_CONTRACT)
    [legal] = eng.tasks("grace", instance_id=contract["id"])
    eng.complete(legal["id"], "grace", {"decision": "return", "comment": "请补充"})
    appraisal = eng.start("performance_appraisal", "ivan", {"employee": "alice", "period": "2025-Q3",
                                                             "cycle": "quarterly", "period_end": "2025-09-30"},
                          at=at("2025-09-30T18:00"))
    iid = appraisal["id"]
    for name, user, data, when in [
            ("self_evaluation", "alice", {"achievements": "完成目标", "evidence": "订单"}, "2025-10-09T10:00"),
            ("manager_evaluation", "dave", {"scores": SCORES, "report": "目标基本达成"}, "2025-10-13T10:00"),
            ("result_talk", "dave", {"talk_minutes": 45, "improvement_plan": "每月跟进回款"}, "2025-10-20T10:00"),
            ("employee_decision", "alice", {"decision": "appeal", "reason": "不同意"}, "2025-10-21T10:00"),
            ("hr_appeal_review", "ivan", {"decision": "change", "grade": "A", "comment": "建议调整"}, "2025-10-22T10:00"),
            ("director_appeal_decision", "frank", {"decision": "change", "grade": "A", "comment": "调整"},
             "2025-10-23T10:00")]:
        [t] = [t for t in eng.instance(iid, "admin")["tasks"] if t["name"] == name and t["status"] == "open"]
        eng.complete(t["id"], user, data, at=at(when))
    lead = eng.start("lead_to_aftersales", "alice", {"company": "苏州华达机械", "contact": "王经理", "source": "web"})
    [t] = eng.tasks("alice", instance_id=lead["id"])
    eng.complete(t["id"], "alice", {"basic_needs": "自动化", "purchase_intent": "low", "qualified": False,
                                    "lost_reason": "预算不足"})
    plan = eng.start("budget_plan", "heidi", {"month": "2026-11", "lines": [
        {"region": "east", "category": "travel", "amount": 5000}]})
    [t] = eng.tasks("judy", instance_id=plan["id"])
    eng.complete(t["id"], "judy", APPROVE)
    expected = {
        "en": {
            (claim["id"], "needs_director"): ("Needs the sales director", "Yes"),
            (claim["id"], "needs_special_approval"): ("Needs special approval", "Yes"),
            (contract["id"], "major"): ("Major contract", "Yes"),
            (contract["id"], "major_reason"): ("Why it is major", "the amount is 500,000 or more; "
                                               "non-standard payment terms; the customer has no credit record"),
            (contract["id"], "review_result"): ("Review result", "Returned for revision"),
            (appraisal["id"], "grade"): ("Grade", "A"),
            (appraisal["id"], "score"): ("Score", "75.3"),
            (appraisal["id"], "bonus_multiplier"): ("Bonus", "100%"),
            (appraisal["id"], "pip"): ("Performance improvement plan", "Not required"),
            (appraisal["id"], "original_grade"): ("Grade before the appeal", "B"),
            (appraisal["id"], "appeal_result"): ("Appeal result", "Changed"),
            (appraisal["id"], "quantitative_score"): ("Quantitative score (60%)", "71.2"),
            (appraisal["id"], "appeal_filed_on"): ("Appeal filed on", "2025-10-21"),
            (plan["id"], "plan_total"): ("Plan total (CNY)", "5,000"),
        },
        "zh-CN": {
            (claim["id"], "needs_director"): ("需销售总监审批", "是"),
            (claim["id"], "needs_special_approval"): ("需总经理特批", "是"),
            (contract["id"], "major"): ("重大合同", "是"),
            (contract["id"], "major_reason"): ("重大合同原因", "金额达到 50 万元及以上；非标准付款条款；客户无信用记录"),
            (contract["id"], "review_result"): ("审核结论", "退回修改"),
            (appraisal["id"], "grade"): ("等级", "A"),
            (appraisal["id"], "score"): ("综合得分", "75.3"),
            (appraisal["id"], "bonus_multiplier"): ("奖金比例", "100%"),
            (appraisal["id"], "pip"): ("绩效改进计划", "不需要"),
            (appraisal["id"], "original_grade"): ("申诉前等级", "B"),
            (appraisal["id"], "appeal_result"): ("申诉结果", "已调整"),
            (appraisal["id"], "quantitative_score"): ("定量指标得分（60%）", "71.2"),
            (appraisal["id"], "appeal_filed_on"): ("申诉日期", "2025-10-21"),
            (plan["id"], "plan_total"): ("预算合计（元）", "5,000"),
        },
    }
    for lang, rows in expected.items():
        client = login(app, "admin", lang)
        pages = {}
        for (number, key), (label, value) in rows.items():
            if number not in pages:
                pages[number] = client.get(f"/instances/{number}").get_data(as_text=True)
            html = pages[number]
            assert _row(html, key) == (label, value), (lang, key)
        card = re.search(r'<dl class="datalist result-card" id="appraisal-result">(.*?)</dl>',
                         pages[appraisal["id"]], re.S).group(1)
        assert [k for k in re.findall(r'data-key="(\w+)"', card)] == [
            "grade", "score", "bonus_multiplier", "pip", "original_grade", "appeal_result"]
        assert 'class="dl-row result-main" data-key="grade"' in card and 'title="75.25"' in card
        lost = client.get(f"/instances/{lead['id']}").get_data(as_text=True)
        assert text_of(re.search(r'<dd id="outcome">.*?</dd>', lost, re.S).group(0)).strip() == \
            ("Lost" if lang == "en" else "输单")
        started = text_of(login(app, "alice", lang).get("/?tab=started"))
        assert ("Lost" if lang == "en" else "输单") in started
        # a form's message, in the page's language: an approval returned without a comment
        [task] = eng.tasks("dave", instance_id=claim["id"])
        dave = login(app, "dave", lang)
        refused = dave.post(f"/tasks/{task['id']}/complete", data={"decision": "return", "csrf_token": dave.token})
        assert refused.status_code == 422
        assert ("a comment is required to return or reject" if lang == "en" else "退回或驳回时必须填写说明") \
            in text_of(refused)


def test_an_instance_of_a_version_deployed_before_its_words_reads_the_same(database, workflows, tmp_path):
    """A version deployed before vocabulary.json and the forms' x-error-zh existed: its pages take the words
    of the latest version (the engine merges them), so nothing reads differently after the upgrade."""
    without_words(workflows)
    eng = make_engine(database, workflows)
    old = eng.start("contract_review", "alice")
    [task] = eng.tasks("alice", instance_id=old["id"])
    eng.complete(task["id"], "alice", MAJOR_CONTRACT)
    with_words(workflows)
    assert "contract_review v2" in eng.deploy()
    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "test", "TESTING": True}, engine=eng)
    [legal] = eng.tasks("grace", instance_id=old["id"])
    for lang, label, message in [("en", "Why it is major", "a comment is required to return or reject"),
                                 ("zh-CN", "重大合同原因", "退回或驳回时必须填写说明")]:
        client = login(app, "grace", lang)
        assert _row(client.get(f"/instances/{old['id']}").get_data(as_text=True), "major_reason")[0] == label
        refused = client.post(f"/tasks/{legal['id']}/complete", data={"decision": "return", "csrf_token": client.token})
        assert refused.status_code == 422 and message in text_of(refused)
