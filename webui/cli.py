"""The `salesflow` command."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
from alembic.util import exc as alembic_exc
from sqlalchemy import exc as sa_exc

from engine.db import Database
from engine.definitions import DefinitionError
from engine.runtime import Engine

from . import database_url, default_instance_path, files_url


def _engine(setup: bool = True) -> Engine:
    url = database_url(default_instance_path())
    try:
        engine = Engine(Database(url))
        from engine.attachments import Storage
        engine.storage = Storage(files_url(default_instance_path()))
        if setup:
            for name in engine.setup():
                click.echo(f"deployed {name}", err=True)
    except DefinitionError as exc:
        raise click.ClickException(f"cannot deploy the workflows: {exc}") from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        # the database cannot be reached, or the URL is not one: say so; any other error is a bug
        # and keeps its traceback
        raise click.ClickException(f"cannot open the database {_safe(url)}: {exc.__class__.__name__}: {exc}") from exc
    except alembic_exc.CommandError as exc:
        raise click.ClickException(f"cannot migrate the database {_safe(url)}: {exc}") from exc
    return engine


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 date/time", param_hint="--at") from None
    if at.tzinfo is None:
        from zoneinfo import ZoneInfo
        at = at.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return at.astimezone(timezone.utc)


@click.group()
def main():
    """SalesFlow: workflows and approvals for the sales organisation."""
    level = os.environ.get("SALESFLOW_LOG_LEVEL", "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise click.ClickException(f"SALESFLOW_LOG_LEVEL={level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # SpiffWorkflow logs every task state change at INFO: a dozen lines per command, written on
    # the request's path. Its warnings and errors still show; SALESFLOW_LOG_LEVEL=DEBUG shows all.
    if level != "DEBUG":
        logging.getLogger("spiff").setLevel(logging.WARNING)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Load the demo organisation if the database is empty.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (use several with PostgreSQL).")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--no-worker", is_flag=True,
              help="Do not run the background worker (timers, reminders, mail); run `salesflow worker` instead.")
def serve(host, port, demo, workers, threads, no_worker):
    """Serve the web UI and the API with gunicorn (and, unless --no-worker, the background worker)."""
    engine = _engine()
    if demo:
        created = engine.seed_demo(only_if_empty=True)
        if created:
            click.echo(f"loaded the demo organisation ({created} users, password salesflow-demo)", err=True)
    engine.db.dispose()
    # the secret key is made once, here, before the workers start: each of several workers making its
    # own on a fresh instance folder would refuse the others' sessions and tokens
    from . import _secret_key
    _secret_key(default_instance_path())

    # the app is prepared: gunicorn takes this process over with its settings file, so the master
    # imports gunicorn only (the workers load the app), and the process id stays the same
    os.environ.update(SALESFLOW_SERVE_BIND=f"{host}:{port}", SALESFLOW_SERVE_WORKERS=str(workers),
                      SALESFLOW_SERVE_THREADS=str(threads), SALESFLOW_SERVE_BACKGROUND="0" if no_worker else "1")
    # glibc gives each thread that allocates a malloc arena of its own: with a worker's threads that is
    # memory held and never reused; two arenas serve a gthread worker as well (unless set otherwise)
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    click.echo(f"SalesFlow on http://{host}:{port}/", err=True)
    sys.stderr.flush()
    conf = Path(__file__).with_name("gunicorn_conf.py")
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config", str(conf)])


def start_background_worker(worker) -> None:
    """gunicorn hook, in every server worker: each starts the thread, the instance folder's lock
    file lets exactly one of them work at a time."""
    from engine.worker import BackgroundWorker
    app = worker.wsgi
    engine = app.extensions["salesflow"]
    thread = BackgroundWorker(engine, Path(app.instance_path) / "worker.lock", report=_report)
    thread.start()


def _report(result: dict) -> None:
    _print_fired(result["fired"])
    mailed = result["mail"]
    if any(mailed.values()):
        click.echo(f"mail: {mailed['sent']} sent, {mailed['retry']} to retry, {mailed['failed']} given up", err=True)


def hide_server_header() -> None:
    """gunicorn writes `Server: gunicorn` on every response: say nothing about the server instead."""
    from gunicorn.http import wsgi

    if getattr(wsgi.Response, "_salesflow_quiet", False):
        return
    default_headers = wsgi.Response.default_headers

    def quiet_headers(self):
        return [h for h in default_headers(self) if not h.lower().startswith("server:")]

    wsgi.Response.default_headers = quiet_headers
    wsgi.Response._salesflow_quiet = True


@main.command("seed-demo")
def seed_demo():
    """Load the demo organisation into the configured database."""
    created = _engine().seed_demo()
    click.echo(f"demo organisation loaded: {created} users created" if created
               else "demo organisation already present: nothing to do")


@main.command()
def deploy():
    """Migrate the database and deploy changed workflow definitions."""
    _engine()
    click.echo("database migrated; workflows deployed")


@main.group()
def timers():
    """Timer events."""


def _local(value: str | None) -> str:
    """An ISO time in the company's time zone (the one the UI shows)."""
    if not value:
        return "-"
    from zoneinfo import ZoneInfo
    return datetime.fromisoformat(value).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M %Z")


