"""HTML views: login page, inbox, start forms, task pages and instance pages.

A thin layer: every page asks the engine (`current_app.extensions["salesflow"]`)
and turns engine errors into friendly pages or flash messages. Forms are rendered
from the JSON Schemas the engine hands out (see `build_fields` / `parse_form`).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError
from lxml import etree
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
    "decision": _l("Decision"),
    "comment": _l("Comment"),
    "reason": _l("Reason"),
    "quantitative_score": _l("Quantitative score (60%)"),
    "qualitative_score": _l("Qualitative score (40%)"),
    "previous_grade": _l("Previous grade"),
    "original_grade": _l("Grade before the appeal"),
    "appeal_filed_on": _l("Appeal filed on"),
    "appeal_result": _l("Appeal result"),
    "major": _l("Major contract"),
    "major_reason": _l("Why it is major"),
    "contract_approved": _l("Contract approved"),
    "budget_booking": _l("Budget booking"),
    "lost_reason": _l("Why the lead was lost"),
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
VALUE_LABELS = {
    "appeal_result": {"upheld": _l("Upheld"), "changed": _l("Changed")},
}
# Messages the engine and the form schemas (x-error) produce, in English; shown translated.
# A new x-error in a form needs a line here and a translation (or an "x-error-zh" next to it).
ENGINE_MESSAGES = frozenset({
    # engine
    N_("this field is required"),
    N_("unknown field"),
    N_("data must be a JSON object"),
    N_("the task is already yours"),
    N_("nobody approves their own request"),
    N_("you cannot start this for yourself"),
    # forms (x-error)
    N_("a comment is required to return or reject"),
    N_("a satisfaction score from 1 to 5"),
    N_("an agreed improvement plan is required"),
    N_("choose the employee"),
    N_("choose the new grade: S, A, B, C or D"),
    N_("collection_rate: a score from 0 to 100"),
    N_("compliance: a score from 0 to 100"),
    N_("confirm the requirements with the customer first"),
    N_("customer_satisfaction: a score from 0 to 100"),
    N_("describe the basic needs"),
    N_("describe the business situation"),
    N_("describe the decision process"),
    N_("describe the pain points"),
    N_("describe the purpose and the receipts"),
    N_("describe your results for the period"),
    N_("evidence is required"),
    N_("explain the next step"),
    N_("explain why the grade changes"),
    N_("give the reason for closing the lead"),
    N_("give the reason for your appeal"),
    N_("lead_conversion: a score from 0 to 100"),
    N_("learning: a score from 0 to 100"),
    N_("list the products and services"),
    N_("list the requirements"),
    N_("must be a date YYYY-MM-DD"),
    N_("must be a number greater than 0"),
    N_("must be a number, 0 or more"),
    N_("must be true or false"),
    N_("new_customers: a score from 0 to 100"),
    N_("record how the complaint was handled"),
    N_("sales_achievement: a score from 0 to 100"),
    N_("say what the customer wants changed, or why they declined"),
    N_("score every indicator from 0 to 100"),
    N_("summarise the contract's main terms"),
    N_("teamwork: a score from 0 to 100"),
    N_("the after-sales terms are required"),
    N_("the company is required"),
    N_("the contact is required"),
    N_("the contract number is required"),
    N_("the customer is required"),
    N_("the delivery plan is required"),
    N_("the order number is required"),
    N_("the period is required"),
    N_("the result talk must last at least 30 minutes"),
    N_("the written evaluation report is required"),
})
# engine messages with a variable part
MESSAGE_PATTERNS = (
    (re.compile(r"must be of type (?P<type>\w+)"), N_("must be %(type)s")),
    (re.compile(r"must be one of: .*"), N_("choose one of the options")),
    (re.compile(r"no active user .*"), N_("no such user")),
    (re.compile(r"(?P<user>\S+) has no manager to evaluate them"), N_("%(user)s has no manager to evaluate them")),
    (re.compile(r"(?P<user>\S+) is not in your team"), N_("%(user)s is not in your team")),
    (re.compile(r"this request was already returned (?P<count>\d+) times.*"),
     N_("this request was already returned %(count)s times, the most this process allows; approve or reject it")),
)
N_("Please log in to see this page.")  # Flask-Login's message (set in __init__), translated when flashed

TYPE_NAMES = {
    "number": _l("a number"), "integer": _l("a whole number"), "string": _l("text"),
    "boolean": _l("yes or no"), "object": _l("a group of fields"), "array": _l("a list"),
}


def translate_message(message) -> str:
    """An engine or form message in the user's language (unknown ones stay as they are)."""
    if not isinstance(message, str):
        return str(message)
    if message in ENGINE_MESSAGES:
        return _(message)
    if lang() == "zh":
        zh = metadata().error_zh.get(message)
        if zh:
            return zh
    for pattern, template in MESSAGE_PATTERNS:
        match = pattern.fullmatch(message)
        if match:
            values = match.groupdict()
            if "type" in values:
                values["type"] = str(TYPE_NAMES.get(values["type"], values["type"]))
            return _(template, **values)
    return message


