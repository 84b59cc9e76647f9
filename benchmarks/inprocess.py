"""What the benchmark measures in its own process, no HTTP: SQL statements per completion (the engine
on a scratch SQLite database with the demo organisation) and the SpiffWorkflow floor (SpiffWorkflow
alone on the same BPMN and the same saved state, spec by reference).

The floor deliberately does not use engine/serializer.py: it is SpiffWorkflow's own serializer with
the same small "spec by reference" converter written out here, so a change to the engine never moves
the floor the engine is compared against.
"""
from __future__ import annotations

import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from uuid import UUID

from sqlalchemy import event, text

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"
APPROVE = {"decision": "approve", "comment": "ok"}
TX_WORDS = ("BEGIN", "COMMIT", "ROLLBACK", "END")


def first_line(statement: str) -> str:
    return next((line.strip() for line in statement.splitlines() if line.strip()), "")


class StatementCounter:
    """Every SQL statement sent on a Database's engines while `counting` is on: (kind, first line),
    kind "tx" for BEGIN / COMMIT / ROLLBACK, "sql" for everything else (SAVEPOINTs included).

    On SQLite the engine sends BEGIN [IMMEDIATE] itself as a statement; the DBAPI's commit and
    rollback are no statements, so transaction ends are taken from SQLAlchemy's commit and rollback
    events. On PostgreSQL the driver begins implicitly: the begin event counts it."""

    def __init__(self, db):
        self.db = db
        self.counting = False
        self.statements: list[tuple[str, str]] = []
        # on PostgreSQL the read engine is the write engine with autocommit (it runs its listeners)
        engines = [db.engine, db.write_engine] if db.is_sqlite else [db.write_engine]
        for eng in engines:
            event.listen(eng, "before_cursor_execute", self._statement)
            event.listen(eng, "commit", lambda conn: self._tx("COMMIT"))
            event.listen(eng, "rollback", lambda conn: self._tx("ROLLBACK"))
            if not db.is_sqlite:
                event.listen(eng, "begin", lambda conn: self._tx("BEGIN"))

    def _tx(self, word: str) -> None:
        if self.counting:
            self.statements.append(("tx", word))

    def _statement(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not self.counting:
            return
        line = first_line(statement)
        kind = "tx" if line.split(" ", 1)[0].upper() in TX_WORDS else "sql"
        self.statements.append((kind, line))

    def measure(self, fn, *args, **kwargs):
        """Run fn, returning (its result, the statements it sent)."""
        self.statements = []
        self.counting = True
        try:
            result = fn(*args, **kwargs)
        finally:
            self.counting = False
        return result, list(self.statements)


def scratch_engine(folder: Path):
    """An Engine on a new SQLite file in `folder`, deployed, with the demo organisation."""
    from engine.attachments import Storage
    from engine.db import Database
    from engine.demo import seed_demo
    from engine.runtime import Engine
    db = Database(f"sqlite:///{folder / 'scratch.sqlite3'}")
    eng = Engine(db)
    eng.setup()
    with db.write() as session:
        seed_demo(session)
    eng.storage = Storage(f"file://{folder / 'files'}")
    return eng


def start_claim(eng, user: str, i: int) -> dict:
    invoice = eng.upload(user, io.BytesIO(PDF), "invoice.pdf")["id"]
    return eng.start("expense_approval", user, {
        "category": "travel", "amount": 1 + i % 9, "incurred_on": f"2026-{1 + i % 12:02d}-15",
        "description": f"statement count {i}", "invoices": [invoice]})


def count_statements(claims: int = 5, warmup: int = 3) -> dict:
    """Statements of each completion of `claims` expense claims (alice's: dave approves, then
    heidi), on a scratch SQLite engine, after `warmup` claims run through untimed and uncounted."""
    with tempfile.TemporaryDirectory(prefix="salesflow-bench-stmts-") as folder:
        eng = scratch_engine(Path(folder))
        counter = StatementCounter(eng.db)
        per_completion = []
        examples = {}
        for i in range(warmup + claims):
            inst = start_claim(eng, "alice", i)
            while inst["status"] == "running":
                task = inst["tasks"][0]
                result, statements = counter.measure(eng.complete, task["id"], task["assignee"], APPROVE)
                if i >= warmup:
                    sql = [s for k, s in statements if k == "sql"]
                    tx = [s for k, s in statements if k == "tx"]
                    per_completion.append({"task": task["name"], "sql": len(sql), "tx": len(tx)})
                    examples.setdefault(task["name"], statements)
                inst = result["instance"]
            assert inst["data"].get("outcome") == "approved", inst["data"]
        eng.db.dispose()
    sql_counts = [c["sql"] for c in per_completion]
    by_task = {}
    for c in per_completion:
        entry = by_task.setdefault(c["task"], {"sql": [], "tx": []})
        entry["sql"].append(c["sql"])
        entry["tx"].append(c["tx"])
    return {
        "completions": len(per_completion),
        "mean_sql": statistics.mean(sql_counts), "max_sql": max(sql_counts),
        "mean_tx": statistics.mean(c["tx"] for c in per_completion),
        "by_task": {name: {"sql": statistics.mean(v["sql"]), "tx": statistics.mean(v["tx"])}
                    for name, v in by_task.items()},
        "examples": {name: [f"{kind}: {line[:160]}" for kind, line in stmts] for name, stmts in examples.items()},
    }


# ------------------------------------------------------------------ the SpiffWorkflow floor
def _floor_serializer():
    from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
    from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

    class SpecByReference(BpmnWorkflowConverter):
        """The task tree only; the spec is handed in when restoring (the engine's storage format)."""

        def to_dict(self, workflow):
            dct = WorkflowConverter.to_dict(self, workflow)
            dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
            dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
            return dct

        def from_dict(self, dct, spec=None, subprocess_specs=None):
            workflow = self.target_class(spec, subprocess_specs or {}, deserializing=True)
            workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
            workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
            self.set_default_attributes(workflow, dct)
            self.subprocesses_from_dict(dct["subprocesses"], workflow)
            workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
            return workflow

    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = SpecByReference
    return BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(config))


