"""Sessions for the browser (Flask-Login) and bearer tokens for the API."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from . import LANGUAGES, edge, login_manager

bp = Blueprint("auth", __name__)


def engine():
    return current_app.extensions["salesflow"]


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
    info = engine().user_info(username)
    return CurrentUser(info) if info else None


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="salesflow-api-token")


def issue_token(username: str) -> str:
    return _serializer().dumps({"u": username})


def user_from_token(token: str) -> str | None:
    """The username a valid token was issued to. Whether that user is still active is checked
    by the engine on every call it makes for them (401 when not)."""
    try:
        data = _serializer().loads(token, max_age=current_app.config["API_TOKEN_MAX_AGE"])
    except (BadSignature, SignatureExpired):
        return None
    username = data.get("u") if isinstance(data, dict) else None
    return username if isinstance(username, str) and username else None


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("views.inbox"))
    error = None
    if request.method == "POST":
        info = engine().authenticate(request.form.get("username", "").strip(), request.form.get("password", ""))
        if info:
            login_user(CurrentUser(info))
            return redirect(edge.safe_target(request.args.get("next")) or url_for("views.inbox"))
        error = _("Wrong username or password.")
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout():
    logout_user()
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
