"""The administrator's read side (people, the org chart, regions, versions, instances in error, the
audit trail) and the budgets overview. Nothing here writes."""
from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from . import access, audit, clock, org
from .commands.admin import region_view, user_view
from .errors import Forbidden, NotFound, ValidationFailed
from .models import Budget, BudgetEntry, HumanTask, ProcessInstance, Region, User, UserRole
from .tables import iso, usernames

CATEGORIES = ("travel", "entertainment", "marketing", "communication", "other")
BUDGET_ROLES = {"finance", "general_manager", "sales_director", org.ADMIN_ROLE}
_TZ = ZoneInfo("Asia/Shanghai")


def users(rt, admin_name: str, q: str | None = None, include_inactive: bool = True) -> list[dict]:
    with rt.db.read() as session:
        access.admin(session, admin_name)
        stmt = select(User).order_by(User.username)
        if q:
            like = f"%{q.strip().lower()}%"
            stmt = stmt.where(or_(func.lower(User.username).like(like), func.lower(User.display_name).like(like),
                                  func.lower(func.coalesce(User.email, "")).like(like)))
        if not include_inactive:
            stmt = stmt.where(User.active.is_(True))
        return [user_view(session, u) for u in session.scalars(stmt)]


def user(rt, admin_name: str, username: str) -> dict:
    with rt.db.read() as session:
        access.admin(session, admin_name)
        found = org.user_by_name(session, username or "")
        if found is None:
            raise NotFound(f"user {username} not found")
        result = user_view(session, found)
        result["open_tasks"] = session.scalar(select(func.count()).select_from(HumanTask).where(
            HumanTask.assignee_id == found.id, HumanTask.status == "open")) or 0
        result["history"] = audit.events(session, "user", found.username, limit=50)
        return result


def org_chart(rt, admin_name: str) -> list[dict]:
    """The org chart as a forest: [{"username", "display_name", "roles", "region", "active", "reports": [...]}]."""
    with rt.db.read() as session:
        access.admin(session, admin_name)
        people = session.scalars(select(User).order_by(User.username)).all()
        nodes = {u.id: {"username": u.username, "display_name": u.display_name, "roles": sorted(u.role_names),
                        "region": u.region.code if u.region else None, "active": bool(u.active), "reports": []}
                 for u in people}
        roots = []
        for u in people:
            parent = nodes.get(u.manager_id)
            (parent["reports"] if parent is not None else roots).append(nodes[u.id])
        return roots


def regions(rt, username: str, *, admin: bool = True) -> list[dict]:
    with rt.db.read() as session:
        (access.admin if admin else access.actor)(session, username)
        counts = dict(session.execute(select(User.region_id, func.count()).where(User.active.is_(True))
                                      .group_by(User.region_id)).all())
        result = []
        for region in session.scalars(select(Region).order_by(Region.code)):
            view = region_view(session, region)
            view["people"] = counts.get(region.id, 0)
            result.append(view)
        return result


def roles(rt, admin_name: str) -> list[dict]:
    with rt.db.read() as session:
        access.admin(session, admin_name)
        counts = dict(session.execute(select(UserRole.role, func.count()).join(User, User.id == UserRole.user_id)
                                      .where(User.active.is_(True)).group_by(UserRole.role)).all())
        return [{"id": role, "name": names, "people": counts.get(role, 0)} for role, names in org.ROLES.items()]


def definitions(rt, admin_name: str) -> list[dict]:
    """Every deployed version with how many instances run on it (running or in error)."""
    with rt.db.read() as session:
        access.admin(session, admin_name)
        running = dict(session.execute(select(ProcessInstance.definition_id, func.count()).where(
            ProcessInstance.status.in_(("running", "error"))).group_by(ProcessInstance.definition_id)).all())
        rows = rt.definitions.versions(session)
        latest = {}
        for row in rows:
            latest[row["process_id"]] = row["version"]
        return [{"process_id": r["process_id"], "version": r["version"], "deployed_at": iso(r["deployed_at"]),
                 "running_instances": running.get(r["id"], 0), "latest": latest[r["process_id"]] == r["version"]}
                for r in rows]


