"""HTML views: login page, inbox, start forms, task pages and instance pages.

A thin layer: every page asks the engine (`current_app.extensions["salesflow"]`)
and turns engine errors into friendly pages or flash messages. Forms are rendered
from the JSON Schemas the engine hands out (see `build_fields` / `parse_form`).
"""
from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from engine.errors import Conflict, EngineError, Forbidden, NotFound, ProcessError, ValidationFailed

bp = Blueprint("views", __name__)

TZ = ZoneInfo("Asia/Shanghai")


def N_(text: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return text


def engine():
    return current_app.extensions["salesflow"]


def lang() -> str:
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else "zh"


# --------------------------------------------------------------- vocabularies
STATUSES = {
    "running": _l("Running"),
    "completed": _l("Completed"),
    "cancelled": _l("Cancelled"),
    "error": _l("Error"),
    "open": _l("Open"),
}
OUTCOMES = {
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "withdrawn": _l("Withdrawn"),
    "won": _l("Won"),
    "lost": _l("Lost"),
}
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
# data keys that no form declares (set by the engine or the process)
DATA_LABELS = {
    "submitter": _l("Submitter"),
    "started_by": _l("Started by"),
    "region": _l("Region"),
    "budget_remaining": _l("Budget remaining (CNY)"),
    "needs_director": _l("Needs the sales director"),
    "needs_special_approval": _l("Needs special approval"),
    "outcome": _l("Outcome"),
    "by": _l("By"),
    "employee": _l("Employee"),
    "score": _l("Score"),
    "grade": _l("Grade"),
    "bonus_multiplier": _l("Bonus multiplier"),
    "pip": _l("Performance improvement plan"),
    "is_major": _l("Major contract"),
    "decision": _l("Decision"),
    "comment": _l("Comment"),
    "reason": _l("Reason"),
    # history details
    "assignee": _l("Assignee"),
    "candidates": _l("Candidates"),
    "from": _l("From"),
    "to": _l("To"),
    "title": _l("Title"),
    "due_at": _l("Due"),
    "message": _l("Message"),
    "subject": _l("On behalf of"),
}
# messages the engine and the form schemas produce; shown translated when known
ENGINE_MESSAGES = {
    N_("this field is required"),
    N_("unknown field"),
    N_("must be a number greater than 0"),
    N_("must be a date YYYY-MM-DD"),
    N_("describe the purpose and the receipts"),
    N_("a comment is required to return or reject"),
    N_("the task is already yours"),
    N_("nobody approves their own request"),
    N_("you cannot start this for yourself"),
    N_("must be a whole number from 0 to 100"),
    N_("must be at least 30 minutes"),
    N_("give a reason for the appeal"),
    N_("give the new grade"),
    N_("must be a username"),
}
N_("Please log in to see this page.")  # Flask-Login's message (set in __init__), translated when flashed

TYPE_NAMES = {
    "number": _l("a number"), "integer": _l("a whole number"), "string": _l("text"),
    "boolean": _l("yes or no"), "object": _l("a group of fields"), "array": _l("a list"),
}


def translate_message(message) -> str:
    if not isinstance(message, str):
        return str(message)
    if message in ENGINE_MESSAGES:
        return _(message)
    m = re.fullmatch(r"must be of type (\w+)", message)
    if m:
        return _("must be %(type)s", type=TYPE_NAMES.get(m.group(1), m.group(1)))
    if message.startswith("must be one of: "):
        return _("choose one of the options")
    if re.fullmatch(r"no active user '.*'", message):
        return _("no such user")
    return message


# --------------------------------------------------------------- workflow metadata
def _workflows_dir() -> Path | None:
    path = getattr(engine(), "workflows_dir", None)
    return Path(path) if path else None


def _signature(directory: Path, pattern: str) -> tuple:
    try:
        return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in directory.glob(pattern)))
    except OSError:
        return ()


@lru_cache(maxsize=8)
def _load_catalog(signature: tuple) -> dict:
    for path, _mtime in signature:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if not k.startswith("_") and isinstance(v, dict)}
    return {}