def _print_fired(fired: list[dict]) -> int:
    errors = 0
    for item in fired:
        if "error" in item:
            errors += 1
            click.echo(f"FAILED instance {item['instance_id']} timer {item['timer']}: {item['error']}", err=True)
        else:
            click.echo(f"fired {item['process_id']} #{item['instance_id']} {item['name']} "
                       f"({item['title']}) due {_local(item['due_at'])}")
    return errors


@timers.command("run")
@click.option("--at", "at_value", default=None, help="Fire timers due at or before this ISO-8601 time (default: now).")
def timers_run(at_value):
    """Fire every timer due at or before --at, print what fired, and exit."""
    at = _parse_at(at_value)
    fired = _engine().fire_due_timers(at)
    errors = _print_fired(fired)
    if not fired:
        click.echo("no timers due")
    if errors:
        sys.exit(1)


@main.command()
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between polls.")
def worker(interval):
    """Fire due timers, send reminders and deliver the mail outbox in a loop (run one or several
    next to the web servers)."""
    from engine.mail import MailConfigError, SmtpSettings
    from engine.worker import run_once, settings_from_env
    settings = settings_from_env()
    if settings["smtp_url"]:
        try:
            SmtpSettings.from_url(settings["smtp_url"])
        except MailConfigError as exc:
            raise click.ClickException(str(exc)) from None
    engine = _engine()
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    click.echo(f"worker polling every {interval}s" + ("" if settings["smtp_url"] else
               " (SALESFLOW_SMTP_URL unset: mail stays in the outbox)"), err=True)
    try:
        while not stop["now"]:
            try:
                run_once(engine, settings, _report)
            except Exception as exc:  # keep the worker alive through a database hiccup
                logging.getLogger("salesflow.worker").exception("worker pass failed: %s", exc)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


# ------------------------------------------------------------------ the organisation
def _refused(exc) -> None:
    """An engine refusal as the command line says it: each field and why, then exit 1."""
    from engine.errors import ValidationFailed
    if isinstance(exc, ValidationFailed):
        for name, why in exc.errors.items():
            click.echo(f"error: {name}: {why}", err=True)
    else:
        click.echo(f"error: {exc.message}", err=True)
    sys.exit(1)


@main.group()
def org():
    """People and the org chart (CSV)."""


