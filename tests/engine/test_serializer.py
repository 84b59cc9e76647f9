"""engine/serializer.py on its own: the state holds the task tree, never the spec (restored from the
parsed definition), and a stored state loads back to the same workflow, data, task ids and running
sub-processes."""
from __future__ import annotations

import json

import pytest
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine import serializer
from engine.models import ProcessInstance
from tests.helpers import invoiced

MAJOR = {"customer": "华东重工", "amount": 600000, "payment_terms": "standard",
         "customer_has_credit_record": True, "summary": "三年供货框架协议"}


def stored(engine, instance_id):
    with engine.db.read() as s:
        row = s.get(ProcessInstance, instance_id)
        return row.state, engine.definitions.get(s, row.definition_id)


def ready(wf):
    return sorted((str(t.id), t.task_spec.name) for t in wf.get_tasks(state=TaskState.READY))


def test_a_stored_state_loads_back_the_same_and_holds_no_spec(engine):
    inst = engine.start("contract_review", "alice", MAJOR)  # in the review round: a call activity runs
    state, parsed = stored(engine, inst["id"])
    as_json = json.loads(state)
    assert "spec" not in as_json and "subprocess_specs" not in as_json  # by reference
    assert "华东重工" in state  # not escaped: compact
    wf = serializer.loads(state, parsed.spec, parsed.subprocess_specs)
    assert wf.subprocesses  # the running round came back with its own tasks
    assert {t["id"] for t in inst["tasks"]} <= {tid for tid, _name in ready(wf)}
    assert serializer.dumps(wf) == state  # stable: loading and saving changes nothing


def test_a_state_needs_its_spec(engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", {"category": "travel", "amount": 1, "incurred_on": "2026-11-10",
                                                      "description": "d"}))
    state, parsed = stored(engine, inst["id"])
    with pytest.raises(ValueError, match="a spec is needed"):
        serializer.loads(state, None, None)
    fresh = BpmnWorkflow(parsed.spec, parsed.subprocess_specs)
    again = serializer.loads(serializer.dumps(fresh), parsed.spec, parsed.subprocess_specs)
    assert ready(again) == ready(fresh)
