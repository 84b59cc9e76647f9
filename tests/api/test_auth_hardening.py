"""Sign-in hardening that needs no real server (the rest is in tests/server/test_http_hardening.py)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from engine.auth_state import AuthState


def _timed_token_request(client, username, password) -> float:
    started = time.perf_counter()
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 401
    return time.perf_counter() - started


def test_an_unknown_username_takes_as_long_as_a_known_one(api):
    client = api.client
    _timed_token_request(client, "alice", "warm-up")
    known = min(_timed_token_request(client, "alice", "wrong") for _ in range(2))
    unknown = min(_timed_token_request(client, f"nobody{i}", "wrong") for i in range(2))
    assert unknown > 0.5 * known, (unknown, known)


def test_failures_are_shared_by_every_process_reading_the_database(engine):
    """A second AuthState on the same database (another worker, or the server after a restart)
    sees the failures the first one recorded."""
    first, second = AuthState(engine.db, max_per_user=2), AuthState(engine.db, max_per_user=2)
    now = datetime.now(timezone.utc)
    first.failed("Alice", "10.0.0.1", now)
    assert second.retry_after("alice", "10.0.0.2", now) == 0
    first.failed("alice ", "10.0.0.1", now)
    wait = second.retry_after("ALICE", "10.0.0.2", now + timedelta(seconds=60))
    assert wait == 900 - 60
    assert second.retry_after("bob", "10.0.0.2", now) == 0
    assert second.retry_after("alice", "10.0.0.2", now + timedelta(seconds=901)) == 0
    second.succeeded("alice")
    assert first.retry_after("alice", None, now) == 0


def test_epochs_and_revoked_tokens(engine):
    state = AuthState(engine.db)
    assert state.epoch("dave") == 0 and state.credentials_valid("dave", 0, "j1")
    state.revoke_token("j1", datetime.now(timezone.utc) + timedelta(hours=1))
    state.revoke_token("j1", datetime.now(timezone.utc) + timedelta(hours=1))  # twice is fine
    assert not state.credentials_valid("dave", 0, "j1") and state.credentials_valid("dave", 0, "j2")
    state.end_all("dave")
    state.end_all("dave")
    assert state.epoch("dave") == 2
    assert not state.credentials_valid("dave", 0, "j2") and state.credentials_valid("dave", 2, "j2")
    assert not state.credentials_valid("dave", None) and not state.credentials_valid("dave", "2")
