"""Statements on the hot paths, built once (building one costs more than running it on SQLite),
and the small conversions every side shares. Commands and the read side both use these.
Ids arrive parsed: webui/edge.py is the one parser of ids from the outside (instance ids are
ints, task ids strings); an id that names nothing is simply not found."""
from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime, timezone
from operator import attrgetter, itemgetter
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, select, text, update

from . import clock
from .db import json_dumps
from .errors import NotFound
from .models import HistoryEvent, HumanTask, HumanTaskCandidate, Notification, OrgVersion, ProcessInstance, User

INSTANCE_TABLE = ProcessInstance.__table__
INSTANCE = select(INSTANCE_TABLE).where(INSTANCE_TABLE.c.id == bindparam("id"))
# FOR NO KEY UPDATE (PostgreSQL): commands exclude each other on the instance row, while rows that
# merely refer to it (their foreign keys take a key-share lock) are never blocked by it
INSTANCE_FOR_UPDATE = INSTANCE.with_for_update(key_share=True)
INSTANCE_FOR_UPDATE_SKIP_LOCKED = INSTANCE.with_for_update(skip_locked=True, key_share=True)
INSERT_INSTANCE = insert(INSTANCE_TABLE)
UPDATE_INSTANCE = update(INSTANCE_TABLE).where(INSTANCE_TABLE.c.id == bindparam("_id"),
                                               INSTANCE_TABLE.c.lock_version == bindparam("_version"))
TASK_TABLE, USER_TABLE, HISTORY_TABLE = HumanTask.__table__, User.__table__, HistoryEvent.__table__
CANDIDATE_TABLE = HumanTaskCandidate.__table__
TASK_COLUMNS = tuple(column.name for column in TASK_TABLE.columns)
TASK_BY_ID = select(TASK_TABLE).where(TASK_TABLE.c.id == bindparam("id"))
INSTANCE_TASKS = select(TASK_TABLE).where(  # its live tasks, and rows of ids SpiffWorkflow reports ready
    TASK_TABLE.c.instance_id == bindparam("instance_id"),
    TASK_TABLE.c.status.in_(("open", "waiting", "held")) | TASK_TABLE.c.id.in_(bindparam("ids", expanding=True)))
TASKS_WITH_IDS = select(TASK_TABLE).where(TASK_TABLE.c.id.in_(bindparam("ids", expanding=True)))
INSERT_TASK = insert(TASK_TABLE)
UPDATE_TASK = update(TASK_TABLE).where(TASK_TABLE.c.id == bindparam("_id"))
# A command on a task opens with the instance, its live task rows (the task's own row among them,
# whatever its status) and the org token: on SQLite in one statement (the IMMEDIATE transaction is
# the lock); on PostgreSQL the instance row is locked first (FOR UPDATE), then the rows and the
# token are read, as of the lock.
LIVE = ("open", "waiting", "held")
_OWN = TASK_TABLE.alias("own")
_TASK_LABELS = [c.label("t_" + c.name) for c in TASK_TABLE.columns]
ORG_TOKEN_VALUE = select(OrgVersion.token).where(OrgVersion.id == 1).scalar_subquery()
OPEN_BY_TASK = select(INSTANCE_TABLE, ORG_TOKEN_VALUE.label("org_token"), *_TASK_LABELS) \
    .select_from(_OWN) \
    .join(INSTANCE_TABLE, INSTANCE_TABLE.c.id == _OWN.c.instance_id) \
    .join(TASK_TABLE, (TASK_TABLE.c.instance_id == INSTANCE_TABLE.c.id)
          & (TASK_TABLE.c.status.in_(LIVE) | (TASK_TABLE.c.id == _OWN.c.id))) \
    .where(_OWN.c.id == bindparam("task_id"))
INSTANCE_OF_TASK_FOR_UPDATE = select(INSTANCE_TABLE).where(INSTANCE_TABLE.c.id == select(
    TASK_TABLE.c.instance_id).where(TASK_TABLE.c.id == bindparam("task_id")).scalar_subquery()).with_for_update(
    key_share=True)
LIVE_TASKS_AND_TOKEN = select(ORG_TOKEN_VALUE.label("org_token"), *_TASK_LABELS).where(
    TASK_TABLE.c.instance_id == bindparam("instance_id"),
    TASK_TABLE.c.status.in_(LIVE) | (TASK_TABLE.c.id == bindparam("task_id")))
