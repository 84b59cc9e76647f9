"""What the edge (webui/edge.py) refuses, through the JSON API and the HTML pages alike:
ids out of range or not ASCII digits, deep JSON, lone surrogates, NaN/Infinity, NUL,
bodies that are not JSON, and redirects off the site. Never a 500."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from engine.models import HistoryEvent, ProcessInstance

from .test_expense_api import CLAIM

PASSWORD = "salesflow-demo"
START = "/processes/expense_approval/instances"


def instance_count(engine) -> int:
    with engine.db.read() as s:
        return s.scalar(select(func.count()).select_from(ProcessInstance))


def raw_post(api, user, path, body: str, content_type="application/json"):
    return api.client.post("/api/v1" + path, data=body.encode("utf-8", "surrogatepass"),
                           content_type=content_type,
                           headers={"Authorization": f"Bearer {api.token(user)}"} if user else {})


def login(app, username):
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302
    client.token = token
    return client


@pytest.fixture
def claim(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    return inst, api.open_task(inst, "manager_approval")


# ---------------------------------------------------------------- 1. ids
@pytest.mark.parametrize("bad", ["9223372036854775808", "2147483648", "99999999999999999999", "%D9%A1", "0",
                                 "%EF%BC%91", "1%00", "-1", "+1", "%201"])
def test_instance_ids_out_of_range_or_not_ascii_digits_are_404(api, claim, bad):
    for path in (f"/instances/{bad}", f"/instances/{bad}/diagram.svg"):
        r = api.get("alice", path)
        assert r.status_code == 404, (path, r.status_code)
        assert "error" in r.get_json()
    assert api.post("alice", f"/instances/{bad}/withdraw").status_code == 404
    # a path with routes for two methods: still 404, not 405 (the range is in the route's regex)
    assert api.post("alice", f"/instances/{bad}/comments", json={"text": "x"}).status_code == 404
    assert api.post("alice", f"/notifications/{bad}/read").status_code == 404


def test_arabic_indic_one_is_not_instance_one(api, claim):
    inst, _task = claim
    assert inst["id"] == 1
    assert api.get("alice", "/instances/1").status_code == 200
    assert api.get("alice", "/instances/\u0661").status_code == 404  # ١


@pytest.mark.parametrize("bad", ["x", "1", "00000000000000000000000000000000", "{00000000-0000-4000-8000-000000000000}",
                                 "urn:uuid:00000000-0000-4000-8000-000000000000",
                                 "\u0661" * 8 + "-0000-4000-8000-000000000000"])
def test_task_ids_are_uuids(api, claim, bad):
    assert api.get("dave", f"/tasks/{bad}").status_code == 404
    assert api.post("dave", f"/tasks/{bad}/claim").status_code == 404
    assert api.post("dave", f"/tasks/{bad}/complete", json={"data": {}}).status_code == 404


def test_task_id_in_upper_case_still_finds_the_task(api, claim):
    _inst, task = claim
    assert api.get("dave", f"/tasks/{task['id'].upper()}").get_json()["id"] == task["id"]


@pytest.mark.parametrize("query", ["offset=99999999999999999999", "offset=9223372036854775808", "offset=2147483648",
                                   "limit=99999999999999999999", "offset=-1", "offset=%D9%A1", "offset=1e3",
                                   "offset=%201"])
def test_huge_or_odd_paging_is_422(api, claim, query):
    for path in ("/tasks", "/instances"):
        r = api.get("dave", f"{path}?{query}")
        assert r.status_code == 422, (path, query, r.status_code)


def test_instance_filter_out_of_range_is_422(api, claim):
    for bad in ("9223372036854775808", "2147483648", "\u0661", "abc"):
        assert api.get("dave", f"/tasks?instance_id={bad}").status_code == 422
    assert len(api.get("dave", "/tasks?instance_id=1").get_json()) == 1


def test_html_pages_with_huge_or_odd_ids_are_404(app, api, claim):
    alice = login(app, "alice")
    for bad in ("9223372036854775808", "2147483648", "%D9%A1", "0"):
        for path in (f"/instances/{bad}", f"/instances/{bad}/diagram.svg"):
            r = alice.get(path)
            assert r.status_code == 404 and r.mimetype == "text/html", (path, r.status_code)
        r = alice.post(f"/instances/{bad}/withdraw", data={"csrf_token": alice.token})
        assert r.status_code == 404
    for bad in ("x", "00000000000000000000000000000000"):
        assert alice.get(f"/tasks/{bad}").status_code == 404


# ---------------------------------------------------------------- 2. deep JSON
def _json_routes(claim):
    inst, task = claim
    return [
        ("/auth/token", None), (START, "alice"), (f"/tasks/{task['id']}/complete", "dave"),
        (f"/tasks/{task['id']}/delegate", "dave"), (f"/tasks/{task['id']}/claim", "dave"),
        (f"/instances/{inst['id']}/withdraw", "alice"),
    ]


@pytest.mark.parametrize("body", ["[" * 3000, "[" * 3000 + "]" * 3000, '{"data": ' * 3000 + "1" + "}" * 3000,
                                  '{"data": {"description": ' + "[" * 100 + "]" * 100 + "}}"])
def test_deeply_nested_json_is_refused_on_every_json_route(api, engine, claim, body):
    before = instance_count(engine)
    for path, user in _json_routes(claim):
        r = raw_post(api, user, path, body)
        assert r.status_code in (400, 422), (path, r.status_code)
        assert "error" in r.get_json()
    assert instance_count(engine) == before
    assert api.get("alice", f"/instances/{claim[0]['id']}").get_json()["status"] == "running"


def test_json_nesting_within_the_limit_still_reaches_the_form_check(api):
    nested = {"a": [[[[{"b": 1}]]]]}
    r = api.post("alice", START, json={"data": dict(CLAIM, description=nested)})
    assert r.status_code == 422 and "description" in r.get_json()["errors"]


# ---------------------------------------------------------------- 3. lone surrogates
def test_lone_surrogate_in_a_transfer_comment_is_refused_and_the_instance_stays_readable(api, engine, claim):
    inst, task = claim
    body = '{"to": "bob", "comment": "x\\ud800"}'
    r = raw_post(api, "dave", f"/tasks/{task['id']}/delegate", body)
    assert r.status_code in (400, 422), r.status_code
    assert api.get("alice", f"/instances/{inst['id']}").status_code == 200
    assert api.get("dave", f"/tasks/{task['id']}").get_json()["assignee"] == "dave"
    with engine.db.read() as s:
        assert s.scalar(select(func.count()).select_from(HistoryEvent).where(HistoryEvent.action == "delegated")) == 0


@pytest.mark.parametrize("body", ['{"data": {"category": "travel", "amount": 1, "incurred_on": "2026-11-10", '
                                  '"description": "x\\udc00y"}}',
                                  '{"data": {"x\\ud800": 1}}',
                                  '{"data": {"description": "\\ud83d"}}'])
def test_lone_surrogates_anywhere_in_start_data_are_refused(api, engine, body):
    before = instance_count(engine)
    assert raw_post(api, "alice", START, body).status_code in (400, 422)
    assert instance_count(engine) == before


def test_a_proper_surrogate_pair_is_fine(api):
    body = json.dumps({"data": dict(CLAIM, description="client dinner \U0001F600", invoices=[api.invoice("alice")])})
    assert raw_post(api, "alice", START, body).status_code == 201


def test_lone_surrogate_in_the_token_request_is_refused(api):
    r = raw_post(api, None, "/auth/token", '{"username": "alice\\ud800", "password": "x"}')
    assert r.status_code == 400


# ---------------------------------------------------------------- 4. NaN, Infinity
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 400])
def test_nan_and_infinity_are_not_numbers(api, engine, number):
    before = instance_count(engine)
    body = ('{"data": {"category": "travel", "amount": %s, "incurred_on": "2026-11-10", "description": "d"}}'
            % number)
    r = raw_post(api, "alice", START, body)
    assert r.status_code in (400, 422), r.status_code
    assert instance_count(engine) == before


def test_nan_in_an_approval_is_refused(api, claim):
    _inst, task = claim
    r = raw_post(api, "dave", f"/tasks/{task['id']}/complete",
                 '{"data": {"decision": "approve", "comment": NaN}}')
    assert r.status_code in (400, 422)
    assert api.get("dave", f"/tasks/{task['id']}").get_json()["status"] == "open"


# ---------------------------------------------------------------- 5. NUL
def test_nul_in_query_parameters_is_400(api, claim):
    for path in ("/instances?process_id=a%00b", "/tasks?process_id=%00", "/instances?status=running%00",
                 "/instances?x%00=1", "/tasks?instance_id=1%00"):
        r = api.get("dave", path)
        assert r.status_code == 400, (path, r.status_code)
        assert "error" in r.get_json()


def test_nul_in_login_is_400(app, api):
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post("/login", data={"username": "al\x00ice", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 400 and r.mimetype == "text/html"
    r = raw_post(api, None, "/auth/token", '{"username": "alice\\u0000", "password": "salesflow-demo"}')
    assert r.status_code == 400
    r = raw_post(api, None, "/auth/token", '{"username": "alice", "password": "salesflow-demo\\u0000"}')
    assert r.status_code == 400


def test_nul_in_start_data_and_transfer_comment_is_refused(app, api, engine, claim):
    inst, task = claim
    before = instance_count(engine)
    r = api.post("alice", START, json={"data": dict(CLAIM, description="a\x00b")})
    assert r.status_code in (400, 422)
    assert instance_count(engine) == before
    r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "bob", "comment": "a\x00b"})
    assert r.status_code in (400, 422)
    dave = login(app, "dave")
    r = dave.post(f"/tasks/{task['id']}/delegate", data={"to": "bob", "comment": "a\x00b", "csrf_token": dave.token})
    assert r.status_code == 400
    alice = login(app, "alice")
    r = alice.post("/start/expense_approval", data={**CLAIM, "amount": "12", "description": "a\x00b",
                                                    "csrf_token": alice.token})
    assert r.status_code == 400
    assert instance_count(engine) == before
    assert api.get("dave", f"/tasks/{task['id']}").get_json()["assignee"] == "dave"
    assert api.get("alice", f"/instances/{inst['id']}").status_code == 200


# ---------------------------------------------------------------- 6. not JSON
@pytest.mark.parametrize("kind", ["form", "multipart", "text"])
def test_a_start_request_that_is_not_json_is_refused_and_creates_nothing(api, engine, kind):
    before = instance_count(engine)
    headers = {"Authorization": f"Bearer {api.token('alice')}"}
    url = "/api/v1" + START
    if kind == "form":
        r = api.client.post(url, data={"data": "{}"}, headers=headers)
    elif kind == "multipart":
        r = api.client.post(url, data={"data": "{}"}, headers=headers, content_type="multipart/form-data")
    else:
        r = api.client.post(url, data=json.dumps({"data": CLAIM}), headers=headers, content_type="text/plain")
    assert r.status_code in (400, 415), r.status_code
    assert "error" in r.get_json()
    assert instance_count(engine) == before
    # an empty form post is not JSON either
    r = api.client.post(url, headers=headers, content_type="application/x-www-form-urlencoded")
    assert r.status_code in (400, 415)
    assert instance_count(engine) == before


def test_json_with_a_charset_is_fine(api):
    r = raw_post(api, "alice", START, json.dumps({"data": dict(CLAIM, invoices=[api.invoice("alice")])}),
                 content_type="application/json; charset=utf-8")
    assert r.status_code == 201


# ---------------------------------------------------------------- 7. redirects
EVIL = ["/%09/evil.example", "//evil.example", "/\\evil.example", "https://evil.example/", "/%0a/evil.example",
        "%2F%2Fevil.example", "/ /evil.example", "javascript:alert(1)", "/\\/evil.example"]


@pytest.mark.parametrize("target", EVIL)
def test_login_never_redirects_off_the_site(app, target):
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post(f"/login?next={target}", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302
    assert r.location == "/", r.location


def test_login_redirects_to_a_same_site_path(app):
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post("/login?next=/start%3Fx%3D1", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert r.location == "/start?x=1"


def _language_switch(client, **kw):
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    return client.post("/language/en", data={"csrf_token": token, **kw.pop("data", {})}, **kw)


@pytest.mark.parametrize("target", ["/\t/evil.example", "//evil.example", "/\\evil.example", "http://evil.example/x",
                                    "/\n/evil.example"])
def test_language_switch_never_redirects_off_the_site(app, target):
    client = app.test_client()
    assert _language_switch(client, data={"next": target}).location == "/"
    if "\n" not in target:  # a header cannot carry a newline
        assert _language_switch(client, headers={"Referer": target}).location == "/"


def test_language_switch_follows_a_same_site_referrer(app):
    client = app.test_client()
    assert _language_switch(client, headers={"Referer": "http://localhost/start?x=1"}).location == "/start?x=1"
    assert _language_switch(client, headers={"Referer": "http://evil.example/start"}).location == "/"
    assert _language_switch(client, data={"next": "/start"}).location == "/start"


# ---------------------------------------------------------------- headers (test client; the real server too)
def test_security_headers_on_pages_api_and_errors(app, api, claim):
    inst, _task = claim
    alice = login(app, "alice")
    responses = [alice.get("/"), alice.get(f"/instances/{inst['id']}"), app.test_client().get("/login"),
                 api.get("alice", "/tasks"), api.get("alice", "/instances/999"), alice.get("/nowhere"),
                 alice.get(f"/instances/{inst['id']}/diagram.svg")]
    for r in responses:
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Referrer-Policy"]
    page = responses[1]
    csp = page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp
    # the diagram's own <style> is allowed by its hash, nothing else inline
    assert "<style" in page.get_data(as_text=True) and "'sha256-" in csp
    # scripts only from the site's own files (static/app.js), never inline
    scripts = re.findall(r"<script\b[^>]*>", page.get_data(as_text=True))
    assert scripts and all(re.fullmatch(r'<script src="/static/[\w.]+\.js" defer>', s) for s in scripts), scripts


def test_a_method_a_route_does_not_take_is_405_with_allow(api, app):
    r = api.client.open("/api/v1/me", method="TRACE", headers={"Authorization": f"Bearer {api.token('alice')}"})
    assert r.status_code == 405 and "error" in r.get_json()
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "PATCH"}
    r = app.test_client().open("/login", method="DELETE")
    assert r.status_code == 405 and "POST" in r.headers["Allow"] and r.mimetype == "text/html"


def test_transfer_and_add_signer_comments_are_bounded_like_the_others(api, claim, engine):
    _inst, task = claim
    before = instance_count(engine), api.get("dave", f"/tasks/{task['id']}").get_json()["assignee"]
    long = "x" * 5001
    r = api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "frank", "comment": long})
    assert r.status_code == 422 and "comment" in r.get_json()["errors"]
    r = api.post("dave", f"/tasks/{task['id']}/add-signer", json={"users": ["heidi"], "mode": "before",
                                                                   "comment": long})
    assert r.status_code == 422 and "comment" in r.get_json()["errors"]
    assert (instance_count(engine), api.get("dave", f"/tasks/{task['id']}").get_json()["assignee"]) == before
    assert api.post("dave", f"/tasks/{task['id']}/delegate", json={"to": "frank", "comment": "x" * 5000}).status_code == 200


def test_bulk_complete_reads_ids_as_the_routes_do(api, claim):
    _inst, task = claim
    upper = task["id"].upper()
    r = api.post("dave", "/tasks/bulk-complete", json={"ids": [upper, "", "not-a-task"],
                                                        "data": {"decision": "approve"}})
    assert r.status_code == 200
    assert [(x["id"], x["status"]) for x in r.get_json()["results"]] == [(upper, 200), ("", 404), ("not-a-task", 404)]


def test_a_process_failure_is_a_422_with_errors_like_every_422(api, app, engine, monkeypatch):
    from engine.errors import ProcessError

    def failing(*_args, **_kwargs):
        raise ProcessError("the process could not continue: boom; nothing was changed")
    monkeypatch.setattr(engine, "start", failing)
    r = api.post("alice", START, json={"data": CLAIM})
    assert r.status_code == 422
    assert r.get_json() == {"error": "the process could not continue: boom; nothing was changed",
                            "errors": {"_process": "the process could not continue: boom; nothing was changed"}}
