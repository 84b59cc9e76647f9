"""Helpers the test modules share: sample data, readers of instance objects, counting rows,
editable copies of workflows/, a free port. One place, instead of a copy in every module."""
from __future__ import annotations

import io
import json
import shutil
import socket
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

TZ = ZoneInfo("Asia/Shanghai")
CLAIM = {"category": "travel", "amount": 1200, "incurred_on": "2026-11-10", "description": "拜访客户 client visit"}
APPROVE = {"decision": "approve", "comment": "同意"}
BIG = {**CLAIM, "amount": 25000}  # manager, sales director, general manager (over the ¥10,000 budget), finance


def at(text_value: str) -> datetime:
    """An aware datetime from 'YYYY-MM-DDTHH:MM' (+08:00 unless given)."""
    value = datetime.fromisoformat(text_value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=TZ)
    return value.astimezone(timezone.utc)


# ------------------------------------------------------------------ instance objects (engine or API)
def by_name(inst: dict) -> dict:
    """The instance's open tasks by BPMN id."""
    return {t["name"]: t for t in inst["tasks"]}


def names(inst: dict) -> list[str]:
    return sorted(t["name"] for t in inst["tasks"])


def events(inst: dict, action: str) -> list[dict]:
    """The instance's history entries of one action."""
    return [h for h in inst["history"] if h["action"] == action]


def history(engine, instance_id: int, action: str | None = None) -> list[dict]:
    """The instance's history as the administrator sees it (every entry)."""
    return [e for e in engine.instance(instance_id, "admin")["history"] if action is None or e["action"] == action]


def open_tasks(engine, instance_id: int, user: str = "admin") -> dict:
    return by_name(engine.instance(instance_id, user))


# ------------------------------------------------------------------ the database
def counts(engine, *models) -> tuple:
    """Row counts of the given models' tables (default: instances, tasks, history, budget entries)."""
    from engine.models import BudgetEntry, HistoryEvent, HumanTask, ProcessInstance
    with engine.db.read() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in
                     (models or (ProcessInstance, HumanTask, HistoryEvent, BudgetEntry)))


def everything(db) -> dict:
    """Every row of every table, sorted: two calls compare equal only if nothing at all was written."""
    from engine.models import Base
    with db.read() as s:
        return {t.name: sorted((tuple(map(repr, r)) for r in s.execute(select(t))))
                for t in Base.metadata.sorted_tables}


def user_id(engine, username: str) -> int:
    from engine.models import User
    with engine.db.read() as s:
        return s.scalar(select(User.id).where(User.username == username))


# ------------------------------------------------------------------ workflows a test may edit
def copy_workflows(target: Path) -> Path:
    """A private copy of workflows/ at `target`."""
    from engine.runtime import DEFAULT_WORKFLOWS_DIR
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    return target


def edit(path: Path, old: str, new: str, count: int = -1) -> None:
    """Replace `old` (which must be there) by `new` in a file (every occurrence, or the first `count`)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _without_chinese_messages(node):
    if isinstance(node, dict):
        return {k: _without_chinese_messages(v) for k, v in node.items() if k != "x-error-zh"}
    if isinstance(node, list):
        return [_without_chinese_messages(v) for v in node]
    return node


def without_words(workflows: Path) -> None:
    """A workflows copy as it was before its words were declared: no vocabulary.json, no x-error-zh."""
    (workflows / "vocabulary.json").unlink()
    for form in (workflows / "forms").glob("*.json"):
        schema = json.loads(form.read_text(encoding="utf-8"))
        form.write_text(json.dumps(_without_chinese_messages(schema), ensure_ascii=False, indent=2), encoding="utf-8")


def with_words(workflows: Path) -> None:
    """The words of workflows/ (vocabulary.json, the forms) back into a copy (see without_words)."""
    from engine.runtime import DEFAULT_WORKFLOWS_DIR
    shutil.copy(DEFAULT_WORKFLOWS_DIR / "vocabulary.json", workflows / "vocabulary.json")
    shutil.rmtree(workflows / "forms")
    shutil.copytree(DEFAULT_WORKFLOWS_DIR / "forms", workflows / "forms")


def make_engine(database, workflows: Path):
    """An Engine on `workflows` over an empty migrated database, with the demo organisation."""
    from engine.demo import seed_demo
    from engine.runtime import Engine
    eng = Engine(database, workflows)
    eng.setup()
    with database.write() as session:
        seed_demo(session)
    return eng


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ invoices (expense claims require one)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n"


def invoice(engine, username: str, name: str = "发票.pdf") -> str:
    """Upload a (tiny, real) PDF invoice as `username`; returns its attachment id."""
    return engine.upload(username, io.BytesIO(PDF), name)["id"]


def invoiced(engine, username: str, data: dict) -> dict:
    """An expense claim's data with an invoice of `username`'s attached (expense claims require one)."""
    return {**data, "invoices": data.get("invoices") or [invoice(engine, username)]}