# a step resumed by a return keeps its SpiffWorkflow id: its finished row moves to a fresh id (已办 keeps it)
ARCHIVE_TASK = update(TASK_TABLE).where(TASK_TABLE.c.id == bindparam("task_id")).values(id=bindparam("new_id"))
INSERT_CANDIDATE = insert(CANDIDATE_TABLE)
DELETE_CANDIDATES = delete(CANDIDATE_TABLE).where(CANDIDATE_TABLE.c.task_id == bindparam("task_id"))
IS_CANDIDATE = select(CANDIDATE_TABLE.c.task_id).where(
    CANDIDATE_TABLE.c.task_id == bindparam("task_id"), CANDIDATE_TABLE.c.user_id == bindparam("user_id"))
ADD_HISTORY = insert(HISTORY_TABLE)  # one executemany, whichever keys are None
ADD_NOTIFICATION = insert(Notification.__table__)
# Reads for responses: Core rows (no ORM identity map or object loading), usernames joined in.
ASSIGNEE = USER_TABLE.alias("assignee")
SUBJECT = USER_TABLE.alias("subject")
TASK_ROWS = select(TASK_TABLE, ASSIGNEE.c.username.label("assignee"), SUBJECT.c.username.label("subject"),
                   INSTANCE_TABLE.c.summary_zh, INSTANCE_TABLE.c.summary_en) \
    .outerjoin(ASSIGNEE, ASSIGNEE.c.id == TASK_TABLE.c.assignee_id) \
    .join(INSTANCE_TABLE, INSTANCE_TABLE.c.id == TASK_TABLE.c.instance_id) \
    .join(SUBJECT, SUBJECT.c.id == INSTANCE_TABLE.c.subject_id)
OPEN_TASKS_OF = TASK_ROWS.where(TASK_TABLE.c.instance_id.in_(bindparam("ids", expanding=True)),
                                TASK_TABLE.c.status == "open").order_by(TASK_TABLE.c.created_at)
TASKS_BY_ID = TASK_ROWS.where(TASK_TABLE.c.id.in_(bindparam("ids", expanding=True)))
# a page of tasks (queries.tasks joins it to the page's ids): only the columns of a task object (50
# rows of every column, with their JSON and time conversions, cost more than the query)
_ROW_EXTRAS = TASK_ROWS.selected_columns[len(TASK_TABLE.c):]  # assignee, subject, the summaries
TASK_FIELDS = ("id", "instance_id", "process_id", "name", "title", "title_en", "lane", "status", "due_at", "created_at",
               "completed_at", "is_approval", "parent_id", "assignee", "subject", "summary_zh", "summary_en")
TASK_PAGE = TASK_ROWS.with_only_columns(*(TASK_TABLE.c[name] for name in TASK_FIELDS[:13]), *_ROW_EXTRAS)
# a TASK_ROWS row's TASK_FIELDS, by position (a Row's attributes are far slower to read than its items)
_TASK_ROW_FIELDS = itemgetter(*(list(TASK_ROWS.selected_columns.keys()).index(name) for name in TASK_FIELDS))
# a task's own columns among them, of anything that has them as attributes (a command's TaskRow)
task_columns = attrgetter(*TASK_FIELDS[:13])
ACTOR = USER_TABLE.alias("actor")
HISTORY = select(HISTORY_TABLE.c.at, ACTOR.c.username.label("actor"), HISTORY_TABLE.c.action,
                 HISTORY_TABLE.c.task, HISTORY_TABLE.c.detail) \
    .outerjoin(ACTOR, ACTOR.c.id == HISTORY_TABLE.c.actor_id) \
    .where(HISTORY_TABLE.c.instance_id == bindparam("instance_id")) \
    .order_by(HISTORY_TABLE.c.at, HISTORY_TABLE.c.id)
USERNAMES = select(USER_TABLE.c.id, USER_TABLE.c.username).where(
    USER_TABLE.c.id.in_(bindparam("ids", expanding=True)))


def username(session, user_id: int | None) -> str | None:
    return usernames(session, {user_id}).get(user_id) if user_id is not None else None


def usernames(session, ids) -> dict[int, str]:
    return dict(session.execute(USERNAMES, {"ids": sorted(ids)}).all()) if ids else {}


# the caller's language for what the engine words itself (summaries): set by access.actor per call
current_lang: ContextVar[str] = ContextVar("salesflow_lang", default="zh")
# the language of the page being built, when it is not the user's stored one (the web UI follows the
# browser or the language switch): summaries follow it
page_lang: ContextVar[str | None] = ContextVar("salesflow_page_lang", default=None)


def english() -> bool:
    """Whether what the engine words itself (summaries) is to be in English for this call."""
    return (page_lang.get() or current_lang.get()) == "en"


def summary_of(row) -> str | None:
    return (row.summary_en if english() else row.summary_zh) or row.summary_zh


def task_dict(row) -> dict:
    """The task object of a TASK_ROWS row (a human_tasks row, its assignee's and subject's usernames
    and its instance's summaries joined in)."""
    return task_object(_TASK_ROW_FIELDS(row), clock.now(), english())