# --------------------------------------------------------------- workflow metadata
# Titles of tasks and fields come from the deployed workflow files (engine.workflows_dir):
# the BPMN element names (zh) and titleEn properties, the forms' titles, the catalog's names.
# Read-only, cached by file modification times.
_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
SPIFF = "{http://spiffworkflow.org/bpmn/schema/1.0/core}"


def _workflows_dir() -> Path | None:
    path = getattr(engine(), "workflows_dir", None)
    return Path(path) if path else None


def _signature() -> tuple:
    directory = _workflows_dir()
    if directory is None:
        return ()
    files = []
    for pattern in ("processes.json", "*.bpmn", "forms/*.json"):
        try:
            files += [(str(p), p.stat().st_mtime_ns) for p in directory.glob(pattern)]
        except OSError:
            continue
    return (str(directory), tuple(sorted(files)))


@dataclass
class Metadata:
    catalog: dict = field(default_factory=dict)  # process id -> catalog entry
    forms: dict = field(default_factory=dict)  # "forms/x.json" -> schema
    elements: dict = field(default_factory=dict)  # (process id, element id) and element id -> entry
    process_forms: dict = field(default_factory=dict)  # process id -> [form path] (start form first)
    data_keys: dict = field(default_factory=dict)  # (process id, data key) and data key -> entry
    fields: dict = field(default_factory=dict)  # process id (or None: every form) -> {key: property}
    error_zh: dict = field(default_factory=dict)  # x-error -> x-error-zh, where a form gives one


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _merge_fields(index: dict, props: dict) -> None:
    """Add a form's properties to a field index: first title wins, enum titles are merged."""
    for key, prop in (props or {}).items():
        if not isinstance(prop, dict):
            continue
        entry = index.setdefault(key, {})
        for attr in ("title", "x-title-zh", "type", "format"):
            if attr in prop and attr not in entry:
                entry[attr] = prop[attr]
        if isinstance(prop.get("x-enum-titles"), dict):
            titles = entry.setdefault("x-enum-titles", {})
            for value, title in prop["x-enum-titles"].items():
                titles.setdefault(value, title)
        if isinstance(prop.get("properties"), dict):
            _merge_fields(entry.setdefault("properties", {}), prop["properties"])


def _collect_error_zh(node, into: dict) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("x-error"), str) and isinstance(node.get("x-error-zh"), str):
            into.setdefault(node["x-error"], node["x-error-zh"])
        for value in node.values():
            _collect_error_zh(value, into)
    elif isinstance(node, list):
        for value in node:
            _collect_error_zh(value, into)


