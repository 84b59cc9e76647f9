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
from .models import Budget, BudgetEntry, Region

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