def task_object(values: tuple, now: datetime, en: bool) -> dict:
    """The task object of `values`, a task's TASK_FIELDS in their order, then anything (a TASK_PAGE
    row is one: an inbox page unpacks its rows, as reading 17 attributes of each costs more than the
    query)."""
    (tid, instance_id, process_id, name, title, title_en, lane, status, due_at, created_at, completed_at,
     is_approval, parent_id, assignee, subject, summary_zh, summary_en, *_after) = values
    public = _PUBLIC_STATUS.get(status, status)
    result = {
        "id": tid, "instance_id": instance_id, "process_id": process_id, "name": name,
        "title": title, "title_en": title_en, "lane": lane,
        "assignee": assignee, "status": public, "summary": (summary_en if en else summary_zh) or summary_zh,
        "subject": subject, "due_at": iso(due_at), "overdue": bool(public == "open" and due_at and due_at < now),
        "created_at": iso(created_at), "completed_at": iso(completed_at), "is_approval": is_approval,
    }
    if status == "waiting":
        result["waiting_for_signers"] = True
    if parent_id is not None:
        result["signs_for"] = parent_id
    return result


# a step waiting for signers added before it is still open; an approval held for the signers after
# it is completed for its owner (the task object knows open, completed, cancelled)
_PUBLIC_STATUS = {"waiting": "open", "held": "completed"}


# the inbox totals' rows of differences (migration 0010), folded into one row per person: on
# PostgreSQL one statement, so exactly the rows it deleted are summed (a change committed meanwhile
# stays, as its own row, for the next pass); on SQLite the writer holds the database for both
_FOLD_PG = """WITH gone AS (
    DELETE FROM inbox_counts WHERE user_id IN (SELECT user_id FROM inbox_counts GROUP BY user_id HAVING count(*) > 1)
    RETURNING user_id, assigned, claimable)
  INSERT INTO inbox_counts (user_id, assigned, claimable)
  SELECT user_id, sum(assigned), sum(claimable) FROM gone GROUP BY user_id"""
_ANY_TO_FOLD = "SELECT user_id FROM inbox_counts GROUP BY user_id HAVING count(*) > 1 LIMIT 1"
_FOLD_SQLITE = ("""CREATE TEMP TABLE IF NOT EXISTS inbox_folded (user_id INTEGER, assigned INTEGER, claimable INTEGER)""",
                """DELETE FROM temp.inbox_folded""",
                """INSERT INTO temp.inbox_folded SELECT user_id, sum(assigned), sum(claimable) FROM inbox_counts
                   GROUP BY user_id HAVING count(*) > 1""",
                """DELETE FROM inbox_counts WHERE user_id IN (SELECT user_id FROM temp.inbox_folded)""",
                """INSERT INTO inbox_counts (user_id, assigned, claimable) SELECT user_id, assigned, claimable
                   FROM temp.inbox_folded""")


def compact_inbox_counts(db) -> int:
    """Fold each person's inbox-total rows into one (the background worker's every pass). Returns
    how many people's rows were folded."""
    with db.read() as session:  # an idle instance takes no write lock for this
        if session.connection().execute(text(_ANY_TO_FOLD)).first() is None:
            return 0
    with db.write() as session:
        conn = session.connection()
        if db.is_sqlite:
            for statement in _FOLD_SQLITE:
                conn.exec_driver_sql(statement)
            return conn.exec_driver_sql("SELECT count(*) FROM temp.inbox_folded").scalar()
        return conn.execute(text(_FOLD_PG)).rowcount


def iso(value: datetime | None) -> str | None:
    if not value:
        return None
    # what the columns read is UTC already (models.UTCDateTime): converting it again costs more than writing it
    return value.isoformat() if value.tzinfo is timezone.utc else value.astimezone(timezone.utc).isoformat()


def history_event(at: datetime, actor: str | None, action: str, task: str | None, detail) -> tuple:
    """A history event as commands keep it: its time in UTC, the detail as the JSON column stores it
    (so it reads back as a read of the row would give it, and nobody can change it in place)."""
    return (at.astimezone(timezone.utc), actor, action, task, json_dumps(detail))


def is_uuid(value) -> bool:
    try:
        UUID(str(value))
        return True
    except ValueError:
        return False


def instance_id(value) -> int:
    """An instance id handed to the engine directly (the CLI, other engine code): anything that is
    not a plain id in range is not found. Requests are checked before, by webui/edge.py."""
    text_value = str(value)
    if not (text_value.isascii() and text_value.isdigit()) or not 1 <= int(text_value) <= 2 ** 31 - 1:
        raise NotFound(f"instance {value} not found")
    return int(text_value)


def json_safe(value):
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
