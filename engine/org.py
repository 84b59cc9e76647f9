"""The organisation: people, roles, regions, the manager chain, and who owns a lane."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain as chained

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from .models import OrgVersion, Region, User, UserRole

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
    """The ORM user (to change them); routing and commands read people from the chart instead."""
    return session.scalar(_USER_BY_NAME, {"username": username})


# ------------------------------------------------------------------ the org chart, in memory
@dataclass(frozen=True)
class RegionInfo:
    """A person's region as the chart holds it (what user objects read of it: its code)."""
    code: str


@dataclass(frozen=True, eq=False)
class Person:
    """A user as the org chart holds them: read-only, with the attributes of `User` that routing,
    access and commands read (to change a user, load the ORM `User`)."""
    id: int
    username: str
    display_name: str
    region_id: int | None
    manager_id: int | None
    active: bool
    locale: str | None
    email: str | None
    mail_notifications: bool
    ooo_from: datetime | None
    ooo_until: datetime | None
    ooo_delegate_id: int | None
    role_names: frozenset = frozenset()
    region: RegionInfo | None = None


@dataclass
class Chart:
    """Everyone, their roles, regions and managers, as of one org token. Loaded in three statements
    when the token changes (an administrator's edit, an import, an out-of-office change); every
    command reads the token with its lock, so routing costs no statement at all otherwise."""
    token: str
    people: dict[int, Person]
    by_name: dict[str, Person]
    holders: dict[str, list[Person]] = field(default_factory=dict)  # role -> active holders, by username
    children: dict[int, list[int]] = field(default_factory=dict)  # manager id -> direct reports

    @classmethod
    def load(cls, session, token: str) -> "Chart":
        regions = {r.id: RegionInfo(r.code) for r in session.execute(
            select(Region.__table__.c.id, Region.__table__.c.code))}
        roles: dict[int, set[str]] = {}
        for user_id, role in session.execute(select(UserRole.__table__.c.user_id, UserRole.__table__.c.role)):
            roles.setdefault(user_id, set()).add(role)
        users = User.__table__.c
        people = {}
        for u in session.execute(select(users.id, users.username, users.display_name, users.region_id,
                                        users.manager_id, users.active, users.locale, users.email,
                                        users.mail_notifications, users.ooo_from, users.ooo_until,
                                        users.ooo_delegate_id).order_by(users.username)):
            people[u.id] = Person(**u._mapping, role_names=frozenset(roles.get(u.id, ())),
                                  region=regions.get(u.region_id))
        chart = cls(token, people, {p.username: p for p in people.values()})
        for person in people.values():  # by username already
            if person.active:
                for role in person.role_names:
                    chart.holders.setdefault(role, []).append(person)
            if person.manager_id is not None:
                chart.children.setdefault(person.manager_id, []).append(person.id)
        return chart

    def get(self, user_id: int | None) -> Person | None:
        return self.people.get(user_id)

    def username(self, user_id: int | None) -> str | None:
        person = self.people.get(user_id)
        return person.username if person else None


ORG_TOKEN = select(OrgVersion.token).where(OrgVersion.id == 1)
_CHARTS_GUARD = threading.Lock()


def chart(session, token: str | None = None) -> Chart:
    """The org chart as this transaction sees it. `token`: read with the command's lock already (no
    statement then); else read here. Kept per database (the Database object) for the whole process;
    a transaction that changed the organisation reads its own token, so it sees its own change."""
    if token is None:
        token = session.info.get("org_token")
    if token is None:
        if session.new or session.dirty or session.deleted:  # flushed first (autoflush): its own change counts
            token = session.scalar(ORG_TOKEN)
        else:  # nothing pending (every read): the Core connection, no ORM execution
            token = session.connection().execute(ORG_TOKEN).scalar()
    session.info["org_token"] = token
    db = session.info.get("database")
    held = getattr(db, "org_chart", None) if token is not None else session.info.get("org_chart")
    if held is not None and held.token == token:
        return held
    fresh = Chart.load(session, token)
    if token is None:  # no token row (it was deleted): kept for this transaction only
        session.info["org_chart"] = fresh
    elif db is not None:
        with _CHARTS_GUARD:
            db.org_chart = fresh
    return fresh


@event.listens_for(Session, "after_flush")
def _org_flushed(session, _context) -> None:
    """A flush that wrote people, roles or regions changed the token (triggers): read it again."""
    if any(isinstance(o, (User, UserRole, Region)) for o in chained(session.new, session.dirty, session.deleted)):
        session.info.pop("org_token", None)
        session.info.pop("org_chart", None)


def users_with_role(session, role: str, region_id: int | None = None) -> list[Person]:
    holders = chart(session).holders.get(role, [])
    return list(holders) if region_id is None else [p for p in holders if p.region_id == region_id]


def manager_chain(session, user) -> list[Person]:
    """The user's managers, nearest first (inactive ones included: callers skip them)."""
    people = chart(session).people
    chain, seen, current = [], {user.id}, user
    while current.manager_id is not None and current.manager_id not in seen:
        current = people[current.manager_id]  # the foreign key: always someone
        seen.add(current.id)
        chain.append(current)
    return chain


def first_active_manager(session, user) -> Person | None:
    return next((m for m in manager_chain(session, user) if m.active), None)


def reports_of(session, manager) -> set[int]:
    """Ids of everyone below `manager` in the org chart (transitively)."""
    children = chart(session).children
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
    delegate = chart(session).get(away.ooo_delegate_id)
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
