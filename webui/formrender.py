"""Forms and values, rendered from what the engine hands out.

Inputs: `build_fields` turns a JSON Schema (a start form, a task's form) into Fields the
templates render, `parse_form` turns the submitted HTML form back into data for the engine.
Outputs: `describe` turns instance or task data into labelled Items, with titles and enum
labels from the forms of the instance's own definition version (`data_fields`, `step_form`) and,
for data no form declares, from the process's vocabulary (`workflows/vocabulary.json`, handed out
by the engine with the instance); `result_cards` are the result cards a process declares there.
Messages the engine or a form produces are shown translated (`translate_message`): the engine's
through the .po catalog, a form's by its own x-error-zh.
Nothing here reads workflow files: every schema, title and word of a process comes from the engine;
what is here is the engine's and the UI's own vocabulary, the same for every process.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.definitions import form_messages  # x-error -> x-error-zh of a form schema

TZ = ZoneInfo("Asia/Shanghai")


def N_(text: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return text


def lang() -> str:
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else "zh"


def localized(names: dict | None, default: str = "") -> str:
    """A {"zh", "en"} name from the engine in the user's language."""
    names = names or {}
    return names.get(lang()) or names.get("en") or default


# --------------------------------------------------------------- vocabularies
STATUSES = {
    "running": _l("Running"),
    "completed": _l("Completed"),
    "cancelled": _l("Cancelled"),
    "error": _l("Error"),
    "open": _l("Open"),
}
OUTCOMES = {  # the engine's (withdrawn) and every approval's; a process's own: its vocabulary
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "withdrawn": _l("Withdrawn"),
}
# data keys the engine sets (and history details); a process's own keys are labelled by its
# vocabulary (workflows/vocabulary.json) and its forms
DATA_LABELS = {
    "submitter": _l("Submitter"),
    "started_by": _l("Started by"),
    "region": _l("Region"),
    "outcome": _l("Outcome"),
    "by": _l("By"),
    "decision": _l("Decision"),
    "comment": _l("Comment"),
    "reason": _l("Reason"),
    # what the budget operations return (engine/services.py: budget.consume)
    "booked": _l("Booked"),
    "period": _l("Period"),
    "remaining": _l("Remaining"),
    # history details
    "assignee": _l("Assignee"),
    "candidates": _l("Candidates"),
    "from": _l("From"),
    "to": _l("To"),
    "title": _l("Title"),
    "due_at": _l("Due"),
    "message": _l("Message"),
    "subject": _l("On behalf of"),
    "users": _l("People"),
    "mode": _l("How they sign"),
    "signer": _l("Added signer"),
    "because": _l("Because"),
    "step": _l("Back to"),
    "return_to": _l("Return to step"),
    "automatic": _l("Copied automatically"),
    "copied_to": _l("Copied to"),
    "reminded": _l("Reminded"),
    "during": _l("During"),
    "error": _l("Error"),
}
SIGNER_MODES = {
    "before": _l("Sign first"),
    "after": _l("Sign after"),
    "parallel": _l("Countersign"),
}
SIGNER_MODE_HELP = {
    "before": _l("They approve first; when all of them have approved, the task comes back to you."),
    "after": _l("You decide first; your approval takes effect only when all of them have approved too."),
    "parallel": _l("They sign alongside you; the step is done when everyone has approved."),
}
BECAUSE = {"returned": _l("Returned for revision"), "rejected": _l("Rejected"), "approved": _l("Approved")}
REASONS = {"waiting for the added signers": _l("waiting for the added signers")}
REGIONS = {"east": _l("East"), "north": _l("North"), "south": _l("South"), "west": _l("West"),
           "central": _l("Central")}
# labels of values the engine sets, by data key (a process's own values: its vocabulary)
VALUE_LABELS = {"outcome": OUTCOMES, "status": STATUSES, "region": REGIONS, "mode": SIGNER_MODES,
                "because": BECAUSE,
                "reason": {**REASONS, "deactivated": _l("the person was deactivated"),
                           "role removed": _l("the person no longer holds the role")}}