def process_name(process_id: str) -> str:
    directory = _workflows_dir()
    catalog = _load_catalog(_signature(directory, "processes.json")) if directory else {}
    names = catalog.get(process_id, {}).get("name", {})
    return names.get(lang()) or names.get("en") or process_id


@lru_cache(maxsize=8)
def _load_forms(signature: tuple) -> dict:
    """field name -> property schema, merged over every form (first title wins, enum titles merged)."""
    index: dict = {}

    def add(props: dict):
        for key, prop in props.items():
            if not isinstance(prop, dict):
                continue
            entry = index.setdefault(key, {})
            for attr in ("title", "x-title-zh", "type", "format"):
                if attr in prop and attr not in entry:
                    entry[attr] = prop[attr]
            if "x-enum-titles" in prop:
                entry.setdefault("x-enum-titles", {}).update(prop["x-enum-titles"])
            if isinstance(prop.get("properties"), dict):
                entry.setdefault("properties", {})
                for sub, sub_prop in prop["properties"].items():
                    entry["properties"].setdefault(sub, sub_prop)
                add(prop["properties"])

    for path, _mtime in signature:
        try:
            schema = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
            add(schema["properties"])
    return index


def form_index() -> dict:
    directory = _workflows_dir()
    return _load_forms(_signature(directory / "forms", "*.json")) if directory else {}


BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
SPIFF = "{http://spiffworkflow.org/bpmn/schema/1.0/core}"


@lru_cache(maxsize=8)
def _load_elements(signature: tuple) -> dict:
    """(process id, element id) and element id -> {"zh", "en", "data_key"} from the BPMN files."""
    index: dict = {}
    for path, _mtime in signature:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError):
            continue
        for proc in root.iter(f"{BPMN}process"):
            for el in proc.iter():
                if not el.get("id") or not el.get("name"):
                    continue
                props = {p.get("name"): p.get("value") for p in el.iter(f"{SPIFF}property")}
                entry = {"zh": el.get("name"), "en": props.get("titleEn") or el.get("name"),
                         "data_key": props.get("dataKey")}
                index[(proc.get("id"), el.get("id"))] = entry
                index.setdefault(el.get("id"), entry)
                if entry["data_key"]:
                    index.setdefault(("data_key", entry["data_key"]), entry)
    return index


def elements() -> dict:
    directory = _workflows_dir()
    return _load_elements(_signature(directory, "*.bpmn")) if directory else {}


def element_title(process_id: str | None, name: str | None) -> str:
    if not name:
        return ""
    index = elements()
    entry = index.get((process_id, name)) or index.get(name)
    return entry[lang()] if entry else name


def task_title(task: dict) -> str:
    return (task.get("title_en") if lang() == "en" else task.get("title")) or task.get("title") or task.get("name", "")


# --------------------------------------------------------------- display helpers
def parse_time(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=TZ)
    return moment.astimezone(TZ)


@bp.app_template_filter("localtime")
def localtime(value) -> str:
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def _label(key: str, prop: dict | None) -> str:
    if prop:
        if lang() == "zh" and prop.get("x-title-zh"):
            return prop["x-title-zh"]
        if prop.get("title"):
            return prop["title"]
    if key in DATA_LABELS:
        return str(DATA_LABELS[key])
    entry = elements().get(("data_key", key))
    if entry:
        return entry[lang()]
    return key.replace("_", " ").capitalize()


def _enum_title(prop: dict | None, value) -> str | None:
    titles = (prop or {}).get("x-enum-titles", {})
    entry = titles.get(str(value)) if isinstance(titles, dict) else None
    if isinstance(entry, dict):
        return entry.get(lang()) or entry.get("en")
    return None


