"""Task forms: JSON Schema validation with one message per field.

Only the fields a form declares are accepted (form data becomes evaluation
globals, ENGINE-NOTES), and unknown ones are reported rather than dropped.
"""
from __future__ import annotations

from functools import lru_cache
import json

import jsonschema

from .errors import ValidationFailed


@lru_cache(maxsize=256)
def _validator(schema_json: str):
    schema = json.loads(schema_json)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


# the validator of a schema object, by identity: the forms of a parsed definition live as long as it
# does, so a completion need not write its schema out to find the validator (the schema is held here,
# so its id is never reused while it is a key)
_BY_SCHEMA: dict[int, tuple] = {}


def _validator_of(schema: dict):
    held = _BY_SCHEMA.get(id(schema))
    if held is not None and held[0] is schema:
        return held[1]
    validator = _validator(json.dumps(schema, sort_keys=True))
    if len(_BY_SCHEMA) > 1024:
        _BY_SCHEMA.clear()
    _BY_SCHEMA[id(schema)] = (schema, validator)
    return validator


def _fields_of(error) -> list[str]:
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            prefix = ".".join(str(p) for p in error.path)
            return [f"{prefix}.{m}" if prefix else m for m in missing]
    if error.path:
        return [".".join(str(p) for p in error.path)]
    return ["_form"]


def _message(error) -> str:
    custom = (error.schema or {}).get("x-error") if isinstance(error.schema, dict) else None
    if error.validator == "required":
        return "this field is required"
    if custom:
        return custom
    if error.validator == "enum":
        return "must be one of: " + ", ".join(map(str, error.validator_value))
    if error.validator == "type":
        return f"must be of type {error.validator_value}"
    return error.message


def validate_form(schema: dict, data) -> dict:
    """Return the accepted data or raise ValidationFailed({field: message})."""
    if not isinstance(data, dict):
        raise ValidationFailed({"_form": "data must be a JSON object"})
    properties = schema.get("properties", {})
    errors = {key: "unknown field" for key in data if key not in properties}
    validator = _validator_of(schema)
    for error in sorted(validator.iter_errors(data), key=lambda e: len(list(e.path))):
        for name in _fields_of(error):
            errors.setdefault(name, _message(error))
    if errors:
        raise ValidationFailed(errors)
    return {key: value for key, value in data.items() if key in properties}
