"""Operations that BPMN service tasks call (`spiffworkflow:serviceTaskOperator id=...`).

They run inside the command's transaction, so a failure later in the same command
rolls them back too. Parameters arrive already evaluated from the BPMN expressions.
"""
from __future__ import annotations

from contextvars import ContextVar
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

from . import clock
from .models import Budget, BudgetEntry, ProcessInstance, Region, User

current_command: ContextVar = ContextVar("salesflow_command")


def _period(value) -> str:
    return date.fromisoformat(str(value)[:10]).isoformat()[:7]


def _region(session, code) -> Region:
    region = session.scalar(select(Region).where(Region.code == code))
    if region is None:
        raise ValueError(f"unknown region {code!r}")
    return region


def budget_remaining(session, region_code: str, category: str, period: str) -> Decimal:
    region = _region(session, region_code)
    budget = session.scalar(select(Budget.amount).where(
        Budget.region_id == region.id, Budget.category == category, Budget.period == period))
    if budget is None:  # the standing monthly budget, when no specific one is set for this month
        budget = session.scalar(select(Budget.amount).where(
            Budget.region_id == region.id, Budget.category == category, Budget.period == "*"))
    spent = session.scalar(select(func.coalesce(func.sum(BudgetEntry.amount), 0)).where(
        BudgetEntry.region_id == region.id, BudgetEntry.category == category, BudgetEntry.period == period))
    return Decimal(budget or 0) - Decimal(spent or 0)


class Services:
    def call(self, operation: str, task, params: dict):
        handler = getattr(self, "op_" + operation.replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"unknown service operation {operation!r}")
        return handler(current_command.get(), **params)

    def op_budget_remaining(self, cmd, region, category, incurred_on):
        if not region:
            return 0.0  # no region, no budget: anything spent needs special approval
        return float(budget_remaining(cmd.session, region, category, _period(incurred_on)))

    def op_budget_consume(self, cmd, region, category, incurred_on, amount):
        if not region:
            return {"booked": False}
        reg = _region(cmd.session, region)
        period = _period(incurred_on)
        cmd.session.add(BudgetEntry(region_id=reg.id, category=category, period=period,
                                    amount=Decimal(str(amount)), instance_id=cmd.instance.id,
                                    created_at=clock.now()))
        cmd.session.flush()
        return {"booked": True, "period": period,
                "remaining": float(budget_remaining(cmd.session, region, category, period))}

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