def format_value(key: str, value, prop: dict | None = None):
    """A readable string for a data value (dicts are handled by describe)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    title = _enum_title(prop, value)
    if title:
        return title
    if key == "outcome" and value in OUTCOMES:
        return str(OUTCOMES[value])
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            return format_decimal(value, format="#,##0.##")
        except Exception:  # pragma: no cover - a locale without number data
            return str(value)
    if isinstance(value, list):
        return ", ".join(str(format_value(key, v, prop)) for v in value) or "—"
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}.*", value):
        return localtime(value) or value
    return str(value)


@dataclass
class Item:
    key: str
    label: str
    value: str = ""
    children: list = field(default_factory=list)


def describe(data: dict, schema: dict | None = None, hide: tuple = ()) -> list[Item]:
    """Instance data as (label, value) items, the form's fields first, nested dicts as sub-lists."""
    if not isinstance(data, dict):
        return []
    index = form_index()
    props = dict((schema or {}).get("properties") or {})
    order = [k for k in props if k in data] + [k for k in data if k not in props]
    items = []
    for key in order:
        if key in hide:
            continue
        value = data[key]
        prop = props.get(key) or index.get(key)
        if isinstance(value, dict):
            items.append(Item(key, _label(key, prop), children=describe(value, prop if prop and prop.get("properties") else None)))
        else:
            items.append(Item(key, _label(key, prop), format_value(key, value, prop)))
    return items


def translate_error_dict(errors: dict | None) -> dict:
    return {k: translate_message(v) for k, v in (errors or {}).items()}


# --------------------------------------------------------------- forms from JSON Schema
@dataclass
class Field:
    name: str  # the HTML name: "amount", "scores.sales_achievement"
    key: str
    label: str
    kind: str  # text textarea number date select radio checkbox checkboxes user group
    required: bool = False
    value: object = ""
    error: str | None = None
    options: list = field(default_factory=list)  # (value, label)
    attrs: dict = field(default_factory=dict)
    children: list = field(default_factory=list)
    help: str | None = None


def _prop_label(key: str, prop: dict) -> str:
    if lang() == "zh" and prop.get("x-title-zh"):
        return prop["x-title-zh"]
    return prop.get("title") or _label(key, None)


def _kind(key: str, prop: dict) -> str:
    typ = prop.get("type")
    widget = prop.get("x-widget")
    if typ == "object" and isinstance(prop.get("properties"), dict):
        return "group"
    if widget in ("user", "username") or (typ == "string" and prop.get("format") == "username"):
        return "user"
    if typ == "array":
        return "checkboxes" if isinstance((prop.get("items") or {}).get("enum"), list) else "textarea"
    if "enum" in prop:
        if widget in ("radio", "select"):
            return widget
        return "radio" if len(prop["enum"]) <= 3 else "select"
    if typ == "boolean":
        return "checkbox"
    if typ in ("number", "integer"):
        return "number"
    if typ == "string" and prop.get("format") == "date":
        return "date"
    if widget == "textarea":
        return "textarea"
    return "text"