# data keys the engine sets to usernames (shown as the user's name); form fields say so with
# x-widget "user" or format "username"
ENGINE_USER_KEYS = {"submitter", "started_by", "by", "assignee", "candidates", "from", "to", "subject", "users",
                    "signer", "copied_to", "reminded"}

# Messages the engine produces, in English; shown translated. A form's own messages (x-error) are
# translated by the form: an "x-error-zh" next to each x-error (see error_zh).
ENGINE_MESSAGES = frozenset({
    # engine
    N_("this field is required"),
    N_("unknown field"),
    N_("data must be a JSON object"),
    N_("the task is already yours"),
    N_("nobody approves their own request"),
    N_("you cannot start this for yourself"),
    N_("this person is not active"),
    N_("administrators do not decide tasks"),
    N_("this person holds no role that decides this step"),
    # attachments (engine/attachments.py)
    N_("the file is larger than 20 MiB"),
    N_("this kind of file is not accepted: PDF, OFD, XML, JPEG, PNG, XLSX or DOCX"),
    N_("the file is empty"),
    # people (engine/people.py)
    N_("must be after from"),
    N_("must be an ISO-8601 date and time"),
    N_("no active user with this name"),
    N_("you cannot stand in for yourself"),
    N_("must be an e-mail address"),
    N_("must be 1 to 120 characters"),
    N_("must be zh or en"),
    N_("must be true or false"),
    N_("at least 10 characters"),
    N_("at most 1024 characters"),
    N_("the step is already theirs"),
    N_("already signs this step"),
    N_("give 1 to 10 usernames"),
    N_("give 1 to 20 usernames"),
    N_("a person is named twice"),
    N_("copying a request to yourself does nothing"),
    N_("only a return goes back to a step"),
    N_("must be one of: before, after, parallel"),
    N_("must be a string"),
    N_("signers can be added only to an approval step, by its owner"),
    N_("no such user"),
    # admin (engine/commands/admin.py)
    N_("nobody is their own manager"),
    N_("you cannot deactivate yourself"),
    N_("a username cannot change"),
    N_("1 to 80 letters, digits, '.', '_' or '-'"),
    N_("1 to 40 lower-case letters, digits, '_' or '-'"),
    N_("the task is already theirs"),
    N_("must be a month YYYY-MM"),
})
# engine messages with a variable part
MESSAGE_PATTERNS = (
    (re.compile(r"must be of type (?P<type>\w+)"), N_("must be %(type)s")),
    (re.compile(r"must be one of: .*"), N_("choose one of the options")),
    (re.compile(r"no active user .*"), N_("no such user")),
    (re.compile(r"no user .*"), N_("no such user")),
    (re.compile(r"at most (?P<count>\d+) characters"), N_("at most %(count)s characters")),
    (re.compile(r"'.*' is not a step this task can return to .*"), N_("choose one of the steps offered")),
    (re.compile(r"step '.*' has not been done in this instance"), N_("choose one of the steps offered")),
    (re.compile(r"(?P<user>\S+) has no manager to evaluate them"), N_("%(user)s has no manager to evaluate them")),
    (re.compile(r"(?P<user>\S+) is not in your team"), N_("%(user)s is not in your team")),
    (re.compile(r"unknown region '(?P<region>[^']*)'"), N_("unknown region %(region)s")),
    (re.compile(r"manager cycle: (?P<path>.*)"), N_("manager cycle: %(path)s")),
    (re.compile(r"unknown role: (?P<roles>.*)"), N_("unknown role: %(roles)s")),
    (re.compile(r"no user '(?P<user>[^']*)'"), N_("no user %(user)s")),
    (re.compile(r"a user '(?P<user>[^']*)' exists already"), N_("a user %(user)s exists already")),
    (re.compile(r"region '(?P<region>[^']*)' exists already"), N_("region %(region)s exists already")),
    (re.compile(r"instance (?P<id>\d+) is (?P<status>\w+), not in error"), N_("instance %(id)s is not in error")),
    (re.compile(r"line (?P<line>\d+) repeats line (?P<first>\d+) .*"),
     N_("line %(line)s repeats line %(first)s (same region and category)")),
    (re.compile(r"this request was already returned (?P<count>\d+) times.*"),
     N_("this request was already returned %(count)s times, the most this process allows; approve or reject it")),
)
TYPE_NAMES = {
    "number": _l("a number"), "integer": _l("a whole number"), "string": _l("text"),
    "boolean": _l("yes or no"), "object": _l("a group of fields"), "array": _l("a list"),
}


