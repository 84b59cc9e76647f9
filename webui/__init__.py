"""SalesFlow's web UI and JSON API: a thin Flask layer over `engine`."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import orjson
from flask import Flask, make_response, request, session
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
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


def files_url(instance_path: str | os.PathLike) -> str:
    """SALESFLOW_FILES_URL (any fsspec URL, e.g. s3://bucket/salesflow), else the instance folder's files/."""
    return os.environ.get("SALESFLOW_FILES_URL") or "file://" + str(Path(instance_path).resolve() / "files")


def default_instance_path() -> str:
    return os.environ.get("SALESFLOW_INSTANCE_DIR") or str(Path(__file__).resolve().parent.parent / "instance")


def _secret_key(instance_path: str) -> str:
    if os.environ.get("SALESFLOW_SECRET_KEY"):
        return os.environ["SALESFLOW_SECRET_KEY"]
    path = Path(instance_path) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # created whole or not at all: of two creators, the first one's key stands
        draft = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # atomic, and fails if the key exists already
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def select_locale() -> str:
    choice = session.get("lang")
    if choice in LANGUAGES:
        return choice
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.locale in LANGUAGES:
        return current_user.locale
    return request.accept_languages.best_match(LANGUAGES) or "zh"


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure when SESSION_COOKIE_SECURE says so (SALESFLOW_SECURE_COOKIES=1)
    or when the request came over HTTPS (gunicorn honours X-Forwarded-Proto from the addresses in
    FORWARDED_ALLOW_IPS, by default the local host; SALESFLOW_PROXY_HOPS=N trusts N proxies)."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (bool(request) and request.is_secure)

    def get_signing_serializer(self, app):
        """Flask's signer, made once per key (and fallback keys), not on every request."""
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        held = getattr(self, "_signer", None)
        if held is None or held[0] != keys:
            held = self._signer = (keys, super().get_signing_serializer(app))
        return held[1]


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, with responses written by orjson: the same document (dates, UUIDs,
    dataclasses and decimals through Flask's own `default`, keys in the objects' order, UTF-8 as
    it is), several times faster. What orjson cannot write (an integer beyond 64 bits) and the
    indented output of debug mode are written by Flask's json as before."""
    ensure_ascii = False
    sort_keys = False  # objects keep the engine's field order; sorting every response costs time
    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS

    def response(self, *args, **kwargs):
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, default=self.default, option=self._OPTIONS) + b"\n"
        except orjson.JSONEncodeError:
            return super().response(*args, **kwargs)
        return self._app.response_class(body, mimetype=self.mimetype)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value else default
    except ValueError:
        raise RuntimeError(f"{name}={value!r} is not a whole number") from None


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
        SESSION_COOKIE_SECURE=os.environ.get("SALESFLOW_SECURE_COOKIES", "").lower() in ("1", "true", "yes"),
        LOGIN_MAX_FAILURES=_env_int("SALESFLOW_LOGIN_MAX_FAILURES", 5),  # per username, in the window
        LOGIN_MAX_FAILURES_PER_ADDRESS=_env_int("SALESFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS", 30),
        LOGIN_WINDOW=_env_int("SALESFLOW_LOGIN_WINDOW", 900),  # seconds
    )
    if config:
        app.config.update(config)
    if engine is None:
        engine = Engine(Database(app.config.get("DATABASE_URL") or database_url(instance_path)))
        if setup:
            engine.setup()
    if isinstance(engine, Engine) and getattr(engine, "_storage", None) is None:
        from engine.attachments import Storage
        engine.storage = Storage(files_url(instance_path))
    app.extensions["salesflow"] = engine
    app.session_interface = SessionInterface()
    hops = _env_int("SALESFLOW_PROXY_HOPS", 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.json = JSONProvider(app)

    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see this page."  # translated by localize_callback
    login_manager.localize_callback = _gettext

    from . import admin_views, api, auth, edge, people_views, views
    edge.init_app(app)  # id converters first: the blueprints' routes use them
    app.register_blueprint(auth.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(people_views.bp)
    app.register_blueprint(admin_views.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # the API authenticates with bearer tokens, not cookies

    @app.errorhandler(400)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    @app.errorhandler(415)
    @app.errorhandler(429)
    def _not_found(exc):
        if request.path.startswith("/api/"):
            response, status = api.error(exc.code, exc.description)
        else:
            response, status = views.error_page(exc)
            response = make_response(response, status)
        response.headers.update(api.exception_headers(exc))  # a 405 says what is allowed (Allow)
        return response, status

    return app
