"""HTML views: login page, inbox, start forms, task pages and instance pages.

A thin layer: every page asks the engine (`current_app.extensions["salesflow"]`)
and turns engine errors into friendly pages or flash messages. Titles, names, form
schemas and the words of a process's data (its vocabulary) all come from the engine, for
the definition version an instance runs; forms and values are rendered by `formrender`.
"""
from __future__ import annotations

import re

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from engine.errors import Conflict, EngineError, Forbidden, NotFound, ProcessError, RateLimited, ValidationFailed

from . import edge
from .formrender import (
    BUDGET_KEYS, DATA_LABELS, N_, SIGNER_MODE_HELP, SIGNER_MODES, STATUSES, STEP_ACTIONS, budget_line, build_fields,
    data_fields, describe, flatten, form_title, form_zh, general_errors, lang, localized, localtime, money,
    needs_regions, needs_users, outcome_label, parse_form, parse_time, people_error, raw_values, result_cards,
    step_form, translate_error_dict, translate_message, upload_fields,
)

bp = Blueprint("views", __name__)
UPLOAD_LIMIT = 20 * 1024 * 1024 + 256 * 1024  # a form's files (20 MiB in all) and its fields
bp.add_app_template_filter(localtime, "localtime")


def engine():
    return current_app.extensions["salesflow"]


def vocabulary() -> dict:
    """The words of every process (workflows/, from the engine), once a request: for what a page
    shows of several processes (outcomes in lists, a bulk approval's refusals). An instance's own
    page uses the instance's ("vocabulary" of its definition version)."""
    if "salesflow_vocabulary" not in g:
        g.salesflow_vocabulary = engine().vocabulary()
    return g.salesflow_vocabulary


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
    "returned_to": _l("Returned to a step"),
    "signer_added": _l("Signers added"),
    "signers_approved": _l("All added signers approved"),
    "held": _l("Approval held for the added signers"),
    "copied": _l("Copied"),
    "urged": _l("Urged"),
    "reassigned": _l("Reassigned"),
    "cancelled": _l("Cancelled by an administrator"),
    "retried": _l("Retried"),
    "error": _l("Failed"),
    "migrated": _l("Moved to a new version"),
}
SIGNER_STATUSES = {"open": _l("Waiting for them"), "completed": _l("Signed"), "cancelled": _l("Cancelled")}
N_("Please log in to see this page.")  # Flask-Login's message (set in __init__), translated when flashed


def lane_label(lane: str | None) -> str:
    """A lane's name in the page's language, as lanes.json declares it (once a request)."""
    if "salesflow_lanes" not in g:
        g.salesflow_lanes = engine().lane_titles()
    return localized(g.salesflow_lanes.get(lane or ""), lane or "—") if lane else "—"


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
        detail = conflict_message(exc) if isinstance(exc, Conflict) else \
            exc.message if isinstance(exc, ProcessError) else None
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
@bp.before_app_request
def _page_language():
    """Summaries in the page's language (the API keeps the caller's stored one)."""
    from engine.tables import page_lang
    page_lang.set(None if request.path.startswith("/api/") else lang())


@bp.app_context_processor
def _inject():
    return {
        "lang": lang,
        "localized": localized,
        "task_title": task_title,
        "status_label": lambda s: str(STATUSES.get(s, s)),
        "outcome_label": lambda o: outcome_label(o, vocabulary()),
        "action_label": lambda a: str(ACTIONS.get(a, a)),
        "lane_label": lane_label,
        "join_names": join_names,
        "inbox_url": _inbox_url,
        "age": age,
        "money": money,
    }


# --------------------------------------------------------------- pages
TABS = {"todo": _l("To do"), "done": _l("Done"), "started": _l("Started by me"), "cc": _l("Copied to me")}
PAGE_SIZE = 50


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return min(int(raw), 100000) if raw.isascii() and raw.isdigit() and int(raw) >= 1 else 1