# --------------------------------------------------------------- messages
def form_zh(schema, vocabulary: dict | None = None) -> dict:
    """The Chinese of a form's messages: its own x-error-zh, else the same message's in the process's
    vocabulary (the forms of the latest version: for a form of an older version that has none)."""
    return {**((vocabulary or {}).get("messages") or {}), **form_messages(schema)}


def translate_message(message, zh: dict | None = None) -> str:
    """An engine or form message in the user's language (unknown ones stay as they are).
    `zh` is the form's own x-error-zh texts (see error_zh, form_zh)."""
    if not isinstance(message, str):
        return str(message)
    if message in ENGINE_MESSAGES:
        return _(message)
    if lang() == "zh" and zh and zh.get(message):
        return zh[message]
    for pattern, template in MESSAGE_PATTERNS:
        match = pattern.fullmatch(message)
        if match:
            values = match.groupdict()
            if "type" in values:
                values["type"] = str(TYPE_NAMES.get(values["type"], values["type"]))
            return _(template, **values)
    return message


def translate_error_dict(errors: dict | None) -> dict:
    return {k: translate_message(v) for k, v in (errors or {}).items()}


# engine messages that name people: a prefix, then "name (reason); ..." or "name, name"
PEOPLE_MESSAGES = (
    ("cannot take this task: ", N_("These people cannot take this task:"), "; "),
    ("no active user: ", N_("There is no active user:"), ", "),
)
_NAMED = re.compile(r"(?P<user>[^\s(]+) \((?P<why>.*)\)")


def people_error(message, names: dict | None = None) -> dict | None:
    """An error on a field naming people, translated: {"message": ..., "people": ["Name: reason", ...]}
    (people empty for an ordinary message), display names for usernames."""
    if not message:
        return None
    names = names or {}
    if isinstance(message, str):
        for prefix, headline, separator in PEOPLE_MESSAGES:
            if message.startswith(prefix):
                people = []
                for part in message[len(prefix):].split(separator):
                    part = part.strip()
                    match = _NAMED.fullmatch(part)
                    if match:
                        people.append(_("%(user)s: %(reason)s", user=names.get(match["user"], match["user"]),
                                        reason=translate_message(match["why"])))
                    elif part:
                        people.append(names.get(part, part))
                return {"message": _(headline), "people": people}
    return {"message": translate_message(message), "people": []}


# --------------------------------------------------------------- values
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


def localtime(value) -> str:
    """An ISO time as Asia/Shanghai local time (the `localtime` template filter)."""
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


MONEY_KEYS = {"amount", "remaining"}  # what the budget operations take and return (engine/services.py)


def is_money(key: str, prop: dict | None = None) -> bool:
    """Amounts of money: the engine's amount keys, any number field titled in CNY, and what the
    process's vocabulary says is money (x-format "money")."""
    prop = prop or {}
    if key in MONEY_KEYS or prop.get("x-format") == "money":
        return True
    return prop.get("type") in ("number", "integer") and "CNY" in str(prop.get("title") or "")


def money(value) -> str:
    """¥1,234.50 (negative: -¥1,234.50); anything that is not a number as it is."""
    from decimal import Decimal, InvalidOperation
    if isinstance(value, bool):
        return str(value)
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not amount.is_finite():
        return str(value)
    return f"{'-' if amount < 0 else ''}¥{abs(amount):,.2f}"


def _label(key: str, prop: dict | None) -> str:
    return form_title(prop) or (str(DATA_LABELS[key]) if key in DATA_LABELS else key.replace("_", " ").capitalize())


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
    if isinstance(value, str) and value in VALUE_LABELS.get(key, {}):
        return str(VALUE_LABELS[key][value])
    if isinstance(value, str) and names and (_is_user(prop) if prop else key in ENGINE_USER_KEYS):
        return names.get(value, value)
    if isinstance(value, (int, float)) and is_money(key, prop):
        return money(value)
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
    table: dict | None = None  # {"columns": [(key, label)], "rows": [[text, ...]]}: a list of records


