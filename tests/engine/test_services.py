"""engine/services.py on its own: the budget left for a claim (per region, category and month; the
month's own budget before the standing one; other claims' spending and reservations, never the
claim's own), reserve / consume / release, the generic record operation, the previous appraisal
grade, and how `Services.call` reports what the process got wrong."""
from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from engine import services
from engine.errors import ProcessError
from engine.models import Budget, BudgetEntry, ProcessInstance, Region
from tests.helpers import APPROVE, CLAIM, by_name, names, invoiced

SVC = services.Services()


def cmd_for(session, instance_id: int):
    """What an operation sees of its command: the session and the instance."""
    return SimpleNamespace(session=session, instance=SimpleNamespace(id=instance_id))


def entries(engine):
    with engine.db.read() as s:
        return sorted((s.get(Region, e.region_id).code, e.category, e.period, e.amount, e.instance_id, e.kind)
                      for e in s.scalars(select(BudgetEntry)))


def remaining(engine, instance_id, region="east", category="travel", incurred_on="2026-11-10"):
    with engine.db.write() as s:
        return SVC.op_budget_remaining(cmd_for(s, instance_id), region, category, incurred_on)


@pytest.fixture
def claims(engine):
    """A ¥9,000 travel claim of carol (north, November 2026) in flight, and an east claim of alice."""
    north = engine.start("expense_approval", "carol", invoiced(engine, "carol", {**CLAIM, "amount": 9000}))
    east = engine.start("expense_approval", "alice", invoiced(engine, "alice", {**CLAIM, "amount": 100}))
    return north["id"], east["id"]


def test_what_other_regions_hold_never_counts(engine, claims):
    north, east = claims
    assert entries(engine) == [("east", "travel", "2026-11", Decimal("100.00"), east, "reserved"),
                               ("north", "travel", "2026-11", Decimal("9000.00"), north, "reserved")]
    assert remaining(engine, east) == 10000.0  # its own reservation is not held against it
    assert remaining(engine, north, "north") == 10000.0
    assert remaining(engine, east, "north") == 1000.0  # carol's reservation, seen from another claim
    assert remaining(engine, north) == 9900.0  # alice's, from another claim


def test_a_claim_after_another_regions_big_one_needs_no_special_approval(engine, claims):
    inst = engine.start("expense_approval", "bob", invoiced(engine, "bob", {**CLAIM, "amount": 8000}))
    inst = engine.complete(by_name(inst)["manager_approval"]["id"], "dave", APPROVE)["instance"]
    assert names(inst) == ["finance_approval"]  # east: 10,000 − 100 reserved ≥ 8,000; north's 9,000 is not ours


def test_categories_and_months_are_separate_and_a_months_own_budget_comes_first(engine, claims):
    north, east = claims
    assert remaining(engine, north, category="marketing") == 10000.0
    assert remaining(engine, north, incurred_on="2026-12-01") == 10000.0
    with engine.db.write() as s:
        region = s.scalar(select(Region).where(Region.code == "east"))
        s.add(Budget(region_id=region.id, category="travel", period="2026-11", amount=Decimal("500")))
    assert remaining(engine, north) == 400.0  # November's own 500 − alice's 100, not the standing 10,000
    assert remaining(engine, north, incurred_on="2026-10-31") == 10000.0
    with engine.db.write() as s:  # no budget at all for a category: nothing left
        s.execute(Budget.__table__.delete().where(Budget.category == "other"))
    assert remaining(engine, north, category="other") == 0.0


def test_reserve_replaces_the_claims_reservation_and_consume_turns_it_into_spending(engine, claims):
    north, east = claims
    with engine.db.write() as s:
        assert SVC.op_budget_reserve(cmd_for(s, east), "east", "travel", "2026-11-10", 700) == 10000.0
        assert SVC.op_budget_reserve(cmd_for(s, north), "east", "travel", "2026-11-10", 1) == 9300.0  # sees east's 700
        assert SVC.op_budget_reserve(cmd_for(s, north), "north", "travel", "2026-11-10", 9000) == 10000.0
    assert [e for e in entries(engine) if e[4] == east] == [("east", "travel", "2026-11", Decimal("700.00"), east, "reserved")]
    bob = engine.start("expense_approval", "bob", invoiced(engine, "bob", {**CLAIM, "amount": 100}))["id"]  # another east claim in flight
    with engine.db.write() as s:
        booking = SVC.op_budget_consume(cmd_for(s, east), "east", "travel", "2026-11-10", 700)
    assert booking == {"booked": True, "period": "2026-11", "remaining": 9200.0}  # 10,000 − bob's 100 − 700
    assert [e for e in entries(engine) if e[4] == east] == [("east", "travel", "2026-11", Decimal("700.00"), east, "spent")]
    assert remaining(engine, north) == 9200.0  # spending counts against the others like a reservation
    with engine.db.write() as s:
        services.release_reservations(cmd_for(s, east))  # spending is never released
        services.release_reservations(cmd_for(s, north))
        services.release_reservations(cmd_for(s, bob))
    assert entries(engine) == [("east", "travel", "2026-11", Decimal("700.00"), east, "spent")]


def test_no_region_no_budget_and_bad_input_is_the_process_error(engine, claims):
    north, east = claims
    with engine.db.write() as s:
        cmd = cmd_for(s, east)
        assert SVC.op_budget_remaining(cmd, None, "travel", "2026-11-10") == 0.0
        assert SVC.op_budget_reserve(cmd, "", "travel", "2026-11-10", 5) == 0.0
        assert SVC.op_budget_consume(cmd, None, "travel", "2026-11-10", 5) == {"booked": False}
        with pytest.raises(ProcessError, match="unknown region 'south'"):
            SVC.op_budget_remaining(cmd, "south", "travel", "2026-11-10")
        with pytest.raises(ProcessError, match="'11/10/2026' is not a date"):
            SVC.op_budget_remaining(cmd, "east", "travel", "11/10/2026")
    assert services._period("2026-02-28T10:00") == "2026-02"


