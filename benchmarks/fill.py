"""Fill a database with many open tasks, fast, with real rows.

A few real instances are made by the engine itself (in this process, on the same database URL the
server uses): expense claims of alice and bob waiting at their manager dave, and a major contract of
carol waiting at legal (a claim pool: grace and the extra legal members this module adds) and at her
manager erin in parallel. Each is then cloned with INSERT ... SELECT into as many instances as
asked: its process_instances row (a fresh id; the SpiffWorkflow state with every task UUID made
unique to the clone, so a cloned task can be opened and completed like any other), its human_tasks
(fresh UUIDs, matching the state), human_task_candidates, instance_participants, history_events and
budget_entries. Creation times are spread one second apart, backwards, so the inbox orders real-looking
rows.

Not cloned, on purpose: notifications and the mail outbox (the background worker would mail them),
timers (every clone's deadline timer would fall due at the same moment) and attachments (the clones
name their template's invoice). A cloned task with a deadline is marked as already reminded and
already told it is overdue, as an old backlog would be: the worker's reminder pass finds nothing to
send instead of writing thousands of notifications in the middle of a timed run.

The shape (for --open-tasks N, --manager-share S): dave holds round(N*S) open tasks; the rest are
split evenly between legal pool tasks (assignee NULL, a candidate row per legal member) and erin's
parallel contract reviews. Filling is idempotent-ish: it counts what is there and adds only what is
missing.
"""
from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass

from sqlalchemy import inspect, text

POOL_ROLE = "legal"
POOL_MEMBER = "grace"  # the demo's legal member, whose inbox the benchmark times
MANAGER = "dave"  # sales manager of alice and bob
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TOKEN = "~IID~TOKEN~~"  # 12 characters, never in a state: replaced by the clone's id in hex
CHUNK = 20000  # instances per INSERT ... SELECT


