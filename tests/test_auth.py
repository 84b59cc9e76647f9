"""webui/auth.py on its own (inside an app context, no HTTP): API tokens (signed, expiring, their
epoch current, their id not revoked), credentials checks with throttling, the session user."""
from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from webui import auth, create_app


@pytest.fixture
def app(engine, tmp_path):
    return create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "test-secret", "TESTING": True,
                       "LOGIN_MAX_FAILURES": 2}, engine=engine)


@pytest.fixture
def ctx(app):
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "10.0.0.7"}):
        yield app


def test_a_token_names_its_user_until_revoked_or_signed_out(ctx):
    token = auth.issue_token("alice")
    claims = auth.token_claims(token)
    assert claims["username"] == "alice" and len(claims["jti"]) == 32
    assert auth.user_from_token(token) == "alice"
    other = auth.issue_token("alice")
    auth.revoke_token(claims)  # this token alone
    assert auth.token_claims(token) is None and auth.token_claims(other)["username"] == "alice"
    auth.auth_state().end_all("alice")  # signing out ends every token issued before
    assert auth.token_claims(other) is None
    assert auth.token_claims(auth.issue_token("alice"))["username"] == "alice"


def test_forged_expired_or_malformed_tokens_are_refused(ctx, monkeypatch):
    assert auth.token_claims("forged") is None
    foreign = URLSafeTimedSerializer("another-secret", salt="salesflow-api-token")
    assert auth.token_claims(foreign.dumps({"u": "alice", "e": 0, "j": "x"})) is None
    ours = URLSafeTimedSerializer("test-secret", salt="salesflow-api-token")
    for data in (["alice"], {"u": "", "j": "x"}, {"u": "alice"}, {"u": 5, "j": "x"}, {"u": "alice", "j": ""}):
        assert auth.token_claims(ours.dumps(data)) is None, data
    token = auth.issue_token("bob")
    ctx.config["API_TOKEN_MAX_AGE"] = -1
    assert auth.token_claims(token) is None  # expired
    assert auth.user_from_token(token) is None


def test_credentials_are_checked_and_failures_throttled_per_username(ctx):
    assert auth.check_credentials("alice", "salesflow-demo")["username"] == "alice"
    assert auth.check_credentials("alice", "wrong") is None
    assert auth.check_credentials("nobody", "wrong") is None  # an unknown user fails the same way
    assert auth.check_credentials("alice", "wrong") is None
    with pytest.raises(auth.Throttled) as err:  # two failures are the limit here
        auth.check_credentials("alice", "salesflow-demo")
    assert err.value.retry_after > 0 and "try again in" in str(err.value)
    assert auth.check_credentials("bob", "salesflow-demo")["username"] == "bob"  # per username


def test_the_session_user_needs_the_current_epoch(ctx, engine):
    from flask import session
    state = auth.auth_state()
    session["auth_epoch"] = state.epoch("dave")
    user = auth.load_user("dave")
    assert (user.username, user.roles, user.region, user.get_id()) == ("dave", {"sales_manager"}, "east", "dave")
    state.end_all("dave")
    assert auth.load_user("dave") is None
    session["auth_epoch"] = state.epoch("nobody")
    assert auth.load_user("nobody") is None