def instances(rt, admin_name: str, status: str | None = "error", limit: int = 200) -> list[dict]:
    from .queries import instance_dict, open_tasks_by_instance
    with rt.db.read() as session:
        access.admin(session, admin_name)
        stmt = select(ProcessInstance).order_by(ProcessInstance.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(ProcessInstance.status == status)
        rows = session.scalars(stmt).all()
        tasks = open_tasks_by_instance(session, [r.id for r in rows])
        names = usernames(session, {r.started_by_id for r in rows} | {r.subject_id for r in rows})
        result = []
        for r in rows:
            item = instance_dict(rt, session, r, with_history=False, tasks=tasks.get(r.id, []), names=names)
            item["error"] = error_text(r.error)
            item["error_detail"] = r.error
            result.append(item)
        return result


def error_text(error: dict | None) -> str | None:
    """What went wrong, where: one line ("... at check_budget, during timer acceptance_deadline")."""
    if not error:
        return None
    where = [f"at {error['where']}"] if error.get("where") else []
    where += [f"during {error['during']}"] if error.get("during") else []
    return error.get("message", "") + (f" ({', '.join(where)})" if where else "")


def audit_events(rt, admin_name: str, entity: str | None = None, key: str | None = None,
                 limit: int = 200, offset: int = 0) -> list[dict]:
    with rt.db.read() as session:
        access.admin(session, admin_name)
        return audit.events(session, entity, key, limit, offset)


# ---------------------------------------------------------------- budgets
def _month(value: str | None) -> str:
    if not value:
        return clock.now().astimezone(_TZ).strftime("%Y-%m")
    if not isinstance(value, str) or len(value) != 7 or value[4] != "-" or not (value[:4] + value[5:]).isdigit() \
            or not 1 <= int(value[5:]) <= 12:
        raise ValidationFailed({"month": "must be a month YYYY-MM"})
    return value



def budget_regions(session, user: User) -> list[Region] | None:
    """The regions whose budgets `user` may see (None: all), or Forbidden."""
    if user.role_names & BUDGET_ROLES:
        return None
    mine = []
    if "sales_manager" in user.role_names and user.region_id is not None:
        mine.append(user.region_id)
    mine += list(session.scalars(select(Region.id).where(Region.manager_id == user.id)))
    if not mine:
        raise Forbidden("budgets are for finance, the general manager, the sales director, "
                        "administrators and each region's manager")
    return list(session.scalars(select(Region).where(Region.id.in_(mine)).order_by(Region.code)))


def budgets(rt, username: str, month: str | None = None, region: str | None = None) -> list[dict]:
    """[{"region", "category", "month", "amount", "reserved", "spent", "remaining"}] for the month:
    the month's own budget (else the standing monthly one), what claims in flight reserve and
    what approved claims spent."""
    period = _month(month)
    with rt.db.read() as session:
        user = access.actor(session, username)
        allowed = budget_regions(session, user)
        found = allowed if allowed is not None else list(session.scalars(select(Region).order_by(Region.code)))
        if region:
            if not any(r.code == region for r in found):
                if allowed is not None and session.scalar(select(Region.id).where(Region.code == region)):
                    raise Forbidden("you may see the budgets of your own region only")
                raise ValidationFailed({"region": f"unknown region {region!r}"})
            found = [r for r in found if r.code == region]
        ids = [r.id for r in found]
        if not ids:
            return []
        amounts: dict = {}
        for region_id, category, p, amount in session.execute(select(
                Budget.region_id, Budget.category, Budget.period, Budget.amount).where(
                Budget.region_id.in_(ids), Budget.period.in_((period, "*")))):
            key = (region_id, category)
            if p == period or key not in amounts:
                amounts[key] = Decimal(str(amount))
        held: dict = {}
        for region_id, category, kind, total in session.execute(select(
                BudgetEntry.region_id, BudgetEntry.category, BudgetEntry.kind, func.sum(BudgetEntry.amount)).where(
                BudgetEntry.region_id.in_(ids), BudgetEntry.period == period).group_by(
                BudgetEntry.region_id, BudgetEntry.category, BudgetEntry.kind)):
            held[(region_id, category, kind)] = Decimal(str(total or 0))
        categories = list(CATEGORIES) + sorted({c for _r, c in amounts} - set(CATEGORIES)
                                               | {c for _r, c, _k in held} - set(CATEGORIES))
        result = []
        for r in found:
            for category in categories:
                amount = amounts.get((r.id, category), Decimal("0"))
                reserved = held.get((r.id, category, "reserved"), Decimal("0"))
                spent = held.get((r.id, category, "spent"), Decimal("0"))
                result.append({"region": r.code, "category": category, "month": period, "amount": float(amount),
                               "reserved": float(reserved), "spent": float(spent),
                               "remaining": float(amount - reserved - spent)})
        return result
