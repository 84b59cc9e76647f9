"""The background worker: due timers, reminders, the mail outbox — in a loop.

`salesflow worker` runs it in the foreground (the production way: several of them share the work
safely, timers with SKIP LOCKED on PostgreSQL, mail with leases). `salesflow serve` runs one in a
thread of its own server: with several gunicorn workers, an exclusive lock on a file in the
instance folder lets exactly one of them do the work (another takes over if it dies).
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("salesflow.worker")


def settings_from_env() -> dict:
    return {"smtp_url": os.environ.get("SALESFLOW_SMTP_URL") or None,
            "mail_from": os.environ.get("SALESFLOW_MAIL_FROM") or None,
            "base_url": os.environ.get("SALESFLOW_BASE_URL") or None}


def run_once(engine, settings: dict, report=None) -> dict:
    result = engine.work(**settings)
    if report is not None:
        report(result)
    return result


class BackgroundWorker(threading.Thread):
    """A daemon thread doing the worker's passes every `interval` seconds while it holds `lock_path`."""

    def __init__(self, engine, lock_path: str | os.PathLike, interval: float = 2.0, settings: dict | None = None,
                 report=None):
        super().__init__(name="salesflow-worker", daemon=True)
        self.engine, self.lock_path, self.interval = engine, Path(lock_path), interval
        self.settings = settings if settings is not None else settings_from_env()
        self.report = report
        self.stopped = threading.Event()
        self._lock_file = None

    def holds_lock(self) -> bool:
        if self._lock_file is not None:
            return True
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        log.info("background worker active in process %s", os.getpid())
        return True

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.holds_lock():
                try:
                    run_once(self.engine, self.settings, self.report)
                except Exception:  # keep the worker alive through a database or mail hiccup
                    log.exception("background worker pass failed")
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
