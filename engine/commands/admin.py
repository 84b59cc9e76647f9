"""Verbs of the administrator (and of the command line): people, the org chart, regions.

Every change is checked whole before anything is written (an import is all or nothing, with every
bad line reported), recorded in the audit trail (who, when, before -> after), and deactivating a
person hands their open tasks over to whoever their lanes now resolve to.
"""
from __future__ import annotations

import csv
import io
import re

from sqlalchemy import delete, select

from .. import access, audit, org
from ..errors import Conflict, EngineError, NotFound, ValidationFailed
from ..models import Region, User, UserRole
from ..people import MIN_PASSWORD
from ..runner import task_row
from ..tables import CANDIDATE_TABLE, TASK_TABLE, username as username_of

CSV_HEADER = ("username", "display_name", "email", "roles", "region", "manager", "active")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
REGION_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USER_FIELDS = ("username", "display_name", "email", "roles", "region", "manager", "active")


class ImportRefused(EngineError):
    """An org import with bad lines: nothing was written. `problems`: [{"line", "field", "message"}]."""
    status = 422

    def __init__(self, problems: list[dict]):
        super().__init__(f"{len(problems)} problem(s) in the file; nothing was imported")
        self.problems = problems


# ---------------------------------------------------------------- views
def user_view(session, user: User) -> dict:
    return {"username": user.username, "display_name": user.display_name, "email": user.email,
            "roles": sorted(user.role_names), "region": user.region.code if user.region else None,
            "manager": username_of(session, user.manager_id), "active": bool(user.active)}


def region_view(session, region: Region) -> dict:
    return {"id": region.code, "name": {"zh": region.name_zh or region.name, "en": region.name_en or region.name},
            "manager": username_of(session, region.manager_id)}


def _actor(session, name: str | None) -> User | None:
    """The administrator acting (None: the command line, which the machine's operator runs)."""
    return access.admin(session, name) if name is not None else None


