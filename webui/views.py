"""HTML views: login page, inbox, start forms, task pages and instance pages.

A thin layer: every page asks the engine (`current_app.extensions["salesflow"]`)
and turns engine errors into friendly pages or flash messages. Titles, names and
form schemas all come from the engine, for the definition version an instance runs;
forms and values are rendered by `formrender`.
"""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from engine.errors import Conflict, EngineError, Forbidden, NotFound, ProcessError, ValidationFailed

from .formrender import (
    N_, OUTCOMES, STATUSES, STEP_ACTIONS, build_fields, data_fields, describe, flatten, form_title, general_errors,
    lang, localized, localtime, needs_regions, needs_users, parse_form, raw_values, step_form, translate_error_dict,
)

bp = Blueprint("views", __name__)
bp.add_app_template_filter(localtime, "localtime")


def engine():
    return current_app.extensions["salesflow"]


# --------------------------------------------------------------- vocabularies
ACTIONS = {
    "started": _l("Started"),
    "task_created": _l("Task created"),
    "completed": _l("Completed"),
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "returned": _l("Returned for revision"),
    "claimed": _l("Claimed"),
    "delegated": _l("Delegated"),
    "withdrawn": _l("Withdrawn"),
    "timer_fired": _l("Deadline reached"),
    "notified": _l("Notified"),
    "auto_approved": _l("Approved automatically"),
    "routed": _l("Routed"),
    "task_cancelled": _l("Task cancelled"),
    "instance_completed": _l("Process finished"),
    "reassigned": _l("Reassigned"),
    "cancelled": _l("Cancelled by an administrator"),
    "retried": _l("Retried"),
    "error": _l("Failed"),
    "migrated": _l("Moved to a new version"),
}
LANES = {
    "Submitter": _l("Submitter"),
    "Employee": _l("Employee"),
    "Rep": _l("Sales rep"),
    "Manager": _l("Direct manager"),
    "RegionManager": _l("Region sales manager"),
    "Director": _l("Sales director"),
    "GeneralManager": _l("General manager"),
    "Finance": _l("Finance"),
    "Legal": _l("Legal"),
    "HR": _l("HR"),
    "Operations": _l("Operations"),
}
N_("Please log in to see this page.")  # Flask-Login's message (set in __init__), translated when flashed


def task_title(task: dict) -> str:
    return (task.get("title_en") if lang() == "en" else task.get("title")) or task.get("title") or task.get("name", "")


# --------------------------------------------------------------- errors
TITLES = {
    400: _l("Bad request"),
    403: _l("Not allowed"),
    404: _l("Not found"),
    405: _l("Method not allowed"),
    409: _l("Conflict"),
    422: _l("Could not be processed"),
    500: _l("Something went wrong"),
}
MESSAGES = {
    400: _l("The request could not be understood."),
    403: _l("You do not have permission to see this page or to do this."),
    404: _l("The page or item does not exist, or you cannot see it."),
    405: _l("This address does not accept that kind of request."),
    409: _l("Someone else changed this in the meantime. Reload the page and try again."),
    422: _l("The process could not continue with this input. Nothing was changed."),
    500: _l("An unexpected error occurred. Nothing you did was lost; please try again."),
}


def error_page(exc):
    """A friendly HTML error page for an HTTP exception or an engine error."""
    if isinstance(exc, EngineError):
        code = exc.status if exc.status in TITLES else 400
        detail = exc.message if isinstance(exc, (Conflict, ProcessError)) else None
    else:
        code = getattr(exc, "code", None) or 500
        detail = None
    if isinstance(exc, CSRFError):
        message = _("Your form expired or was sent from elsewhere. Go back, reload the page and try again.")
    else:
        message = str(MESSAGES.get(code, MESSAGES[400]))
    title = str(TITLES.get(code, TITLES[400]))
    return render_template("error.html", code=code, title=title, message=message, detail=detail), code


def _api_or_page(exc, code: int):
    if request.path.startswith("/api/"):
        from .api import error
        return error(code, getattr(exc, "description", None) or "error")
    return error_page(exc)


@bp.app_errorhandler(403)
def _forbidden(exc):
    return _api_or_page(exc, 403)


@bp.app_errorhandler(CSRFError)
def _csrf_error(exc):
    return _api_or_page(exc, 400)


@bp.app_errorhandler(500)
def _server_error(exc):
    return _api_or_page(exc, 500)


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError):
    return error_page(exc)