def _words(vocabulary: dict | None, key: str) -> dict | None:
    """A data key's words in the process's vocabulary (shaped like a form field), if it has any."""
    words = ((vocabulary or {}).get("data") or {}).get(key)
    return words if isinstance(words, dict) else None


def _same(value, expected) -> bool:
    return value == expected and isinstance(value, bool) == isinstance(expected, bool)


def _holds(when, data: dict) -> bool:
    return isinstance(when, dict) and all(k in data and _same(data[k], v) for k, v in when.items())


def also_values(value, prop: dict | None, data: dict) -> list[str]:
    """A value's words with those of the values its x-also adds (every key of their `when` holds
    in the data): every reason a contract is major, when the routing table stores the first."""
    rules = (prop or {}).get("x-also") or []
    added = [rule.get("value") for rule in rules if isinstance(rule, dict) and _holds(rule.get("when"), data)]
    if not added:
        return []
    values = ([value] if _enum_title(prop, value) else []) + added
    return [_enum_title(prop, v) or str(v) for v in dict.fromkeys(values)]


def outcome_label(outcome, vocabulary: dict | None = None) -> str:
    """An instance's outcome in words: the process's own (its vocabulary), else the engine's."""
    title = _enum_title(_words(vocabulary, "outcome"), outcome)
    return title or str(OUTCOMES.get(outcome, outcome))


def describe(data: dict, fields: dict | None = None, names: dict | None = None, hide: tuple = (),
             vocabulary: dict | None = None) -> list[Item]:
    """Data as labelled items, dicts as sub-lists: form fields first, then the rest, each in data order.
    `fields` data key -> JSON-Schema property (title, enum labels, nested properties; see data_fields),
    `names` username -> display name, `vocabulary` the process's words for data no form declares
    (the engine's "vocabulary" of the instance: data key -> words shaped like a form field)."""
    if not isinstance(data, dict):
        return []
    fields = fields if isinstance(fields, dict) else {}
    first = [k for k in data if k in fields and "x-step" not in fields[k]]
    items = []
    for key in first + [k for k in data if k not in first]:
        if key in hide:
            continue
        value, prop = data[key], fields.get(key) or _words(vocabulary, key)
        also = also_values(value, prop, data)
        if also:
            items.append(Item(key, _label(key, prop), ("；" if lang() == "zh" else "; ").join(also)))
            continue
        if isinstance(value, dict) and value.get("cancelled") is True:  # a parallel review someone else ended
            match = re.fullmatch(r"cancelled: (\w+) by (\S+)", str(value.get("comment") or ""))
            who = (names or {}).get(match.group(2), match.group(2)) if match else "—"
            text = _("Not needed: %(user)s returned it first", user=who) if value.get("decision") == "return" \
                else _("Not needed: %(user)s rejected it first", user=who)
            items.append(Item(key, _label(key, prop), text))
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = ((prop or {}).get("items") or {}).get("properties") or {}
            keys = list(columns) or list(dict.fromkeys(k for v in value for k in v))
            cells = {k: columns.get(k) or _words(vocabulary, k) for k in keys}
            items.append(Item(key, _label(key, prop), table={
                "columns": [(k, _label(k, cells[k])) for k in keys],
                "rows": [[format_value(k, v.get(k), cells[k], names) for k in keys] for v in value]}))
        elif isinstance(value, dict):
            children = describe(value, (prop or {}).get("properties"), names, vocabulary=vocabulary)
            if children:  # a step's answer not given yet is no row
                items.append(Item(key, _label(key, prop), children=children))
        else:
            items.append(Item(key, _label(key, prop), format_value(key, value, prop, names)))
    return items


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def budget_line(data: dict) -> dict | None:
    """The claim's budget in words: what was left before it, after it, an overrun, and whether it is
    booked (budget_remaining: left before the claim; budget_booking {booked, period, remaining}: what
    the budget operations return, engine/services.py)."""
    before, amount = _number((data or {}).get("budget_remaining")), _number((data or {}).get("amount"))
    if before is None or amount is None:
        return None
    booking = data.get("budget_booking") if isinstance(data.get("budget_booking"), dict) else {}
    after = _number(booking.get("remaining"))
    after = before - amount if after is None else after
    line = {"before": money(before), "after": money(after), "over": money(-after) if after < 0 else None,
            "booked": bool(booking.get("booked")), "period": booking.get("period")}
    if line["booked"]:
        state = _("booked against the budget of %(period)s", period=line["period"]) if line["period"] \
            else _("booked against the budget")
    else:
        state = _("reserved while the claim is decided")
    line["text"] = _("%(before)s → %(after)s", before=line["before"], after=line["after"])
    line["state"] = state
    line["overrun"] = _("over the budget by %(amount)s", amount=line["over"]) if line["over"] else None
    return line