def parse_spec(process_id: str = "expense_approval"):
    """The process's spec parsed once by SpiffWorkflow's own parser from workflows/ (BPMN + every DMN)."""
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(WORKFLOWS / f"{process_id}.bpmn"))
    for dmn in sorted(WORKFLOWS.glob("*.dmn")):
        parser.add_dmn_file(str(dmn))
    return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)


def saved_claim_state() -> tuple[str, str]:
    """A real saved state: the engine's own, of an expense claim waiting at the manager's approval
    (made on a scratch database), and that task's id."""
    with tempfile.TemporaryDirectory(prefix="salesflow-bench-floor-") as folder:
        eng = scratch_engine(Path(folder))
        inst = start_claim(eng, "alice", 0)
        with eng.db.read() as s:
            state = s.execute(text("SELECT state FROM process_instances WHERE id = :id"), {"id": inst["id"]}).scalar()
        eng.db.dispose()
    return state, inst["tasks"][0]["id"]


def spiff_floor(iterations: int = 300, warmup: int = 30) -> dict:
    """Median time of: restore the saved state (spec by reference), complete the manager's ready
    task, run engine steps to the next user task, serialize. SpiffWorkflow alone, same BPMN."""
    from SpiffWorkflow.util.task import TaskState
    serializer = _floor_serializer()
    spec, subprocess_specs = parse_spec()
    state, task_id = saved_claim_state()
    answer = {"manager_review": {**APPROVE, "by": "dave"}}

    def once() -> str:
        dct = json.loads(state, cls=serializer.json_decoder_cls)
        serializer.migrate(dct)
        wf = serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs)
        task = wf.get_task_from_id(UUID(task_id))
        task.data.update(answer)
        task.run()
        wf.do_engine_steps()
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
        return serializer.serialize_json(wf), ready

    _, ready = once()
    names = [t.task_spec.bpmn_id for t in ready]
    assert names == ["finance_approval"], names  # the same step the engine's completion reaches
    times = []
    for i in range(warmup + iterations):
        t0 = time.perf_counter()
        once()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"iterations": iterations, "median_ms": statistics.median(times) * 1000,
            "p95_ms": times[int(len(times) * 0.95) - 1] * 1000, "state_bytes": len(state.encode())}
