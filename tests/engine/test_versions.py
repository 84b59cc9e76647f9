"""Versions: a process's version changes only when a file it uses changes; a running server sees a
new deployment within 5 seconds; `salesflow migrate` moves running instances across a real change
of a BPMN file with SpiffWorkflow's diff and migration, and refuses (saying why) where an open step
no longer exists."""
from __future__ import annotations

import shutil
import time

import pytest
from click.testing import CliRunner
from lxml import etree

from engine.runtime import DEFAULT_WORKFLOWS_DIR, Engine
from webui.cli import main as salesflow_main
from tests.conftest import invoiced

NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
      "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI"}
CLAIM = {"category": "travel", "amount": 30000, "incurred_on": "2026-11-10", "description": "展会差旅 trade show"}
APPROVE = {"decision": "approve", "comment": "同意"}


@pytest.fixture
def flows(tmp_path):
    path = tmp_path / "workflows"
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, path, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return path


@pytest.fixture
def eng(database, flows):
    from engine.demo import seed_demo
    e = Engine(database, flows)
    e.setup()
    with database.write() as session:
        seed_demo(session)
    return e


def versions(engine) -> dict[str, int]:
    result = {}
    for row in engine.admin_definitions("admin"):
        result[row["process_id"]] = max(result.get(row["process_id"], 0), row["version"])
    return result


def test_one_dmn_change_bumps_only_the_process_that_uses_it(eng, flows):
    assert set(versions(eng).values()) == {1}
    dmn = flows / "appraisal_grade.dmn"
    text = dmn.read_text(encoding="utf-8")
    changed = text.replace('name="', 'name="2026 ', 1)  # a real change of the table (its name)
    assert changed != text
    dmn.write_text(changed, encoding="utf-8")
    assert eng.deploy() == ["performance_appraisal v2"]
    assert versions(eng) == {"expense_approval": 1, "contract_review": 1, "performance_appraisal": 2,
                             "lead_to_aftersales": 1, "budget_plan": 1}
    # a form used by two processes (the approval form) bumps exactly those that use it
    form = flows / "forms" / "approval.json"
    form.write_text(form.read_text(encoding="utf-8").replace('"说明"', '"审批说明"'), encoding="utf-8")
    assert sorted(eng.deploy()) == ["budget_plan v2", "contract_review v2", "expense_approval v2",
                                    "lead_to_aftersales v2"]
    assert eng.deploy() == []


def test_a_running_server_starts_the_new_version_within_5_seconds(database, flows, eng):
    server = Engine(database, flows)  # another process: its own cache of the definitions
    assert {p["id"]: p["version"] for p in server.processes("alice")}["expense_approval"] == 1
    bpmn = flows / "expense_approval.bpmn"
    bpmn.write_text(bpmn.read_text(encoding="utf-8").replace('value="Manager approval"', 'value="Line manager approval"'),
                    encoding="utf-8")
    deployer = Engine(database, flows)
    assert deployer.deploy() == ["expense_approval v2"]
    started = time.monotonic()
    while True:
        inst = server.start("expense_approval", "alice", invoiced(server, "alice", CLAIM))
        if inst["version"] == 2:
            break
        assert time.monotonic() - started < 5, "the server still starts v1 five seconds after the deployment"
        time.sleep(0.2)
    assert inst["tasks"][0]["title_en"] == "Line manager approval"
    assert {p["id"]: p["version"] for p in server.processes("alice")}["expense_approval"] == 2


def _remove_director_step(path):
    """A real change: expense claims over the threshold no longer go to the sales director."""
    tree = etree.parse(str(path))
    root = tree.getroot()
    gone = {"director_approval", "gw_director", "end_rejected_director", "f_dir", "f_dir_ok", "f_dir_return",
            "f_dir_reject"}
    for el in list(root.iter()):
        if not isinstance(el.tag, str):
            continue
        if el.get("id") in gone or el.get("bpmnElement") in gone or (el.text or "").strip() in gone and \
                etree.QName(el).localname in ("flowNodeRef", "incoming", "outgoing"):
            el.getparent().remove(el)
    flow = root.find(".//bpmn:sequenceFlow[@id='f_need_dir']", NS)
    flow.set("targetRef", "gw_need_gm")
    gw = root.find(".//bpmn:exclusiveGateway[@id='gw_need_gm']", NS)
    incoming = etree.SubElement(gw, f"{{{NS['bpmn']}}}incoming")
    incoming.text = "f_need_dir"
    extensions = gw.find("bpmn:extensionElements", NS)  # the schema wants extensionElements first
    gw.insert(0 if extensions is None else list(gw).index(extensions) + 1, incoming)
    task = root.find(".//bpmn:userTask[@id='manager_approval']", NS)
    task.set("name", "直属经理审核")
    tree.write(str(path), xml_declaration=True, encoding="UTF-8")