@lru_cache(maxsize=4)
def _load_metadata(signature: tuple) -> Metadata:
    meta = Metadata()
    if not signature:
        return meta
    directory = Path(signature[0])
    catalog = _read_json(directory / "processes.json") or {}
    meta.catalog = {k: v for k, v in catalog.items() if not k.startswith("_") and isinstance(v, dict)}
    for path in sorted((directory / "forms").glob("*.json")):
        schema = _read_json(path)
        if isinstance(schema, dict):
            meta.forms[f"forms/{path.name}"] = schema
            _collect_error_zh(schema, meta.error_zh)
    for path in sorted(directory.glob("*.bpmn")):
        try:
            root = etree.parse(str(path), _XML_PARSER).getroot()
        except (OSError, etree.XMLSyntaxError):
            continue
        for proc in root.iter(f"{BPMN}process"):
            pid = proc.get("id")
            forms = meta.process_forms.setdefault(pid, [])
            for el in proc.iter():
                if not el.get("id"):
                    continue
                props = {p.get("name"): p.get("value") for p in el.iter(f"{SPIFF}property")}
                form = props.get("formJsonSchemaFilename")
                if form and form not in forms:
                    forms.append(form)
                if not el.get("name") and not form:
                    continue
                name = el.get("name") or el.get("id")
                entry = {"zh": name, "en": props.get("titleEn") or name, "data_key": props.get("dataKey"),
                         "form": form}
                meta.elements[(pid, el.get("id"))] = entry
                meta.elements.setdefault(el.get("id"), entry)
                if entry["data_key"]:
                    meta.data_keys[(pid, entry["data_key"])] = entry
                    meta.data_keys.setdefault(entry["data_key"], entry)
    everything: dict = {}
    for pid, forms in meta.process_forms.items():
        start_form = meta.catalog.get(pid, {}).get("start_form")
        if start_form and start_form not in forms:
            forms.insert(0, start_form)
        index: dict = {}
        for form in forms:
            _merge_fields(index, (meta.forms.get(form) or {}).get("properties"))
        meta.fields[pid] = index
    for schema in meta.forms.values():
        _merge_fields(everything, schema.get("properties"))
    meta.fields[None] = everything
    return meta


def metadata() -> Metadata:
    """The workflow metadata, checked for changed files once per request."""
    meta = g.get("salesflow_metadata")
    if meta is None:
        meta = g.salesflow_metadata = _load_metadata(_signature())
    return meta


def process_name(process_id: str) -> str:
    names = metadata().catalog.get(process_id, {}).get("name", {})
    return names.get(lang()) or names.get("en") or process_id


def field_index(process_id: str | None = None) -> dict:
    meta = metadata()
    return meta.fields.get(process_id) or meta.fields.get(None) or {}


def element(process_id: str | None, name: str | None) -> dict | None:
    if not name:
        return None
    index = metadata().elements
    return index.get((process_id, name)) or index.get(name)


def element_title(process_id: str | None, name: str | None) -> str:
    entry = element(process_id, name)
    return entry[lang()] if entry else (name or "")


def task_title(task: dict) -> str:
    return (task.get("title_en") if lang() == "en" else task.get("title")) or task.get("title") or task.get("name", "")


# --------------------------------------------------------------- display helpers
USER_KEYS = {"submitter", "started_by", "by", "employee", "rep", "assignee", "from", "to", "subject"}
REGIONS = {"east": _l("East"), "north": _l("North"), "south": _l("South"), "west": _l("West"),
           "central": _l("Central")}


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
    """An ISO time as Asia/Shanghai local time."""
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def _label(key: str, prop: dict | None, process_id: str | None = None) -> str:
    if prop:
        if lang() == "zh" and prop.get("x-title-zh"):
            return prop["x-title-zh"]
        if prop.get("title"):
            return prop["title"]
    if key in DATA_LABELS:
        return str(DATA_LABELS[key])
    keys = metadata().data_keys
    entry = keys.get((process_id, key)) or keys.get(key)
    if entry:
        return entry[lang()]
    return key.replace("_", " ").capitalize()


def _enum_title(prop: dict | None, value) -> str | None:
    titles = (prop or {}).get("x-enum-titles", {})
    entry = titles.get(str(value)) if isinstance(titles, dict) else None
    if isinstance(entry, dict):
        return entry.get(lang()) or entry.get("en")
    return None