BUDGET_KEYS = ("budget_remaining", "budget_booking")  # shown as the budget line


def _card_value(row: dict, value, words: dict | None) -> dict:
    """A card row's text (and the exact number, when rounded)."""
    number = _number(value)
    if "digits" in row and number is not None:
        from decimal import ROUND_HALF_UP, Decimal
        digits = max(0, int(row["digits"]))
        rounded = Decimal(str(number)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
        pattern = "#,##0" + ("." + "#" * digits if digits else "")
        return {"value": format_decimal(rounded, format=pattern),
                "exact": format_decimal(number, format="#,##0.####")}
    if row.get("format") == "percent":
        return {"value": f"{format_decimal(number * 100, format='#,##0.#')}%" if number is not None else "—"}
    titles = row.get("x-enum-titles") or {}
    if set(titles) == {"true", "false"} and (value is None or isinstance(value, bool)):
        return {"value": _enum_title(row, "true" if value else "false") or "—"}
    return {"value": _enum_title(row, value) or format_value(row["key"], value, words)}


def _has_value(data: dict, key: str, row: dict) -> bool:
    if data.get(key) in (None, ""):
        return False
    return _number(data[key]) is not None if ("digits" in row or row.get("format")) else True


def result_cards(data: dict, vocabulary: dict | None = None) -> list[dict]:
    """The result cards the process declares (vocabulary "cards") whose `when` keys all have a value
    (a number, for a rounded or percent row): {"id", "keys", "rows": [{"key", "label", "value",
    "exact", "main"}]}. The data list leaves out the keys a shown card has."""
    data = data or {}
    shown = []
    for card in (vocabulary or {}).get("cards") or []:
        rows = {row["key"]: row for row in card.get("rows") or []}
        if not all(_has_value(data, key, rows.get(key) or {}) for key in card.get("when") or []):
            continue
        items = []
        for key, row in rows.items():
            value = data.get(key)
            if row.get("optional") and value in (None, ""):
                continue
            if row.get("unless") and value == data.get(row["unless"]):
                continue
            items.append({"key": key, "label": form_title(row), "main": bool(row.get("main")), "exact": None,
                          **_card_value(row, value, _words(vocabulary, key))})
        shown.append({"id": card["id"], "keys": list(rows), "rows": items})
    return shown


def flatten(items: list[Item]) -> list[tuple[str, str]]:
    """Items as (label, text) rows; a dict's leaves joined on its row."""
    def leaves(items):
        for item in items:
            if item.children:
                yield from leaves(item.children)
            else:
                yield item
    def text(item):
        if item.table:
            return "; ".join(", ".join(row) for row in item.table["rows"])
        if item.children:
            return "; ".join(f"{c.label}: {c.value}" for c in leaves(item.children))
        return item.value
    return [(item.label, text(item)) for item in items]


STEP_ACTIONS = {"completed", "approved", "rejected", "returned", "auto_approved"}  # history: a step's input


def step_form(instance: dict, step: str | None) -> dict:
    """The properties of the form of a step (BPMN id) of the instance's definition version."""
    form = ((instance.get("steps") or {}).get(step) or {}).get("form")
    return (instance.get("forms") or {}).get(form) or {}


def data_fields(instance: dict) -> dict:
    """Data key -> the property that labels it: a field by the form of the step that last wrote it
    (from the history; else the first form that has it, "fields"), a key a step stores its input under
    ({...input, "by": user}) as a group titled by that step, of that step's form."""
    steps = instance.get("steps") or {}
    fields = dict(instance.get("fields") or {})
    groups = {s["data_key"]: name for name, s in reversed(steps.items()) if s.get("data_key")}
    for event in instance.get("history") or []:
        step = steps.get(event.get("task"))
        if step and event.get("action") in STEP_ACTIONS:
            if step.get("data_key"):
                groups[step["data_key"]] = event["task"]
            else:
                form = step_form(instance, event["task"])
                fields.update({k: form[k] for k in event.get("detail") or {} if k in form})
    for key, name in groups.items():
        title = steps[name].get("title") or {}
        fields[key] = {"title": title.get("en"), "x-title-zh": title.get("zh"), "x-step": name,
                       "properties": step_form(instance, name)}
    return fields


# --------------------------------------------------------------- forms from JSON Schema
# How a property is rendered (build_fields) and converted back (parse_form):
#   object with properties   -> <fieldset> of its properties, names "scores.teamwork" -> nested dict
#   enum (<= 3 values)       -> radio buttons; more values -> <select>; titles from x-enum-titles
#   number / integer         -> <input type=number> (step any / 1, min/max) -> int or float
#   boolean                  -> checkbox -> True / False
#   string format date       -> <input type=date> -> "YYYY-MM-DD"
#   string x-widget textarea -> <textarea>; other strings -> <input type=text>
#   a username field (x-widget "user" or format "username") -> <select> of active users
#   array of enum            -> checkboxes -> list; other arrays -> textarea, one item a line
#   array of format attachment -> the attached files (kept unless unticked) + <input type=file multiple>
# Empty inputs are left out so the engine reports required fields; values that do not
# convert are sent as text so the engine reports them with its own message.
@dataclass
class Field:
    name: str  # the HTML name: "amount", "scores.sales_achievement"
    key: str
    label: str
    kind: str  # text textarea number date select radio checkbox checkboxes lines user group
    required: bool = False
    value: object = ""
    error: str | None = None
    options: list = field(default_factory=list)  # (value, label)
    attrs: dict = field(default_factory=dict)
    children: list = field(default_factory=list)
    help: str | None = None
    rows: list = field(default_factory=list)  # a table: one list of cell Fields per row (children: the columns)


TABLE_BLANK_ROWS = 3  # empty rows a table offers beyond its values (an "add a row" button adds more)


def _is_table(prop: dict) -> bool:
    items = prop.get("items") or {}
    return prop.get("type") == "array" and items.get("type") == "object" and isinstance(items.get("properties"), dict)


def _is_user(prop: dict) -> bool:
    return prop.get("x-widget") == "user" or prop.get("format") == "username"


def _kind(prop: dict) -> str:
    typ = prop.get("type")
    widget = prop.get("x-widget")
    if widget == "return-target":
        return "return-target"
    if typ == "object" and isinstance(prop.get("properties"), dict):
        return "group"
    if _is_user(prop):
        return "user"
    if prop.get("x-widget") == "region":
        return "region"
    if _is_table(prop):
        return "table"
    if typ == "array":
        if (prop.get("items") or {}).get("format") == "attachment":
            return "attachments"
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


def needs_users(schema: dict | None) -> bool:
    """Whether the form has a user select (so the page needs the list of users)."""
    return any(_kind(p) == "user" for k, p in _fields_of(schema))


def needs_regions(schema: dict | None) -> bool:
    """Whether the form has a region select (also inside a table)."""
    for _key, prop in _fields_of(schema):
        kind = _kind(prop)
        if kind == "region" or (kind == "table" and needs_regions(prop.get("items"))):
            return True
    return False


def build_fields(schema: dict | None, values: dict | None = None, errors: dict | None = None,
                 users: list | None = None, prefix: str = "", zh: dict | None = None,
                 return_targets: list | None = None, files: dict | None = None,
                 regions: list | None = None) -> list[Field]:
    """Form fields for a JSON Schema object: one Field per property, nested objects as groups.
    `values` are what the inputs show (typed data, or the submitted strings by HTML name),
    `errors` the engine's {field: message}, `zh` the Chinese of the form's messages (default: its
    x-error-zh, error_zh; see form_zh), `return_targets` the task's steps a return may go
    back to (for an x-widget "return-target": a select of them, the submitter's step first)."""
    if not schema:
        return []
    values = values or {}
    errors = errors or {}
    zh = form_messages(schema) if zh is None else zh
    required = set(schema.get("required") or [])
    own = {key for key, _prop in _fields_of(schema)}
    fields = []
    for key, prop in _fields_of(schema):
        name = prefix + key
        kind = _kind(prop)
        f = Field(name=name, key=key, label=_label(key, prop), kind=kind, required=key in required,
                  help=(prop.get("x-description-zh") if lang() == "zh" else None) or prop.get("description"))
        message = errors.get(name) or errors.get(key)
        if message == "this field is required" and key not in required:
            message = _conditional_hint(schema, key) or message
        raw = values[name] if name in values else values.get(key)
        if message and message != "this field is required" and kind not in ("group",):
            message = _fitting_message(prop, raw) or message
        f.error = translate_message(message, zh) if message else None
        if kind == "group":
            nested = values.get(key) if isinstance(values.get(key), dict) else \
                {k: v for k, v in values.items() if isinstance(k, str) and k.startswith(name + ".")}
            # the engine names a missing nested field by its own name ("teamwork"), others by the group
            nested_errors = {k: v for k, v in errors.items() if k not in own}
            f.children = build_fields(prop, nested, nested_errors, users, name + ".", zh, regions=regions)
            fields.append(f)
            continue
        if kind == "table":
            _build_table(f, prop, values, errors, users, zh, regions)
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
        elif kind == "attachments":  # the files already attached (kept unless unticked), and an upload input
            kept = raw if isinstance(raw, list) else [raw] if raw else []
            f.options = [(str(i), (files or {}).get(str(i), {}).get("filename") or str(i)) for i in kept]
            f.value = [str(i) for i in kept]
            f.attrs["accept"] = UPLOAD_ACCEPT
        elif kind == "user":
            f.options = [(u["username"], f'{u["display_name"]} ({u["username"]})') for u in (users or [])]
        elif kind == "return-target":
            names = {u["username"]: u["display_name"] for u in (users or [])}
            f.options = [(t["name"], " · ".join(filter(None, (
                (t.get("title_en") if lang() == "en" else t.get("title")) or t.get("title") or t["name"],
                names.get(t.get("assignee"), t.get("assignee")))))) for t in (return_targets or [])]
            if not f.value and f.options:
                f.value = f.options[0][0]
        elif kind == "region":
            f.options = [(r["id"], localized(r.get("name"), r["id"])) for r in (regions or [])]
        elif kind == "checkbox":
            f.value = raw in (True, "on", "true", "1", "yes")
        elif kind == "number":
            money_field = is_money(key, prop)
            f.attrs["step"] = "1" if prop.get("type") == "integer" else "0.01" if money_field else "any"
            for attr in ("minimum", "maximum"):
                if attr in prop:
                    f.attrs[attr[:3]] = prop[attr]
            if "exclusiveMinimum" in prop and "minimum" not in prop:
                f.attrs["min"] = prop["exclusiveMinimum"] + (1 if prop.get("type") == "integer" else 0.01)
            f.attrs["inputmode"] = "numeric" if prop.get("type") == "integer" else "decimal"
        if kind in ("text", "textarea") and "maxLength" in prop:
            f.attrs["maxlength"] = prop["maxLength"]
        if kind in ("text", "textarea") and prop.get("minLength", 0) > 1:
            f.attrs["minlength"] = prop["minLength"]
        fields.append(f)
    return fields


def _table_rows(values: dict, name: str) -> list[dict]:
    """A table's rows from typed data (a list of dicts) or from submitted strings ("lines.0.region")."""
    typed = values.get(name)
    if isinstance(typed, list):
        return [row if isinstance(row, dict) else {} for row in typed]
    cells: dict[int, dict] = {}
    pattern = re.compile(re.escape(name) + r"\.(\d+)\.(.+)")
    for key, value in values.items():
        match = pattern.fullmatch(key) if isinstance(key, str) else None
        if match:
            cells.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [cells[i] for i in sorted(cells) if any(str(v).strip() for v in cells[i].values())]


def _build_table(f: Field, prop: dict, values: dict, errors: dict, users, zh, regions) -> None:
    """An array of objects as a table: a row of inputs per item, a few blank rows to add more.
    Cells are named "lines.<row>.<column>"; the engine's errors name cells the same way."""
    item = prop.get("items") or {}
    f.children = build_fields(item, {}, {}, users, f.name + ".#.", zh, regions=regions)  # the columns (header, template)
    data = _table_rows(values, f.name) or _table_rows(values, f.key)
    f.value = ""
    f.error = translate_message(errors[f.name], zh) if errors.get(f.name) else f.error
    for index in range(len(data) + TABLE_BLANK_ROWS):
        row_values = data[index] if index < len(data) else {}
        prefix = f"{f.name}.{index}."
        row_errors = {prefix + k: v for k, v in errors.items() if isinstance(k, str) and k.startswith(prefix)}
        cells = build_fields(item, {prefix + k: v for k, v in row_values.items()}, row_errors, users, prefix, zh,
                             regions=regions)
        for cell in cells:
            cell.required = False  # a blank row is simply left out
        row_error = errors.get(f"{f.name}.{index}")
        f.rows.append({"index": index, "cells": cells,
                       "error": translate_message(row_error, zh) if row_error else None})


def _fitting_message(prop: dict, raw) -> str | None:
    """The message that fits what is wrong with a value (a form's x-error says what to fill in, which
    does not fit a value that is too long or out of range)."""
    if isinstance(raw, str) and raw.strip():
        if "maxLength" in prop and len(raw) > prop["maxLength"]:
            return f"at most {prop['maxLength']} characters"
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
    """The submitted HTML form as data for the engine, converted by the schema's types."""
    data: dict = {}
    for key, prop in _fields_of(schema):
        name = prefix + key
        kind = _kind(prop)
        if kind == "group":
            sub = parse_form(prop, form, name + ".")
            if sub or key in (schema.get("required") or []):
                data[key] = sub
        elif kind == "table":
            indices = sorted({int(m.group(1)) for k in form for m in [re.fullmatch(re.escape(name) + r"\.(\d+)\..+", k)]
                              if m})
            rows = [parse_form(prop.get("items"), form, f"{name}.{i}.") for i in indices]
            rows = [row for row in rows if row]
            if rows:
                data[key] = rows
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
        elif kind == "attachments":  # the ids kept; the view adds the new uploads (upload_fields)
            kept = [v for v in form.getlist(name) if v]
            if kept:
                data[key] = kept
        else:
            raw = form.get(name, "")
            if not raw.strip():
                continue
            data[key] = _convert(prop, raw if kind == "textarea" else raw.strip())
    return data


UPLOAD_ACCEPT = ".pdf,.ofd,.xml,.jpg,.jpeg,.png,.xlsx,.docx,application/pdf,image/jpeg,image/png"


def upload_fields(schema: dict | None) -> list[str]:
    """HTML names of the form's attachment fields (their new files come as `<name>__upload`)."""
    return [key for key, prop in _fields_of(schema) if _kind(prop) == "attachments"]


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


def general_errors(schema: dict | None, errors: dict, zh: dict | None = None) -> list[str]:
    """Errors that belong to no rendered field, shown above the form (`zh`: as for build_fields)."""
    names = set()
    tables = set()

    def collect(s, prefix=""):
        for key, prop in _fields_of(s):
            names.update((prefix + key, key))
            if isinstance(prop.get("properties"), dict):
                collect(prop, prefix + key + ".")
            if _kind(prop) == "table":
                tables.add(prefix + key + ".")
    collect(schema)
    zh = form_messages(schema) if zh is None else zh
    return [translate_message(v, zh) if k in ("_form", "_body") else f"{k}: {translate_message(v, zh)}"
            for k, v in (errors or {}).items()
            if k not in names and not any(k.startswith(t) for t in tables)]
