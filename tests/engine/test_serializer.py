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


def _stdlib_dumps(wf) -> str:
    """What SpiffWorkflow's own encoder (json) writes for the workflow: what orjson must match."""
    s = serializer._serializer
    s.registry._encoder_mode = True
    try:
        dct = s.to_dict(wf)
        dct[s.VERSION_KEY] = s.VERSION
        return json.dumps(dct, cls=s._encoder_cls, ensure_ascii=False, separators=(",", ":"))
    finally:
        s.registry._encoder_mode = False


def test_orjson_writes_what_spiffworkflows_encoder_writes(engine):
    from datetime import datetime, timedelta
    inst = engine.start("contract_review", "alice", MAJOR)
    state, parsed = stored(engine, inst["id"])
    wf = serializer.loads(state, parsed.spec, parsed.subprocess_specs)
    wf.task_tree.data.update({
        "when": datetime(2026, 12, 1, 9, 30), "how_long": timedelta(days=2, seconds=5), "tags": {"a"},
        "callback": len, "by_number": {1: "一", 2.5: "二点五", None: "none"},
        "amount": 1234.5, "tiny": 1e-7, "huge": 1e22, "text": "华东重工 \"quoted\" \\ \u2028"})
    ours, theirs = serializer.dumps(wf), _stdlib_dumps(wf)
    # the same document, key order included (floats may be spelled differently: 1e+22 and 1e22)
    assert json.dumps(json.loads(ours)) == json.dumps(json.loads(theirs))
    back = serializer.loads(ours, parsed.spec, parsed.subprocess_specs)
    data = back.task_tree.data
    assert data["when"] == datetime(2026, 12, 1, 9, 30) and data["how_long"] == timedelta(days=2, seconds=5)
    assert data["tags"] == ["a"] and data["callback"] is None
    assert data["by_number"] == {"1": "一", "2.5": "二点五", "null": "none"}
    assert serializer.dumps(back) == ours


def test_what_orjson_cannot_write_or_read_json_still_does(engine):
    inst = engine.start("contract_review", "alice", MAJOR)
    state, parsed = stored(engine, inst["id"])
    wf = serializer.loads(state, parsed.spec, parsed.subprocess_specs)
    wf.task_tree.data["big"] = 2 ** 70  # beyond 64 bits: orjson refuses it, json writes it
    written = serializer.dumps(wf)
    assert str(2 ** 70) in written and written == _stdlib_dumps(wf)
    wf.task_tree.data["big"] = float("nan")  # json writes NaN (not JSON); orjson cannot read it back
    old = _stdlib_dumps(wf)
    assert "NaN" in old
    back = serializer.loads(old, parsed.spec, parsed.subprocess_specs)
    assert back.task_tree.data["big"] != back.task_tree.data["big"]  # NaN, read by json


def test_json_columns_are_written_by_orjson_as_json_would_and_refuse_what_json_refused():
    from datetime import datetime
    from engine.db import json_dumps, json_loads
    value = {"名": "华东重工", "n": [1, 2.5, None, True], 3: "three", "nested": {"z": 1, "a": 2}}
    assert json_loads(json_dumps(value)) == json.loads(json.dumps(value))
    assert list(json_loads(json_dumps(value))["nested"]) == ["z", "a"]  # order kept
    assert "华东重工" in json_dumps(value)  # UTF-8, not \\u escapes
    for refused in ({"at": datetime(2026, 12, 1)}, {"s": {1}}):
        with pytest.raises(TypeError):
            json.dumps(refused)
        with pytest.raises(TypeError):
            json_dumps(refused)
    assert json_loads(json_dumps({"big": 2 ** 70})) == {"big": 2 ** 70}  # json writes what orjson cannot
    assert json_loads('{"x": NaN}')["x"] != json_loads('{"x": NaN}')["x"]  # and reads what only json reads
