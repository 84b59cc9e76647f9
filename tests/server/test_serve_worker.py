"""`salesflow serve` keeps its own clock: a due timer fires within seconds with no other command, with one
worker doing the work however many server processes there are; `--no-worker` leaves it to `salesflow worker`."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db import Database
from engine.models import Timer
from engine.runtime import Engine
from tests.helpers import at
from tests.helpers import free_port

Q3 = {"employee": "alice", "period": "2025-Q3", "cycle": "quarterly", "period_end": "2025-09-30"}


def prepared(instance: Path) -> Database:
    """An instance folder whose database holds an appraisal started long ago: its overdue timer is due."""
    db = Database(f"sqlite:///{instance / 'salesflow.sqlite3'}")
    engine = Engine(db)
    engine.setup()
    engine.seed_demo()
    engine.start("performance_appraisal", "ivan", Q3, at=at("2025-09-30T18:00"))
    return db


def timer_states(db: Database) -> list[str]:
    with db.read() as s:
        return sorted(t.status for t in s.scalars(select(Timer)))


def serve(instance: Path, *args):
    env = {**os.environ, "SALESFLOW_INSTANCE_DIR": str(instance), "SALESFLOW_DATABASE_URL": ""}
    env.pop("SALESFLOW_DATABASE_URL")
    return subprocess.Popen([sys.executable, "-m", "webui.cli", "serve", "--port", str(free_port()), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_fires_a_due_timer_within_seconds(tmp_path, workers):
    instance = tmp_path / "instance"
    instance.mkdir()
    db = prepared(instance)
    assert "waiting" in timer_states(db)
    server = serve(instance, "--workers", workers)
    try:
        assert wait_for(lambda: "fired" in timer_states(db), 20), server.stdout and "timer did not fire"
        time.sleep(3)  # several server processes: still exactly one firing
        assert timer_states(db).count("fired") == 1
        assert (instance / "worker.lock").exists()
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert "fired performance_appraisal" in output and "CST" in output, output
    db.dispose()


def test_serve_without_worker_fires_nothing(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    db = prepared(instance)
    server = serve(instance, "--no-worker")
    try:
        assert not wait_for(lambda: "fired" in timer_states(db), 6)
    finally:
        server.terminate()
        server.communicate(timeout=20)
    db.dispose()
