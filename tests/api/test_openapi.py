"""The OpenAPI description (webui/openapi.py) covers exactly the routes of /api/v1, is valid
OpenAPI 3.1, and is served at /api/v1/openapi.json and, for people, at /api/v1/docs."""
from __future__ import annotations

import re

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from webui import create_app, openapi

IGNORED_METHODS = {"HEAD", "OPTIONS"}  # Flask answers these for every route by itself


def routes(app) -> set[tuple[str, str]]:
    """(METHOD, path with {name}) of every rule under /api/v1, converters dropped."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(openapi.PREFIX + "/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        found |= {(method, path) for method in rule.methods - IGNORED_METHODS}
    return found


@pytest.fixture(scope="module")
def bare_app(tmp_path_factory):
    """The app without a database behind it: the routes are all this module looks at."""
    return create_app({"INSTANCE_PATH": str(tmp_path_factory.mktemp("oa")), "SECRET_KEY": "t", "TESTING": True,
                       "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('db')}/unused.sqlite3"},
                      setup=False)


def test_every_route_is_described_and_every_description_has_a_route(bare_app):
    described = set(openapi.operations())
    assert len(described) == len(openapi.OPERATIONS), "an operation is described twice"
    existing = routes(bare_app)
    assert existing, "no /api/v1 routes found"
    assert existing - described == set(), "routes without a description in webui/openapi.py OPERATIONS"
    assert described - existing == set(), "descriptions in webui/openapi.py without a route"


def test_path_parameters_match_the_route_variables():
    for entry in openapi.OPERATIONS:
        in_path = set(re.findall(r"{([^}]+)}", entry["path"]))
        declared = {p["name"] for p in entry["operation"]["parameters"] if p["in"] == "path"}
        assert in_path == declared, (entry["method"], entry["path"])


def test_the_description_is_valid_openapi_3_1():
    document = openapi.document()
    assert document["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(document).validate()
    ids = [e["operation"]["operationId"] for e in openapi.OPERATIONS]
    assert len(ids) == len(set(ids))


def test_every_operation_documents_its_errors_as_error_objects():
    for entry in openapi.OPERATIONS:
        responses = entry["operation"]["responses"]
        assert any(code.startswith("2") for code in responses), entry["path"]
        for code, response in responses.items():
            if code.startswith("4"):
                schema = response["content"]["application/json"]["schema"]["$ref"]
                assert schema.endswith(("/Error", "/ValidationError")), (entry["path"], code)
        if entry["operation"].get("security") != []:
            assert "401" in responses, (entry["method"], entry["path"])


def test_ids_in_paths_are_bounded_as_the_routes_are():
    for entry in openapi.OPERATIONS:
        for parameter in entry["operation"]["parameters"]:
            if parameter["name"] in ("instance_id", "notification_id"):
                assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 2 ** 31 - 1}
            if parameter["name"] == "task_id":
                assert parameter["schema"]["format"] == "uuid"


def test_served_without_a_token(api):
    r = api.client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.get_json() == openapi.document()


def test_docs_page_lists_every_operation_with_no_external_assets(api):
    r = api.client.get("/api/v1/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    for method, path in openapi.operations():
        assert f"{method} {path}" in html, (method, path)
    assert "<script" not in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "an external asset"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
