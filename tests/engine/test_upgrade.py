"""Migrations 0008 and 0009 on a database that holds work: down to 0007 and up again, nothing is
lost — claim pools keep their candidates (rebuilding human_tasks on SQLite must not cascade), the
inbox totals are counted from what is there, and the triggers work on the upgraded database."""
from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text

from engine.db import MIGRATIONS_DIR
from engine.models import HumanTask, HumanTaskCandidate
from tests.conftest import inbox_counts_drift
from tests.helpers import APPROVE, CLAIM, by_name, invoiced

MAJOR = {"customer": "华东重工 East Heavy Industry", "amount": 600000, "payment_terms": "standard",
         "customer_has_credit_record": True, "summary": "三年供货框架协议"}


def _downgrade(db, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.write_engine.connect() as conn:
        if db.is_sqlite:
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
        if db.is_sqlite:
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _rows(db):
    with db.read() as s:
        return (s.scalar(select(func.count()).select_from(HumanTask)),
                sorted(s.execute(select(HumanTaskCandidate.task_id, HumanTaskCandidate.user_id)).all()))


def test_down_to_0007_and_up_again_keeps_the_work(engine):
    engine.create_user("admin", {"username": "lena", "display_name": "Lena 林法务", "roles": ["legal"],
                                 "password": "salesflow-demo"})
    contract = engine.start("contract_review", "carol", MAJOR)  # legal is a pool of two now
    assert by_name(contract)["legal_review_task"]["assignee"] is None
    claim = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    tasks, candidates = _rows(engine.db)
    assert candidates, "the contract's legal review is a claim pool"

    _downgrade(engine.db, "0007")
    with engine.db.read() as s:
        assert s.execute(text("SELECT count(*) FROM human_task_candidates")).scalar() == len(candidates)
    engine.db.migrate()

    assert _rows(engine.db) == (tasks, candidates)
    assert inbox_counts_drift(engine.db) == []
    with engine.db.read() as s:
        assert s.execute(text("SELECT count(*) FROM human_task_candidates WHERE claimable")).scalar() == len(candidates)
    # the upgraded database works as a new one: counts and routing follow new work
    done = engine.complete(by_name(claim)["manager_approval"]["id"], "dave", APPROVE)
    assert by_name(done["instance"])["finance_approval"]["assignee"] == "heidi"
    engine.claim(by_name(contract)["legal_review_task"]["id"], "grace")
    assert inbox_counts_drift(engine.db) == []
    assert engine.tasks("lena", with_total=True)[1] == 0 and engine.tasks("grace", with_total=True)[1] >= 1
