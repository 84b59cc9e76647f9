"""Sessions for the browser (Flask-Login) and bearer tokens for the API.

Both carry the user's sign-out epoch (engine/auth_state.py): signing out bumps it, so
every session cookie and token issued before stops working, copies included. A token
also has an id of its own, revocable alone (DELETE /api/v1/auth/token). Failed sign-ins
are counted per username and per client address in the database; past the limit the
answer is 429 with Retry-After, whatever the password.
"""
from __future__ import annotations

import secrets
import time
from datetime import timedelta, timezone
from functools import lru_cache
from types import SimpleNamespace

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from itsdangerous import BadSignature, URLSafeTimedSerializer

from engine import org
from engine.auth_state import AuthState

from . import LANGUAGES, edge, login_manager

bp = Blueprint("auth", __name__)


def engine():
    return current_app.extensions["salesflow"]


def auth_state() -> AuthState:
    state = current_app.extensions.get("salesflow_auth")
    if state is None:
        cfg = current_app.config
        state = AuthState(engine().db, max_per_user=cfg["LOGIN_MAX_FAILURES"],
                          max_per_address=cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"], window=cfg["LOGIN_WINDOW"])
        current_app.extensions["salesflow_auth"] = state
    return state


class CurrentUser(UserMixin):
    def __init__(self, info: dict):
        self.info = info
        self.id = info["username"]
        self.username = info["username"]
        self.display_name = info["display_name"]
        self.roles = set(info["roles"])
        self.region = info["region"]
        self.locale = info["locale"]


@login_manager.user_loader
def load_user(username: str):
    """The session's user, while the session's epoch is the user's (signing out ends every copy)."""
    if not auth_state().credentials_valid(username, session.get("auth_epoch")):
        return None
    info = engine().user_info(username)
    return CurrentUser(info) if info else None


# ------------------------------------------------------------------ passwords
_dummy = {}


def _dummy_user():
    """A user nobody is, with a real scrypt hash: checking against it costs what a real check costs."""
    if "user" not in _dummy:
        _dummy["user"] = SimpleNamespace(active=True, password_hash=org.hash_password(secrets.token_hex(16)))
    return _dummy["user"]


class Throttled(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many failed sign-ins: try again in {retry_after} s")
        self.retry_after = retry_after


def check_credentials(username: str, password: str) -> dict | None:
    """The user's info when the password is right, else None; Throttled when this username or
    this client address failed too often lately. An unknown or inactive username costs one
    password hash like a known one, so timing tells nothing."""
    state = auth_state()
    address = request.remote_addr
    wait = state.retry_after(username, address)
    if wait:
        raise Throttled(wait)
    info = engine().authenticate(username, password)
    if info is None:
        if engine().user_info(username) is None:  # authenticate hashed nothing: hash once anyway
            org.verify_password(_dummy_user(), password)
        state.failed(username, address)
        return None
    state.succeeded(username)
    return info


# ------------------------------------------------------------------ API tokens
@lru_cache(maxsize=8)
def _signer_of(key) -> URLSafeTimedSerializer:
    """The token signer of a secret key, made once per key (every API call checks a token)."""
    return URLSafeTimedSerializer(key, salt="salesflow-api-token")


def _serializer() -> URLSafeTimedSerializer:
    return _signer_of(current_app.config["SECRET_KEY"])


# tokens whose signature was checked and right, with what they carry: a token's signature cannot
# change, so it is checked once; its age is checked on every call (token_claims). Only signed
# tokens are kept (what a caller merely sends is never stored); a full table starts again.
_VERIFIED: dict[tuple, tuple] = {}
_VERIFIED_MAX = 4096


def _unsigned(key, token: str):
    """(payload, signed at) of a token signed with `key`, else None."""
    found = _VERIFIED.get((key, token))
    if found is None:
        try:
            found = _signer_of(key).loads(token, return_timestamp=True)
        except BadSignature:
            return None
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[(key, token)] = found
    return found


def issue_token(username: str) -> str:
    return _serializer().dumps({"u": username, "e": auth_state().epoch(username), "j": secrets.token_hex(16)})


def token_claims(token: str) -> dict | None:
    """The claims of a valid token: signed, not expired, its epoch current and its id not revoked."""
    unsigned = _unsigned(current_app.config["SECRET_KEY"], token)
    if unsigned is None:
        return None
    data, signed_at = unsigned
    # the age as itsdangerous counts it (whole seconds; a token from the future is no token)
    age = int(time.time()) - int(signed_at.timestamp())
    if not 0 <= age <= current_app.config["API_TOKEN_MAX_AGE"]:
        return None
    if not isinstance(data, dict):
        return None
    username, jti = data.get("u"), data.get("j")
    if not (isinstance(username, str) and username and isinstance(jti, str) and jti):
        return None
    if not auth_state().credentials_valid(username, data.get("e"), jti):
        return None
    return {"username": username, "jti": jti, "signed_at": signed_at}


def user_from_token(token: str) -> str | None:
    """The username a valid token was issued to. Whether that user is still active is checked
    by the engine on every call it makes for them (401 when not)."""
    claims = token_claims(token)
    if claims is None:
        return None
    g.token_claims = claims
    return claims["username"]


def revoke_token(claims: dict) -> None:
    expires = claims["signed_at"] + timedelta(seconds=current_app.config["API_TOKEN_MAX_AGE"] + 60)
    auth_state().revoke_token(claims["jti"], expires.astimezone(timezone.utc) if expires.tzinfo
                              else expires.replace(tzinfo=timezone.utc))


# ------------------------------------------------------------------ pages
@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("views.inbox"))
    error, status, headers = None, 200, {}
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        try:
            info = check_credentials(username, request.form.get("password", ""))
        except Throttled as exc:
            error, status = _("Too many failed sign-ins. Try again in %(seconds)s seconds.",
                              seconds=exc.retry_after), 429
            headers["Retry-After"] = str(exc.retry_after)
        else:
            if info:
                kept = {k: session[k] for k in ("lang", "csrf_token") if k in session}
                session.clear()  # a fresh session: only the language and the form token carry over
                session.update(kept)
                session["auth_epoch"] = auth_state().epoch(info["username"])
                login_user(CurrentUser(info))
                return redirect(edge.safe_target(request.args.get("next")) or url_for("views.inbox"))
            error, status = _("Wrong username or password."), 401
    return render_template("login.html", error=error), status, headers


@bp.post("/logout")
@login_required
def logout():
    auth_state().end_all(current_user.username)  # this session, its copies and the user's tokens
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.post("/language/<lang>")
def set_language(lang: str):
    if lang in LANGUAGES:
        session["lang"] = lang
        if current_user.is_authenticated:
            engine().set_locale(current_user.username, lang)
    else:
        flash(_("Unknown language."), "error")
    target = edge.safe_target(request.form.get("next")) if request.form.get("next") else edge.same_site_referrer()
    return redirect(target or url_for("views.inbox"))
