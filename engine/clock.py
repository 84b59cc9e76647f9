"""The engine's notion of "now".

`salesflow timers run --at T` must make SpiffWorkflow's timers see T. SpiffWorkflow
reads `datetime.now(timezone.utc)` inside its timer module, so that module gets a
datetime subclass whose now() honours the context variable set here. Everything
else in the engine asks `clock.now()`.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer

_override: ContextVar[datetime | None] = ContextVar("salesflow_now", default=None)


def now() -> datetime:
    value = _override.get()
    return value if value is not None else datetime.now(timezone.utc)


@contextmanager
def frozen(at: datetime | None):
    """Within the block, now() is `at` (an aware datetime); None leaves the real clock."""
    if at is None:
        yield
        return
    if at.tzinfo is None:
        raise ValueError("frozen() needs an aware datetime")
    token = _override.set(at.astimezone(timezone.utc))
    try:
        yield
    finally:
        _override.reset(token)


class _EngineDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        value = _override.get()
        if value is None:
            return datetime.now(tz)
        return value.astimezone(tz) if tz is not None else value.astimezone().replace(tzinfo=None)


_spiff_timer.datetime = _EngineDatetime