# ---------------------------------------------------------------- checking fields
def _check_fields(values: dict, errors: dict, *, creating: bool) -> dict:
    """Type and shape of the user fields the API takes; returns the clean ones."""
    clean = {}
    unknown = [k for k in values if k not in USER_FIELDS and k != "password"]
    for key in unknown:
        errors[key] = "unknown field"
    if creating or "username" in values:
        name = values.get("username")
        if not isinstance(name, str) or not USERNAME.match(name):
            errors["username"] = "1 to 80 letters, digits, '.', '_' or '-'"
        else:
            clean["username"] = name
    if creating or "display_name" in values:
        name = values.get("display_name")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > 120:
            errors["display_name"] = "must be 1 to 120 characters"
        else:
            clean["display_name"] = name.strip()
    if "email" in values:
        email = values["email"]
        if email in (None, ""):
            clean["email"] = None
        elif not isinstance(email, str) or len(email) > 254 or not EMAIL.match(email):
            errors["email"] = "must be an e-mail address"
        else:
            clean["email"] = email
    if "roles" in values:
        roles = values["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            errors["roles"] = "must be a list of roles"
        else:
            bad = [r for r in roles if r not in org.ROLES]
            if bad:
                errors["roles"] = "unknown role: " + ", ".join(bad)
            else:
                clean["roles"] = sorted(set(roles))
    for key in ("region", "manager"):
        if key in values:
            value = values[key]
            if value in (None, ""):
                clean[key] = None
            elif not isinstance(value, str):
                errors[key] = "must be a string or null"
            else:
                clean[key] = value
    if "active" in values:
        if not isinstance(values["active"], bool):
            errors["active"] = "must be true or false"
        else:
            clean["active"] = values["active"]
    if creating or "password" in values:
        password = values.get("password")
        if password is None and not creating:
            errors["password"] = "must be a string"
        elif password is not None and (not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= 1024):
            errors["password"] = f"at least {MIN_PASSWORD} characters"
        elif password is not None:
            clean["password"] = password
    return clean


def _cycle(managers: dict[str, str | None], start: str) -> list[str] | None:
    """The manager cycle `start` is on (start → … → start), else None. `managers`: username → manager."""
    path, seen, current = [start], {start}, managers.get(start)
    while current is not None:
        path.append(current)
        if current == start:
            return path
        if current in seen:
            return None  # a cycle above, not through start (reported for its own members)
        seen.add(current)
        current = managers.get(current)
    return None


def _manager_map(session) -> dict[str, str | None]:
    rows = session.execute(select(User.username, User.manager_id, User.id)).all()
    by_id = {uid: name for name, _m, uid in rows}
    return {name: by_id.get(mid) for name, mid, _uid in rows}


def _resolve_refs(session, user: User | None, clean: dict, errors: dict) -> tuple:
    """Region and manager by name; a manager who does not exist, is the person, or closes a cycle is refused."""
    region = manager = None
    if clean.get("region"):
        region = session.scalar(select(Region).where(Region.code == clean["region"]))
        if region is None:
            errors["region"] = f"unknown region {clean['region']!r}"
    if clean.get("manager"):
        manager = org.user_by_name(session, clean["manager"])
        me = clean.get("username") or (user.username if user else None)
        if manager is None:
            errors["manager"] = f"no user {clean['manager']!r}"
        elif me is not None and manager.username == me:
            errors["manager"] = "nobody is their own manager"
        elif me is not None:
            managers = _manager_map(session)
            managers[me] = manager.username
            loop = _cycle(managers, me)
            if loop:
                errors["manager"] = "manager cycle: " + " → ".join(loop)
    return region, manager


# ---------------------------------------------------------------- users
def create_user(rt, actor_name: str | None, values: dict, source: str = "api") -> dict:
    if not isinstance(values, dict):
        raise ValidationFailed({"_body": "must be a JSON object"})
    with rt.db.write() as session:
        actor = _actor(session, actor_name)
        errors: dict = {}
        clean = _check_fields(values, errors, creating=True)
        if clean.get("username") and org.user_by_name(session, clean["username"]) is not None:
            errors["username"] = f"a user {clean['username']!r} exists already"
        region, manager = _resolve_refs(session, None, clean, errors)
        if errors:
            raise ValidationFailed(errors)
        user = User(username=clean["username"], display_name=clean["display_name"],
                    password_hash=org.hash_password(clean["password"]) if clean.get("password") else "",
                    email=clean.get("email"), region_id=region.id if region else None,
                    manager_id=manager.id if manager else None, active=clean.get("active", True))
        user.roles = [UserRole(role=r) for r in clean.get("roles", [])]
        session.add(user)
        session.flush()
        view = user_view(session, user)
        audit.record(session, actor, source, "user", user.username, "created", None, view)
        return view


def update_user(rt, actor_name: str | None, username: str, values: dict, source: str = "api") -> dict:
    if not isinstance(values, dict):
        raise ValidationFailed({"_body": "must be a JSON object"})
    with rt.db.write() as session:
        actor = _actor(session, actor_name)
        user = org.user_by_name(session, username or "")
        if user is None:
            raise NotFound(f"user {username} not found")
        errors: dict = {}
        clean = _check_fields(values, errors, creating=False)
        if "username" in clean and clean["username"] != user.username:
            errors["username"] = "a username cannot change"
        region, manager = _resolve_refs(session, user, clean, errors)
        if actor is not None and user.id == actor.id and clean.get("active") is False:
            errors["active"] = "you cannot deactivate yourself"
        if errors:
            raise ValidationFailed(errors)
        before = user_view(session, user)
        _apply(session, user, clean, region, manager)
        session.flush()
        after = user_view(session, user)
        if clean.get("password"):
            audit.record(session, actor, source, "user", user.username, "password_set")
        if before != after:
            audit.record(session, actor, source, "user", user.username, "changed", *audit.changes(before, after))
            if before["active"] and not after["active"]:
                hand_over(rt, session, user, actor)
            elif after["active"] and set(before["roles"]) - set(after["roles"]):
                hand_over(rt, session, user, actor, set(before["roles"]) - set(after["roles"]))
        return after


def _apply(session, user: User, clean: dict, region, manager) -> None:
    if "display_name" in clean:
        user.display_name = clean["display_name"]
    if "email" in clean:
        user.email = clean["email"]
    if "roles" in clean and set(clean["roles"]) != user.role_names:
        keep = [r for r in user.roles if r.role in clean["roles"]]
        user.roles = keep + [UserRole(role=r) for r in clean["roles"] if r not in {k.role for k in keep}]
    if "region" in clean:
        user.region_id = region.id if region else None
        user.region = region
    if "manager" in clean:
        user.manager_id = manager.id if manager else None
    if "active" in clean:
        user.active = clean["active"]
    if clean.get("password"):
        user.password_hash = org.hash_password(clean["password"])


def set_password(rt, username: str, password: str, actor_name: str | None = None, source: str = "cli") -> None:
    with rt.db.write() as session:
        actor = _actor(session, actor_name)
        user = org.user_by_name(session, username or "")
        if user is None:
            raise NotFound(f"user {username} not found")
        if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= 1024:
            raise ValidationFailed({"password": f"at least {MIN_PASSWORD} characters"})
        user.password_hash = org.hash_password(password)
        audit.record(session, actor, source, "user", user.username, "password_set")


# ---------------------------------------------------------------- deactivation
def hand_over(rt, session, user: User, actor: User | None, roles: set[str] | None = None) -> list[dict]:
    """`user` was deactivated (or lost `roles`): each of their open tasks (of those roles' lanes)
    goes to whoever its lane now resolves to (their manager for a manager lane, the other holders
    for a role, an added signer's task to their manager), and they leave those claim pools. One
    instance at a time, locked, in the transaction of the change; the instance's history says so."""
    session.flush()
    live = ("open", "waiting")
    reason = "deactivated" if roles is None else "role removed"
    of_roles = (TASK_TABLE.c.candidate_role.in_(sorted(roles)),) if roles is not None else ()
    assigned = session.execute(select(TASK_TABLE.c.id, TASK_TABLE.c.instance_id).where(
        TASK_TABLE.c.assignee_id == user.id, TASK_TABLE.c.status.in_(live), *of_roles)).all()
    pooled = session.execute(select(TASK_TABLE.c.id, TASK_TABLE.c.instance_id).join(
        CANDIDATE_TABLE, CANDIDATE_TABLE.c.task_id == TASK_TABLE.c.id).where(
        CANDIDATE_TABLE.c.user_id == user.id, TASK_TABLE.c.status.in_(live),
        TASK_TABLE.c.assignee_id.is_(None), *of_roles)).all()
    if pooled:
        session.execute(delete(CANDIDATE_TABLE).where(CANDIDATE_TABLE.c.user_id == user.id,
                                                      CANDIDATE_TABLE.c.task_id.in_([t for t, _i in pooled])))
    empty_pools = []  # a pool left with one person (or none) is routed again: one owner is the assignee
    for task_id, instance_id in pooled:
        left = session.execute(select(CANDIDATE_TABLE.c.user_id).where(CANDIDATE_TABLE.c.task_id == task_id)).all()
        if len(left) <= 1:
            empty_pools.append((task_id, instance_id))
    by_instance: dict[int, list[str]] = {}
    for task_id, instance_id in [*assigned, *empty_pools]:
        by_instance.setdefault(instance_id, []).append(task_id)
    moved = []
    for instance_id in sorted(by_instance):  # one lock order for everyone: instance ids ascending
        cmd = rt._command(session, instance_id, actor, None)
        for task_id in by_instance[instance_id]:
            row = cmd.tasks[task_id] = task_row(session, task_id)
            owners = _new_owners(session, cmd, row, user)
            session.execute(delete(CANDIDATE_TABLE).where(CANDIDATE_TABLE.c.task_id == row.id))
            only = owners[0] if len(owners) == 1 else None
            row.update(assignee_id=only.id if only else None, context=row.with_context(via="handover"))
            if only is None:
                cmd.candidates.extend((row.id, u.id) for u in owners)
            for owner in owners:
                rt._participate(cmd, owner.id)
            names = [u.username for u in owners]
            cmd.record("reassigned", row.name, actor=actor, **{
                "from": user.username, "to": only.username if only else None,
                "candidates": None if only else names, "reason": reason})
            cmd.notify("task_assigned", [u.id for u in owners], row.id, task=row.name, pool=None if only else True)
            moved.append({"task": row.id, "instance_id": instance_id, "to": names})
        rt._save(cmd)
    return moved


def _new_owners(session, cmd, row, gone: User) -> list[User]:
    subject = cmd.subject
    owners: list[User] = []
    if row.parent_id is None:
        lane = org.resolve_lane(session, cmd.parsed.lanes, row.lane, subject, decides=True)
        lane, _away = org.stand_in(session, cmd.parsed.lanes, lane, subject, row.lane, cmd.now)
        owners = [u for u in lane.users if u.active and u.id != gone.id]
    if not owners:  # an added signer, or a lane only the person filled (their own step): up the chain
        manager = org.first_active_manager(session, gone)
        if manager is not None and manager.id != subject.id:
            owners = [manager]
    if not owners:
        owners = [u for u in org.users_with_role(session, org.ADMIN_ROLE) if u.id != gone.id]
    if not owners:
        raise Conflict(f"nobody can take over the open tasks of {gone.username}; add an administrator first")
    return owners


# ---------------------------------------------------------------- import / export
def export_org(rt) -> str:
    with rt.db.read() as session:
        users = session.scalars(select(User).order_by(User.username)).all()
        names = {u.id: u.username for u in users}
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for u in users:
            writer.writerow([u.username, u.display_name, u.email or "", ";".join(sorted(u.role_names)),
                             u.region.code if u.region else "", names.get(u.manager_id, ""),
                             "true" if u.active else "false"])
        return out.getvalue()


def import_org(rt, text: str, actor_name: str | None = None, source: str = "import") -> dict:
    """Upsert the people of a CSV (CSV_HEADER). All or nothing: every bad line is reported
    (ImportRefused) and nothing written. Returns {"created", "changed", "unchanged", "handed_over"}."""
    if text.startswith("\ufeff"):
        text = text[1:]
    with rt.db.write() as session:
        actor = _actor(session, actor_name)
        rows, problems = _read_csv(text)
        existing = {u.username: u for u in session.scalars(select(User))}
        regions = {r.code: r for r in session.scalars(select(Region))}
        seen: dict[str, int] = {}
        for row in rows:
            line, name = row["line"], row["username"]
            if name in seen:
                problems.append({"line": line, "field": "username",
                                 "message": f"duplicate username {name!r} (first on line {seen[name]})"})
            elif name:
                seen[name] = line
            if row["region"] and row["region"] not in regions:
                problems.append({"line": line, "field": "region", "message": f"unknown region {row['region']!r}"})
            manager = row["manager"]
            if manager and manager == name:
                problems.append({"line": line, "field": "manager", "message": "nobody is their own manager"})
            elif manager and manager not in existing and manager not in {r["username"] for r in rows}:
                problems.append({"line": line, "field": "manager",
                                 "message": f"manager {manager!r} is neither in the file nor in the database"})
        managers = _manager_map(session)
        for row in rows:
            if row["username"] and row["username"] in seen and seen[row["username"]] == row["line"]:
                managers[row["username"]] = row["manager"] or None
        for row in rows:
            if row["username"] and seen.get(row["username"]) == row["line"] and row["manager"] != row["username"]:
                loop = _cycle(managers, row["username"])
                if loop:
                    problems.append({"line": row["line"], "field": "manager",
                                     "message": "manager cycle: " + " → ".join(loop)})
        if problems:
            raise ImportRefused(sorted(problems, key=lambda p: (p["line"], CSV_HEADER.index(p["field"])
                                                                 if p["field"] in CSV_HEADER else -1)))
        counts = {"created": 0, "changed": 0, "unchanged": 0, "handed_over": 0}
        before_views, users = {}, {}
        for row in rows:  # first everyone exists, then the managers point at them
            user = existing.get(row["username"])
            if user is None:
                user = User(username=row["username"], display_name=row["display_name"], password_hash="",
                            active=row["active"])
                session.add(user)
                counts["created"] += 1
            else:
                before_views[user.username] = user_view(session, user)
            users[row["username"]] = user
        session.flush()
        ids = {name: u.id for name, u in existing.items()} | {name: u.id for name, u in users.items()}
        deactivated = []
        for row in rows:
            user = users[row["username"]]
            was_active = bool(user.active) if user.username in before_views else True
            region = regions.get(row["region"]) if row["region"] else None
            _apply(session, user, {"display_name": row["display_name"], "email": row["email"] or None,
                                   "roles": row["roles"], "region": row["region"] or None,
                                   "manager": row["manager"] or None, "active": row["active"]}, region, None)
            user.manager_id = ids.get(row["manager"]) if row["manager"] else None
            if was_active and not row["active"] and user.username in before_views:
                deactivated.append(user)
        session.flush()
        for row in rows:
            user = users[row["username"]]
            after = user_view(session, user)
            before = before_views.get(user.username)
            if before is None:
                audit.record(session, actor, source, "user", user.username, "created", None, after)
            elif before != after:
                counts["changed"] += 1
                audit.record(session, actor, source, "user", user.username, "changed", *audit.changes(before, after))
            else:
                counts["unchanged"] += 1
        for user in deactivated:
            counts["handed_over"] += len(hand_over(rt, session, user, actor))
        return counts


def _read_csv(text: str) -> tuple[list[dict], list[dict]]:
    problems: list[dict] = []
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return [], [{"line": 1, "field": "_file", "message": "the file is empty"}]
    except csv.Error as exc:
        return [], [{"line": 1, "field": "_file", "message": f"not a CSV file: {exc}"}]
    header = [h.strip() for h in header]
    if sorted(header) != sorted(CSV_HEADER) or len(header) != len(CSV_HEADER):
        return [], [{"line": 1, "field": "_header",
                     "message": "the header must be: " + ",".join(CSV_HEADER) + f" (found: {','.join(header)})"}]
    rows = []
    last = reader.line_num
    try:
        for cells in reader:
            line, last = last + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                problems.append({"line": line, "field": "_line",
                                 "message": f"{len(cells)} fields, the header has {len(header)}"})
                continue
            raw = {h: c.strip() for h, c in zip(header, cells)}
            row = {"line": line, "username": raw["username"], "display_name": raw["display_name"],
                   "email": raw["email"], "region": raw["region"], "manager": raw["manager"]}
            if not USERNAME.match(raw["username"]):
                problems.append({"line": line, "field": "username",
                                 "message": "1 to 80 letters, digits, '.', '_' or '-'" if raw["username"]
                                 else "the username is required"})
            if not raw["display_name"] or len(raw["display_name"]) > 120:
                problems.append({"line": line, "field": "display_name", "message": "must be 1 to 120 characters"})
            if raw["email"] and (len(raw["email"]) > 254 or not EMAIL.match(raw["email"])):
                problems.append({"line": line, "field": "email", "message": f"{raw['email']!r} is not an e-mail address"})
            roles = sorted({r.strip() for r in raw["roles"].split(";") if r.strip()})
            unknown = [r for r in roles if r not in org.ROLES]
            if unknown:
                problems.append({"line": line, "field": "roles", "message": "unknown role: " + ", ".join(unknown)})
            row["roles"] = roles
            active = raw["active"].lower()
            if active not in ("true", "false", ""):
                problems.append({"line": line, "field": "active", "message": f"must be true or false, not {raw['active']!r}"})
            row["active"] = active != "false"
            rows.append(row)
    except csv.Error as exc:
        problems.append({"line": last + 1, "field": "_line", "message": f"not valid CSV: {exc}"})
    if not rows and not problems:
        problems.append({"line": 2, "field": "_file", "message": "no users in the file"})
    return rows, problems


# ---------------------------------------------------------------- regions
def _region_names(values: dict, errors: dict, *, creating: bool) -> dict:
    clean = {}
    if creating or "name" in values:
        name = values.get("name")
        if not isinstance(name, dict) or set(name) - {"zh", "en"}:
            errors["name"] = 'must be {"zh": ..., "en": ...}'
        else:
            for lang in ("zh", "en"):
                text = name.get(lang)
                if not isinstance(text, str) or not text.strip() or len(text.strip()) > 120:
                    errors[f"name.{lang}"] = "must be 1 to 120 characters"
                else:
                    clean[lang] = text.strip()
    return clean


def add_region(rt, actor_name: str | None, values: dict, source: str = "api") -> dict:
    if not isinstance(values, dict):
        raise ValidationFailed({"_body": "must be a JSON object"})
    with rt.db.write() as session:
        actor = _actor(session, actor_name)
        errors = {k: "unknown field" for k in values if k not in ("id", "name", "manager")}
        code = values.get("id")
        if not isinstance(code, str) or not REGION_ID.match(code):
            errors["id"] = "1 to 40 lower-case letters, digits, '_' or '-'"
        names = _region_names(values, errors, creating=True)
        manager = _region_manager(session, values.get("manager"), errors)
        if errors:
            raise ValidationFailed(errors)
        if session.scalar(select(Region).where(Region.code == code)) is not None:
            raise Conflict(f"region {code!r} exists already")
        region = Region(code=code, name=f"{names['zh']} {names['en']}", name_zh=names["zh"], name_en=names["en"],
                        manager_id=manager.id if manager else None)
        session.add(region)
        session.flush()
        view = region_view(session, region)
        audit.record(session, actor, source, "region", code, "created", None, view)
        return view


def update_region(rt, actor_name: str | None, code: str, values: dict, source: str = "api") -> dict:
    if not isinstance(values, dict):
        raise ValidationFailed({"_body": "must be a JSON object"})
    with rt.db.write() as session:
        actor = _actor(session, actor_name)
        region = session.scalar(select(Region).where(Region.code == code))
        if region is None:
            raise NotFound(f"region {code} not found")
        errors = {k: "unknown field" for k in values if k not in ("name", "manager")}
        names = _region_names(values, errors, creating=False)
        manager = _region_manager(session, values.get("manager"), errors) if "manager" in values else None
        if errors:
            raise ValidationFailed(errors)
        before = region_view(session, region)
        if names:
            region.name_zh, region.name_en = names["zh"], names["en"]
            region.name = f"{names['zh']} {names['en']}"
        if "manager" in values:
            region.manager_id = manager.id if manager else None
        session.flush()
        after = region_view(session, region)
        if before != after:
            audit.record(session, actor, source, "region", code, "changed", *audit.changes(before, after))
        return after


def _region_manager(session, name, errors: dict):
    if name in (None, ""):
        return None
    user = org.user_by_name(session, name) if isinstance(name, str) else None
    if user is None or not user.active:
        errors["manager"] = f"no active user {name!r}"
        return None
    return user
