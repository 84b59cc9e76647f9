"""The engine's guarantees, without HTTP: all-or-nothing commands, version pinning,
deploy-time refusal of unsafe definitions, restricted expressions, compact state."""
from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import func, inspect, select, text

from engine.definitions import DefinitionError, WorkflowDirectory, parse_bundle
from engine.errors import Conflict, ProcessError, ValidationFailed
from engine.expressions import ExpressionError, RestrictedEnvironment
from engine.calendar import BusinessCalendar
from engine.models import HistoryEvent, HumanTask, ProcessDefinition, ProcessInstance
from engine.runtime import DEFAULT_WORKFLOWS_DIR, Engine
from tests.helpers import APPROVE, CLAIM, edit, everything, invoiced, make_engine

def snapshot(eng: Engine, instance_id: int):
    with eng.db.read() as s:
        inst = s.get(ProcessInstance, instance_id)
        tasks = sorted((t.name, t.status) for t in s.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)))
        history = s.scalar(select(func.count()).select_from(HistoryEvent).where(HistoryEvent.instance_id == instance_id))
        return inst.state, inst.lock_version, inst.status, dict(inst.data), tasks, history


def test_a_failing_expression_rolls_the_whole_command_back(database, workflows):
    edit(workflows / "expense_approval.bpmn", ">needs_director</bpmn:conditionExpression>",
         ">needs_directorate</bpmn:conditionExpression>")
    eng = make_engine(database, workflows)
    inst = eng.start("expense_approval", "alice", invoiced(eng, "alice", CLAIM))
    task = inst["tasks"][0]
    before = snapshot(eng, inst["id"])
    with pytest.raises(ProcessError) as err:
        eng.complete(task["id"], "dave", APPROVE)
    assert "nothing was changed" in err.value.message
    assert snapshot(eng, inst["id"]) == before  # state, version, tasks and history untouched
    # the task is still open and dave still sees it
    assert [t["id"] for t in eng.tasks("dave")] == [task["id"]]


def test_a_command_failing_after_it_wrote_leaves_no_trace(database, workflows):
    """The end event's copy condition fails after budget.consume booked the spending and released the
    reservation (statements already sent to the database): the whole command rolls back, every table
    is as it was."""
    edit(workflows / "expense_approval.bpmn", 'name="ccCondition" value="needs_special_approval"',
         'name="ccCondition" value="needs_special_approvall"')
    eng = make_engine(database, workflows)
    inst = eng.start("expense_approval", "alice", invoiced(eng, "alice", CLAIM))
    finance = eng.complete(inst["tasks"][0]["id"], "dave", APPROVE)["tasks"][0]
    before = everything(database)
    assert [row[-1] for row in before["budget_entries"]] == ["'reserved'"]
    with pytest.raises(ProcessError) as err:
        eng.complete(finance["id"], "heidi", APPROVE)
    assert "needs_special_approvall" in err.value.message
    assert everything(database) == before


def test_a_command_failing_after_it_saved_everything_is_rolled_back_whole(engine, monkeypatch):
    """A failure after the command wrote its instance, tasks, participants, history and notifications
    (simulated: the save itself succeeds, then something raises) leaves nothing: start and complete."""
    claim = invoiced(engine, "alice", CLAIM)  # the upload is its own transaction, before the command
    before = everything(engine.db)
    save = Engine._save

    def save_then_fail(self, cmd, wf=None):
        save(self, cmd, wf)
        cmd.session.flush()
        raise RuntimeError("the disk is full")
    monkeypatch.setattr(Engine, "_save", save_then_fail)
    with pytest.raises(RuntimeError):
        engine.start("expense_approval", "alice", claim)
    assert everything(engine.db) == before  # the invoice stays unlinked, as it was
    monkeypatch.setattr(Engine, "_save", save)
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    before = everything(engine.db)
    monkeypatch.setattr(Engine, "_save", save_then_fail)
    with pytest.raises(RuntimeError):
        engine.complete(inst["tasks"][0]["id"], "dave", APPROVE)
    assert everything(engine.db) == before