def format_value(key: str, value, prop: dict | None = None, names: dict | None = None) -> str:
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
    if key == "status" and value in STATUSES:
        return str(STATUSES[value])
    if isinstance(value, str) and value in VALUE_LABELS.get(key, {}):
        return str(VALUE_LABELS[key][value])
    if key == "region" and value in REGIONS:
        return str(REGIONS[value])
    if key in USER_KEYS and isinstance(value, str) and names:
        return names.get(value, value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        try:
            return format_decimal(value, format="#,##0.##")
        except Exception:  # pragma: no cover - a locale without number data
            return str(value)
    if isinstance(value, list):
        return ", ".join(format_value(key, v, prop, names) for v in value) or "—"
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}.*", value):
        return localtime(value) or value
    return str(value)


@dataclass
class Item:
    key: str
    label: str
    value: str = ""
    children: list = field(default_factory=list)


def _nested_schema(key: str, prop: dict | None, process_id: str | None) -> dict | None:
    """The schema describing a dict value: a nested object's, or the form of the task that stored it."""
    if prop and isinstance(prop.get("properties"), dict):
        return prop
    keys = metadata().data_keys
    entry = keys.get((process_id, key)) or keys.get(key)
    if entry and entry.get("form"):
        return metadata().forms.get(entry["form"])
    return None


def describe(data: dict, process_id: str | None = None, schema: dict | None = None,
             names: dict | None = None, hide: tuple = ()) -> list[Item]:
    """Data as labelled items: the process's form fields first (in form order), dicts as sub-lists."""
    if not isinstance(data, dict):
        return []
    index = field_index(process_id)
    props = (schema or {}).get("properties") or index
    order = [k for k in props if k in data] + [k for k in data if k not in props]
    items = []
    for key in order:
        if key in hide:
            continue
        value = data[key]
        prop = props.get(key) or (index.get(key) if schema else None)
        label = _label(key, prop, process_id)
        if isinstance(value, dict):
            nested = _nested_schema(key, prop, process_id)
            items.append(Item(key, label, children=describe(value, process_id, nested, names)))
        else:
            items.append(Item(key, label, format_value(key, value, prop, names)))
    return items


def translate_error_dict(errors: dict | None) -> dict:
    return {k: translate_message(v) for k, v in (errors or {}).items()}


# --------------------------------------------------------------- forms from JSON Schema
# How a property is rendered (build_fields) and converted back (parse_form):
#   object with properties   -> <fieldset> of its properties, names "scores.teamwork" -> nested dict
#   enum (<= 3 values)       -> radio buttons; more values -> <select>; titles from x-enum-titles
#   number / integer         -> <input type=number> (step any / 1, min/max) -> int or float
#   boolean                  -> checkbox -> True / False
#   string format date       -> <input type=date> -> "YYYY-MM-DD"
#   string x-widget textarea -> <textarea>; other strings -> <input type=text>
#   a username field (x-widget "user", or the catalog's subject_field) -> <select> of active users
#   array of enum            -> checkboxes -> list; other arrays -> textarea, one item a line
# Empty inputs are left out so the engine reports required fields; values that do not
# convert are sent as text so the engine reports them with its own message.
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


