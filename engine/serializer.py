"""SpiffWorkflow state with the spec stored once per definition version and referenced by key.

The stock converter copies the whole spec into every instance; this one writes only
the task tree and restores the spec from the parsed-definition cache.
"""
from __future__ import annotations

import json
from types import ModuleType
from uuid import UUID

import orjson

from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG


class SpecByReferenceConverter(BpmnWorkflowConverter):
    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        if spec is None:
            raise ValueError("a spec is needed to restore a workflow stored by reference")
        workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


_config = dict(SPIFF_CONFIG)
_config[BpmnWorkflow] = SpecByReferenceConverter
_serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(_config))


# orjson writes what SpiffWorkflow's own encoder (json with its `default`) writes, several times
# faster: datetimes go to `_default` too (the registry's typed form, as before), keys that are not
# strings become strings as json makes them, key order is kept (it is significant: task data
# deltas). Whatever orjson cannot write (an integer beyond 64 bits) is written by json as before.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _default(obj):
    """SpiffWorkflow's encoder (helpers/encoder.py): registered types in their typed form, callables
    and modules dropped, sets as lists."""
    registry = _serializer.registry
    typename = registry.typenames.get(type(obj))
    if typename is not None:
        return registry.convert_to_dict[typename](obj)
    if callable(obj) or isinstance(obj, ModuleType):
        return None
    if isinstance(obj, set):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(workflow: BpmnWorkflow) -> str:
    registry = _serializer.registry
    registry._encoder_mode = True
    try:
        dct = _serializer.to_dict(workflow)
        dct[_serializer.VERSION_KEY] = _serializer.VERSION
        try:
            return orjson.dumps(dct, default=_default, option=_ORJSON_OPTIONS).decode()
        except orjson.JSONEncodeError:
            return json.dumps(dct, cls=_serializer._encoder_cls, ensure_ascii=False, separators=(",", ":"))
    finally:
        registry._encoder_mode = False


def loads(state: str, spec, subprocess_specs) -> BpmnWorkflow:
    try:
        dct = orjson.loads(state)
    except orjson.JSONDecodeError:  # what only json reads (NaN, in a state written long ago)
        dct = json.loads(state, cls=_serializer.json_decoder_cls)
    _serializer.migrate(dct)  # from_dict alone skips migrations
    return _serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs)


def registry():
    """The serializer's converter registry (SpiffWorkflow's diff compares specs through it)."""
    return _serializer.registry
