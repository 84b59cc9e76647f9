"""The administration area (admins only) and the budgets page.

People (search, create, edit, deactivate), the org chart drawn as a tree, regions, roles, deployed
versions with the instances running on each, instances in error (retry, cancel with a comment,
reassign a task) and the audit trail. Like views.py: a thin layer over the engine, which checks
every rule again (a non-admin gets 403 from the engine too).
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from engine.errors import Conflict, EngineError, ProcessError, ValidationFailed

from .formrender import localized, translate_error_dict, translate_message
from .views import error_page

bp = Blueprint("admin", __name__)

ADMIN_ROLE = "admin"
BUDGET_ROLES = {"finance", "general_manager", "sales_director", ADMIN_ROLE, "sales_manager"}
CATEGORIES = {
    "travel": _l("Travel"), "entertainment": _l("Entertainment"), "marketing": _l("Marketing"),
    "communication": _l("Communication"), "other": _l("Other"),
}
AUDIT_ACTIONS = {
    "created": _l("Created"), "changed": _l("Changed"), "password_set": _l("Password set"),
    "set": _l("Set"), "retried": _l("Retried"), "cancelled": _l("Cancelled"), "reassigned": _l("Reassigned"),
    "migrated": _l("Migrated"),
}
ENTITIES = {"user": _l("User"), "region": _l("Region"), "budget": _l("Budget"), "instance": _l("Instance"),
            "task": _l("Task")}
SOURCES = {"api": _l("API"), "web": _l("Web"), "cli": _l("Command line"), "import": _l("Import"),
           "process": _l("Process")}
FIELDS = {"username": _l("Username"), "display_name": _l("Name"), "email": _l("E-mail"), "roles": _l("Roles"),
          "region": _l("Region"), "manager": _l("Manager"), "active": _l("Active"), "password": _l("Password"),
          "amount": _l("Amount"), "name": _l("Name"), "status": _l("Status"), "comment": _l("Comment"),
          "assignee": _l("Assignee"), "version": _l("Version"), "instance_id": _l("Instance"), "error": _l("Error")}


def engine():
    return current_app.extensions["salesflow"]


def is_admin() -> bool:
    return bool(current_user.is_authenticated and ADMIN_ROLE in current_user.roles)


@bp.app_context_processor
def _inject():
    return {"is_admin": is_admin,
            "sees_budgets": lambda: bool(current_user.is_authenticated and current_user.roles & BUDGET_ROLES),
            "role_label": role_label, "category_label": lambda c: str(CATEGORIES.get(c, c)),
            "audit_source": lambda s: str(SOURCES.get(s, s)), "audit_entity": lambda e: str(ENTITIES.get(e, e)),
            "audit_action": lambda a: str(AUDIT_ACTIONS.get(a, a)), "audit_values": audit_values}


def audit_values(values: dict | None) -> str:
    """before / after of an audit event as one readable line."""
    if not values:
        return "—"
    def show(key, value):
        if value is None or value == "":
            return "—"
        if isinstance(value, bool):
            return _("Yes") if value else _("No")
        if key == "roles" and isinstance(value, list):
            return ", ".join(role_label(r) for r in value) or "—"
        if isinstance(value, dict):
            return " / ".join(str(v) for v in value.values())
        if isinstance(value, list):
            return ", ".join(map(str, value)) or "—"
        return str(value)
    return "; ".join(f"{FIELDS.get(k, k)}: {show(k, v)}" for k, v in values.items())


def role_label(role: str) -> str:
    from engine.org import ROLES
    return localized(ROLES.get(role), role)


@bp.before_request
def _only_admins():
    if request.endpoint == "admin.budgets":
        return None
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()
    if not is_admin():
        abort(403)
    return None


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError):
    return error_page(exc)


def _errors(exc: ValidationFailed) -> dict:
    return translate_error_dict(exc.errors)


# --------------------------------------------------------------- people
@bp.get("/admin/")
def home():
    return redirect(url_for("admin.users"))


@bp.get("/admin/users")
def users():
    q = request.args.get("q", "").strip()
    people = engine().admin_users(current_user.username, q or None)
    return render_template("admin/users.html", people=people, q=q, section="users")


def _user_form_values(form, creating: bool) -> dict:
    values = {"display_name": form.get("display_name", ""), "email": form.get("email", "").strip() or None,
              "roles": form.getlist("roles"), "region": form.get("region") or None,
              "manager": form.get("manager") or None, "active": form.get("active") == "on"}
    if creating:
        values["username"] = form.get("username", "").strip()
        values["password"] = form.get("password", "")
    elif form.get("password"):
        values["password"] = form["password"]
    return values


def _user_page(user: dict | None, errors: dict | None = None, status: int = 200, *, creating: bool = False):
    eng = engine()
    from engine.org import ROLES
    me = (user or {}).get("username") if not creating else None
    people = [u for u in eng.admin_users(current_user.username) if u["username"] != me]
    return render_template("admin/user_form.html", user=user or {"active": True, "roles": []}, errors=errors or {},
                           roles=list(ROLES), regions=eng.regions(current_user.username), people=people,
                           creating=creating, history=(user or {}).get("history") or [],
                           section="users"), status


@bp.route("/admin/users/new", methods=["GET", "POST"])
def new_user():
    if request.method == "POST":
        values = _user_form_values(request.form, creating=True)
        try:
            created = engine().create_user(current_user.username, values, source="web")
        except ValidationFailed as exc:
            return _user_page(values, _errors(exc), 422, creating=True)
        flash(_("%(user)s was created.", user=created["username"]), "success")
        return redirect(url_for("admin.user", username=created["username"]))
    return _user_page(None, creating=True)


@bp.route("/admin/users/<username>", methods=["GET", "POST"])
def user(username: str):
    eng = engine()
    if request.method == "POST":
        values = _user_form_values(request.form, creating=False)
        try:
            eng.update_user(current_user.username, username, values, source="web")
        except ValidationFailed as exc:
            current = eng.admin_user(current_user.username, username)
            return _user_page({**current, **values, "username": username}, _errors(exc), 422)
        flash(_("Saved: %(user)s.", user=username), "success")
        return redirect(url_for("admin.user", username=username))
    return _user_page(eng.admin_user(current_user.username, username))


@bp.get("/admin/org")
def org_chart():
    return render_template("admin/org.html", roots=engine().org_chart(current_user.username), section="org")


# --------------------------------------------------------------- regions and roles
@bp.route("/admin/regions", methods=["GET", "POST"])
def regions():
    eng = engine()
    errors, values, status = {}, {}, 200
    if request.method == "POST":
        values = {"id": request.form.get("id", "").strip(),
                  "name": {"zh": request.form.get("name_zh", ""), "en": request.form.get("name_en", "")},
                  "manager": request.form.get("manager") or None}
        try:
            created = eng.add_region(current_user.username, values, source="web")
        except ValidationFailed as exc:
            errors, status = _errors(exc), 422
        except Conflict as exc:
            errors, status = {"id": translate_message(exc.message)}, 409
        else:
            flash(_("Region %(region)s was added.", region=created["id"]), "success")
            return redirect(url_for("admin.regions"))
    people = [u for u in eng.admin_users(current_user.username) if u["active"]]
    return render_template("admin/regions.html", regions=eng.regions(current_user.username), people=people,
                           errors=errors, values=values, section="regions"), status


@bp.post("/admin/regions/<code>")
def edit_region(code: str):
    values = {"name": {"zh": request.form.get("name_zh", ""), "en": request.form.get("name_en", "")},
              "manager": request.form.get("manager") or None}
    try:
        engine().update_region(current_user.username, code, values, source="web")
    except ValidationFailed as exc:
        flash("; ".join(f"{k}: {v}" for k, v in _errors(exc).items()), "error")
    else:
        flash(_("Saved: %(region)s.", region=code), "success")
    return redirect(url_for("admin.regions"))


@bp.get("/admin/roles")
def roles():
    return render_template("admin/roles.html", roles=engine().roles(current_user.username), section="roles")


# --------------------------------------------------------------- versions and operations
@bp.get("/admin/definitions")
def definitions():
    rows = engine().admin_definitions(current_user.username)
    names = engine().process_names()
    return render_template("admin/definitions.html", rows=rows, names=names, section="definitions")


@bp.get("/admin/instances")
def instances():
    status = request.args.get("status", "error")
    if status not in ("error", "running", "completed", "cancelled", ""):
        status = "error"
    lookup = request.args.get("id", "").strip()
    if lookup:
        return redirect(url_for("admin.instance", instance_id=lookup.lstrip("#")))
    rows = engine().admin_instances(current_user.username, status or None)
    return render_template("admin/instances.html", rows=rows, status=status, names=engine().process_names(),
                           failed_mail=engine().failed_mail(), section="instances")


@bp.get("/admin/instances/<iid:instance_id>")
def instance(instance_id: str):
    eng = engine()
    inst = eng.instance(instance_id, current_user.username, labels=True)
    error = next((r.get("error_detail") for r in eng.admin_instances(current_user.username, inst["status"])
                  if r["id"] == inst["id"]), None) if inst["status"] == "error" else None
    people = [u for u in eng.admin_users(current_user.username) if u["active"] and ADMIN_ROLE not in u["roles"]]
    from .views import _history, _user_names
    names = _user_names(eng.users())
    return render_template("admin/instance.html", inst=inst, error=error, people=people,
                           history=_history(inst, names), names=names,
                           process_title=localized(inst.get("process_name"), inst["process_id"]),
                           section="instances")


@bp.post("/admin/instances/<iid:instance_id>/retry")
def retry(instance_id: str):
    try:
        result = engine().retry(instance_id, current_user.username)
    except ProcessError as exc:
        flash(_("The retry failed; the instance stays in error: %(error)s", error=exc.message), "error")
    except Conflict as exc:
        flash(translate_message(exc.message), "warning")
    else:
        from .formrender import STATUSES
        flash(_("Instance #%(id)s was retried: %(status)s.", id=result["id"],
                status=str(STATUSES.get(result["status"], result["status"]))), "success")
    return redirect(url_for("admin.instance", instance_id=instance_id))


@bp.post("/admin/instances/<iid:instance_id>/cancel")
def cancel(instance_id: str):
    try:
        engine().cancel(instance_id, current_user.username, request.form.get("comment", ""))
    except ValidationFailed:
        flash(_("A comment is required to cancel an instance."), "error")
    except Conflict as exc:
        flash(translate_message(exc.message), "warning")
    else:
        flash(_("Instance #%(id)s was cancelled.", id=instance_id), "success")
    return redirect(url_for("admin.instance", instance_id=instance_id))


@bp.post("/admin/tasks/<tid:task_id>/reassign")
def reassign(task_id: str):
    to = request.form.get("to", "").strip()
    instance_id = request.form.get("instance_id", "")
    try:
        task = engine().reassign(task_id, current_user.username, to)
    except ValidationFailed as exc:
        flash("; ".join(_errors(exc).values()), "error")
    except Conflict as exc:
        flash(translate_message(exc.message), "warning")
    else:
        flash(_("The task was reassigned to %(user)s.", user=task["assignee"]), "success")
        instance_id = task["instance_id"]
    return redirect(url_for("admin.instance", instance_id=instance_id) if instance_id else url_for("admin.instances"))


@bp.get("/admin/audit")
def audit():
    entity = request.args.get("entity") or None
    events = engine().audit(current_user.username, entity, request.args.get("key") or None)
    return render_template("admin/audit.html", events=events, entity=entity or "", entities=ENTITIES,
                           actions=AUDIT_ACTIONS, sources=SOURCES, fields=FIELDS, section="audit")


# --------------------------------------------------------------- budgets (finance, GM, director, admin, region managers)
@bp.get("/budgets")
@login_required
def budgets():
    eng = engine()
    month = request.args.get("month", "").strip() or None
    region = request.args.get("region", "").strip() or None
    try:
        everything = eng.budgets(current_user.username, month)
    except ValidationFailed as exc:
        flash("; ".join(_errors(exc).values()), "error")
        return redirect(url_for("admin.budgets"))
    choices = sorted({r["region"] for r in everything})
    rows = [r for r in everything if region is None or r["region"] == region]
    regions = {r["id"]: r for r in eng.regions(current_user.username, admin=False)}
    if everything:
        shown_month = everything[0]["month"]
    else:
        from engine.admin_queries import _month
        shown_month = _month(month)
    by_region: dict[str, list] = {}
    for row in rows:
        by_region.setdefault(row["region"], []).append(row)
    totals = {code: {k: sum(r[k] for r in lines) for k in ("amount", "reserved", "spent", "remaining")}
              for code, lines in by_region.items()}
    return render_template("budgets.html", by_region=by_region, totals=totals, regions=regions, month=shown_month,
                           region=region or "", choices=choices, can_plan="finance" in current_user.roles)
