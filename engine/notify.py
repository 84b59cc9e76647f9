"""Notifications: what people are told, in their own language, in the app and by mail.

Commands queue notifications (`Command.notify`); the runner writes them, and one outbox row per
notification for recipients with an address and mail on, in the command's own transaction.
Here: the words (zh / en), the reads (list, mark read), and the worker's passes that are not
commands of an instance — reminders ("falls due tomorrow") and overdue notices.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import bindparam, func, insert, literal_column, select, text, update

from . import access
from .errors import NotFound
from .models import HumanTask, Notification, ProcessInstance, User
from .tables import iso

KINDS = ("task_assigned", "returned", "outcome", "cc", "urge", "mention", "reminder", "overdue", "escalation")

# The words. {process} {id} {task} {actor} {comment} {outcome} {message} are filled in per notification.
TEXTS = {
    "task_assigned": {"zh": "新待办：{process} #{id}「{task}」{via}",
                      "en": "New task: {task} — {process} #{id}{via}"},
    "returned": {"zh": "{process} #{id} 已退回到「{task}」：{comment}",
                 "en": "{process} #{id} was returned to “{task}”: {comment}"},
    "outcome": {"zh": "{process} #{id} 已办结：{outcome}", "en": "{process} #{id} is finished: {outcome}"},
    "cc": {"zh": "{actor}抄送给您：{process} #{id}{comment_tail}", "en": "{actor} copied you on {process} #{id}{comment_tail}"},
    "urge": {"zh": "{actor}催办：{process} #{id}「{task}」{comment_tail}",
             "en": "{actor} asks you to act on {task} — {process} #{id}{comment_tail}"},
    "mention": {"zh": "{actor}在 {process} #{id} 的评论中提到了您：{comment}",
                "en": "{actor} mentioned you in a comment on {process} #{id}: {comment}"},
    "reminder": {"zh": "明天到期：{process} #{id}「{task}」", "en": "Due tomorrow: {task} — {process} #{id}"},
    "overdue": {"zh": "已逾期：{process} #{id}「{task}」", "en": "Overdue: {task} — {process} #{id}"},
    "escalation": {"zh": "{process} #{id}：{message}", "en": "{process} #{id}: {message}"},
}
OUTCOMES = {"approved": {"zh": "已批准", "en": "approved"}, "rejected": {"zh": "已驳回", "en": "rejected"},
            "withdrawn": {"zh": "已撤回", "en": "withdrawn"}, "won": {"zh": "赢单", "en": "won"},
            "lost": {"zh": "丢单", "en": "lost"}}
VIA = {"transferred_by": {"zh": "（{0}转交）", "en": " (transferred by {0})"},
       "added_by": {"zh": "（{0}请您加签）", "en": " ({0} added you as a signer)"},
       "for": {"zh": "（代{0}处理）", "en": " (for {0})"}}

_ADD = insert(Notification.__table__)


def add(session, user_ids, kind: str, instance_id: int | None, task_id: str | None, at: datetime,
        actor_id: int | None = None, **params) -> None:
    """Notifications outside a command (the worker's reminders); the database writes their mail
    (the outbox trigger of migration 0008)."""
    rows = [{"user_id": uid, "kind": kind, "instance_id": instance_id, "task_id": task_id, "at": at,
             "actor_id": actor_id, "params": params, "read_at": None} for uid in dict.fromkeys(user_ids) if uid]
    if not rows:
        return
    session.execute(_ADD, rows)


def describe(rt, session, n, lang: str) -> str:
    """The text of notification `n` in language `lang` ('zh' or 'en')."""
    lang = "en" if lang == "en" else "zh"
    params = dict(n.params or {})
    inst = session.get(ProcessInstance, n.instance_id) if n.instance_id else None
    process, task = "", params.get("task") or ""
    if inst is not None:
        parsed = rt.definitions.get(session, inst.definition_id)
        process = (parsed.catalog.get("name") or {}).get(lang) or inst.process_id
        title = parsed.titles.get(task) if task else None
        task = (title or {}).get(lang) or task
    actor = session.get(User, n.actor_id) if n.actor_id else None
    via = ""
    for key, words in VIA.items():
        if params.get(key):
            via = words[lang].format(_display(session, params[key]))
    comment = params.get("comment") or params.get("text") or ""
    if n.kind == "mention" and params.get("comment_id"):
        from .models import Comment
        row = session.get(Comment, params["comment_id"])
        comment = row.text if row is not None else comment
    outcome = (OUTCOMES.get(params.get("outcome") or "") or {}).get(lang) or params.get("outcome") or ""
    message = params.get("message") or ""
    if " / " in message:  # a BPMN message in both languages, "中文 / English"
        zh, _, en = message.partition(" / ")
        message = en if lang == "en" else zh
    template = TEXTS.get(n.kind, {}).get(lang) or n.kind
    sep = "：" if lang == "zh" else ": "
    return template.format(process=process, id=n.instance_id or "", task=task,
                           actor=actor.display_name if actor else ("系统" if lang == "zh" else "SalesFlow"),
                           comment=_short(comment), comment_tail=(sep + _short(comment)) if comment else "",
                           outcome=outcome, message=message, via=via)


def _short(value: str, limit: int = 140) -> str:
    value = " ".join(str(value).split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _display(session, username: str) -> str:
    user = session.scalar(select(User).where(User.username == username))
    return user.display_name if user else username


def as_dict(rt, session, n, lang: str) -> dict:
    return {"id": n.id, "at": iso(n.at), "kind": n.kind, "text": describe(rt, session, n, lang),
            "instance_id": n.instance_id, "task_id": n.task_id, "read": n.read_at is not None}


# ---------------------------------------------------------------- reads
def notifications(rt, username: str, *, unread: bool = False, limit: int = 100, offset: int = 0,
                  lang: str | None = None) -> list[dict]:
    """Newest first, worded in `lang` (a page's language), else the user's own (zh by default)."""
    with rt.db.read() as session:
        user = access.actor(session, username)
        stmt = select(Notification).where(Notification.user_id == user.id)
        if unread:
            stmt = stmt.where(Notification.read_at.is_(None))
        rows = session.scalars(stmt.order_by(Notification.id.desc()).limit(limit).offset(offset)).all()
        return [as_dict(rt, session, n, lang or user.locale or "zh") for n in rows]


def unread_count(rt, username: str) -> int:
    with rt.db.read() as session:
        user = access.actor(session, username)
        return session.scalar(select(func.count()).select_from(Notification).where(
            Notification.user_id == user.id, Notification.read_at.is_(None)))


def mark_read(rt, username: str, notification_id=None, *, now: datetime) -> int:
    """Mark one notification (or, without an id, all of the user's) read. Returns how many changed."""
    if notification_id is not None:
        return int(not read_one(rt, username, notification_id, now=now)["was_read"])
    with rt.db.write() as session:
        user = access.actor(session, username)
        return session.execute(update(Notification).where(
            Notification.user_id == user.id, Notification.read_at.is_(None)).values(read_at=now)).rowcount


def read_one(rt, username: str, notification_id, *, now: datetime) -> dict:
    """Mark one of the user's notifications read (404 for anyone else's); returns what it is about:
    {kind, instance_id, task_id, was_read}."""
    with rt.db.write() as session:
        user = access.actor(session, username)
        try:
            row = session.get(Notification, int(notification_id))
        except (TypeError, ValueError):
            row = None
        if row is None or row.user_id != user.id:
            raise NotFound(f"notification {notification_id} not found")
        was_read = row.read_at is not None
        if not was_read:
            row.read_at = now
        return {"kind": row.kind, "instance_id": row.instance_id, "task_id": row.task_id, "was_read": was_read}


# ---------------------------------------------------------------- the worker's passes
_REMIND_AT = time(9, 0)


_T = HumanTask.__table__
_TOLD = (_T.c.id, _T.c.instance_id, _T.c.name, _T.c.assignee_id, _T.c.due_at, _T.c.reminded_at, _T.c.overdue_notified_at)
# what a pass may have to tell, soonest due first, read without the write lock (a pass with nothing
# to send stops nobody), each through its partial index (migration 0011): that is why each repeats
# its index's terms word for word, 'open' a literal, never a parameter. Never a task that was
# overdue when it opened.
_OPEN_LITERALLY = _T.c.status == literal_column("'open'")
_OVERDUE_UNSENT = select(*_TOLD).where(  # past due, no overdue notice yet
    _OPEN_LITERALLY, _T.c.overdue_notified_at.is_(None), _T.c.due_at > _T.c.created_at,
    _T.c.due_at <= bindparam("now")).order_by(_T.c.due_at).limit(bindparam("limit"))
_NOT_REMINDED = select(*_TOLD).where(  # due later, within a long holiday, not reminded yet
    _OPEN_LITERALLY, _T.c.reminded_at.is_(None), _T.c.due_at > _T.c.created_at,
    _T.c.due_at > bindparam("now"), _T.c.due_at <= bindparam("horizon")).order_by(_T.c.due_at).limit(bindparam("limit"))


def remind(rt, now: datetime, limit: int = 500) -> int:
    """The working day before a task falls due, its owner (or pool) is reminded, once; a task that was
    overdue when it opened never is. A task past its due time tells its owner once that it is overdue.
    What is due is found in a read; only a pass that has something to send takes the write lock,
    and each notice is marked in a conditional UPDATE (a task two workers saw is told once)."""
    horizon = now + timedelta(days=15)  # a reminder is never more than a long holiday ahead
    params = {"now": now, "horizon": horizon, "limit": limit}
    with rt.db.read() as session:
        due = [("overdue", task) for task in session.execute(_OVERDUE_UNSENT, params)]
        # a later due time never has an earlier reminder (the working day before it is the same or
        # later): the first task not to be reminded yet ends the pass, the rows after it are never
        # read (and the statement is closed at once, not left open)
        with session.execute(_NOT_REMINDED, params) as coming:
            for task in coming:
                day_before = rt.calendar.previous_working_day(task.due_at)
                if now < datetime.combine(day_before, _REMIND_AT, tzinfo=rt.calendar.tz):
                    break
                due.append(("reminder", task))
    if not due:
        return 0
    done = 0
    with rt.db.write() as session:
        for kind, task in due:
            if kind == "overdue":
                marked = update(_T).where(_T.c.id == task.id, _T.c.status == "open",
                                          _T.c.overdue_notified_at.is_(None)).values(
                    overdue_notified_at=now, reminded_at=func.coalesce(_T.c.reminded_at, now))
            else:
                marked = update(_T).where(_T.c.id == task.id, _T.c.status == "open",
                                          _T.c.reminded_at.is_(None)).values(reminded_at=now)
            if session.execute(marked).rowcount != 1:
                continue  # closed, or told by another worker meanwhile
            owners = [task.assignee_id] if task.assignee_id else _candidates(session, task.id)
            add(session, owners, kind, task.instance_id, task.id, now, task=task.name)
            done += 1
    return done


_CANDIDATES = text("SELECT user_id FROM human_task_candidates WHERE task_id = :task_id").bindparams(
    bindparam("task_id"))


def _candidates(session, task_id: str) -> list[int]:
    return [r[0] for r in session.execute(_CANDIDATES, {"task_id": task_id})]