@org.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def org_import(file):
    """Upsert users from a UTF-8 CSV (username,display_name,email,roles,region,manager,active).
    All or nothing: every bad line is reported and nothing is written."""
    from engine.commands.admin import ImportRefused
    from engine.errors import EngineError
    with click.open_file(file, encoding="utf-8-sig") as fh:
        try:
            text = fh.read()
        except UnicodeDecodeError as exc:
            click.echo(f"error: {file} is not UTF-8 ({exc}); nothing was imported", err=True)
            sys.exit(1)
    try:
        counts = _engine().import_org(text, source="import")
    except ImportRefused as exc:
        for problem in exc.problems:
            click.echo(f"line {problem['line']}: {problem['field']}: {problem['message']}", err=True)
        click.echo(f"{len(exc.problems)} problem(s); nothing was imported", err=True)
        sys.exit(1)
    except EngineError as exc:
        _refused(exc)
    click.echo(f"{counts['created']} created, {counts['changed']} changed, {counts['unchanged']} unchanged"
               + (f"; {counts['handed_over']} open task(s) handed over" if counts["handed_over"] else ""))


@org.command("export")
def org_export():
    """Write the users as CSV (the import's format) to standard output."""
    click.echo(_engine().export_org(), nl=False)


@main.group()
def user():
    """Users."""


@user.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, help="A role (repeat for several), e.g. admin.")
@click.option("--email", default=None)
@click.option("--name", "display_name", default=None, help="Display name (default: the username).")
@click.option("--region", default=None)
@click.option("--manager", default=None)
def user_add(username, roles, email, display_name, region, manager):
    """Create a user (the way to make a company's first administrator); then set a password with
    `salesflow user set-password USERNAME`."""
    from engine.errors import EngineError
    values = {"username": username, "display_name": display_name or username, "roles": list(roles),
              "email": email, "region": region, "manager": manager}
    try:
        created = _engine().create_user(None, values, source="cli")
    except EngineError as exc:
        _refused(exc)
    click.echo(f"created {created['username']} ({', '.join(created['roles']) or 'no role'}); "
               f"set a password with: salesflow user set-password {created['username']}")


@user.command("set-password")
@click.argument("username")
def user_set_password(username):
    """Set a user's password, read from standard input (one line)."""
    from engine.errors import EngineError
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        _engine().set_password(username, password, source="cli")
    except EngineError as exc:
        _refused(exc)
    click.echo(f"password of {username} set")


@main.group()
def region():
    """Regions."""


@region.command("add")
@click.argument("region_id")
@click.option("--name-zh", required=True)
@click.option("--name-en", required=True)
@click.option("--manager", default=None)
def region_add(region_id, name_zh, name_en, manager):
    """Add a region."""
    from engine.errors import EngineError
    try:
        created = _engine().add_region(None, {"id": region_id, "name": {"zh": name_zh, "en": name_en},
                                              "manager": manager}, source="cli")
    except EngineError as exc:
        _refused(exc)
    click.echo(f"region {created['id']} added ({created['name']['zh']} / {created['name']['en']})")


@main.command()
@click.argument("process_id")
@click.option("--to", "to_version", type=int, default=None, help="The version to move to (default: the newest).")
@click.option("--dry-run", is_flag=True, help="Check each instance, change nothing.")
def migrate(process_id, to_version, dry_run):
    """Move running instances of PROCESS_ID to a newer version, each in its own transaction:
    one line per instance (`migrated`, or `kept: <why>`); exit 1 if any was kept."""
    from engine.errors import EngineError
    try:
        results = _engine().migrate(process_id, to_version, dry_run)
    except EngineError as exc:
        _refused(exc)
    kept = 0
    for item in results:
        if item["result"] == "kept":
            kept += 1
            click.echo(f"#{item['instance_id']} v{item['from']} -> v{item['to']}: kept: {item['why']}")
        else:
            click.echo(f"#{item['instance_id']} v{item['from']} -> v{item['to']}: {item['result']}")
    if not results:
        click.echo(f"no running instance of {process_id} needs migrating")
    if kept:
        sys.exit(1)


if __name__ == "__main__":
    main()
