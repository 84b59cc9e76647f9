"""Operations that BPMN service tasks call (`spiffworkflow:serviceTaskOperator id=...`).

They run inside the command's transaction, so a failure later in the same command
rolls them back too. Parameters arrive already evaluated from the BPMN expressions.
"""
from __future__ import annotations

import inspect
from contextvars import ContextVar
from datetime import date
from decimal import Decimal

from sqlalchemy import Numeric, bindparam, delete, func, insert, select, text

from . import audit, clock
from .errors import ProcessError, ValidationFailed
from .models import Budget, BudgetEntry, ProcessInstance, Region, User, UTCDateTime

current_command: ContextVar = ContextVar("salesflow_command")


def _period(value) -> str:
    try:
        return date.fromisoformat(str(value)[:10]).isoformat()[:7]
    except ValueError:
        raise ProcessError(f"{value!r} is not a date (YYYY-MM-DD)") from None


# The budget statements run on an expense claim's path: Core, built once, one round trip each.
_REGIONS, _BUDGETS, _ENTRIES = Region.__table__, Budget.__table__, BudgetEntry.__table__
# what other claims hold against the budget: their spending and their reservations (a claim's own
# reservation is never counted against itself)
_HELD = select(func.coalesce(func.sum(_ENTRIES.c.amount), 0)).where(
    _ENTRIES.c.region_id == _REGIONS.c.id, _ENTRIES.c.category == bindparam("category"),
    _ENTRIES.c.period == bindparam("period"), _ENTRIES.c.instance_id != bindparam("instance_id")).scalar_subquery()


def _budget_of(period):
    return select(_BUDGETS.c.amount).where(_BUDGETS.c.region_id == _REGIONS.c.id,
                                           _BUDGETS.c.category == bindparam("category"),
                                           _BUDGETS.c.period == period).scalar_subquery()


# the region's id and what is left of its budget: the month's own budget, else the standing
# monthly one (period "*"), minus what other claims spent or reserved
_REMAINING = select(_REGIONS.c.id, func.coalesce(_budget_of(bindparam("period")), _budget_of("*"), 0) - _HELD) \
    .where(_REGIONS.c.code == bindparam("region"))
# on PostgreSQL two claims of one region must not read the budget at once (both would skip the
# special approval): the region row is the lock; SQLite's write transaction already serialises them
# FOR NO KEY UPDATE: it waits for another claim's lock on the region, not for the key-share lock a
# new instance row's reference to the region takes (FOR UPDATE would, and two claims starting in one
# region would deadlock: each holds the key share the other's FOR UPDATE waits for)
_LOCK_REGION = select(_REGIONS.c.id).where(_REGIONS.c.code == bindparam("region")).with_for_update(key_share=True)
_BOOK = insert(_ENTRIES)
_RELEASE = delete(_ENTRIES).where(_ENTRIES.c.instance_id == bindparam("instance_id"), _ENTRIES.c.kind == "reserved")
# approval: the claim's reservation becomes its spending, in place (on the claim's line as it is
# now), and the same statement returns what is left of the budget (the month's own budget, else the
# standing one, minus what other claims spent or reserved, as _REMAINING counts it) — one statement
# instead of a read and a write
_SPEND_RESERVED = text("""
UPDATE budget_entries SET kind = 'spent', amount = :amount, created_at = :created_at, category = :category,
       period = :period, region_id = (SELECT r.id FROM regions r WHERE r.code = :region)
WHERE instance_id = :instance_id AND kind = 'reserved'
RETURNING coalesce(
    (SELECT b.amount FROM budgets b JOIN regions r ON r.id = b.region_id
     WHERE r.code = :region AND b.category = :category AND b.period = :period),
    (SELECT b.amount FROM budgets b JOIN regions r ON r.id = b.region_id
     WHERE r.code = :region AND b.category = :category AND b.period = '*'),
    0) - (SELECT coalesce(sum(o.amount), 0) FROM budget_entries o JOIN regions r ON r.id = o.region_id
          WHERE r.code = :region AND o.category = :category AND o.period = :period
            AND o.instance_id <> :instance_id)""").bindparams(
    bindparam("amount", type_=Numeric(14, 2)), bindparam("created_at", type_=UTCDateTime()))