def _kind(key: str, prop: dict, user_fields=()) -> str:
    typ = prop.get("type")
    widget = prop.get("x-widget")
    if typ == "object" and isinstance(prop.get("properties"), dict):
        return "group"
    if widget in ("user", "username") or (typ == "string" and (prop.get("format") == "username" or key in user_fields)):
        return "user"
    if typ == "array":
        return "checkboxes" if isinstance((prop.get("items") or {}).get("enum"), list) else "lines"
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
    """A stored value as an input shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return value
    return str(value)


def _conditional_hint(schema: dict, key: str) -> str | None:
    """The x-error of a field that only an if/then rule requires ("a comment is required to reject")."""
    for rule in (schema.get("allOf") or []) + [schema]:
        then = rule.get("then") if isinstance(rule, dict) else None
        if isinstance(then, dict) and key in (then.get("required") or []):
            hint = ((then.get("properties") or {}).get(key) or {}).get("x-error")
            if hint:
                return hint
    return None


def _fields_of(schema: dict | None):
    for key, prop in ((schema or {}).get("properties") or {}).items():
        if isinstance(prop, dict) and not prop.get("readOnly") and not prop.get("x-hidden"):
            yield key, prop


def build_fields(schema: dict | None, values: dict | None = None, errors: dict | None = None,
                 users: list | None = None, user_fields=(), prefix: str = "") -> list[Field]:
    """Form fields for a JSON Schema object: one Field per property, nested objects as groups.
    `values` are what the inputs show (typed data, or the submitted strings by HTML name),
    `errors` the engine's {field: message}."""
    if not schema:
        return []
    values = values or {}
    errors = errors or {}
    required = set(schema.get("required") or [])
    own = {key for key, _prop in _fields_of(schema)}
    fields = []
    for key, prop in _fields_of(schema):
        name = prefix + key
        kind = _kind(key, prop, user_fields)
        f = Field(name=name, key=key, label=_prop_label(key, prop), kind=kind, required=key in required,
                  help=(prop.get("x-description-zh") if lang() == "zh" else None) or prop.get("description"))
        message = errors.get(name) or errors.get(key)
        if message == "this field is required" and key not in required:
            message = _conditional_hint(schema, key) or message
        f.error = translate_message(message) if message else None
        raw = values[name] if name in values else values.get(key)
        if kind == "group":
            nested = values.get(key) if isinstance(values.get(key), dict) else \
                {k: v for k, v in values.items() if isinstance(k, str) and k.startswith(name + ".")}
            # the engine names a missing nested field by its own name ("teamwork"), others by the group
            nested_errors = {k: v for k, v in errors.items() if k not in own}
            f.children = build_fields(prop, nested, nested_errors, users, user_fields, name + ".")
            fields.append(f)
            continue
        f.value = _display(raw)
        if kind in ("radio", "select"):
            f.options = [(str(v), _enum_title(prop, v) or str(v)) for v in prop["enum"]]
        elif kind == "checkboxes":
            item = prop.get("items") or {}
            f.options = [(str(v), _enum_title(item, v) or str(v)) for v in item["enum"]]
            f.value = [str(v) for v in raw] if isinstance(raw, list) else ([raw] if raw else [])
        elif kind == "lines":
            f.value = "\n".join(map(str, raw)) if isinstance(raw, list) else (raw or "")
        elif kind == "user":
            f.options = [(u["username"], f'{u["display_name"]} ({u["username"]})') for u in (users or [])]
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
    """The submitted HTML form as data for the engine, converted by the schema's types."""
    data: dict = {}
    for key, prop in _fields_of(schema):
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
        elif kind == "lines":
            lines = [line.strip() for line in form.get(name, "").splitlines() if line.strip()]
            if lines:
                data[key] = [_convert(prop.get("items") or {}, line) for line in lines]
        else:
            raw = form.get(name, "")
            if not raw.strip():
                continue
            data[key] = _convert(prop, raw if kind == "textarea" else raw.strip())
    return data


def raw_values(form) -> dict:
    """The submitted strings by HTML name, to show them again after an error."""
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


def general_errors(schema: dict | None, errors: dict) -> list[str]:
    """Errors that belong to no rendered field, shown above the form."""
    names = set()

    def collect(s, prefix=""):
        for key, prop in _fields_of(s):
            names.update((prefix + key, key))
            if isinstance(prop.get("properties"), dict):
                collect(prop, prefix + key + ".")
    collect(schema)
    return [translate_message(v) if k in ("_form", "_body") else f"{k}: {translate_message(v)}"
            for k, v in (errors or {}).items() if k not in names]


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


# --------------------------------------------------------------- pages
@bp.get("/")
@login_required
def inbox():
    """Three sections, one engine call for the two task lists and one for the submissions."""
    eng = engine()
    me = current_user.username
    tasks = eng.tasks(me)
    mine = [t for t in tasks if t["assignee"] == me]
    claimable = [t for t in tasks if t["assignee"] is None]
    submitted = eng.instances(me, mine=True)
    return render_template("inbox.html", mine=mine, claimable=claimable, submitted=submitted)


def _names(process: dict) -> str:
    names = process.get("names") or {}
    return names.get(lang()) or names.get("en") or process.get("name") or process["id"]


