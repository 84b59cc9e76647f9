"""The benchmarks' own machinery, checked on tiny sizes (never timed: benchmarks are not tests).
The statement counter sees every statement of a completion and nothing outside it; the fast fill
clones real rows that the engine can open and complete like any other."""
from __future__ import annotations

from sqlalchemy import text

from benchmarks import fill as filling
from benchmarks.inprocess import StatementCounter
from tests.helpers import APPROVE, CLAIM, invoiced


def test_the_statement_counter_counts_one_completion_and_nothing_else(engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    counter = StatementCounter(engine.db)
    result, statements = counter.measure(engine.complete, inst["tasks"][0]["id"], "dave", APPROVE)
    assert [t["name"] for t in result["tasks"]] == ["finance_approval"]
    sql = [line for kind, line in statements if kind == "sql"]
    tx = [line for kind, line in statements if kind == "tx"]
    assert tx[0].startswith("BEGIN") and tx[-1] == "COMMIT"
    assert any(line.startswith("UPDATE process_instances") for line in sql)
    assert any(line.startswith("INSERT INTO human_tasks") for line in sql)
    assert not any(line.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK") for line in sql)
    engine.tasks("heidi")  # outside measure: not counted
    assert counter.statements == statements


def test_the_fill_clones_instances_the_engine_can_complete(engine, tmp_path):
    shape = filling.Shape(total=0, manager=12, pool=5)
    done = filling.fill(engine.db.url, str(tmp_path), shape, pool_members=3, log=lambda _m: None)
    after = filling.counts(engine.db)
    assert after["manager"] >= 12 and after["pool"] >= 5 and done["after"] == after
    assert after["total"] == after["manager"] + 2 * after["pool"]  # each contract: legal pool ∥ erin
    again = filling.fill(engine.db.url, str(tmp_path), shape, pool_members=3, log=lambda _m: None)
    assert again["created"] == {"manager": 0, "pool": 0} and filling.counts(engine.db) == after

    with engine.db.read() as s:  # every clone's state names its own open task ids, unique across clones
        states = dict(s.execute(text("SELECT id, state FROM process_instances")).all())
        rows = s.execute(text("SELECT id, instance_id, status FROM human_tasks")).all()
    assert len({r.id for r in rows}) == len(rows)
    assert all(r.id in states[r.instance_id] for r in rows if r.status == "open")

    oldest = engine.tasks("dave", limit=2)  # a clone (created before its template), then the next
    assert oldest[0]["created_at"] < oldest[1]["created_at"]
    out = engine.complete(oldest[0]["id"], "dave", APPROVE)
    assert [(t["name"], t["assignee"]) for t in out["tasks"]] == [("finance_approval", "heidi")]
    out = engine.complete(out["tasks"][0]["id"], "heidi", APPROVE)
    assert out["instance"]["data"]["outcome"] == "approved"

    pool = engine.tasks("legal3", limit=1)[0]  # a member of the pool may complete it unclaimed
    assert pool["assignee"] is None and pool["lane"] == "Legal"
    out = engine.complete(pool["id"], "legal3", APPROVE)
    assert [t["assignee"] for t in out["tasks"]] == ["erin"]