def test_call_refuses_unknown_operations_and_parameters_as_process_errors(engine, claims):
    north, east = claims
    with engine.db.write() as s:
        token = services.current_command.set(cmd_for(s, east))
        try:
            with pytest.raises(ProcessError, match="unknown service operation 'budget.steal'"):
                SVC.call("budget.steal", None, {})
            with pytest.raises(ProcessError, match="service operation 'budget.remaining'"):
                SVC.call("budget.remaining", None, {"region": "east"})
            assert SVC.call("process.record", None, {"value": [1, "two"]}) == [1, "two"]
            assert SVC.call("budget.remaining", None, {"region": "east", "category": "travel",
                                                       "incurred_on": "2026-11-10"}) == 10000.0
        finally:
            services.current_command.reset(token)


def test_previous_grade_is_the_latest_earlier_completed_appraisal_of_the_cycle(engine, claims):
    north, east = claims

    def appraisal(subject_name, cycle, period_end, grade, status="completed", completed="2026-01-01",
                  process_id="performance_appraisal"):
        from datetime import datetime, timezone
        with engine.db.write() as s:
            template = s.get(ProcessInstance, east)
            subject = s.scalar(select(services.User).where(services.User.username == subject_name))
            when = datetime.fromisoformat(completed).replace(tzinfo=timezone.utc)
            row = ProcessInstance(definition_id=template.definition_id, process_id=process_id, status=status,
                                  started_by_id=subject.id, subject_id=subject.id, data={"cycle": cycle, "period_end": period_end,
                                                                                         "grade": grade},
                                  state="", created_at=when, updated_at=when, completed_at=when)
            s.add(row)
            s.flush()
            return row.id

    def previous(employee="alice", cycle="monthly", before=None, me=east):
        with engine.db.read() as s:
            return SVC.op_appraisal_previous_grade(cmd_for(s, me), employee, cycle, before)

    assert previous() is None
    appraisal("alice", "monthly", "2026-08-31", "B")
    latest = appraisal("alice", "monthly", "2026-09-30", "C")
    appraisal("alice", "monthly", "2026-07-31", "A", completed="2026-12-01")  # completed later, earlier period
    appraisal("alice", "quarterly", "2026-09-30", "S")  # another cycle
    appraisal("alice", "monthly", "2026-10-31", "D", status="running")  # not finished
    appraisal("bob", "monthly", "2026-10-31", "D")  # someone else
    appraisal("alice", "monthly", "2026-10-31", "D", process_id="expense_approval")  # another process
    assert previous() == "C"
    assert previous(cycle="quarterly") == "S"
    assert previous(before="2026-09-30") == "B"  # only periods that ended before
    assert previous(before="2026-09-30T00:00:00+08:00") == "B"  # a time: its date counts
    assert previous(me=latest) == "B"  # an instance is never its own predecessor
    assert previous(employee="nobody") is None


def test_consume_counts_the_months_own_budget_and_books_a_claim_that_reserved_nothing(engine, claims):
    north, east = claims
    with engine.db.write() as s:
        region = s.scalar(select(Region).where(Region.code == "east"))
        s.add(Budget(region_id=region.id, category="travel", period="2026-11", amount=Decimal("5000")))
        SVC.op_budget_reserve(cmd_for(s, east), "east", "travel", "2026-11-10", 700)
    with engine.db.write() as s:  # the reservation turns into spending: November's own 5,000 − its 700
        assert SVC.op_budget_consume(cmd_for(s, east), "east", "travel", "2026-11-10", 700)["remaining"] == 4300.0
    with engine.db.write() as s:  # nothing reserved in east (carol's claim released its own): booked new,
        services.release_reservations(cmd_for(s, north))  # counted the same way: 5,000 − 700 − 100
        assert SVC.op_budget_consume(cmd_for(s, north), "east", "travel", "2026-11-10", 100)["remaining"] == 4200.0
    assert sorted(e[5] for e in entries(engine) if e[4] in (north, east)) == ["spent", "spent"]


def test_a_reservation_made_and_released_in_one_command_is_gone(engine, claims):
    """A claim routed and ended in the same command (its reservation made, then released): nothing is
    left reserved — releasing is skipped only when this command released it already."""
    north, east = claims
    with engine.db.write() as s:
        cmd = cmd_for(s, east)
        services.release_reservations(cmd)
        SVC.op_budget_reserve(cmd, "east", "travel", "2026-11-10", 700)
        services.release_reservations(cmd)
    assert [e for e in entries(engine) if e[4] == east] == []


def test_a_booking_when_others_hold_the_whole_budget_is_over_it(engine, claims):
    north, east = claims
    engine.start("expense_approval", "bob", invoiced(engine, "bob", {**CLAIM, "amount": 100}))  # east, ¥100 held
    with engine.db.write() as s:
        region = s.scalar(select(Region).where(Region.code == "east"))
        s.add(Budget(region_id=region.id, category="travel", period="2026-11", amount=Decimal("100")))
    with engine.db.write() as s:  # bob holds all of November's ¥100: nothing was left, alice's ¥100 goes over
        assert SVC.op_budget_consume(cmd_for(s, east), "east", "travel", "2026-11-10", 100)["remaining"] == -100.0
