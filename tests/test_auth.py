"""webui/auth.py on its own (inside an app context, no HTTP): API tokens (signed, expiring, their
epoch current, their id not revoked), credentials checks with throttling, the session user."""
from __future__ import annotations

import time

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


def test_a_token_whose_signature_was_checked_before_still_expires_and_keeps_to_its_key(ctx, monkeypatch):
    forged = "eyJ1IjoiYWxpY2UifQ.forged.signature"
    assert auth.token_claims(forged) is None
    assert not any(token == forged for _key, token in auth._VERIFIED)  # what fails is never kept
    token = auth.issue_token("bob")
    assert auth.token_claims(token)["username"] == "bob"  # its signature is remembered from here on
    assert ("test-secret", token) in auth._VERIFIED
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + ctx.config["API_TOKEN_MAX_AGE"] + 2)
    assert auth.token_claims(token) is None  # expired, remembered or not
    monkeypatch.setattr(time, "time", lambda: now - 60)
    assert auth.token_claims(token) is None  # signed in the future: no token
    monkeypatch.undo()
    assert auth.token_claims(token)["username"] == "bob"
    ctx.config["SECRET_KEY"] = "another-secret"  # a new key: what the old one signed is refused
    assert auth.token_claims(token) is None
    ctx.config["SECRET_KEY"] = "test-secret"
    auth.auth_state().end_all("bob")  # and signing out still ends it at once
    assert auth.token_claims(token) is None


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


def test_the_session_signer_is_made_once_per_key_and_follows_a_new_key(app):
    from itsdangerous import BadSignature
    interface = app.session_interface
    first = interface.get_signing_serializer(app)
    assert interface.get_signing_serializer(app) is first  # not made again for every request
    cookie = first.dumps({"auth_epoch": 1})
    app.secret_key = "a-new-secret"
    signer = interface.get_signing_serializer(app)
    with pytest.raises(BadSignature):  # a session signed with the old key is no session
        signer.loads(cookie)
    app.config["SECRET_KEY_FALLBACKS"] = ["test-secret"]  # unless the old key is kept as a fallback
    assert interface.get_signing_serializer(app).loads(cookie) == {"auth_epoch": 1}
