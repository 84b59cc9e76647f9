"""Hardening through the real server: `salesflow serve` (gunicorn, two workers) on a free port
with a SQLite instance folder of its own, driven with http.client. One server for the module
(restarted once, at the end, to show the throttle survives a restart)."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "salesflow-demo"
MAX_PER_USER = 3
MAX_PER_ADDRESS = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = _free_port()
        self.home = tmp / "home"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SALESFLOW_") and k != "XDG_RUNTIME_DIR"}
        self.env.update(HOME=str(self.home), SALESFLOW_INSTANCE_DIR=str(tmp / "instance"),
                        SALESFLOW_SECRET_KEY="server-test", SALESFLOW_LOG_LEVEL="WARNING",
                        SALESFLOW_LOGIN_MAX_FAILURES=str(MAX_PER_USER),
                        SALESFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS=str(MAX_PER_ADDRESS))
        self.proc = None
        self.log = tmp / "server.log"

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webui.cli", "serve", "--port", str(self.port), "--demo", "--workers", "2",
             "--threads", "4"], cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/login").status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            response.body = response.read()
            return response
        finally:
            conn.close()

    def json(self, method, path, data=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.request(method, path, json.dumps(data).encode() if data is not None else None, headers)

    def token(self, username, password=PASSWORD):
        r = self.json("POST", "/api/v1/auth/token", {"username": username, "password": password})
        assert r.status == 200, (r.status, r.body)
        return json.loads(r.body)["token"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()


def _cookie(response) -> str:
    """The session cookie (name=value) a response sets."""
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.startswith("session="):
            return value.split(";", 1)[0]
    raise AssertionError(f"no session cookie in {response.getheaders()}")


def _set_cookie_header(response) -> str:
    return next(v for k, v in response.getheaders() if k.lower() == "set-cookie" and v.startswith("session="))


def web_login(server, username, password=PASSWORD, headers=None):
    """Sign in through the login form; returns (response, cookie)."""
    r = server.request("GET", "/login", headers=headers)
    cookie = _cookie(r)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', r.body).group(1).decode()
    body = f"username={username}&password={password}&csrf_token={token}"
    r = server.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                                "Cookie": cookie, **(headers or {})})
    return r, (_cookie(r) if r.status == 302 else cookie), token


# ---------------------------------------------------------------- headers
def test_security_headers_and_no_server_header(server):
    for method, path in (("GET", "/login"), ("GET", "/api/v1/processes"), ("GET", "/nowhere"),
                         ("GET", "/static/app.css"), ("GET", "/api/v1/instances/9223372036854775808")):
        r = server.request(method, path)
        headers = {k.lower(): v for k, v in r.getheaders()}
        assert "server" not in headers, (path, headers.get("server"))
        assert headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["referrer-policy"], path
    assert r.status == 404


def test_no_control_socket_at_a_shared_path(server):
    assert not (server.home / ".gunicorn").exists()
    assert not list(server.tmp.rglob("*.ctl"))


# ---------------------------------------------------------------- cookies and sessions
def test_session_cookie_is_secure_behind_tls_only(server):
    r, _cookie_value, _ = web_login(server, "alice")
    assert r.status == 302
    assert "secure" not in _set_cookie_header(r).lower()
    assert "httponly" in _set_cookie_header(r).lower()
    # as a browser behind a TLS proxy sends it (Flask-WTF checks the Referer on HTTPS)
    tls = {"X-Forwarded-Proto": "https", "Referer": f"https://127.0.0.1:{server.port}/login"}
    r, _cookie_value, _ = web_login(server, "alice", headers=tls)
    assert r.status == 302
    assert "; secure" in _set_cookie_header(r).lower()


def test_a_copied_session_cookie_stops_working_after_logout(server):
    r, cookie, csrf = web_login(server, "bob")
    assert r.status == 302
    copied = cookie
    assert server.request("GET", "/", headers={"Cookie": copied}).status == 200
    r = server.request("POST", "/logout", f"csrf_token={csrf}",
                       {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    assert r.status == 302 and r.getheader("Location").endswith("/login")
    r = server.request("GET", "/", headers={"Cookie": copied})
    assert r.status == 302 and "/login" in r.getheader("Location")
    # and signing in again works
    r, cookie, _ = web_login(server, "bob")
    assert server.request("GET", "/", headers={"Cookie": cookie}).status == 200


# ---------------------------------------------------------------- tokens
def test_delete_token_revokes_only_that_token_and_logout_ends_the_rest(server):
    first, second = server.token("carol"), server.token("carol")
    assert server.json("GET", "/api/v1/processes", token=first).status == 200
    r = server.json("DELETE", "/api/v1/auth/token", token=first)
    assert r.status == 204 and r.body == b""
    assert server.json("GET", "/api/v1/processes", token=first).status == 401
    assert server.json("DELETE", "/api/v1/auth/token", token=first).status == 401
    assert server.json("GET", "/api/v1/processes", token=second).status == 200
    # signing out of the web ends every token issued before
    r, cookie, csrf = web_login(server, "carol")
    server.request("POST", "/logout", f"csrf_token={csrf}",
                   {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    assert server.json("GET", "/api/v1/processes", token=second).status == 401
    assert server.json("GET", "/api/v1/processes", token=server.token("carol")).status == 200


def test_delete_token_needs_a_token(server):
    assert server.json("DELETE", "/api/v1/auth/token").status == 401


# ---------------------------------------------------------------- throttling
def test_failed_logins_per_username_are_throttled_for_api_and_web(server):
    for _ in range(MAX_PER_USER):
        r = server.json("POST", "/api/v1/auth/token", {"username": "frank", "password": "guess"})
        assert r.status == 401
    r = server.json("POST", "/api/v1/auth/token", {"username": "frank", "password": PASSWORD})
    assert r.status == 429, r.status
    assert 0 < int(r.getheader("Retry-After")) <= 900
    assert "error" in json.loads(r.body)
    r, _cookie_value, _ = web_login(server, "frank")  # the web form counts the same failures
    assert r.status == 429 and int(r.getheader("Retry-After")) > 0
    assert "frame-ancestors" in r.getheader("Content-Security-Policy")
    # other users are not affected
    assert server.token("dave")


def test_failed_logins_per_address_are_throttled(server):
    statuses = []
    for i in range(MAX_PER_ADDRESS + 1):
        r = server.json("POST", "/api/v1/auth/token", {"username": f"nobody{i}", "password": "guess"})
        statuses.append(r.status)
        if r.status == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    r = server.json("POST", "/api/v1/auth/token", {"username": "judy", "password": PASSWORD})
    assert r.status == 429 and int(r.getheader("Retry-After")) > 0


def test_throttle_holds_across_a_restart(server):
    server.stop()
    server.start()
    r = server.json("POST", "/api/v1/auth/token", {"username": "frank", "password": PASSWORD})
    assert r.status == 429
