"""The one-line summary of an instance — who, what, how much — as its process declares it in
processes.json ("summary": {"zh": "...", "en": "..."}). Placeholders: {subject} (the display name
of the person it is about), any data field (an enum shown by its form's title in that language),
and {field:money} (¥1,234.50)."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_FIELD = re.compile(r"\{(\w+)(?::(\w+))?\}")


def money(value) -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    return f"¥{amount:,.2f}"


def render(template: str, data: dict, fields: dict, subject_name: str, lang: str) -> str:
    def one(match):
        key, fmt = match.group(1), match.group(2)
        if key == "subject":
            return subject_name
        value = data.get(key)
        if value is None or value == "":
            return "—"
        if fmt == "money":
            return money(value)
        titles = (fields.get(key) or {}).get("x-enum-titles") or {}
        entry = titles.get(str(value)) if isinstance(titles, dict) else None
        if isinstance(entry, dict):
            return entry.get(lang) or entry.get("en") or str(value)
        return str(value)
    return _FIELD.sub(one, template).strip()[:300]


def summarize(parsed, data: dict, subject, starter, instance_id: int) -> tuple[str, str, str]:
    """(zh, en, search text) of an instance."""
    spec = parsed.catalog.get("summary") or {}
    name = (parsed.catalog.get("name") or {})
    zh = render(spec.get("zh") or "{subject}", data, parsed.fields, subject.display_name, "zh")
    en = render(spec.get("en") or spec.get("zh") or "{subject}", data, parsed.fields, subject.display_name, "en")
    search = " ".join(dict.fromkeys([zh, en, subject.display_name, subject.username, starter.display_name,
                                     starter.username, name.get("zh", ""), name.get("en", ""), f"#{instance_id}",
                                     str(instance_id)]))
    return zh, en, search.lower()
