"""engine/access.py on its own: who may see an instance (the same rule in Python and in SQL), who
may act on a task and what everyone else is told (404 / 409 / 403), who may start a process."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from engine import access
from engine.errors import Conflict, Forbidden, NotFound, Unauthorized
from engine.models import ProcessInstance, User
from engine.runner import task_row
from tests.helpers import APPROVE, BIG, CLAIM, by_name, invoiced

EVERYONE = ["admin", "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "oscar"]


def user(s, name):
    return s.scalar(select(User).where(User.username == name))


def who_sees(engine, instance_id) -> tuple[list[str], list[str]]:
    """(by can_see, by visible_filter): both must name the same people."""
    with engine.db.read() as s:
        inst = s.get(ProcessInstance, instance_id)
        by_python = [n for n in EVERYONE if access.can_see(s, inst, user(s, n))]
        by_sql = [n for n in EVERYONE if s.scalar(select(ProcessInstance.id).where(
            ProcessInstance.id == instance_id, access.visible_filter(s, user(s, n)))) is not None]
    return by_python, by_sql


def test_who_sees_an_instance_participants_managers_above_and_administrators(engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    assert who_sees(engine, inst["id"]) == (["admin", "alice", "dave", "frank", "judy"],) * 2
    engine.copy(inst["id"], "alice", ["grace"])  # copied: a participant
    assert who_sees(engine, inst["id"])[0] == ["admin", "alice", "dave", "frank", "grace", "judy"]
    assert who_sees(engine, inst["id"])[1] == who_sees(engine, inst["id"])[0]
    # a lead started by dave for alice: the starter's and the subject's managers
    lead = engine.start("lead_to_aftersales", "dave", {"company": "华东机电", "contact": "王经理", "source": "web",
                                                       "rep": "alice"})
    assert who_sees(engine, lead["id"]) == (["admin", "alice", "dave", "frank", "judy"],) * 2
    # erin's claim: nobody of the east region, nor the other staff
    north = engine.start("expense_approval", "erin", invoiced(engine, "erin", CLAIM))
    assert who_sees(engine, north["id"]) == (["admin", "erin", "frank", "judy"],) * 2
    # an appraisal HR starts about alice: her managers see it through her alone (ivan is not in their team)
    appraisal = engine.start("performance_appraisal", "ivan", {"employee": "alice", "period": "2026-10",
                                                               "cycle": "monthly", "period_end": "2026-10-31"})
    assert who_sees(engine, appraisal["id"]) == (["admin", "alice", "dave", "frank", "ivan", "judy"],) * 2


def test_who_may_act_and_what_the_others_are_told(engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", BIG))
    task = by_name(inst)["manager_approval"]
    with engine.db.read() as s:
        db_inst, row = s.get(ProcessInstance, inst["id"]), task_row(s, task["id"])
        access.check_can_act(s, db_inst, row, user(s, "dave"))  # the assignee
        assert access.can_act(s, row, user(s, "dave")) and not access.can_act(s, row, user(s, "frank"))
        for name in ("frank", "alice", "admin"):  # they see it, it is not theirs
            with pytest.raises(Forbidden, match="is not yours"):
                access.check_can_act(s, db_inst, row, user(s, name))
        assert access.may_view_task(s, row, db_inst, user(s, "frank"))
        assert not access.may_view_task(s, row, db_inst, user(s, "bob"))
    done = engine.complete(task["id"], "dave", APPROVE)
    with engine.db.read() as s:
        db_inst, row = s.get(ProcessInstance, inst["id"]), task_row(s, task["id"])
        for name in ("dave", "frank"):
            with pytest.raises(Conflict, match="already completed"):
                access.check_can_act(s, db_inst, row, user(s, name))
        with pytest.raises(NotFound, match=f"task {task['id']} not found"):  # closed, and bob may not even see it
            access.check_can_act(s, db_inst, row, user(s, "bob"))
        with pytest.raises(Forbidden, match="is not yours"):  # open, unseen: still "not yours" (the API says 403)
            access.check_can_act(s, db_inst, task_row(s, by_name(done["instance"])["director_approval"]["id"]),
                                 user(s, "bob"))


def test_a_claim_pool_candidates_act_until_one_holds_it(engine):
    with engine.db.write() as s:
        from engine.models import UserRole
        hank = User(username="hank", display_name="Hank", password_hash="-", active=True)
        hank.roles = [UserRole(role="finance")]
        s.add(hank)
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    inst = engine.complete(by_name(inst)["manager_approval"]["id"], "dave", APPROVE)["instance"]
    finance = by_name(inst)["finance_approval"]
    with engine.db.read() as s:
        db_inst, row = s.get(ProcessInstance, inst["id"]), task_row(s, finance["id"])
        for name in ("heidi", "hank"):
            assert access.is_candidate(s, row, user(s, name)) and access.can_act(s, row, user(s, name))
            access.check_can_act(s, db_inst, row, user(s, name))
    engine.claim(finance["id"], "heidi")
    with engine.db.read() as s:
        db_inst, row = s.get(ProcessInstance, inst["id"]), task_row(s, finance["id"])
        assert not access.can_act(s, row, user(s, "hank"))
        with pytest.raises(Forbidden, match="held by heidi"):
            access.check_can_act(s, db_inst, row, user(s, "hank"))


def test_who_may_start_what(engine):
    with engine.db.write() as s:
        parsed = {pid: engine.definitions.get(s, engine.definitions.latest_id(s, pid))
                  for pid in ("expense_approval", "contract_review", "performance_appraisal", "lead_to_aftersales")}

        def starts(name):
            return sorted(pid for pid, p in parsed.items() if access.may_start(s, p, user(s, name)))
        assert starts("alice") == ["contract_review", "expense_approval", "lead_to_aftersales"]
        assert starts("dave") == ["expense_approval", "lead_to_aftersales"]
        assert starts("ivan") == ["expense_approval", "performance_appraisal"]
        assert starts("judy") == []  # no manager: nobody to approve her claim
        from types import SimpleNamespace
        assert access.may_start(s, SimpleNamespace(catalog={}), user(s, "judy"))  # no rule: anyone
        user(s, "dave").active = False
        user(s, "frank").active = False
        user(s, "judy").active = False
        assert starts("alice") == []  # requires an active manager up the chain
        s.rollback()


def test_the_actor_is_known_and_active(engine):
    with engine.db.write() as s:
        assert access.actor(s, "alice").username == "alice"
        with pytest.raises(Unauthorized):
            access.actor(s, "nobody")
        user(s, "bob").active = False
        with pytest.raises(Unauthorized, match="inactive"):
            access.actor(s, "bob")
