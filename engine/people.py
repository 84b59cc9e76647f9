"""A person's own settings: profile, language, mail on/off, out of office, password."""
from __future__ import annotations

import re
from datetime import datetime

from . import org
from .access import actor
from .errors import Forbidden, ValidationFailed
from .models import User
from .tables import iso

LOCALES = ("zh", "en")
MIN_PASSWORD = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def me_dict(session, user: User) -> dict:
    manager = session.get(User, user.manager_id) if user.manager_id else None
    delegate = session.get(User, user.ooo_delegate_id) if user.ooo_delegate_id else None
    away = None
    if user.ooo_from and user.ooo_until:
        away = {"from": iso(user.ooo_from), "until": iso(user.ooo_until),
                "delegate": delegate.username if delegate else None}
    return {"username": user.username, "display_name": user.display_name, "email": user.email,
            "roles": sorted(user.role_names), "region": user.region.code if user.region else None,
            "manager": manager.username if manager else None, "locale": user.locale,
            "mail_notifications": bool(user.mail_notifications), "out_of_office": away}


def me(rt, username: str) -> dict:
    with rt.db.read() as session:
        return me_dict(session, actor(session, username))


def update_me(rt, username: str, changes: dict) -> dict:
    """PATCH /me: any of email, locale, mail_notifications, out_of_office (null clears it)."""
    if not isinstance(changes, dict):
        raise ValidationFailed({"_body": "must be a JSON object"})
    allowed = {"email", "locale", "mail_notifications", "out_of_office", "display_name"}
    errors = {k: "unknown field" for k in changes if k not in allowed}
    with rt.db.write() as session:
        user = actor(session, username)
        if "email" in changes:
            email = changes["email"]
            if email in (None, ""):
                user.email = None
            elif not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email):
                errors["email"] = "must be an e-mail address"
            else:
                user.email = email
        if "display_name" in changes:
            name = changes["display_name"]
            if not isinstance(name, str) or not name.strip() or len(name) > 120:
                errors["display_name"] = "must be 1 to 120 characters"
            else:
                user.display_name = name.strip()
        if "locale" in changes:
            if changes["locale"] not in LOCALES:
                errors["locale"] = "must be zh or en"
            else:
                user.locale = changes["locale"]
        if "mail_notifications" in changes:
            if not isinstance(changes["mail_notifications"], bool):
                errors["mail_notifications"] = "must be true or false"
            else:
                user.mail_notifications = changes["mail_notifications"]
        if "out_of_office" in changes:
            _set_away(session, user, changes["out_of_office"], errors)
        if errors:
            raise ValidationFailed(errors)
        session.flush()
        return me_dict(session, user)


def _set_away(session, user: User, value, errors: dict) -> None:
    if value is None:
        user.ooo_from = user.ooo_until = user.ooo_delegate_id = None
        return
    if not isinstance(value, dict) or set(value) - {"from", "until", "delegate"}:
        errors["out_of_office"] = "must be null or {\"from\", \"until\", \"delegate\"}"
        return
    start, until = _when(value.get("from"), "out_of_office.from", errors), \
        _when(value.get("until"), "out_of_office.until", errors)
    if start and until and until <= start:
        errors["out_of_office.until"] = "must be after from"
    delegate = None
    if value.get("delegate") not in (None, ""):
        delegate = org.user_by_name(session, value["delegate"]) if isinstance(value["delegate"], str) else None
        if delegate is None or not delegate.active:
            errors["out_of_office.delegate"] = "no active user with this name"
        elif delegate.id == user.id:
            errors["out_of_office.delegate"] = "you cannot stand in for yourself"
        elif org.ADMIN_ROLE in delegate.role_names:
            errors["out_of_office.delegate"] = "administrators do not decide tasks"
    if not any(k.startswith("out_of_office") for k in errors):
        user.ooo_from, user.ooo_until = start, until
        user.ooo_delegate_id = delegate.id if delegate else None


def _when(value, field: str, errors: dict):
    if not isinstance(value, str):
        errors[field] = "this field is required"
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors[field] = "must be an ISO-8601 date and time"
        return None
    if parsed.tzinfo is None:
        from zoneinfo import ZoneInfo
        parsed = parsed.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return parsed


def change_password(rt, username: str, old, new) -> None:
    if not isinstance(old, str) or not isinstance(new, str):
        raise ValidationFailed({"new": "send {\"old\": ..., \"new\": ...}"})
    with rt.db.write() as session:
        user = actor(session, username)
        if not org.verify_password(user, old):
            raise Forbidden("the old password is wrong")
        if len(new) < MIN_PASSWORD:
            raise ValidationFailed({"new": f"at least {MIN_PASSWORD} characters"})
        if len(new) > 1024:
            raise ValidationFailed({"new": "at most 1024 characters"})
        user.password_hash = org.hash_password(new)