def _remaining(cmd, region_code: str, category: str, period: str) -> tuple[int, Decimal]:
    """(region id, budget left for this claim) for a region code, category and YYYY-MM period."""
    session = cmd.session
    if session.get_bind().dialect.name != "sqlite":
        session.connection().execute(_LOCK_REGION, {"region": region_code})
    row = session.connection().execute(_REMAINING, {"region": region_code, "category": category, "period": period,
                                       "instance_id": cmd.instance.id}).first()
    if row is None:
        raise ProcessError(f"unknown region {region_code!r}")
    return row[0], Decimal(str(row[1] or 0))


def release_reservations(cmd) -> None:
    """Give back what the instance reserved (reject, withdraw, return to the submitter, any end);
    nothing to do when this command already did, or turned the reservation into spending."""
    if getattr(cmd, "reservation_released", False):
        return
    cmd.session.connection().execute(_RELEASE, {"instance_id": cmd.instance.id})
    cmd.reservation_released = True


class Services:
    def call(self, operation: str, task, params: dict):
        """Run an operation. Process-level failures (an unknown operation or region, parameters the
        operation does not take, data that is not a date) are ProcessError (422, with their cause);
        anything else — a database error, a bug — propagates as what it is (500, logged)."""
        handler = getattr(self, "op_" + operation.replace(".", "_"), None)
        if handler is None:
            raise ProcessError(f"unknown service operation {operation!r}")
        try:
            inspect.signature(handler).bind(None, **params)
        except TypeError as exc:
            raise ProcessError(f"service operation {operation!r}: {exc}") from None
        cmd = current_command.get()
        # no autoflush: operations read tables the command writes directly (budgets), or other
        # instances; this command's own pending changes are written once, when it saves
        with cmd.session.no_autoflush:
            return handler(cmd, **params)

    def op_budget_remaining(self, cmd, region, category, incurred_on):
        """What is left after other claims' spending and reservations (versions before budget.reserve)."""
        if not region:
            return 0.0  # no region, no budget: anything spent needs special approval
        return float(_remaining(cmd, region, category, _period(incurred_on))[1])

    def op_budget_reserve(self, cmd, region, category, incurred_on, amount):
        """Reserve the claim's amount when it is routed; returns what was left before it, so routing
        sees every claim in flight. A resubmission replaces the claim's earlier reservation."""
        if not region:
            return 0.0
        period = _period(incurred_on)
        region_id, remaining = _remaining(cmd, region, category, period)
        release_reservations(cmd)
        cmd.session.connection().execute(_BOOK, {"region_id": region_id, "category": category, "period": period,
                                    "amount": Decimal(str(amount)), "instance_id": cmd.instance.id,
                                    "created_at": clock.now(), "kind": "reserved"})
        cmd.reservation_released = False
        return float(remaining)

    def op_budget_consume(self, cmd, region, category, incurred_on, amount):
        """Approval: the reservation becomes spending."""
        if not region:
            return {"booked": False}
        period = _period(incurred_on)
        booked = Decimal(str(amount))
        now = clock.now()
        spent = None
        if not getattr(cmd, "reservation_released", False):
            if cmd.session.get_bind().dialect.name != "sqlite":
                cmd.session.connection().execute(_LOCK_REGION, {"region": region})  # as _remaining: one claim at a time
            spent = cmd.session.connection().execute(_SPEND_RESERVED, {
                "instance_id": cmd.instance.id, "region": region, "category": category, "period": period,
                "amount": booked, "created_at": now}).first()
        if spent is not None:  # the reservation became the spending; what is left came back with it
            remaining = Decimal(str(spent[0] or 0))
        else:  # nothing reserved (a claim routed before reservations existed): book it new
            region_id, remaining = _remaining(cmd, region, category, period)
            release_reservations(cmd)
            cmd.session.connection().execute(_BOOK, {"region_id": region_id, "category": category, "period": period,
                                        "amount": booked, "instance_id": cmd.instance.id, "created_at": now,
                                        "kind": "spent"})
        cmd.reservation_released = True  # no reservation is left
        return {"booked": True, "period": period, "remaining": float(remaining - booked)}

    # ---------------------------------------------------------------- budget plans
    def op_budget_check_plan(self, cmd, month, lines):
        """A budget plan's lines before they go to the general manager: every region exists, each
        region and category once. Refused with the line named (422). Returns the plan's total."""
        errors, seen = {}, {}
        codes = set(cmd.session.scalars(select(Region.code)))
        total = Decimal("0")
        for index, line in enumerate(lines or []):
            key = (line.get("region"), line.get("category"))
            if line.get("region") not in codes:
                errors[f"lines.{index}.region"] = f"unknown region {line.get('region')!r}"
            if key in seen:
                errors[f"lines.{index}"] = f"line {index + 1} repeats line {seen[key] + 1} ({key[0]}, {key[1]})"
            seen.setdefault(key, index)
            total += Decimal(str(line.get("amount") or 0))
        if errors:
            raise ValidationFailed(errors)
        return float(total)

    def op_budget_apply_plan(self, cmd, month, lines):
        """On approval: each line's amount becomes the budget of its region and category for `month`
        (replacing an earlier amount; spending and reservations stay). Recorded in the audit trail,
        with the approver as actor."""
        session = cmd.session
        period = str(month)
        regions = dict(session.execute(select(Region.code, Region.id)).all())
        table = _BUDGETS
        for line in lines:
            region_id = regions.get(line["region"])
            if region_id is None:
                raise ProcessError(f"unknown region {line['region']!r}")
            amount = Decimal(str(line["amount"])).quantize(Decimal("0.01"))
            current = session.execute(select(table.c.id, table.c.amount).where(
                table.c.region_id == region_id, table.c.category == line["category"],
                table.c.period == period)).first()
            if current is None:
                session.execute(insert(table).values(region_id=region_id, category=line["category"],
                                                     period=period, amount=amount))
                before = None
            else:
                session.execute(table.update().where(table.c.id == current.id).values(amount=amount))
                before = {"amount": float(current.amount)}
            audit.record(session, cmd.actor, "process", "budget", f"{line['region']}/{line['category']}/{period}",
                         "set", before, {"amount": float(amount), "instance_id": cmd.instance.id})
        return {"month": period, "lines": len(lines)}

    # ---------------------------------------------------------------- generic
    def op_process_record(self, cmd, value):
        """Store the value of an expression (the `value` parameter) under the service task's resultVariable.

        For facts a path of the model establishes without a form: e.g. `contract_approved` = True on the
        approval path of contract_review, `appeal_filed_on` = today() when an appeal is registered.
        """
        return value

    # ---------------------------------------------------------------- appraisal
    def op_appraisal_previous_grade(self, cmd, employee, cycle, before=None):
        """Grade of the employee's latest completed performance appraisal of the same cycle, or None.

        Only appraisals of an earlier period count (period_end before `before`, when given); the current
        instance is never its own predecessor. "Latest" is the latest period_end, then the latest completion.
        """
        session = cmd.session
        user = session.scalar(select(User).where(User.username == employee))
        if user is None:
            return None
        before = str(before)[:10] if before else None
        rows = session.scalars(select(ProcessInstance).where(
            ProcessInstance.process_id == "performance_appraisal",
            ProcessInstance.status == "completed",
            ProcessInstance.subject_id == user.id,
            ProcessInstance.id != cmd.instance.id)).all()
        found = []
        for inst in rows:
            data = inst.data or {}
            period_end = str(data.get("period_end") or "")[:10]
            if data.get("cycle") != cycle or not data.get("grade") or (before and period_end >= before):
                continue
            found.append((period_end, inst.completed_at or inst.created_at, inst.id, data["grade"]))
        return max(found)[3] if found else None