def _display(value) -> object:
    """A stored value as the string an input shows."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return value
    return str(value)


def build_fields(schema: dict | None, values: dict | None = None, errors: dict | None = None,
                 users: list | None = None, me: str | None = None) -> list[Field]:
    """Form fields for a JSON Schema object: one Field per property, nested objects as groups.
    `values` are what the inputs show (typed data or the submitted strings), `errors` the engine's."""
    if not schema:
        return []
    values = values or {}
    errors = errors or {}
    required = set(schema.get("required") or [])
    fields = []
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict) or prop.get("readOnly") or prop.get("x-hidden"):
            continue
        name = key
        kind = _kind(key, prop)
        f = Field(name=name, key=key, label=_prop_label(key, prop), kind=kind, required=key in required,
                  help=(prop.get("x-description-zh") if lang() == "zh" else None) or prop.get("description"))
        message = errors.get(key)
        if message == "this field is required" and key not in required:
            message = _conditional_hint(schema, key) or message
        f.error = translate_message(message) if message else None
        raw = values.get(key)
        if kind == "group":
            sub_values = values.get(key) if isinstance(values.get(key), dict) else \
                {k[len(name) + 1:]: v for k, v in values.items() if isinstance(k, str) and k.startswith(name + ".")}
            sub_errors = {**{k: v for k, v in errors.items() if k not in (schema.get("properties") or {})},
                          **{k[len(name) + 1:]: v for k, v in errors.items() if k.startswith(name + ".")}}
            children = build_fields(prop, sub_values, sub_errors, users, me)
            for child in children:
                child.name = f"{name}.{child.key}"
            f.children = children
            fields.append(f)
            continue
        f.value = _display(raw)
        if kind in ("radio", "select"):
            f.options = [(str(v), _enum_title(prop, v) or str(v)) for v in prop["enum"]]
        elif kind == "checkboxes":
            item = prop.get("items") or {}
            f.options = [(str(v), _enum_title(item, v) or str(v)) for v in item["enum"]]
            f.value = [str(v) for v in raw] if isinstance(raw, list) else ([raw] if raw else [])
        elif kind == "user":
            f.options = [(u["username"], f'{u["display_name"]} ({u["username"]})') for u in (users or [])
                         if u["username"] != me or not prop.get("x-not-self")]
        elif kind == "checkbox":
            f.value = raw in (True, "on", "true", "1", "yes")
        elif kind == "number":
            f.attrs["step"] = "1" if prop.get("type") == "integer" else "any"
            for attr in ("minimum", "maximum"):
                if attr in prop:
                    f.attrs[attr[:3]] = prop[attr]
            f.attrs["inputmode"] = "numeric" if prop.get("type") == "integer" else "decimal"
        if kind in ("text", "textarea") and "maxLength" in prop:
            f.attrs["maxlength"] = prop["maxLength"]
        fields.append(f)
    return fields


def _conditional_hint(schema: dict, key: str) -> str | None:
    """The x-error of a field that only an if/then rule requires ("a comment is required to reject")."""
    for rule in (schema.get("allOf") or []) + [schema]:
        then = rule.get("then") if isinstance(rule, dict) else None
        if isinstance(then, dict) and key in (then.get("required") or []):
            hint = ((then.get("properties") or {}).get(key) or {}).get("x-error")
            if hint:
                return hint
    return None


_INT = re.compile(r"[+-]?\d+")


def _convert(prop: dict, raw: str):
    typ = prop.get("type")
    if typ == "integer":
        try:
            number = float(raw)
        except ValueError:
            return raw
        return int(number) if math.isfinite(number) and number.is_integer() else raw
    if typ == "number":
        if _INT.fullmatch(raw):
            return int(raw)
        try:
            number = float(raw)
        except ValueError:
            return raw
        return number if math.isfinite(number) else raw
    return raw


def parse_form(schema: dict | None, form, prefix: str = "") -> dict:
    """The submitted HTML form as data for the engine, converted by the schema's types.
    Empty inputs are left out so the engine reports required fields; values that do not
    convert are passed as text so the engine reports them with its own message."""
    data: dict = {}
    if not schema:
        return data
    for key, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict) or prop.get("readOnly") or prop.get("x-hidden"):
            continue
        name = prefix + key
        kind = _kind(key, prop)
        if kind == "group":
            sub = parse_form(prop, form, name + ".")
            if sub or key in (schema.get("required") or []):
                data[key] = sub
        elif kind == "checkbox":
            data[key] = form.get(name) in ("on", "true", "1", "yes")
        elif kind == "checkboxes":
            picked = [v for v in form.getlist(name) if v]
            if picked:
                data[key] = picked
        elif prop.get("type") == "array":
            lines = [line.strip() for line in form.get(name, "").splitlines() if line.strip()]
            if lines:
                data[key] = lines
        else:
            raw = form.get(name, "")
            if not raw.strip():
                continue
            data[key] = _convert(prop, raw if kind == "textarea" else raw.strip())
    return data


def raw_values(form) -> dict:
    values = {}
    for key in form:
        if key == "csrf_token":
            continue
        items = form.getlist(key)
        values[key] = items if len(items) > 1 else items[0]
    return values


