"""Pages of one's own: notifications (with the unread count in every page's header) and the
profile (name, e-mail, language, mail on/off, out of office, password)."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine.errors import EngineError, Forbidden, ValidationFailed

from .formrender import lang, parse_time, translate_error_dict

bp = Blueprint("people", __name__)


def engine():
    return current_app.extensions["salesflow"]


@bp.app_context_processor
def _unread():
    def unread_count() -> int:
        if not getattr(current_user, "is_authenticated", False):
            return 0
        try:
            return engine().unread_count(current_user.username)
        except EngineError:
            return 0
    return {"unread_count": unread_count}


def _target(item: dict) -> str:
    if item.get("task_id") and item["kind"] not in ("outcome", "cc", "mention"):
        return url_for("views.task", task_id=item["task_id"])
    if item.get("instance_id"):
        return url_for("views.instance", instance_id=item["instance_id"])
    return url_for("views.inbox")


@bp.get("/notifications")
@login_required
def notifications():
    unread = request.args.get("unread") == "1"
    items = engine().notifications(current_user.username, unread=unread, limit=200, lang=lang())
    for item in items:
        item["href"] = _target(item)
    return render_template("notifications.html", items=items, unread_only=unread)


@bp.post("/notifications/<iid:notification_id>/read")
@login_required
def notification_read(notification_id):
    """Mark one read and open what it is about."""
    item = engine().read_notification(current_user.username, notification_id)
    if request.form.get("stay"):
        return redirect(url_for("people.notifications"))
    return redirect(_target(item))


@bp.post("/notifications/read-all")
@login_required
def notifications_read_all():
    count = engine().mark_read(current_user.username)
    flash(_("%(count)s notifications marked as read.", count=count), "success")
    return redirect(url_for("people.notifications"))


def _local_input(value: str | None) -> str:
    """An ISO time as the value of a datetime-local input, in the company's time zone."""
    moment = parse_time(value)
    return moment.strftime("%Y-%m-%dT%H:%M") if moment else ""


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    eng = engine()
    me = current_user.username
    errors: dict = {}
    status = 200
    if request.method == "POST":
        changes = {"display_name": request.form.get("display_name", "").strip(),
                   "email": request.form.get("email", "").strip() or None,
                   "locale": request.form.get("locale") or lang(),
                   "mail_notifications": request.form.get("mail_notifications") == "on"}
        if request.form.get("away") == "on":
            changes["out_of_office"] = {"from": request.form.get("ooo_from", ""),
                                        "until": request.form.get("ooo_until", ""),
                                        "delegate": request.form.get("ooo_delegate") or None}
        else:
            changes["out_of_office"] = None
        try:
            eng.update_me(me, changes)
        except ValidationFailed as exc:
            errors, status = exc.errors, 422
        else:
            from flask import session
            session["lang"] = changes["locale"]
            flash(_("Your settings were saved."), "success")
            return redirect(url_for("people.profile"))
    if request.method == "POST":  # show what was typed
        values = {k: request.form.get(k, "") for k in ("display_name", "email", "locale", "ooo_from", "ooo_until",
                                                        "ooo_delegate")}
        values["mail_notifications"] = request.form.get("mail_notifications") == "on"
        values["away"] = request.form.get("away") == "on"
    else:
        values = None
    return _profile_page(values, errors=translate_error_dict(errors), status=status)


def _profile_page(values: dict | None, *, errors: dict | None = None, password_errors: dict | None = None,
                  status: int = 200):
    eng = engine()
    me = current_user.username
    info = eng.me(me)
    if values is None:
        away = info.get("out_of_office") or {}
        values = {"display_name": info["display_name"], "email": info.get("email") or "",
                  "locale": info.get("locale") or lang(), "mail_notifications": info["mail_notifications"],
                  "away": bool(away), "ooo_from": _local_input(away.get("from")),
                  "ooo_until": _local_input(away.get("until")), "ooo_delegate": away.get("delegate") or ""}
    users = eng.users()
    people = [u for u in users if u["username"] != me and "admin" not in u["roles"]]
    manager_name = next((u["display_name"] for u in users if u["username"] == info.get("manager")), info.get("manager"))
    return render_template("profile.html", info=info, values=values, errors=errors or {}, people=people,
                           manager_name=manager_name, password_errors=password_errors or {}), status


@bp.post("/profile/password")
@login_required
def password():
    old, new, again = (request.form.get(k, "") for k in ("old", "new", "again"))
    errors = {}
    if new != again:
        errors["again"] = _("The two new passwords differ.")
    else:
        try:
            engine().change_password(current_user.username, old, new)
        except Forbidden:
            errors["old"] = _("The current password is wrong.")
        except ValidationFailed as exc:
            errors.update(translate_error_dict(exc.errors))
    if errors:
        return _profile_page(None, password_errors=errors, status=422)
    flash(_("Your password was changed."), "success")
    return redirect(url_for("people.profile"))
