"""engine/forms.py on its own: JSON Schema validation with one message per field, unknown fields
reported (never silently dropped), the form's own x-error messages, nested paths."""
from __future__ import annotations

import json

import pytest

from engine.errors import ValidationFailed
from engine.forms import validate_form
from engine.runtime import DEFAULT_WORKFLOWS_DIR

SCHEMA = {
    "type": "object", "required": ["name", "minutes"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "minutes": {"type": "integer", "minimum": 30, "x-error": "at least 30 minutes"},
        "kind": {"type": "string", "enum": ["a", "b"]},
        "when": {"type": "string", "format": "date"},
        "scores": {"type": "object", "required": ["x"], "properties": {"x": {"type": "number", "maximum": 10}}},
    },
}


def errors(data, schema=SCHEMA) -> dict:
    with pytest.raises(ValidationFailed) as err:
        validate_form(schema, data)
    return err.value.errors


def test_valid_data_is_returned_whole():
    data = {"name": "x", "minutes": 30, "kind": "b", "when": "2026-02-28", "scores": {"x": 10}}
    assert validate_form(SCHEMA, data) == data


def test_one_message_per_field():
    assert errors({}) == {"name": "this field is required", "minutes": "this field is required"}
    assert errors({"name": "x", "minutes": 29}) == {"minutes": "at least 30 minutes"}
    assert errors({"name": "x", "minutes": "30"}) == {"minutes": "at least 30 minutes"}  # x-error covers the field
    assert errors({"name": "x", "minutes": 30, "kind": "c"}) == {"kind": "must be one of: a, b"}
    assert errors({"name": 5, "minutes": 30}) == {"name": "must be of type string"}
    assert list(errors({"name": "x", "minutes": 30, "when": "2026-02-30"})) == ["when"]
    assert errors({"name": "", "minutes": 30})["name"]


def test_nested_fields_are_named_by_their_path():
    assert errors({"name": "x", "minutes": 30, "scores": {}}) == {"scores.x": "this field is required"}
    assert list(errors({"name": "x", "minutes": 30, "scores": {"x": 11}})) == ["scores.x"]


def test_unknown_fields_and_non_objects_are_refused():
    assert errors({"name": "x", "minutes": 30, "extra": 1, "other": 2}) == {"extra": "unknown field", "other": "unknown field"}
    for data in (None, [], "text", 3):
        assert errors(data) == {"_form": "data must be a JSON object"}
    assert errors({}, {"type": "object", "properties": {}, "minProperties": 1}) == {"_form": "{} should be non-empty"}


@pytest.mark.parametrize("form", sorted(p.name for p in (DEFAULT_WORKFLOWS_DIR / "forms").glob("*.json")))
def test_every_shipped_form_refuses_an_empty_answer_or_accepts_it_with_nothing_required(form):
    schema = json.loads((DEFAULT_WORKFLOWS_DIR / "forms" / form).read_text(encoding="utf-8"))
    required = schema.get("required", [])
    if required:
        assert set(required) <= set(errors({}, schema))
    else:
        assert validate_form(schema, {}) == {}
