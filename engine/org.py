"""The organisation: people, roles, regions, the manager chain, and who owns a lane."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
import base64
import hashlib
import hmac
import secrets

from .models import User, UserRole

ADMIN_ROLE = "admin"
# every role a person may hold, with its names (lanes.json and processes.json name these)
ROLES = {
    "sales_rep": {"zh": "销售代表", "en": "Sales rep"},
    "sales_manager": {"zh": "销售经理", "en": "Sales manager"},
    "sales_director": {"zh": "销售总监", "en": "Sales director"},
    "general_manager": {"zh": "总经理", "en": "General manager"},
    "finance": {"zh": "财务", "en": "Finance"},
    "legal": {"zh": "法务", "en": "Legal"},
    "hr": {"zh": "人事", "en": "HR"},
    "operations": {"zh": "运营", "en": "Operations"},
    ADMIN_ROLE: {"zh": "系统管理员", "en": "Administrator"},
}


_SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}


def hash_password(password: str) -> str:
    """scrypt, salted: 'scrypt$<salt>$<hash>' (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(user: User | None, password: str) -> bool:
    if not (user and user.active and user.password_hash):
        return False
    try:
        scheme, salt, expected = user.password_hash.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))


_USER_BY_NAME = select(User).where(User.username == bindparam("username"))  # built once: a hot path


def user_by_name(session, username: str) -> User | None:
    return session.scalar(_USER_BY_NAME, {"username": username})


_ROLE_HOLDERS = select(User).join(UserRole, UserRole.user_id == User.id) \
    .where(UserRole.role == bindparam("role"), User.active.is_(True)).order_by(User.username)
_ROLE_HOLDERS_IN_REGION = _ROLE_HOLDERS.where(User.region_id == bindparam("region_id"))


def users_with_role(session, role: str, region_id: int | None = None) -> list[User]:
    if region_id is None:
        return list(session.scalars(_ROLE_HOLDERS, {"role": role}))
    return list(session.scalars(_ROLE_HOLDERS_IN_REGION, {"role": role, "region_id": region_id}))


def manager_chain(session, user: User) -> list[User]:
    """The user's managers, nearest first (inactive ones included: callers skip them)."""
    chain, seen, current = [], {user.id}, user
    while current.manager_id is not None and current.manager_id not in seen:
        current = session.get(User, current.manager_id)  # the foreign key: always someone
        seen.add(current.id)
        chain.append(current)
    return chain


def first_active_manager(session, user: User) -> User | None:
    return next((m for m in manager_chain(session, user) if m.active), None)


def reports_of(session, manager: User) -> set[int]:
    """Ids of everyone below `manager` in the org chart (transitively)."""
    rows = session.execute(select(User.id, User.manager_id)).all()
    children: dict[int, list[int]] = {}
    for uid, mid in rows:
        if mid is not None:
            children.setdefault(mid, []).append(uid)
    result, todo = set(), [manager.id]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in result:
                result.add(child)
                todo.append(child)
    return result


@dataclass
class LaneOwners:
    users: list[User]
    note: str | None = None  # why the owners are not the lane's usual ones


def resolve_lane(session, lanes: dict, lane: str | None, subject: User, *, decides: bool) -> LaneOwners:
    """Who owns a task in `lane` for an instance about `subject`.

    Separation of duties: nobody decides a task of an instance that is about them (`decides`:
    every user task outside the subject's own lanes). When the subject is the only holder of the
    role, the next person up their manager chain takes over.
    """
    rule = lanes.get(lane or "")
    if rule is None:
        return _fallback(session, f"lane {lane!r} has no owner rule")
    if rule.get("relation") == "subject":
        return LaneOwners([subject])
    if rule.get("relation") == "manager":
        managers = [m for m in manager_chain(session, subject) if m.active]
        level = int(rule.get("levels", 1))
        if len(managers) < level:
            return _fallback(session, f"{subject.username} has no active manager{' ' + str(level) + ' levels up' if level > 1 else ''}")
        return LaneOwners([managers[level - 1]])
    role = rule.get("role")
    if not role:
        return _fallback(session, f"lane {lane!r} names neither a relation nor a role")
    region_id = subject.region_id if rule.get("scope") == "region" else None
    owners = users_with_role(session, role, region_id)
    if decides:
        owners = [u for u in owners if u.id != subject.id]
        if not owners:
            manager = first_active_manager(session, subject)
            if manager is not None:
                return LaneOwners([manager], f"no {role} other than {subject.username}; routed to {manager.username}")
    if not owners:
        return _fallback(session, f"nobody holds role {role!r}")
    return LaneOwners(owners)


def may_take(session, lanes: dict, user: User | None, subject: User, lane: str | None) -> str | None:
    """Why `user` may not be given a task in `lane` of an instance about `subject` by transfer or
    add-signer (None: they may). Separation of duties: never the subject, an inactive person or an
    administrator; a step outside the subject's own lanes goes only to someone who could decide
    such steps — a holder of a role some lane names, or one of the subject's managers — never to a
    peer or another region's rep."""
    if user is None:
        return "no such user"
    if not user.active:
        return "this person is not active"
    if ADMIN_ROLE in user.role_names:
        return "administrators do not decide tasks"
    rule = lanes.get(lane or "") or {}
    if rule.get("relation") == "subject":
        return None  # the subject's own step (a revision, a lead's next step) may go to a colleague
    if user.id == subject.id:
        return "nobody approves their own request"
    if any(m.id == user.id for m in manager_chain(session, subject)):
        return None
    lane_roles = {other.get("role") for other in lanes.values() if isinstance(other, dict)}
    if user.role_names & lane_roles:
        return None
    return "this person holds no role that decides this step"


def is_away(user: User, now) -> bool:
    """Out of office at `now` (from <= now < until)."""
    return bool(user.ooo_from and user.ooo_until and user.ooo_from <= now < user.ooo_until)


def stand_in(session, lanes: dict, owners: LaneOwners, subject: User, lane: str | None, now) -> tuple[LaneOwners, User | None]:
    """Owners as of `now`, out of office taken into account: a claim pool skips absent people; a task
    for one absent person goes to their delegate when the delegate may take it (separation of
    duties), else to their manager. Returns (owners, the absent person it is for, or None)."""
    present = [u for u in owners.users if not is_away(u, now)]
    if len(owners.users) != 1:
        return (LaneOwners(present, owners.note) if present else owners), None
    if present:
        return owners, None
    away = owners.users[0]
    delegate = session.get(User, away.ooo_delegate_id) if away.ooo_delegate_id else None
    if delegate is not None and delegate.active and not is_away(delegate, now) \
            and may_take(session, lanes, delegate, subject, lane) is None:
        return LaneOwners([delegate], owners.note), away
    manager = first_active_manager(session, away)
    if manager is not None and manager.id != subject.id:
        return LaneOwners([manager], owners.note), away
    return owners, None


def _fallback(session, reason: str) -> LaneOwners:
    admins = users_with_role(session, ADMIN_ROLE)
    return LaneOwners(admins, f"{reason}; routed to administrators")


def user_dict(user: User) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "roles": sorted(user.role_names), "region": user.region.code if user.region else None,
            "locale": user.locale}