# --------------------------------------------------------------- context
@bp.app_context_processor
def _inject():
    return {
        "lang": lang,
        "localized": localized,
        "task_title": task_title,
        "status_label": lambda s: str(STATUSES.get(s, s)),
        "outcome_label": lambda o: str(OUTCOMES.get(o, o)),
        "action_label": lambda a: str(ACTIONS.get(a, a)),
        "lane_label": lambda lane: str(LANES.get(lane, lane or "—")),
    }


# --------------------------------------------------------------- pages
@bp.get("/")
@login_required
def inbox():
    """Three sections: one engine call for the two task lists, one for the submissions, one for process names."""
    eng = engine()
    me = current_user.username
    tasks = eng.tasks(me)
    mine = [t for t in tasks if t["assignee"] == me]
    claimable = [t for t in tasks if t["assignee"] is None]
    submitted = eng.instances(me, mine=True)
    return render_template("inbox.html", mine=mine, claimable=claimable, submitted=submitted,
                           process_names=eng.process_names())


def _process_title(process: dict) -> str:
    return localized(process.get("names"), process.get("name") or process["id"])


@bp.get("/start")
@login_required
def start_list():
    processes = engine().processes(current_user.username)
    return render_template("start_list.html", processes=processes, title=_process_title)


@bp.route("/start/<process_id>", methods=["GET", "POST"])
@login_required
def start(process_id: str):
    eng = engine()
    process = next((p for p in eng.processes(current_user.username) if p["id"] == process_id), None)
    if process is None:
        raise NotFound(f"process {process_id} not found")
    schema = process.get("start_form")
    errors: dict = {}
    values: dict = {}
    status = 200
    if request.method == "POST":
        data = parse_form(schema, request.form) if schema else None
        try:
            instance = eng.start(process_id, current_user.username, data)
        except ValidationFailed as exc:
            errors, values, status = exc.errors, raw_values(request.form), 422
        except ProcessError as exc:
            errors, values, status = {"_form": exc.message}, raw_values(request.form), 422
        else:
            flash(_("%(process)s #%(id)s was started.", process=_process_title(process), id=instance["id"]),
                  "success")
            return redirect(url_for("views.instance", instance_id=instance["id"]))
    users = eng.users() if needs_users(schema) else []
    regions = eng.regions(current_user.username, admin=False) if needs_regions(schema) else []
    fields = build_fields(schema, values, errors, users, regions=regions)
    return render_template("start_form.html", name=_process_title(process), fields=fields,
                           form_errors=general_errors(schema, errors), form_title=form_title(schema)), status


def _user_names(users: list[dict]) -> dict:
    return {u["username"]: u["display_name"] for u in users}


def _history(instance: dict, names: dict) -> list[dict]:
    """The instance's history as table rows; a step's input labelled by the form of that step
    (in its definition version), other details by the engine's vocabulary."""
    return [{"at": event.get("at"), "actor": event.get("actor"), "action": event.get("action"),
             "task": localized(event.get("task_title"), event.get("task") or ""),
             "detail": flatten(describe(event.get("detail") or {}, step_form(instance, event.get("task"))
                                        if event.get("action") in STEP_ACTIONS else {}, names))}
            for event in instance.get("history", [])]


def _task_page(task_id: str, *, errors=None, values=None, delegate_errors=None, delegate_values=None,
               status: int = 200):
    eng = engine()
    me = current_user.username
    task = eng.task(task_id, me)
    schema = task.get("form")
    try:
        instance = eng.instance(task["instance_id"], me, labels=True)
    except (NotFound, Forbidden):
        instance = None
    if instance:
        process_title = localized(instance.get("process_name"), task["process_id"])
        fields = data_fields(instance)
    else:
        process_title = localized(eng.process_names().get(task["process_id"]), task["process_id"])
        fields = (schema or {}).get("properties")
    users = eng.users()
    names = _user_names(users)
    is_open = task["status"] == "open"
    claimable = bool(is_open and task["assignee"] is None and task.get("can_act"))
    can_complete = bool(is_open and task.get("can_act") and task["assignee"] == me)
    if values is None:
        values = task.get("values") or {}
    return render_template(
        "task.html", task=task, instance=instance, process_title=process_title,
        fields=build_fields(schema, values, errors, users,
                            regions=eng.regions(me, admin=False) if needs_regions(schema) else []) if can_complete else [],
        form_title=form_title(schema), form_errors=general_errors(schema, errors or {}),
        claimable=claimable, can_complete=can_complete, can_delegate=bool(is_open and task.get("can_act")),
        delegate_to=[u for u in users if u["username"] != me],
        delegate_errors=translate_error_dict(delegate_errors), delegate_values=delegate_values or {},
        data_items=describe(task.get("data") or {}, fields, names, hide=("outcome",)),
        names=names, history=_history(instance, names) if instance else [],
    ), status