@bp.get("/")
@login_required
def inbox():
    """Four tabs (待办 / 已办 / 我发起的 / 抄送我的), each with search, filters and paging."""
    eng = engine()
    me = current_user.username
    tab = request.args.get("tab", "todo")
    tab = tab if tab in TABS else "todo"
    names = eng.process_names()
    q = (request.args.get("q") or "").strip()[:100]
    process_id = request.args.get("process") or None
    process_id = process_id if process_id in names else None
    overdue = request.args.get("overdue") == "1" and tab == "todo"
    page = _page_number()
    offset = (page - 1) * PAGE_SIZE
    context = {"tab": tab, "tabs": TABS, "q": q, "process_id": process_id, "overdue": overdue, "page": page,
               "page_size": PAGE_SIZE, "process_names": names, "names": _user_names(eng.users()),
               "filtered": bool(q or process_id or overdue)}
    if tab in ("todo", "done"):
        tasks, total = eng.tasks(me, process_id=process_id, q=q or None, overdue=overdue, limit=PAGE_SIZE,
                                 offset=offset, with_total=True, scope="open" if tab == "todo" else "done")
        context.update(tasks=tasks, total=total, mine=[t for t in tasks if t["assignee"] == me],
                       claimable=[t for t in tasks if t["assignee"] is None])
        if tab == "todo" and not context["filtered"] and page == 1:
            context["submitted"] = eng.instances(me, scope="started", limit=5)
    else:
        found = eng.instances(me, scope="started" if tab == "started" else "cc", q=q or None,
                              process_id=process_id, limit=PAGE_SIZE + 1, offset=offset)
        context.update(instances=found[:PAGE_SIZE], more=len(found) > PAGE_SIZE)
    return render_template("inbox.html", **context)