@bp.get("/start")
@login_required
def start_list():
    processes = engine().processes(current_user.username)
    return render_template("start_list.html", processes=processes, names=_names)


def _user_fields(process_id: str) -> set:
    subject = metadata().catalog.get(process_id, {}).get("subject_field")
    return {subject} if subject else set()


def _needs_users(schema: dict | None, user_fields) -> bool:
    return any(_kind(k, p, user_fields) == "user" for k, p in _fields_of(schema))


def _user_names(users: list[dict]) -> dict:
    return {u["username"]: u["display_name"] for u in users}


@bp.route("/start/<process_id>", methods=["GET", "POST"])
@login_required
def start(process_id: str):
    eng = engine()
    process = next((p for p in eng.processes(current_user.username) if p["id"] == process_id), None)
    if process is None:
        raise NotFound(f"process {process_id} not found")
    schema = process.get("start_form")
    user_fields = _user_fields(process_id)
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
            flash(_("%(process)s #%(id)s was started.", process=_names(process), id=instance["id"]), "success")
            return redirect(url_for("views.instance", instance_id=instance["id"]))
    users = eng.users() if _needs_users(schema, user_fields) else []
    fields = build_fields(schema, values, errors, users, user_fields)
    return render_template("start_form.html", process=process, name=_names(process), fields=fields,
                           form_errors=general_errors(schema, errors), form_title=form_title(schema)), status


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
    users = eng.users()
    names = _user_names(users)
    is_open = task["status"] == "open"
    claimable = bool(is_open and task["assignee"] is None and task.get("can_act"))
    can_complete = bool(is_open and task.get("can_act") and task["assignee"] == me)
    if values is None:
        values = task.get("values") or {}
    fields = build_fields(schema, values, errors, users) if can_complete else []
    return render_template(
        "task.html", task=task, instance=instance, fields=fields, form_title=form_title(schema),
        form_errors=general_errors(schema, errors or {}), claimable=claimable, can_complete=can_complete,
        can_delegate=bool(is_open and task.get("can_act")),
        delegate_to=[u for u in users if u["username"] != me],
        delegate_errors=translate_error_dict(delegate_errors), delegate_values=delegate_values or {},
        data_items=describe(task.get("data") or {}, task["process_id"], names=names, hide=("outcome",)),
        names=names, history=_history(instance, names) if instance else [],
        process_title=process_name(task["process_id"]),
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


def _flatten(items: list[Item]) -> list[tuple[str, str]]:
    rows = []
    for item in items:
        if item.children:
            rows.append((item.label, "; ".join(f"{c.label}: {c.value}" for c in _flatten_leaves(item.children))))
        else:
            rows.append((item.label, item.value))
    return rows


def _flatten_leaves(items: list[Item]) -> list[Item]:
    leaves = []
    for item in items:
        leaves.extend(_flatten_leaves(item.children) if item.children else [item])
    return leaves


def _history(instance: dict, names: dict) -> list[dict]:
    pid = instance.get("process_id")
    rows = []
    for event in instance.get("history", []):
        entry = element(pid, event.get("task"))
        schema = metadata().forms.get(entry["form"]) if entry and entry.get("form") else None
        detail = describe(event.get("detail") or {}, pid, schema, names)
        rows.append({"at": event.get("at"), "actor": event.get("actor"), "action": event.get("action"),
                     "task": element_title(pid, event.get("task")), "detail": _flatten(detail)})
    return rows


@bp.get("/instances/<instance_id>")
@login_required
def instance(instance_id: str):
    eng = engine()
    me = current_user.username
    inst = eng.instance(instance_id, me)
    try:
        svg = Markup(eng.diagram(inst["id"], me, titles_lang=lang()))  # sanitized SVG made by the engine
    except EngineError:
        svg = None
    names = _user_names(eng.users())
    return render_template(
        "instance.html", inst=inst, svg=svg, names=names, outcome=(inst.get("data") or {}).get("outcome"),
        data_items=describe(inst.get("data") or {}, inst["process_id"], names=names, hide=("outcome",)),
        history=_history(inst, names), can_withdraw=inst["status"] == "running" and inst["started_by"] == me,
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
