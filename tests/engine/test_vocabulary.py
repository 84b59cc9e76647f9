"""The words of a process's data, declared in workflows/ (vocabulary.json, the forms' x-error-zh): read with
the definitions, checked before anything is deployed, kept with each version, handed out by the engine."""
from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import func, select

from engine.definitions import DefinitionError, WorkflowDirectory, merge_vocabularies, parse_bundle
from engine.models import ProcessDefinition
from engine.runtime import DEFAULT_WORKFLOWS_DIR, Engine
from tests.helpers import edit, make_engine, with_words, without_words

CONTRACT = {"customer": "苏州华达机械", "amount": 600000, "payment_terms": "non_standard",
            "customer_has_credit_record": False, "summary": "两套设备"}


def test_a_bundle_holds_the_words_of_every_bpmn_process_it_contains():
    bundles = WorkflowDirectory(DEFAULT_WORKFLOWS_DIR).bundles()
    assert set(bundles["expense_approval"]["vocabulary"]) == {"expense_approval"}
    assert set(bundles["contract_review"]["vocabulary"]) == {"contract_review_round"}  # the round it calls
    assert set(bundles["lead_to_aftersales"]["vocabulary"]) == {"lead_to_aftersales", "contract_review_round"}
    lead = parse_bundle(bundles["lead_to_aftersales"]).vocabulary
    assert lead["data"]["lost_reason"] == {"title": "Why the lead was lost", "x-title-zh": "丢单原因"}
    assert lead["data"]["major_reason"]["x-enum-titles"]["no_credit_record"] == {
        "en": "the customer has no credit record", "zh": "客户无信用记录"}
    assert lead["data"]["outcome"]["x-enum-titles"]["won"] == {"en": "Won", "zh": "赢单"}
    assert lead["cards"] == []
    assert lead["messages"]["the customer is required"] == "必须填写客户"  # the contract form it calls
    appraisal = parse_bundle(bundles["performance_appraisal"]).vocabulary
    assert [card["id"] for card in appraisal["cards"]] == ["appraisal-result"]
    assert appraisal["messages"]["the result talk must last at least 30 minutes"] == "绩效面谈至少 30 分钟"


def test_a_directory_without_a_vocabulary_deploys_with_no_words(tmp_path):
    workflows = tmp_path / "workflows"
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, workflows, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (workflows / "vocabulary.json").unlink()
    bundle = WorkflowDirectory(workflows).bundles()["budget_plan"]
    assert "vocabulary" not in bundle
    assert parse_bundle(bundle).vocabulary["data"] == {}


def test_vocabularies_merge_later_words_winning():
    old = {"data": {"a": {"title": "A"}, "b": {"title": "B"}}, "cards": [{"id": "c", "rows": [1]}],
           "messages": {"m": "旧"}}
    new = {"data": {"a": {"title": "A2"}}, "cards": [{"id": "c", "rows": [2]}], "messages": {"m": "新", "n": "另"}}
    merged = merge_vocabularies(old, new)
    assert merged == {"data": {"a": {"title": "A2"}, "b": {"title": "B"}}, "cards": [{"id": "c", "rows": [2]}],
                      "messages": {"m": "新", "n": "另"}}


@pytest.mark.parametrize("old, new, message", [
    ('"x-title-zh": "丢单原因"', '"x-title-zh": ""', "needs both title and x-title-zh"),
    ('"lead_to_aftersales": {', '"lead_to_aftersale": {', "is not a BPMN process"),
    ('"zh": "赢单"', '"zh_cn": "赢单"', "every x-enum-titles value needs en and zh"),
    ('"id": "appraisal-result"', '"id": "Appraisal result"', "a card has an id"),
    ('"value": "payment_terms"', '"value": "terms"', "x-also needs a value"),
    ('"x-format": "money"', '"x-format": "yuan"', "x-format is money"),
    ('"title": "Plan total (CNY)",', '', "needs both title and x-title-zh"),
])
def test_deploy_refuses_words_missing_a_language_or_naming_nothing(database, workflows, old, new, message):
    edit(workflows / "vocabulary.json", old, new, 1)
    with pytest.raises(DefinitionError) as err:
        Engine(database, workflows).setup()
    assert "vocabulary.json" in str(err.value) and message in str(err.value)
    with database.read() as s:
        assert s.scalar(select(func.count()).select_from(ProcessDefinition)) == 0  # all or nothing


def test_an_instance_of_a_version_deployed_before_its_words_gets_the_latest_words(database, workflows):
    without_words(workflows)
    eng = make_engine(database, workflows)
    old = eng.start("contract_review", "alice")
    [task] = eng.tasks("alice", instance_id=old["id"])
    eng.complete(task["id"], "alice", CONTRACT)
    assert eng.instance(old["id"], "alice", labels=True)["vocabulary"] == {"data": {}, "cards": [], "messages": {}}
    # the words are declared: every process gets a new version; the old instance keeps its rules
    with_words(workflows)
    assert "contract_review v2" in eng.deploy()
    inst = eng.instance(old["id"], "alice", labels=True)
    assert inst["version"] == 1
    words = inst["vocabulary"]
    assert words["data"]["major_reason"]["x-title-zh"] == "重大合同原因"
    assert words["messages"]["a comment is required to return or reject"] == "退回或驳回时必须填写说明"
    # its own version's forms are unchanged: the web page finds their Chinese in the vocabulary
    [legal] = eng.tasks("grace", instance_id=old["id"])
    form = eng.task(legal["id"], "grace")["form"]
    assert "x-error-zh" not in json.dumps(form)


def test_the_engine_hands_out_the_words_of_every_process(engine):
    words = engine.vocabulary()
    assert set(words["data"]["outcome"]["x-enum-titles"]) == {"won", "lost"}
    assert words["data"]["plan_total"] == {"title": "Plan total (CNY)", "x-title-zh": "预算合计（元）"}
    assert [card["id"] for card in words["cards"]] == ["appraisal-result"]
    assert words["messages"]["the period is required"] == "必须填写考核期间"
    inst = engine.start("contract_review", "alice")
    assert engine.instance(inst["id"], "alice", labels=True)["vocabulary"]["data"]["review_result"]["title"] == \
        "Review result"
    assert "vocabulary" not in engine.instance(inst["id"], "alice")  # what the API returns is unchanged
