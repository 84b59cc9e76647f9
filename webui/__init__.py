"""SalesFlow's web UI and JSON API: a thin Flask layer over `engine`."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, request, session
from flask_babel import Babel
from flask_babel import gettext as _gettext
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from engine.db import Database, default_sqlite_url
from engine.runtime import Engine

LANGUAGES = ("zh", "en")
csrf = CSRFProtect()
babel = Babel()
login_manager = LoginManager()


def database_url(instance_path: str | os.PathLike) -> str:
    """SALESFLOW_DATABASE_URL, else an embedded SQLite file in the instance folder."""
    return os.environ.get("SALESFLOW_DATABASE_URL") or default_sqlite_url(instance_path)


def default_instance_path() -> str:
    return os.environ.get("SALESFLOW_INSTANCE_DIR") or str(Path(__file__).resolve().parent.parent / "instance")


def _secret_key(instance_path: str) -> str:
    if os.environ.get("SALESFLOW_SECRET_KEY"):
        return os.environ["SALESFLOW_SECRET_KEY"]
    path = Path(instance_path) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def select_locale() -> str:
    choice = session.get("lang")
    if choice in LANGUAGES:
        return choice
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.locale in LANGUAGES:
        return current_user.locale
    return request.accept_languages.best_match(LANGUAGES) or "zh"


def create_app(config: dict | None = None, engine: Engine | None = None, setup: bool = True) -> Flask:
    """App factory. `engine` may be passed in (tests); otherwise one is built from the configuration.
    With setup=True the database is migrated and changed workflows are deployed."""
    instance_path = (config or {}).get("INSTANCE_PATH") or default_instance_path()
    app = Flask(__name__, instance_path=instance_path)
    app.config.update(
        SECRET_KEY=_secret_key(instance_path) if not (config or {}).get("SECRET_KEY") else config["SECRET_KEY"],
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
        BABEL_DEFAULT_LOCALE="zh",
        BABEL_DEFAULT_TIMEZONE="Asia/Shanghai",
        JSON_AS_ASCII=False,
        MAX_CONTENT_LENGTH=1024 * 1024,
        API_TOKEN_MAX_AGE=12 * 3600,
    )
    if config:
        app.config.update(config)
    if engine is None:
        engine = Engine(Database(app.config.get("DATABASE_URL") or database_url(instance_path)))
        if setup:
            engine.setup()
    app.extensions["salesflow"] = engine
    app.json.ensure_ascii = False
    app.json.sort_keys = False  # objects keep the engine's field order; sorting every response costs time

    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see this page."  # translated by localize_callback
    login_manager.localize_callback = _gettext

    from . import admin_views, api, auth, views
    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(admin_views.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the API authenticates with bearer tokens, not cookies

    @app.errorhandler(404)
    @app.errorhandler(405)
    def _not_found(exc):
        if request.path.startswith("/api/"):
            return api.error(exc.code, exc.description)
        return views.error_page(exc)

    return app
