"""SpiffWorkflow state with the spec stored once per definition version and referenced by key.

The stock converter copies the whole spec into every instance; this one writes only
the task tree and restores the spec from the parsed-definition cache.
"""
from __future__ import annotations

import json
from uuid import UUID

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


def dumps(workflow: BpmnWorkflow) -> str:
    registry = _serializer.registry
    registry._encoder_mode = True
    try:
        dct = _serializer.to_dict(workflow)
        dct[_serializer.VERSION_KEY] = _serializer.VERSION
        # key order is significant (task data deltas): plain json keeps insertion order
        return json.dumps(dct, cls=_serializer._encoder_cls, ensure_ascii=False, separators=(",", ":"))
    finally:
        registry._encoder_mode = False


def loads(state: str, spec, subprocess_specs) -> BpmnWorkflow:
    dct = json.loads(state, cls=_serializer.json_decoder_cls)
    _serializer.migrate(dct)  # from_dict alone skips migrations
    return _serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs)


def registry():
    """The serializer's converter registry (SpiffWorkflow's diff compares specs through it)."""
    return _serializer.registry
