"""webui.JSONProvider: responses are written by orjson, and say what Flask's json would say."""
from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

from flask import jsonify
from flask.json.provider import DefaultJSONProvider
from markupsafe import Markup


@dataclasses.dataclass
class Point:
    x: int
    label: str


def test_a_response_is_the_document_flasks_json_writes(app):
    value = {"名": "华东重工", "when": datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc), "day": date(2026, 12, 1),
             "id": uuid.UUID(int=7), "amount": Decimal("12.50"), "point": Point(1, "一"), "html": Markup("<b>"),
             "z": 1, "a": [1.5, None, True], 3: "three"}
    with app.test_request_context():
        ours = jsonify(value).get_data()
        plain = DefaultJSONProvider(app)
        plain.ensure_ascii, plain.sort_keys = False, False
        theirs = plain.response(value).get_data()
    assert json.loads(ours) == json.loads(theirs)
    assert list(json.loads(ours)) == list(json.loads(theirs))  # the objects' order, not sorted
    assert "华东重工".encode() in ours and ours.endswith(b"\n")
    assert json.loads(ours)["when"] == "Tue, 01 Dec 2026 09:30:00 GMT"  # Flask's HTTP date, not ISO


def test_what_orjson_cannot_write_flasks_json_still_does(app):
    with app.test_request_context():
        assert json.loads(jsonify({"big": 2 ** 70}).get_data()) == {"big": 2 ** 70}
