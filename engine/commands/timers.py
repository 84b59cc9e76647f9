"""The system's own verb: fire due timers, each instance in its own transaction."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from .. import clock
from ..errors import ProcessError
from ..models import ProcessInstance, Timer
from ..runner import Command
from ..tables import iso

log = logging.getLogger("salesflow.engine")


def fire_due_timers(rt, at: datetime | None = None, limit: int = 1000) -> list[dict]:
    """Fire every timer due at or before `at`, each in its own transaction. Safe to run concurrently."""
    at = at or clock.now()
    with rt.db.read() as session:
        # an instance in error keeps its timers waiting: an administrator's retry fires them
        due = session.execute(select(Timer.id, Timer.instance_id, Timer.name).join(
            ProcessInstance, ProcessInstance.id == Timer.instance_id).where(
            Timer.status == "waiting", Timer.due_at <= at, ProcessInstance.status != "error")
            .order_by(Timer.due_at).limit(limit)).all()
    fired = []
    for timer_id, instance_id, timer_name in due:
        try:
            result = _fire_one(rt, timer_id, instance_id, at)
        except ProcessError as exc:  # the process's own error: reported, and the batch goes on
            log.error("timer %s of instance %s failed: %s", timer_id, instance_id, exc)
            fired.append({"timer": timer_id, "instance_id": instance_id, "error": exc.message})
            from .operations import mark_error
            mark_error(rt, instance_id, exc, at, f"timer {timer_name}")
            continue
        except Exception as exc:  # a bug or a database error: logged with its traceback, the batch goes on
            log.exception("timer %s of instance %s failed", timer_id, instance_id)
            fired.append({"timer": timer_id, "instance_id": instance_id,
                          "error": f"{exc.__class__.__name__}: {exc}"})
            continue
        if result:
            fired.append(result)
    return fired


def _fire_one(rt, timer_id: str, instance_id: int, at: datetime) -> dict | None:
    """Lock order as in every command: the instance first, then its rows (no deadlock with a user).
    On PostgreSQL an instance another worker or a user's command holds is skipped, not waited
    for: whoever holds it fires its due timers (a command fires due timers before acting)."""
    with rt.db.write() as session:
        inst = rt._lock(session, instance_id, skip_locked=True)
        if inst is None:
            return None
        timer = session.scalar(select(Timer).where(Timer.id == timer_id, Timer.status == "waiting")
                               .execution_options(populate_existing=True))
        if timer is None:
            return None  # fired or cancelled meanwhile
        # Spiff compares with "<": a timer due exactly at `at` must fire, so look a microsecond later
        cmd = Command(session, inst, rt.definitions.get(session, inst.definition_id), None,
                      at + timedelta(microseconds=1))
        if inst.status != "running":
            timer.status = "cancelled"
            return None
        wf = rt._load(cmd)
        rt._run(cmd, wf.refresh_timers)
        rt._settle(cmd, wf)
        rt._save(cmd, wf)
        if timer.status != "fired":
            return None
        return {"timer": timer.id, "instance_id": instance_id, "process_id": inst.process_id,
                "name": timer.name, "title": timer.title, "due_at": iso(timer.due_at)}