def form_title(schema: dict | None) -> str:
    if not schema:
        return ""
    return (schema.get("x-title-zh") if lang() == "zh" else None) or schema.get("title") or ""


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
        "process_name": process_name,
        "task_title": task_title,
        "status_label": lambda s: str(STATUSES.get(s, s)),
        "outcome_label": lambda o: str(OUTCOMES.get(o, o)),
        "action_label": lambda a: str(ACTIONS.get(a, a)),
        "lane_label": lambda lane: str(LANES.get(lane, lane or "—")),
    }


def _next_target() -> str:
    return request.full_path.rstrip("?") if request.method == "GET" else request.path


# --------------------------------------------------------------- pages
@bp.get("/")
@login_required
def inbox():
    eng = engine()
    me = current_user.username
    tasks = eng.tasks(me)
    mine = [t for t in tasks if t["assignee"] == me]
    claimable = [t for t in tasks if t["assignee"] is None]
    submitted = eng.instances(me, mine=True)
    return render_template("inbox.html", mine=mine, claimable=claimable, submitted=submitted)


@bp.get("/start")
@login_required
def start_list():
    processes = engine().processes(current_user.username)
    return render_template("start_list.html", processes=processes, names=_names)


def _names(process: dict) -> str:
    names = process.get("names") or {}
    return names.get(lang()) or names.get("en") or process.get("name") or process["id"]


def _startable(process_id: str) -> dict:
    for process in engine().processes(current_user.username):
        if process["id"] == process_id:
            return process
    raise NotFound(f"process {process_id} not found")


def _users() -> list[dict]:
    return engine().users()


def _needs_users(schema: dict | None) -> bool:
    return bool(schema) and any(
        isinstance(p, dict) and _kind(k, p) == "user" for k, p in (schema.get("properties") or {}).items())


@bp.route("/start/<process_id>", methods=["GET", "POST"])
@login_required
def start(process_id: str):
    process = _startable(process_id)
    schema = process.get("start_form")
    errors: dict = {}
    values: dict = {}
    status = 200
    if request.method == "POST":
        data = parse_form(schema, request.form) if schema else None
        try:
            instance = engine().start(process_id, current_user.username, data)
        except ValidationFailed as exc:
            errors, values, status = exc.errors, raw_values(request.form), 422
        except ProcessError as exc:
            errors, values, status = {"_form": exc.message}, raw_values(request.form), 422
        else:
            flash(_("%(process)s #%(id)s was started.", process=_names(process), id=instance["id"]), "success")
            return redirect(url_for("views.instance", instance_id=instance["id"]))
    users = _users() if _needs_users(schema) else []
    fields = build_fields(schema, values, errors, users, me=current_user.username)
    form_errors = _general_errors(schema, errors)
    return render_template("start_form.html", process=process, name=_names(process), schema=schema,
                           fields=fields, form_errors=form_errors, form_title=form_title(schema)), status


def _general_errors(schema: dict | None, errors: dict) -> list[str]:
    """Errors that belong to no rendered field."""
    names = set()

    def collect(s, prefix=""):
        for key, prop in ((s or {}).get("properties") or {}).items():
            names.add(prefix + key)
            names.add(key)
            if isinstance(prop, dict) and prop.get("properties"):
                collect(prop, prefix + key + ".")
    collect(schema)
    return [translate_message(v) if k in ("_form", "_body") else f"{k}: {translate_message(v)}"
            for k, v in (errors or {}).items() if k not in names]