def test_an_instance_changed_behind_the_command_is_a_conflict_and_nothing_is_written(database, workflows, monkeypatch):
    """The instance UPDATE checks lock_version: a write that slipped past the lock (simulated here
    by bumping the version inside the command) makes the command fail whole, with 409."""
    eng = make_engine(database, workflows)
    inst = eng.start("expense_approval", "alice", invoiced(eng, "alice", CLAIM))
    task = inst["tasks"][0]
    before = snapshot(eng, inst["id"])
    load = Engine._load

    def load_then_bump(self, cmd):
        cmd.session.execute(text("UPDATE process_instances SET lock_version = lock_version + 1 WHERE id = :id"),
                            {"id": cmd.instance.id})
        return load(self, cmd)

    monkeypatch.setattr(Engine, "_load", load_then_bump)
    with pytest.raises(Conflict):
        eng.complete(task["id"], "dave", APPROVE)
    assert snapshot(eng, inst["id"]) == before  # the bump rolled back with everything else
    monkeypatch.setattr(Engine, "_load", load)
    assert eng.complete(task["id"], "dave", APPROVE)["tasks"][0]["name"] == "finance_approval"
    _state, version, *_ = snapshot(eng, inst["id"])
    assert version == before[1] + 1


def test_instances_stay_on_the_version_they_started_with(database, workflows):
    eng = make_engine(database, workflows)
    old = eng.start("expense_approval", "alice", invoiced(eng, "alice", CLAIM))
    edit(workflows / "expense_approval.bpmn", 'name="财务审核付款"', 'name="财务复核"')
    assert eng.deploy() == ["expense_approval v2"]
    assert eng.deploy() == []  # unchanged content is not deployed again
    assert [p["version"] for p in eng.processes("alice") if p["id"] == "expense_approval"] == [2]
    new = eng.start("expense_approval", "bob", invoiced(eng, "bob", CLAIM))
    old_fin = eng.complete(old["tasks"][0]["id"], "dave", APPROVE)["tasks"][0]
    new_fin = eng.complete(new["tasks"][0]["id"], "dave", APPROVE)["tasks"][0]
    assert old_fin["title"] == "财务审核付款"
    assert new_fin["title"] == "财务复核"
    with eng.db.read() as s:
        versions = dict(s.execute(select(ProcessInstance.id, ProcessDefinition.version)
                                  .join(ProcessDefinition, ProcessDefinition.id == ProcessInstance.definition_id)).all())
    assert versions == {old["id"]: 1, new["id"]: 2}
    # a fresh engine (a restart) still runs the old version from the sources stored in the database
    shutil.rmtree(workflows / "forms")
    shutil.copytree(DEFAULT_WORKFLOWS_DIR / "forms", workflows / "forms")
    restarted = Engine(database, workflows)
    done = restarted.complete(old_fin["id"], "heidi", APPROVE)
    assert done["instance"]["data"]["outcome"] == "approved"


@pytest.mark.parametrize("old, new, message", [
    ('<bpmn:serviceTask id="check_budget"', '<bpmn:scriptTask id="check_budget"', "not allowed"),
    (">needs_director</bpmn:conditionExpression>",
     ">().__class__.__base__.__subclasses__()</bpmn:conditionExpression>", "not allowed"),
    ('<bpmn:lane id="Lane_Finance" name="Finance">', '<bpmn:lane id="Lane_Finance" name="Accounting">', "lanes.json"),
    ('"forms/approval.json"', '"forms/missing.json"', "not found"),
    ('<bpmndi:BPMNShape id="finance_approval_di"', '<bpmndi:BPMNShape id="finance_approval_di_x"', None),
])
def test_deploy_refuses_unsafe_or_broken_definitions(database, workflows, old, new, message):
    path = workflows / "expense_approval.bpmn"
    text = path.read_text(encoding="utf-8")
    if old.startswith('<bpmn:serviceTask'):
        text = text.replace("</bpmn:serviceTask>", "</bpmn:scriptTask>", 1)
    text = text.replace(old, new, 1)
    if "BPMNShape" in old:  # drop the shape of finance_approval entirely
        text = text.replace('bpmnElement="finance_approval"', 'bpmnElement="nothing_here"')
        message = "no diagram shape"
    path.write_text(text, encoding="utf-8")
    eng = Engine(database, workflows)
    with pytest.raises(DefinitionError) as err:
        eng.setup()
    assert message in str(err.value)
    with database.read() as s:
        assert s.scalar(select(func.count()).select_from(ProcessDefinition)) == 0  # all or nothing