@bp.get("/tasks/<task_id>")
@login_required
def task(task_id: str):
    return _task_page(task_id)


@bp.post("/tasks/<task_id>/complete")
@login_required
def complete(task_id: str):
    eng = engine()
    me = current_user.username
    task = eng.task(task_id, me)
    data = parse_form(task.get("form"), request.form)
    try:
        result = eng.complete(task_id, me, data)
    except ValidationFailed as exc:
        return _task_page(task_id, errors=exc.errors, values=raw_values(request.form), status=422)
    except ProcessError as exc:
        return _task_page(task_id, errors={"_form": exc.message}, values=raw_values(request.form), status=422)
    except Conflict:
        flash(_("This task was already completed by someone else."), "warning")
        return redirect(url_for("views.instance", instance_id=task["instance_id"]))
    flash(_("Done: %(task)s.", task=task_title(task)), "success")
    following = [t for t in result.get("tasks", []) if t.get("assignee") == me]
    if len(following) == 1:
        flash(_("Your next step is ready: %(task)s.", task=task_title(following[0])), "info")
        return redirect(url_for("views.task", task_id=following[0]["id"]))
    return redirect(url_for("views.instance", instance_id=task["instance_id"]))


@bp.post("/tasks/<task_id>/claim")
@login_required
def claim(task_id: str):
    try:
        task = engine().claim(task_id, current_user.username)
    except Conflict:
        flash(_("Someone else has already taken this task."), "warning")
        return redirect(url_for("views.inbox"))
    flash(_("You claimed %(task)s.", task=task_title(task)), "success")
    return redirect(url_for("views.task", task_id=task_id))


@bp.post("/tasks/<task_id>/delegate")
@login_required
def delegate(task_id: str):
    to = request.form.get("to", "").strip()
    comment = request.form.get("comment", "").strip() or None
    try:
        task = engine().delegate(task_id, current_user.username, to, comment)
    except ValidationFailed as exc:
        return _task_page(task_id, delegate_errors=exc.errors, delegate_values={"to": to, "comment": comment or ""},
                          status=422)
    except Conflict:
        flash(_("This task was already completed by someone else."), "warning")
        return redirect(url_for("views.inbox"))
    flash(_("%(task)s was delegated to %(user)s.", task=task_title(task), user=to), "success")
    return redirect(url_for("views.inbox"))


@bp.get("/instances/<instance_id>")
@login_required
def instance(instance_id: str):
    eng = engine()
    me = current_user.username
    inst = eng.instance(instance_id, me, labels=True)
    try:
        svg = Markup(eng.diagram(inst["id"], me, titles_lang=lang()))  # sanitized SVG made by the engine
    except EngineError:
        svg = None
    names = _user_names(eng.users())
    data = inst.get("data") or {}
    return render_template(
        "instance.html", inst=inst, svg=svg, names=names, outcome=data.get("outcome"),
        data_items=describe(data, data_fields(inst), names, hide=("outcome",)),
        history=_history(inst, names), can_withdraw=inst["status"] == "running" and inst["started_by"] == me,
        process_title=localized(inst.get("process_name"), inst["process_id"]))


@bp.get("/instances/<instance_id>/diagram.svg")
@login_required
def diagram(instance_id: str):
    svg = engine().diagram(instance_id, current_user.username, titles_lang=lang())
    return current_app.response_class(svg, mimetype="image/svg+xml")


@bp.post("/instances/<instance_id>/withdraw")
@login_required
def withdraw(instance_id: str):
    try:
        number = int(instance_id)
    except ValueError:
        raise NotFound(f"instance {instance_id} not found") from None
    try:
        engine().withdraw(number, current_user.username)
    except Conflict:
        flash(_("This request is no longer running and cannot be withdrawn."), "warning")
    else:
        flash(_("The request was withdrawn."), "success")
    return redirect(url_for("views.instance", instance_id=number))
