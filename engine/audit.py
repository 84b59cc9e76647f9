"""The audit trail: who changed what in the organisation, the budgets and the definitions, when,
before -> after. Written in the transaction of the change itself."""
from __future__ import annotations

from sqlalchemy import insert, select

from . import clock
from .models import AuditEvent, User
from .tables import iso, json_safe

_ADD = insert(AuditEvent.__table__)


def record(session, actor: User | None, source: str, entity: str, key: str, action: str,
           before: dict | None = None, after: dict | None = None, at=None) -> None:
    session.execute(_ADD, {"at": at or clock.now(), "actor_id": actor.id if actor is not None else None,
                           "source": source, "entity": entity, "key": str(key)[:120], "action": action,
                           "before": json_safe(before) if before is not None else None,
                           "after": json_safe(after) if after is not None else None})


def changes(before: dict | None, after: dict | None) -> tuple[dict | None, dict | None]:
    """Only the keys that differ, on both sides (a creation or removal keeps its whole side)."""
    if before is None or after is None:
        return before, after
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def events(session, entity: str | None = None, key: str | None = None, limit: int = 200, offset: int = 0) -> list[dict]:
    actor = User.__table__.alias("actor")
    table = AuditEvent.__table__
    stmt = select(table, actor.c.username.label("actor")).outerjoin(actor, actor.c.id == table.c.actor_id)
    if entity:
        stmt = stmt.where(table.c.entity == entity)
    if key:
        stmt = stmt.where(table.c.key == key)
    rows = session.execute(stmt.order_by(table.c.id.desc()).limit(limit).offset(offset)).all()
    return [{"id": r.id, "at": iso(r.at), "actor": r.actor, "source": r.source, "entity": r.entity, "key": r.key,
             "action": r.action, "before": r.before, "after": r.after} for r in rows]