@dataclass
class Shape:
    total: int
    manager: int  # open tasks assigned to dave
    pool: int  # open legal pool tasks (grace a candidate); as many erin tasks come with them

    @classmethod
    def of(cls, total: int, manager_share: float) -> "Shape":
        manager = round(total * manager_share)
        return cls(total, manager, max(0, (total - manager) // 2))


def counts(db) -> dict:
    """Open tasks: in total, dave's, and the legal pool's (unassigned, grace a candidate)."""
    with db.read() as s:
        total = s.execute(text("SELECT count(*) FROM human_tasks WHERE status = 'open'")).scalar()
        manager = s.execute(text(
            "SELECT count(*) FROM human_tasks h JOIN users u ON u.id = h.assignee_id "
            "WHERE u.username = :u AND h.status = 'open'"), {"u": MANAGER}).scalar()
        pool = s.execute(text(
            "SELECT count(*) FROM human_tasks h JOIN human_task_candidates c ON c.task_id = h.id "
            "JOIN users u ON u.id = c.user_id WHERE u.username = :u AND h.assignee_id IS NULL "
            "AND h.status = 'open'"), {"u": POOL_MEMBER}).scalar()
    return {"total": total, "manager": manager, "pool": pool}


def open_engine(url: str, instance_dir: str):
    """An Engine on `url`, migrated, deployed and (when empty) seeded with the demo organisation,
    attachments in the instance folder's files/ (where the server keeps them)."""
    from pathlib import Path

    from engine.attachments import Storage
    from engine.db import Database
    from engine.runtime import Engine
    eng = Engine(Database(url))
    eng.setup()
    eng.seed_demo(only_if_empty=True)
    eng.storage = Storage("file://" + str(Path(instance_dir).resolve() / "files"))
    return eng


def ensure_pool_members(eng, members: int) -> list[str]:
    """The legal role held by `members` people: grace and legal2, legal3, ... (made if missing)."""
    from engine.errors import ValidationFailed
    names = [POOL_MEMBER] + [f"legal{i}" for i in range(2, members + 1)]
    for i, name in enumerate(names[1:], start=2):
        try:
            eng.create_user(None, {"username": name, "display_name": f"Legal {i} 法务{i}", "roles": [POOL_ROLE],
                                   "email": None, "region": None, "manager": "judy"}, source="cli")
        except ValidationFailed as exc:
            if "username" not in exc.errors:  # exists already: fine
                raise
    return names


def _claim(eng, user: str, i: int) -> int:
    invoice = eng.upload(user, io.BytesIO(PDF), f"invoice-{i}.pdf")["id"]
    data = {"category": ["travel", "communication", "other"][i % 3], "amount": 1 + i % 5,
            # a year of its own: the clones' reservations never touch the budgets the timed claims use
            "incurred_on": f"2024-{1 + i % 12:02d}-10", "description": f"backlog claim {i} 积压报销",
            "invoices": [invoice]}
    inst = eng.start("expense_approval", user, data)
    assert [t["assignee"] for t in inst["tasks"]] == [MANAGER], inst["tasks"]
    return inst["id"]


def _contract(eng, i: int) -> int:
    data = {"customer": f"Backlog customer {i} 客户", "amount": 600000 + i, "payment_terms": "standard",
            "customer_has_credit_record": True, "summary": f"major contract {i} 重大合同"}
    inst = eng.start("contract_review", "carol", data)
    lanes = sorted(t["lane"] for t in inst["tasks"])
    assert lanes == ["Legal", "Manager"], inst["tasks"]
    return inst["id"]


class Cloner:
    """INSERT ... SELECT clones of one instance and its rows, for SQLite and PostgreSQL."""

    def __init__(self, db):
        self.db = db
        self.pg = not db.is_sqlite
        insp = inspect(db.write_engine)
        self.columns = {t: [c["name"] for c in insp.get_columns(t)] for t in (
            "process_instances", "human_tasks", "human_task_candidates", "instance_participants",
            "history_events", "budget_entries")}

    # dialect pieces -----------------------------------------------------------------------
    def hex12(self, expr: str) -> str:
        return f"lpad(to_hex({expr}), 12, '0')" if self.pg else f"printf('%012x', {expr})"

    def earlier(self, column: str, seconds: str) -> str:
        """`column` moved `seconds` (an SQL expression) back; NULL stays NULL."""
        if self.pg:
            return f"({column} - ({seconds}) * interval '1 second')"
        # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff': shift the seconds, keep the microseconds
        return (f"(CASE WHEN {column} IS NULL THEN NULL ELSE strftime('%Y-%m-%d %H:%M:%S', {column}, "
                f"'-' || ({seconds}) || ' seconds') || substr({column}, 20) END)")

    @staticmethod
    def numbers(count_param: str = ":count") -> str:
        return (f"WITH RECURSIVE nums(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM nums WHERE n < {count_param}) ")

    # the clone --------------------------------------------------------------------------------
    def clone(self, template_id: int, copies: int, seconds_offset: int) -> None:
        """`copies` clones of instance `template_id`, created 1 s apart from `seconds_offset` s back."""
        with self.db.write() as s:
            state = s.execute(text("SELECT state FROM process_instances WHERE id = :id"), {"id": template_id}).scalar()
            task_ids = [r[0] for r in s.execute(text("SELECT id FROM human_tasks WHERE instance_id = :id"),
                                                {"id": template_id})]
        assert TOKEN not in state
        prefixes: dict[str, str] = {}
        for found in UUID_RE.findall(state) + task_ids:
            if found not in prefixes:
                # version 4, variant 8: still a UUID; the last group is the clone's instance id
                prefixes[found] = f"{len(prefixes):08x}-b3c0-4000-8000-"
        templated = UUID_RE.sub(lambda m: prefixes[m.group(0)] + TOKEN, state)
        done = 0
        while done < copies:
            count = min(CHUNK, copies - done)
            with self.db.write() as s:
                base = s.execute(text("SELECT coalesce(max(id), 0) FROM process_instances")).scalar()
                params = {"tpl": template_id, "count": count, "base": base, "shift": seconds_offset + done}
                self._instances(s, params, templated)
                for old_id in task_ids:
                    self._tasks(s, params, old_id, prefixes[old_id])
                self._simple(s, "instance_participants", params)
                self._simple(s, "history_events", params, times=("at",))
                self._simple(s, "budget_entries", params, times=("created_at",))
                if self.pg:
                    s.execute(text("SELECT setval(pg_get_serial_sequence('process_instances', 'id'), "
                                   "(SELECT max(id) FROM process_instances))"))
            done += count

    def _instances(self, s, params: dict, templated: str) -> None:
        new_id = ":base + n"
        exprs = []
        for c in self.columns["process_instances"]:
            if c == "id":
                exprs.append(new_id)
            elif c == "state":
                exprs.append(f"replace(:state, :token, {self.hex12(new_id)})")
            elif c in ("created_at", "updated_at"):
                exprs.append(self.earlier(f"p.{c}", ":shift + n"))
            else:
                exprs.append(f"p.{c}")
        cols = ", ".join(self.columns["process_instances"])
        s.execute(text(self.numbers() + f"INSERT INTO process_instances ({cols}) SELECT {', '.join(exprs)} "
                       "FROM nums, process_instances p WHERE p.id = :tpl"),
                  {**params, "state": templated, "token": TOKEN})

    def _tasks(self, s, params: dict, old_id: str, prefix: str) -> None:
        new_iid = ":base + n"
        new_task = f"(:prefix || {self.hex12(new_iid)})"
        exprs = []
        for c in self.columns["human_tasks"]:
            if c == "id":
                exprs.append(new_task)
            elif c == "instance_id":
                exprs.append(new_iid)
            elif c in ("created_at", "completed_at"):
                exprs.append(self.earlier(f"t.{c}", ":shift + n"))
            elif c in ("reminded_at", "overdue_notified_at"):  # a backlog's notices went out long ago
                exprs.append(f"(CASE WHEN t.due_at IS NULL THEN t.{c} ELSE coalesce(t.{c}, t.created_at) END)")
            else:
                exprs.append(f"t.{c}")
        cols = ", ".join(self.columns["human_tasks"])
        p = {**params, "old": old_id, "prefix": prefix}
        s.execute(text(self.numbers() + f"INSERT INTO human_tasks ({cols}) SELECT {', '.join(exprs)} "
                       "FROM nums, human_tasks t WHERE t.id = :old"), p)
        ccols = self.columns["human_task_candidates"]
        cexprs = [new_task if c == "task_id" else f"c.{c}" for c in ccols]
        s.execute(text(self.numbers() + f"INSERT INTO human_task_candidates ({', '.join(ccols)}) "
                       f"SELECT {', '.join(cexprs)} FROM nums, human_task_candidates c WHERE c.task_id = :old"), p)

    def _simple(self, s, table: str, params: dict, times: tuple = ()) -> None:
        cols = [c for c in self.columns[table] if c != "id" or table == "instance_participants"]
        exprs = []
        for c in cols:
            if c == "instance_id":
                exprs.append(":base + n")
            elif c in times:
                exprs.append(self.earlier(f"r.{c}", ":shift + n"))
            else:
                exprs.append(f"r.{c}")
        s.execute(text(self.numbers() + f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
                       f"FROM nums, {table} r WHERE r.instance_id = :tpl"), params)


def fill(url: str, instance_dir: str, shape: Shape, pool_members: int = 5, log=print) -> dict:
    """Bring the database to `shape` (at least). Returns what it did: counts before and after, seconds."""
    t0 = time.perf_counter()
    eng = open_engine(url, instance_dir)
    try:
        ensure_pool_members(eng, pool_members)
        before = counts(eng.db)
        need_manager = max(0, shape.manager - before["manager"])
        need_pool = max(0, shape.pool - before["pool"])
        result = {"before": before, "created": {"manager": need_manager, "pool": need_pool}}
        if not (need_manager or need_pool):
            log(f"fill: the database holds {before['total']} open tasks ({before['manager']} at {MANAGER}, "
                f"{before['pool']} in the {POOL_ROLE} pool): nothing to add")
            result.update(after=before, seconds=time.perf_counter() - t0)
            return result
        cloner = Cloner(eng.db)
        offset = before["total"] + 10
        if need_manager:
            templates = [_claim(eng, user, i) for i, user in enumerate(("alice", "bob", "alice", "bob"))]
            need = need_manager - len(templates)
            for k, tpl in enumerate(templates):
                share = need // len(templates) + (1 if k < need % len(templates) else 0)
                if share > 0:
                    cloner.clone(tpl, share, offset)
                    offset += share
        if need_pool:
            tpl = _contract(eng, 0)
            if need_pool > 1:
                cloner.clone(tpl, need_pool - 1, offset)
        if not eng.db.is_sqlite:  # what autovacuum would soon do: the planner sees the new sizes
            with eng.db.write_engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(
                    "ANALYZE process_instances, human_tasks, human_task_candidates, instance_participants, "
                    "history_events, budget_entries"))
        after = counts(eng.db)
        seconds = time.perf_counter() - t0
        log(f"fill: {before['total']} -> {after['total']} open tasks ({after['manager']} at {MANAGER}, "
            f"{after['pool']} in the {POOL_ROLE} pool of {pool_members}) in {seconds:.1f} s")
        result.update(after=after, seconds=seconds)
        return result
    finally:
        eng.db.dispose()