def test_migrate_moves_an_instance_across_a_real_change_and_keeps_one_whose_step_is_gone(eng, flows, monkeypatch,
                                                                                     tmp_path):
    waiting_for_manager = eng.start("expense_approval", "alice", invoiced(eng, "alice", CLAIM))
    at_director = eng.start("expense_approval", "bob", invoiced(eng, "bob", CLAIM))
    (mgr,) = [t for t in at_director["tasks"] if t["name"] == "manager_approval"]
    eng.complete(mgr["id"], "dave", APPROVE)
    assert [t["name"] for t in eng.instance(at_director["id"], "bob")["tasks"]] == ["director_approval"]

    _remove_director_step(flows / "expense_approval.bpmn")
    assert eng.deploy() == ["expense_approval v2"]
    defs = {(d["process_id"], d["version"]): d["running_instances"] for d in eng.admin_definitions("admin")}
    assert defs[("expense_approval", 1)] == 2 and defs[("expense_approval", 2)] == 0

    monkeypatch.setenv("SALESFLOW_DATABASE_URL", eng.db.url)
    monkeypatch.setenv("SALESFLOW_INSTANCE_DIR", str(tmp_path))
    import engine.runner as runner_module
    monkeypatch.setattr(runner_module, "DEFAULT_WORKFLOWS_DIR", flows)
    monkeypatch.setattr("engine.runtime.DEFAULT_WORKFLOWS_DIR", flows)

    dry = CliRunner().invoke(salesflow_main, ["migrate", "expense_approval", "--dry-run"])
    assert dry.exit_code == 1, dry.output
    assert f"#{waiting_for_manager['id']} v1 -> v2: would migrate" in dry.output
    assert eng.instance(waiting_for_manager["id"], "alice")["version"] == 1  # a dry run changes nothing

    result = CliRunner().invoke(salesflow_main, ["migrate", "expense_approval"])
    assert result.exit_code == 1, result.output
    assert f"#{waiting_for_manager['id']} v1 -> v2: migrated" in result.output
    assert (f"#{at_director['id']} v1 -> v2: kept: the open step director_approval no longer exists"
            in result.output)

    moved = eng.instance(waiting_for_manager["id"], "alice")
    assert moved["version"] == 2 and moved["status"] == "running"
    (task,) = moved["tasks"]
    assert task["name"] == "manager_approval" and task["title"] == "直属经理审核" and task["assignee"] == "dave"
    assert any(h["action"] == "migrated" and h["detail"] == {"from": 1, "to": 2} for h in moved["history"])
    # the new version's route: over the threshold, but no sales director any more
    after = eng.complete(task["id"], "dave", APPROVE)["instance"]
    assert [t["name"] for t in after["tasks"]] == ["gm_approval"]  # 30,000 is over the 10,000 budget

    kept = eng.instance(at_director["id"], "bob")
    assert kept["version"] == 1 and [t["name"] for t in kept["tasks"]] == ["director_approval"]
    eng.complete(kept["tasks"][0]["id"], "frank", APPROVE)  # v1 goes on as before

    defs = {(d["process_id"], d["version"]): d["running_instances"] for d in eng.admin_definitions("admin")}
    assert defs[("expense_approval", 1)] == 1 and defs[("expense_approval", 2)] == 1
    # --to: back to v1 works too while the open step (the general manager's) exists there
    again = CliRunner().invoke(salesflow_main, ["migrate", "expense_approval", "--to", "1"])
    assert again.exit_code == 0 and f"#{waiting_for_manager['id']} v2 -> v1: migrated" in again.output
    unknown = CliRunner().invoke(salesflow_main, ["migrate", "expense_approval", "--to", "9"])
    assert unknown.exit_code == 1 and "no version 9" in unknown.output


def test_migrate_keeps_an_instance_when_a_finished_step_was_removed(eng, flows):
    inst = eng.start("expense_approval", "alice", invoiced(eng, "alice", CLAIM))
    (mgr,) = inst["tasks"]
    eng.complete(mgr["id"], "dave", APPROVE)
    (director,) = eng.instance(inst["id"], "alice")["tasks"]
    eng.complete(director["id"], "frank", APPROVE)  # now at the general manager: the director step is done
    _remove_director_step(flows / "expense_approval.bpmn")
    eng.deploy()
    (result,) = eng.migrate("expense_approval")
    assert result["result"] == "kept" and "director_approval" in result["why"], result
    assert eng.instance(inst["id"], "alice")["version"] == 1