def _task_page(task_id: str, *, errors=None, values=None, delegate_errors=None, delegate_values=None,
               status: int = 200):
    eng = engine()
    me = current_user.username
    task = eng.task(task_id, me)
    schema = task.get("form")
    try:
        instance = eng.instance(task["instance_id"], me)
    except (NotFound, Forbidden):
        instance = None
    claimable = task["status"] == "open" and task["assignee"] is None and task.get("can_act")
    can_complete = task["status"] == "open" and task.get("can_act") and task["assignee"] == me
    users = _users()
    names = {u["username"]: u["display_name"] for u in users}
    if values is None:
        values = task.get("values") or {}
    fields = build_fields(schema, values, errors, users, me=me) if can_complete else []
    delegate_to = [u for u in users if u["username"] != me]
    return render_template(
        "task.html", task=task, instance=instance, fields=fields, form_title=form_title(schema),
        form_errors=_general_errors(schema, errors or {}), claimable=claimable, can_complete=can_complete,
        can_delegate=bool(task["status"] == "open" and task.get("can_act")), delegate_to=delegate_to,
        delegate_errors=translate_error_dict(delegate_errors), delegate_values=delegate_values or {},
        data_items=describe(task.get("data") or {}), names=names,
        history=_history(instance) if instance else [], process_title=process_name(task["process_id"]),
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
    nxt = [t for t in result.get("tasks", []) if t.get("assignee") == me]
    if len(nxt) == 1:
        flash(_("Your next step is ready: %(task)s.", task=task_title(nxt[0])), "info")
        return redirect(url_for("views.task", task_id=nxt[0]["id"]))
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
    eng = engine()
    to = request.form.get("to", "").strip()
    comment = request.form.get("comment", "").strip() or None
    try:
        task = eng.delegate(task_id, current_user.username, to, comment)
    except ValidationFailed as exc:
        return _task_page(task_id, delegate_errors=exc.errors, delegate_values={"to": to, "comment": comment or ""},
                          status=422)
    except Conflict:
        flash(_("This task was already completed by someone else."), "warning")
        return redirect(url_for("views.inbox"))
    flash(_("%(task)s was delegated to %(user)s.", task=task_title(task), user=to), "success")
    return redirect(url_for("views.inbox"))


def _history(instance: dict) -> list[dict]:
    rows = []
    for event in instance.get("history", []):
        detail = event.get("detail") or {}
        items = []
        for key, value in detail.items():
            if key == "outcome" and value in OUTCOMES:
                shown = str(OUTCOMES[value])
            elif key == "decision":
                shown = format_value(key, value, form_index().get("decision"))
            elif key in ("assignee", "to", "from"):
                shown = value
            elif isinstance(value, dict):
                shown = "; ".join(f"{i.label}: {i.value}" for i in describe(value))
            else:
                shown = format_value(key, value, form_index().get(key))
            items.append((_label(key, form_index().get(key)), shown))
        rows.append({"at": event.get("at"), "actor": event.get("actor"), "action": event.get("action"),
                     "task": element_title(instance.get("process_id"), event.get("task")), "detail": items})
    return rows


@bp.get("/instances/<instance_id>")
@login_required
def instance(instance_id: str):
    eng = engine()
    me = current_user.username
    inst = eng.instance(instance_id, me)
    try:
        svg = Markup(eng.diagram(inst["id"], me, titles_lang=lang()))  # sanitized SVG from the engine
    except EngineError:
        svg = None
    users = _users()
    names = {u["username"]: u["display_name"] for u in users}
    outcome = (inst.get("data") or {}).get("outcome")
    return render_template(
        "instance.html", inst=inst, svg=svg, names=names, outcome=outcome,
        data_items=describe(inst.get("data") or {}, hide=("outcome",)), history=_history(inst),
        can_withdraw=inst["status"] == "running" and inst["started_by"] == me,
        process_title=process_name(inst["process_id"]))


@bp.get("/instances/<instance_id>/diagram.svg")
@login_required
def diagram(instance_id: str):
    svg = engine().diagram(instance_id, current_user.username, titles_lang=lang())
    return current_app.response_class(svg, mimetype="image/svg+xml")


@bp.post("/instances/<instance_id>/withdraw")
@login_required
def withdraw(instance_id: str):
    try:
        engine().withdraw(_as_int(instance_id), current_user.username)
    except Conflict:
        flash(_("This request is no longer running and cannot be withdrawn."), "warning")
    else:
        flash(_("The request was withdrawn."), "success")
    return redirect(url_for("views.instance", instance_id=instance_id))


def _as_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NotFound(f"instance {value} not found") from None