def test_dmn_cells_are_compiled_restricted(database, workflows):
    edit(workflows / "expense_routing.dmn", "<text>&lt;= 20000</text>", "<text>__import__('os').system('id')</text>")
    with pytest.raises(DefinitionError):
        Engine(database, workflows).setup()


def test_restricted_expressions():
    env = RestrictedEnvironment(BusinessCalendar.from_overrides())
    assert env.evaluate("amount > 100 and category in ('travel', 'other')", {"amount": 150, "category": "travel"})
    assert env.evaluate("review['decision'] == 'approve'", {"review": {"decision": "approve"}})
    assert env.evaluate("round(sum([a, b]) * 0.5, 1)", {"a": 1, "b": 2}) == 1.5
    # 2026 National Day: Oct 1-7 off, so the first working day after Sep 30 is Oct 8
    assert env.evaluate("working_days_after('2026-09-30', 1)", {}) == "2026-10-08T23:59:59+08:00"
    for evil in ("().__class__.__base__.__subclasses__()", "__import__('os')", "open('/etc/passwd').read()",
                 "getattr(x, '__class__')"):
        with pytest.raises((ExpressionError, NameError, SyntaxError, TypeError, AttributeError)):
            env.evaluate(evil, {"x": 1})
    with pytest.raises(ExpressionError):
        env.execute("x = 1", {})


def test_state_is_stored_without_the_spec_and_as_text(engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    with engine.db.read() as s:
        state = s.get(ProcessInstance, inst["id"]).state
        column_types = {c["name"]: str(c["type"]).upper() for c in inspect(s.connection()).get_columns("process_instances")}
    dct = json.loads(state)
    assert "spec" not in dct and "subprocess_specs" not in dct and dct["serializer_version"]
    assert len(state) < 20000
    assert "JSONB" not in column_types["state"] and "JSONB" not in column_types["data"]
    # and it restores: the open task is still there with the submitted data
    task = engine.task(inst["tasks"][0]["id"], "dave")
    assert task["data"]["amount"] == 1200 and task["can_act"]


def test_form_validation_messages():
    from engine.forms import validate_form
    schema = json.loads((DEFAULT_WORKFLOWS_DIR / "forms" / "approval.json").read_text())
    assert validate_form(schema, {"decision": "approve"}) == {"decision": "approve"}
    with pytest.raises(ValidationFailed) as err:
        validate_form(schema, {"decision": "reject", "extra": 1})
    assert err.value.errors == {"extra": "unknown field", "comment": "this field is required"}
    with pytest.raises(ValidationFailed) as err:
        validate_form(schema, {"decision": "return", "comment": "   "})
    assert list(err.value.errors) == ["comment"]
    with pytest.raises(ValidationFailed):
        validate_form(schema, "approve")


def test_workflow_directory_bundles_are_self_contained():
    bundles = WorkflowDirectory(DEFAULT_WORKFLOWS_DIR).bundles()
    expense = bundles["expense_approval"]
    assert set(expense["forms"]) == {"forms/approval.json", "forms/expense_claim.json"}
    parsed = parse_bundle(expense)
    assert parsed.tasks["manager_approval"].is_approval and parsed.tasks["manager_approval"].data_key == "manager_review"
    assert parsed.events["end_approved"]["outcome"] == "approved"


def test_migrations_match_the_models(database):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from engine.models import Base
    database.migrate()
    with database.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