def age(value) -> str:
    """How long ago (a task's waiting time): minutes, hours or days."""
    from datetime import datetime, timezone
    moment = parse_time(value)
    if moment is None:
        return "—"
    seconds = max(0, (datetime.now(timezone.utc) - moment).total_seconds())
    if seconds < 3600:
        return _("%(count)s min", count=max(1, int(seconds // 60)))
    if seconds < 86400:
        return _("%(count)s h", count=int(seconds // 3600))
    return _("%(count)s d", count=int(seconds // 86400))


def _inbox_url(**changes) -> str:
    """The inbox with the current tab and filters, some changed (a page link, a tab link)."""
    args = {k: v for k, v in request.args.items() if k in ("tab", "q", "process", "overdue", "page")}
    args.update({k: v for k, v in changes.items()})
    return url_for("views.inbox", **{k: v for k, v in args.items() if v not in (None, "", False)})


BULK_STATUS = {
    403: _l("not yours to decide"),
    404: _l("not found, or you cannot see it"),
    409: _l("already decided or changed by someone else"),
    422: _l("this task cannot be approved in bulk: open it and decide there"),
}


@bp.post("/tasks/bulk-approve")
@login_required
def bulk_approve():
    """Approve the chosen tasks with one comment; each is its own transaction (eng.bulk_complete)."""
    eng = engine()
    me = current_user.username
    ids = [i for i in dict.fromkeys(request.form.getlist("ids")) if i][:100]
    comment = _text("comment")
    back = edge.safe_target(request.form.get("next")) or url_for("views.inbox")
    if not ids:
        flash(_("Choose the tasks to approve first."), "warning")
        return redirect(back)
    titles = {t["id"]: t for t in eng.tasks(me, limit=1000)}
    data = {"decision": "approve", **({"comment": comment} if comment else {})}
    results = eng.bulk_complete(ids, me, data)
    names = _user_names(eng.users())
    done = [r for r in results if r["status"] == 200]
    failed = [r for r in results if r["status"] != 200]
    if done:
        flash(_("Approved %(count)s tasks.", count=len(done)) if len(done) != 1 else _("Approved 1 task."), "success")
    for r in failed:
        task = titles.get(r["id"])
        if task is None:  # no longer open (withdrawn, decided): named as it was
            try:
                task = eng.task(r["id"], me)
            except EngineError:
                task = None
        label = f"{task_title(task)} · {task.get('summary') or '#' + str(task['instance_id'])}" if task \
            else _("a task you can no longer see")
        flash(_("Not approved: %(task)s — %(reason)s", task=label, reason=_bulk_reason(r, names)), "error")
    return redirect(back)


def _bulk_reason(result: dict, names: dict) -> str:
    """Why one task of a bulk approval failed, in the user's language."""
    status, message = result.get("status"), result.get("error") or ""
    if status == 409:
        return conflict_message(Conflict(message), names)
    if status == 422 and result.get("errors"):
        errors = result["errors"]
        first = next(iter(errors.values()))
        translated = translate_message(first, vocabulary().get("messages"))
        return translated if translated != first or lang() == "en" else str(BULK_STATUS[422])
    if status == 422 and message:
        translated = translate_message(message)
        if translated != message:
            return translated
    return str(BULK_STATUS.get(status, BULK_STATUS[422]))


def _process_title(process: dict) -> str:
    return localized(process.get("names"), process.get("name") or process["id"])


@bp.get("/start")
@login_required
def start_list():
    processes = engine().processes(current_user.username)
    return render_template("start_list.html", processes=processes, title=_process_title)


@bp.route("/start/<process_id>", methods=["GET", "POST"])
@edge.max_body(UPLOAD_LIMIT)
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
    files: dict = {}
    if request.method == "POST":
        data = parse_form(schema, request.form) if schema else None
        try:
            files = _store_uploads(schema, data)
            instance = eng.start(process_id, current_user.username, data)
        except ValidationFailed as exc:
            errors, values, status = exc.errors, _redisplay(schema, data), 422
        except ProcessError as exc:
            errors, values, status = {"_form": exc.message}, _redisplay(schema, data), 422
        else:
            flash(_("%(process)s #%(id)s was started.", process=_process_title(process), id=instance["id"]),
                  "success")
            return redirect(url_for("views.instance", instance_id=instance["id"]))
    users = eng.subject_choices(process_id, current_user.username) if needs_users(schema) else []
    files = {**eng.describe_attachments(_attached_ids(schema, values), current_user.username), **files}
    regions = eng.regions(current_user.username, admin=False) if needs_regions(schema) else []
    fields = build_fields(schema, values, errors, users, files=files, regions=regions)
    return render_template("start_form.html", name=_process_title(process), fields=fields,
                           form_errors=general_errors(schema, errors), form_title=form_title(schema)), status


def _store_uploads(schema, data: dict | None) -> dict:
    """Store the files sent with a form's attachment fields (`<field>__upload`) and add their ids to
    `data`. Returns id -> metadata. A refused file is a ValidationFailed naming its field."""
    stored: dict = {}
    if data is None:
        return stored
    for key in upload_fields(schema):
        for upload in request.files.getlist(key + "__upload"):
            if not upload or not upload.filename:
                continue
            try:
                meta = engine().upload(current_user.username, upload.stream, upload.filename)
            except EngineError as exc:
                data.setdefault(key, [])
                raise ValidationFailed({key: f"{upload.filename}: {translate_message(exc.message)}"}) from None
            stored[meta["id"]] = meta
            data.setdefault(key, []).append(meta["id"])
    return stored


def _redisplay(schema, data: dict | None) -> dict:
    """What a refused form shows again: what was typed, and the files already stored."""
    values = raw_values(request.form)
    for key in upload_fields(schema):
        values[key] = list((data or {}).get(key) or [])
    return values


def _attached_ids(schema, values: dict | None) -> list:
    ids = []
    for key in upload_fields(schema):
        value = (values or {}).get(key)
        ids += value if isinstance(value, list) else []
    return ids


def join_names(items, names: dict | None = None) -> str:
    """People in a sentence ("Dave、Frank" / "Dave, Frank"); usernames shown by `names` when given."""
    return ("、" if lang() == "zh" else ", ").join(str(names.get(i, i)) if names is not None else str(i)
                                                  for i in items)


def _user_names(users: list[dict]) -> dict:
    return {u["username"]: u["display_name"] for u in users}


def _step_title(instance: dict, name: str | None) -> str:
    title = ((instance.get("steps") or {}).get(name) or {}).get("title") or {}
    return localized(title, name or "")


def _event_detail(instance: dict, event: dict) -> dict:
    """A history event's detail ready to label: step names as their titles, an added signer's own
    approval credited to them, nothing the row already says."""
    detail = dict(event.get("detail") or {})
    action = event.get("action")
    for key in ("step", "return_to"):
        if isinstance(detail.get(key), str):
            detail[key] = _step_title(instance, detail[key])
    if action == "returned_to":
        detail.pop("step", None)  # the step column names it
    if action in ("copied", "urged") and "to" in detail:  # not a transfer's "to"
        key = "copied_to" if action == "copied" else "reminded"
        detail = {key if k == "to" else k: v for k, v in detail.items()}
    if detail.get("signer") is True:
        detail["signer"] = event.get("actor")
    return detail


ROLES = {"sales_rep": _l("sales rep"), "sales_manager": _l("sales manager"), "sales_director": _l("sales director"),
         "general_manager": _l("general manager"), "finance": _l("finance"), "legal": _l("legal"), "hr": _l("HR"),
         "operations": _l("operations"), "admin": _l("administrator")}
# the engine's routing notes (engine/org.py), rendered from their parts
ROUTING = (
    (re.compile(r"no (?P<role>\S+) other than (?P<user>\S+); routed to (?P<to>\S+)"),
     N_("%(user)s is the only %(role)s and decides nothing about themselves: the step went to %(to)s")),
    (re.compile(r"(?P<user>\S+) has no active manager.*; routed to administrators"),
     N_("%(user)s has no active manager: the step went to the administrators")),
    (re.compile(r"nobody holds role '(?P<role>[^']+)'; routed to administrators"),
     N_("Nobody is %(role)s: the step went to the administrators")),
    (re.compile(r"lane .*; routed to administrators"), N_("The step has no owner: it went to the administrators")),
)


def routing_note(text, names: dict) -> str:
    """A routing note of the engine in the user's language, people by their names."""
    for pattern, template in ROUTING:
        match = pattern.fullmatch(str(text or ""))
        if match:
            values = match.groupdict()
            for key in ("user", "to"):
                if key in values:
                    values[key] = names.get(values[key], values[key])
            if "role" in values:
                values["role"] = str(ROLES.get(values["role"], values["role"]))
            return _(template, **values)
    return str(text) if lang() == "en" else _("The step went to someone other than usual.")


DATA_LABELS_ASSIGNEE = DATA_LABELS["assignee"]
FOLDED = {"task_created", "routed"}  # system rows shown inside the row of the step they belong to


def _with_file_names(detail: dict, form: dict, files: dict) -> dict:
    """A step's input with its attachment ids as the files' names."""
    keys = _file_keys(form)
    return {k: ([files.get(i, _("a file")) for i in v] if k in keys and isinstance(v, list) else v)
            for k, v in detail.items()}


def _history(instance: dict, names: dict, files: dict | None = None) -> list[dict]:
    """The instance's history as rows; a step's input labelled by the form of that step (in its
    definition version), other details by the engine's vocabulary. A step's "task created" and
    routing rows are folded into the row of what was done with it (waiting since, routed why);
    those of a step still open stay rows of their own."""
    rows = []
    for event in instance.get("history", []):
        action = event.get("action")
        detail = _event_detail(instance, event)
        notes = []
        if action == "routed" and "reason" in detail:
            notes.append(routing_note(detail.pop("reason"), names))
        form = step_form(instance, event.get("task")) if action in STEP_ACTIONS else {}
        detail = _with_file_names(detail, form, files or {})
        rows.append({"at": event.get("at"), "actor": event.get("actor"), "action": action,
                     "name": event.get("task"), "task": localized(event.get("task_title"), event.get("task") or ""),
                     "detail": flatten(describe(detail, form, names, vocabulary=instance.get("vocabulary"))),
                     "notes": notes, "since": None})
    out: list[dict] = []
    pending: dict[str, list[dict]] = {}  # step -> its folded rows not yet matched with a decision
    for row in rows:
        name = row["name"]
        if row["action"] in FOLDED and name:
            if row["action"] == "routed" and pending.get(name):
                pending[name][-1]["notes"] += row["notes"]
                continue
            out.append(row)
            pending.setdefault(name, []).append(row)
            continue
        waiting = pending.get(name) or []
        if row["actor"] and waiting and row["action"] not in ("claimed", "delegated", "signer_added", "held"):
            created = waiting.pop(0)
            out.remove(created)
            row["since"] = created["at"] if localtime(created["at"]) != localtime(row["at"]) else None
            row["notes"] = created["notes"] + [label + ": " + value for label, value in created["detail"]
                                               if label != str(DATA_LABELS_ASSIGNEE)] + row["notes"]
        out.append(row)
    return out


# engine conflicts (409), shown in the user's language
CONFLICTS = (
    (re.compile(r"task \S+ is already completed"), N_("This task was already completed.")),
    (re.compile(r"task \S+ is already cancelled"),
     N_("This task was cancelled: its step was decided by someone else, or the request ended.")),
    (re.compile(r"task \S+ is already waiting"),
     N_("This task waits for the signers you added; it comes back to you when they have approved.")),
    (re.compile(r"task \S+ is already held"), N_("Your approval is held until the added signers have approved.")),
    (re.compile(r"task( \S+)? is no longer open"), N_("This task is no longer open.")),
    (re.compile(r"task \S+ closed before your action: .*"),
     N_("This task closed before your action: its deadline had passed.")),
    (re.compile(r"the instance was changed concurrently; try again"),
     N_("Someone else changed this request at the same moment. Please try again.")),
    (re.compile(r"task \S+ is held by (?P<user>\S+)"), N_("%(user)s has already taken this task.")),
    (re.compile(r"instance \S+ is (?P<status>\w+), not running"), N_("This request is no longer running (%(status)s).")),
)


def conflict_message(exc: Conflict, names: dict | None = None) -> str:
    """The engine's own reason for a 409, translated (an unknown one: as it is in English, else the
    general message)."""
    for pattern, template in CONFLICTS:
        match = pattern.fullmatch(exc.message or "")
        if match:
            values = match.groupdict()
            if "user" in values:
                values["user"] = (names or {}).get(values["user"], values["user"])
            if "status" in values:
                values["status"] = str(STATUSES.get(values["status"], values["status"]))
            return _(template, **values)
    return exc.message if lang() == "en" and exc.message else str(MESSAGES[409])


def _picked(name: str) -> list[str]:
    return [u.strip() for u in request.form.getlist(name) if u.strip()]


def _text(name: str) -> str | None:
    return request.form.get(name, "").strip() or None


def _task_page(task_id: str, *, errors=None, values=None, delegate_errors=None, delegate_values=None,
               signer_errors=None, signer_values=None, cc_errors=None, cc_values=None, status: int = 200):
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
        words = instance.get("vocabulary")
    else:
        process_title = localized(eng.process_names().get(task["process_id"]), task["process_id"])
        fields = (schema or {}).get("properties")
        words = vocabulary()
    zh = form_zh(schema, words)
    users = eng.users()
    names = _user_names(users)
    is_open = task["status"] == "open"
    claimable = bool(is_open and task["assignee"] is None and task.get("can_act"))
    can_complete = bool(is_open and task.get("can_act") and task["assignee"] == me)
    can_delegate = bool(is_open and task.get("can_act"))
    can_add_signer = bool(is_open and task.get("can_add_signer"))
    eligible = eng.eligible_users(task_id, me) if (can_delegate or can_add_signer) else []
    signing = {s["username"] for s in task.get("signers") or [] if s["status"] == "open"}
    if values is None:
        values = task.get("values") or {}
    files = eng.describe_attachments(_attached_ids(schema, values), me) if can_complete else {}
    form_fields = build_fields(schema, values, errors, users, zh=zh, return_targets=task.get("return_targets"),
                               files=files,
                               regions=eng.regions(me, admin=False) if can_complete and needs_regions(schema) else []) \
        if can_complete else []
    decision = next((f for f in form_fields if task.get("is_approval") and f.key == "decision"
                     and f.kind == "radio"), None)
    signer_errors = signer_errors or {}
    attachments = eng.attachments(instance["id"], me) if instance else []
    signers_open = [s for s in task.get("signers") or [] if s["status"] == "open"]
    return render_template(
        "task.html", task=task, instance=instance, process_title=process_title,
        fields=[f for f in form_fields if f is not decision and not (f.kind == "return-target" and not f.options)],
        decision=decision, form_title=form_title(schema), form_errors=general_errors(schema, errors or {}, zh),
        claimable=claimable, can_complete=can_complete, can_delegate=can_delegate,
        delegate_to=eligible,
        delegate_errors=translate_error_dict(delegate_errors), delegate_values=delegate_values or {},
        can_add_signer=can_add_signer, signer_candidates=[u for u in eligible if u["username"] not in signing],
        signer_modes=[(m, SIGNER_MODES[m], SIGNER_MODE_HELP[m]) for m in ("before", "after", "parallel")],
        signer_errors={"users": people_error(signer_errors.get("users"), names),
                       **{k: translate_message(v) for k, v in signer_errors.items() if k != "users"}},
        signer_values=signer_values or {"mode": "before", "users": []},
        signers_open=signers_open, mode_label=lambda m: str(SIGNER_MODES.get(m, m or "")),
        signer_status=lambda st: str(SIGNER_STATUSES.get(st, st)),
        held=bool(task["status"] == "completed" and task.get("assignee") == me and signers_open),
        **_cc_context(instance, me, users, names, cc_errors, cc_values, next_url=url_for("views.task", task_id=task_id)),
        **_details(task.get("data") or {}, fields, names, words),
        attachments=attachments, names=names,
        history=_history(instance, names, {a["id"]: a["filename"] for a in attachments}) if instance else [],
        step_title=lambda name: _step_title(instance or {}, name),
    ), status


def _details(data: dict, fields: dict | None, names: dict, words: dict | None) -> dict:
    """A request's data for its page: the result cards its process declares (an appraisal's result),
    the budget as one line, everything else as labelled items (no raw keys, files as their own card);
    `words` the process's vocabulary."""
    budget, cards = budget_line(data), result_cards(data, words)
    hide = ["outcome", "submitter", "started_by", *_file_keys(fields)]  # the facts card names the people
    if budget:
        hide += BUDGET_KEYS
    for card in cards:
        hide += card["keys"]
    return {"data_items": describe(data, fields, names, hide=tuple(hide), vocabulary=words), "budget": budget,
            "cards": cards}


def _file_keys(fields: dict | None) -> tuple:
    """Data keys that hold attachment ids: shown as the files card, never as raw ids."""
    return tuple(k for k, p in (fields or {}).items() if isinstance(p, dict) and p.get("type") == "array"
                 and (p.get("items") or {}).get("format") == "attachment")


INLINE_TYPES = ("application/pdf", "image/jpeg", "image/png")


@bp.get("/files/<attachment_id>")
@login_required
def file(attachment_id: str):
    """A file for whoever can see its request: PDFs and images open in the browser (inline=1),
    everything else downloads."""
    meta, handle = engine().open_attachment(attachment_id, current_user.username)
    inline = request.args.get("inline") == "1" and meta["content_type"] in INLINE_TYPES
    response = send_file(handle, mimetype=meta["content_type"], as_attachment=not inline,
                         download_name=meta["filename"], max_age=0, etag=meta["sha256"])
    if inline:  # the page's CSP is for HTML; a PDF needs the browser's viewer
        response.headers["Content-Security-Policy"] = "sandbox allow-scripts; frame-ancestors 'self'" \
            if meta["content_type"] != "application/pdf" else "frame-ancestors 'self'"
    return response


@bp.post("/instances/<iid:instance_id>/attachments")
@edge.accepts("multipart/form-data")
@edge.max_body(UPLOAD_LIMIT)
@login_required
def add_file(instance_id: int):
    eng = engine()
    uploads = [u for u in request.files.getlist("file") if u and u.filename]
    if not uploads:
        flash(_("Choose a file to add."), "warning")
    for upload in uploads:
        try:
            eng.upload(current_user.username, upload.stream, upload.filename, instance_id=instance_id)
        except (ValidationFailed, Conflict) as exc:
            flash(f"{upload.filename}: {translate_message(exc.message)}", "error")
        except EngineError as exc:
            if exc.status not in (413, 415):
                raise
            flash(f"{upload.filename}: {translate_message(exc.message)}", "error")
        else:
            flash(_("%(file)s was added.", file=upload.filename), "success")
    return redirect(url_for("views.instance", instance_id=instance_id) + "#files")


def _cc_context(instance, me, users, names, errors, values, next_url) -> dict:
    errors = errors or {}
    return {
        "cc_users": [u for u in users if u["username"] != me],
        "cc_errors": {"users": people_error(errors.get("users"), names),
                      **{k: translate_message(v) for k, v in errors.items() if k != "users"}},
        "cc_values": values or {"users": []},
        "cc_next": next_url,
        "cc_instance_id": instance["id"] if instance else None,
    }


@bp.get("/tasks/<tid:task_id>")
@login_required
def task(task_id: str):
    return _task_page(task_id)


@bp.post("/tasks/<tid:task_id>/complete")
@edge.max_body(UPLOAD_LIMIT)
@login_required
def complete(task_id: str):
    eng = engine()
    me = current_user.username
    task = eng.task(task_id, me)
    data = parse_form(task.get("form"), request.form)
    if data.get("decision") != "return":
        data.pop("return_to", None)  # the step picker counts only for a return
    try:
        _store_uploads(task.get("form"), data)
        result = eng.complete(task_id, me, data)
    except ValidationFailed as exc:
        return _task_page(task_id, errors=exc.errors, values=_redisplay(task.get("form"), data), status=422)
    except ProcessError as exc:
        return _task_page(task_id, errors={"_form": exc.message}, values=_redisplay(task.get("form"), data),
                          status=422)
    except Conflict as exc:
        flash(conflict_message(exc, _user_names(eng.users())), "warning")
        return redirect(url_for("views.instance", instance_id=task["instance_id"]))
    flash(_("Done: %(task)s.", task=task_title(task)), "success")
    following = [t for t in result.get("tasks", []) if t.get("assignee") == me]
    if len(following) == 1:
        flash(_("Your next step is ready: %(task)s.", task=task_title(following[0])), "info")
        return redirect(url_for("views.task", task_id=following[0]["id"]))
    return redirect(url_for("views.instance", instance_id=task["instance_id"]))


@bp.post("/tasks/<tid:task_id>/claim")
@login_required
def claim(task_id: str):
    try:
        task = engine().claim(task_id, current_user.username)
    except Conflict:
        flash(_("Someone else has already taken this task."), "warning")
        return redirect(url_for("views.inbox"))
    flash(_("You claimed %(task)s.", task=task_title(task)), "success")
    return redirect(url_for("views.task", task_id=task_id))


@bp.post("/tasks/<tid:task_id>/delegate")
@login_required
def delegate(task_id: str):
    eng = engine()
    to = request.form.get("to", "").strip()
    comment = _text("comment")
    try:
        task = eng.delegate(task_id, current_user.username, to, comment)
    except ValidationFailed as exc:
        return _task_page(task_id, delegate_errors=exc.errors, delegate_values={"to": to, "comment": comment or ""},
                          status=422)
    except Conflict as exc:
        flash(conflict_message(exc, _user_names(eng.users())), "warning")
        return redirect(url_for("views.inbox"))
    flash(_("%(task)s was delegated to %(user)s.", task=task_title(task),
            user=_user_names(eng.users()).get(to, to)), "success")
    return redirect(url_for("views.inbox"))


@bp.post("/tasks/<tid:task_id>/add-signer")
@login_required
def add_signer(task_id: str):
    eng = engine()
    users, mode, comment = _picked("users"), request.form.get("mode", "").strip(), _text("comment")
    try:
        eng.add_signer(task_id, current_user.username, users, mode, comment)
    except ValidationFailed as exc:
        return _task_page(task_id, signer_errors=exc.errors,
                          signer_values={"users": users, "mode": mode, "comment": comment or ""}, status=422)
    except Conflict as exc:
        flash(conflict_message(exc, _user_names(eng.users())), "warning")
        return redirect(url_for("views.task", task_id=task_id))
    names = _user_names(eng.users())
    flash(_("Signers added (%(mode)s): %(users)s.", mode=SIGNER_MODES[mode],
            users=join_names(names.get(u, u) for u in users)), "success")
    return redirect(url_for("views.task", task_id=task_id))


def _comment_html(text: str, names: dict) -> Markup:
    """A comment's text, escaped, its @mentions of known people highlighted with their names."""
    parts = []
    last = 0
    for match in MENTION.finditer(text):
        parts.append(Markup.escape(text[last:match.start()]))
        user = match.group(1)
        if user in names:
            parts.append(Markup('<span class="mention" title="@{0}">@{1}</span>').format(user, names[user]))
        else:
            parts.append(Markup.escape(match.group(0)))
        last = match.end()
    parts.append(Markup.escape(text[last:]))
    return Markup("").join(parts)


MENTION = re.compile(r"@([A-Za-z0-9_.\-]+)")  # the engine's own pattern (engine/commands/instances.py)


def _instance_page(instance_id, *, comment_errors=None, comment_value="", cc_errors=None, cc_values=None,
                   status: int = 200):
    eng = engine()
    me = current_user.username
    inst = eng.instance(instance_id, me, labels=True)
    called = eng.called_processes(inst["id"], me)
    process_arg = request.args.get("process")
    process_arg = process_arg if process_arg in {c["id"] for c in called} else None
    try:
        svg = Markup(eng.diagram(inst["id"], me, titles_lang=lang(), process=process_arg,
                                 link=lambda pid: url_for("views.instance", instance_id=inst["id"], process=pid)
                                 + "#diagram-card"))  # sanitized SVG made by the engine
        edge.inline_styles_of(svg)  # its <style>, allowed by hash in the page's CSP
    except EngineError:
        svg = None
    shown = next((localized(c["name"], c["id"]) for c in called if c["id"] == process_arg), None)
    users = eng.users()
    names = _user_names(users)
    data = inst.get("data") or {}
    attachments = eng.attachments(inst["id"], me)
    comments = [{**c, "html": _comment_html(c.get("text") or "", names)} for c in eng.comments(inst["id"], me)]
    running = inst["status"] == "running"
    return render_template(
        "instance.html", inst=inst, svg=svg, names=names, called=called, process_arg=process_arg, shown_process=shown, outcome=data.get("outcome"),
        **_details(data, data_fields(inst), names, inst.get("vocabulary")),
        attachments=attachments, history=_history(inst, names, {a["id"]: a["filename"] for a in attachments}), can_withdraw=running and inst["started_by"] == me,
        can_urge=bool(running and inst.get("tasks") and me in (inst["started_by"], inst["subject"])),
        comments=comments, comment_errors=translate_error_dict(comment_errors), comment_value=comment_value,
        **_cc_context(inst, me, users, names, cc_errors, cc_values,
                      next_url=url_for("views.instance", instance_id=inst["id"])),
        process_title=localized(inst.get("process_name"), inst["process_id"])), status


@bp.get("/instances/<iid:instance_id>")
@login_required
def instance(instance_id: str):
    return _instance_page(instance_id)


_TASK_PATH = re.compile(r"/tasks/([0-9a-fA-F-]{36})")


@bp.post("/instances/<iid:instance_id>/cc")
@login_required
def copy(instance_id: str):
    """抄送, from the instance page or a task page (`next`: where the form was)."""
    eng = engine()
    users, comment = _picked("users"), _text("comment")
    back = _TASK_PATH.fullmatch(request.form.get("next", ""))
    try:
        inst = eng.copy(instance_id, current_user.username, users, comment)
    except ValidationFailed as exc:
        values = {"users": users, "comment": comment or ""}
        if back:
            return _task_page(back.group(1), cc_errors=exc.errors, cc_values=values, status=422)
        return _instance_page(instance_id, cc_errors=exc.errors, cc_values=values, status=422)
    names = _user_names(eng.users())
    flash(_("Copied to %(users)s.", users=join_names(names.get(u, u) for u in dict.fromkeys(users)
                                                   if u != current_user.username)), "success")
    if back:
        return redirect(url_for("views.task", task_id=back.group(1)))
    return redirect(url_for("views.instance", instance_id=inst["id"]))


@bp.post("/instances/<iid:instance_id>/urge")
@login_required
def urge(instance_id: str):
    eng = engine()
    try:
        result = eng.urge(instance_id, current_user.username, _text("comment"))
    except RateLimited as exc:
        minutes = max(1, -(-exc.retry_after // 60))
        flash(_("This request was urged less than an hour ago. You can urge it again in %(minutes)s minutes.",
                minutes=minutes), "warning")
    except Conflict as exc:
        flash(conflict_message(exc), "warning")
    else:
        names = _user_names(eng.users())
        flash(_("Reminder sent to %(users)s.", users=join_names(names.get(u, u) for u in result["notified"]))
              if result["notified"] else _("Nobody has an open task to be reminded of."), "success")
    return redirect(url_for("views.instance", instance_id=instance_id))


@bp.post("/instances/<iid:instance_id>/comments")
@login_required
def add_comment(instance_id: str):
    text = request.form.get("text", "")
    try:
        engine().comment(instance_id, current_user.username, text)
    except ValidationFailed as exc:
        return _instance_page(instance_id, comment_errors=exc.errors, comment_value=text, status=422)
    flash(_("Your comment was added."), "success")
    return redirect(url_for("views.instance", instance_id=instance_id) + "#comments")


@bp.get("/instances/<iid:instance_id>/diagram.svg")
@login_required
def diagram(instance_id: str):
    eng = engine()
    process = request.args.get("process")
    if process and process not in {c["id"] for c in eng.called_processes(instance_id, current_user.username)}:
        process = None
    svg = eng.diagram(instance_id, current_user.username, titles_lang=lang(), process=process)
    return current_app.response_class(svg, mimetype="image/svg+xml")


@bp.post("/instances/<iid:instance_id>/withdraw")
@login_required
def withdraw(instance_id: int):
    number = instance_id  # an id checked by the route's converter (edge.py)
    try:
        engine().withdraw(number, current_user.username)
    except Conflict:
        flash(_("This request is no longer running and cannot be withdrawn."), "warning")
    else:
        flash(_("The request was withdrawn."), "success")
    return redirect(url_for("views.instance", instance_id=number))
