"""The tables. Engine state is stored as TEXT (never JSONB: key order matters, ENGINE-NOTES trap 1)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON, Boolean, DateTime, ForeignKey, Index, Integer, Numeric, String, Text,
    TypeDecorator, UniqueConstraint, false, text as sql_text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Region(Base):
    __tablename__ = "regions"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))  # "zh en", for messages and older readers
    name_zh: Mapped[str | None] = mapped_column(String(120))
    name_en: Mapped[str | None] = mapped_column(String(120))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", use_alter=True, name="fk_regions_manager_id"))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str | None] = mapped_column(String(10))
    email: Mapped[str | None] = mapped_column(String(254))
    mail_notifications: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # out of office: while ooo_from <= now < ooo_until, new tasks go to ooo_delegate (or the manager)
    ooo_from: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ooo_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ooo_delegate_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    region: Mapped[Region | None] = relationship(lazy="select", foreign_keys=[region_id])
    roles: Mapped[list["UserRole"]] = relationship(lazy="select", cascade="all, delete-orphan")

    @property
    def role_names(self) -> set[str]:
        return {r.role for r in self.roles}


class OrgVersion(Base):
    """One row: a token that changes (database triggers, migration 0008) whenever users, their
    roles or regions change. engine/org.py keeps the org chart in memory under it."""
    __tablename__ = "org_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(40))


class UserRole(Base):
    __tablename__ = "user_roles"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)


class Budget(Base):
    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("region_id", "category", "period"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    category: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    amount = mapped_column(Numeric(14, 2), nullable=False)


class BudgetEntry(Base):
    """What a claim holds against a budget: `reserved` while it is in flight (from routing on),
    `spent` once approved. Reject, withdraw and return release the reservation."""
    __tablename__ = "budget_entries"
    __table_args__ = (Index("ix_budget_entries_key", "region_id", "category", "period"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
    category: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(7))
    amount = mapped_column(Numeric(14, 2), nullable=False)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(10), default="spent", server_default="spent")  # reserved | spent


class ProcessDefinition(Base):
    """One deployed version of a process: its sources (BPMN, DMN, forms) as they were."""
    __tablename__ = "process_definitions"
    __table_args__ = (UniqueConstraint("process_id", "version"), UniqueConstraint("process_id", "content_hash"))
    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(80), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    sources: Mapped[str] = mapped_column(Text)  # JSON text: {"bpmn": {file: xml}, "dmn": {...}, "forms": {...}, "catalog": {...}}
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProcessInstance(Base):
    __tablename__ = "process_instances"
    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definitions.id"))
    process_id: Mapped[str] = mapped_column(String(80), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    started_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # what the instance shows (json, not jsonb)
    state: Mapped[str] = mapped_column(Text)  # SpiffWorkflow state, spec by reference
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    last_approver_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the one-line summary (who, what, how much) in both languages, as the process declares it
    # (processes.json "summary"), and what `q` searches: both summaries, the people's names, the id
    summary_zh: Mapped[str | None] = mapped_column(String(300))
    summary_en: Mapped[str | None] = mapped_column(String(300))
    search_text: Mapped[str | None] = mapped_column(Text)
    # what failed, where, when a step the system ran (a timer) could not continue: status "error"
    error: Mapped[dict | None] = mapped_column(JSON)

    started_by: Mapped[User] = relationship(foreign_keys=[started_by_id], lazy="select")
    subject: Mapped[User] = relationship(foreign_keys=[subject_id], lazy="select")

    # optimistic lock: every UPDATE checks and bumps lock_version. Commands write the row with a
    # Core UPDATE that does so (runtime._UPDATE_INSTANCE); an ORM write would (StaleDataError)
    __mapper_args__ = {"version_id_col": lock_version}


NO_DUE_DATE = datetime(9999, 12, 31, tzinfo=timezone.utc)


# the worker's partial indexes of open tasks (engine/notify.py's queries repeat these terms word for word)
OVERDUE_UNSENT = "status = 'open' AND overdue_notified_at IS NULL AND due_at > created_at"
NOT_REMINDED = "status = 'open' AND reminded_at IS NULL AND due_at > created_at"


class HumanTask(Base):
    """Every user task that is or was open, indexed for the inbox."""
    __tablename__ = "human_tasks"
    __table_args__ = (
        # the inbox: my open tasks in the order shown, read straight off the index
        Index("ix_human_tasks_inbox", "assignee_id", "status", "sort_due", "created_at", "id"),
        Index("ix_human_tasks_instance_status", "instance_id", "status"),
        Index("ix_human_tasks_done", "completed_by_id", "completed_at"),  # 已办, newest first
        # the worker's pass: open tasks still to be told they are overdue, or to be reminded (migration 0011)
        Index("ix_human_tasks_overdue_unsent", "status", "due_at", sqlite_where=sql_text(OVERDUE_UNSENT),
              postgresql_where=sql_text(OVERDUE_UNSENT)),
        Index("ix_human_tasks_not_reminded", "status", "due_at", sqlite_where=sql_text(NOT_REMINDED),
              postgresql_where=sql_text(NOT_REMINDED)),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # SpiffWorkflow task id
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id"))
    process_id: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(120))  # BPMN element id
    title: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    lane: Mapped[str | None] = mapped_column(String(80))
    form: Mapped[str | None] = mapped_column(String(200))
    data_key: Mapped[str | None] = mapped_column(String(80))
    is_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    candidate_role: Mapped[str | None] = mapped_column(String(40))  # the lane's role (hand-over on role removal)
    status: Mapped[str] = mapped_column(String(20), index=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sort_due: Mapped[datetime] = mapped_column(UTCDateTime())  # due_at, or NO_DUE_DATE: inbox order
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # an added signer's task (加签) points at the BPMN task row it signs for; BPMN tasks have none
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # how the task came to be and what it waits for: {"returned": {...}} (the reason it came back),
    # {"via": "transfer"|"signer"} (not its natural owner), {"mode": ...} (a signer's mode),
    # {"held": {...}} (the owner's approval held until the added signers approved)
    context: Mapped[dict | None] = mapped_column(JSON)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # "falls due tomorrow" sent
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    instance: Mapped[ProcessInstance] = relationship(lazy="raise")
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="select")


class HumanTaskCandidate(Base):
    """Who may claim a task that several people could do (a single owner is just its assignee).
    A row carries its task's inbox order and whether the task is still claimable (open, nobody
    assigned; kept by a trigger on human_tasks, migration 0009): a pool member's inbox head reads
    their own rows in index order."""
    __tablename__ = "human_task_candidates"
    __table_args__ = (Index("ix_candidates_inbox", "user_id", "claimable", "sort_due", "created_at", "task_id"),)
    task_id: Mapped[str] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    claimable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sort_due: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InboxCount(Base):
    """Each person's open tasks, counted by triggers on human_tasks and human_task_candidates in the
    statements that change them: each change adds a row of differences (migration 0010: no row is
    ever updated, so no two transactions wait on one), a person's total is the sum of their rows,
    and the background worker folds them into one row per person (tables.compact_inbox_counts)."""
    __tablename__ = "inbox_counts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    assigned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimable: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class InstanceParticipant(Base):
    """Who takes part in an instance (and may therefore see it)."""
    __tablename__ = "instance_participants"
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)


class Timer(Base):
    """Every waiting timer event, by due time, for the timer runner to poll."""
    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_status_due", "status", "due_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # SpiffWorkflow task id of the timer event
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))  # waiting | fired | cancelled
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InstanceCopy(Base):
    """Who an instance was copied to (抄送): they may read it and comment, and decide nothing."""
    __tablename__ = "instance_copies"
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: copied by the process itself
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    comment: Mapped[str | None] = mapped_column(Text)


class Comment(Base):
    """The comment thread of an instance."""
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list] = mapped_column(JSON, default=list)


class Notification(Base):
    """Who is to be told what, written in the same transaction as the command that causes it.
    `params` holds what the text is made of (the recipient's language picks the words when shown)."""
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user", "user_id", "read_at", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(20))  # task_assigned, returned, outcome, cc, urge, mention, ...
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Attachment(Base):
    """A stored file (its bytes live outside the database, in the fsspec store at `path`). Until it
    is linked to an instance only its uploader may use it; unlinked uploads are purged after a day."""
    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_unlinked", "instance_id", "uploaded_at"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, unguessable
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(120))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(255))  # key in the store
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id"))
    linked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxMail(Base):
    """One mail per notification, written in the same transaction by the database itself (a trigger on
    notifications, migration 0008: for a recipient with an address and mail on); the worker delivers it. A lease
    (`lease_until`) keeps two workers from sending one mail at once; `message_id` is stable, so a
    retry after a lost answer is recognisable as the same mail."""
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), unique=True)
    to_addr: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | sent | failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(200))


class HistoryEvent(Base):
    __tablename__ = "history_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(40))
    task: Mapped[str | None] = mapped_column(String(120))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)

    actor: Mapped[User | None] = relationship(lazy="select")


class AuditEvent(Base):
    """Every change an administrator, an import or a process made to the organisation, budgets and
    definitions: who, when, what, before -> after (instance operations go to the instance's history too)."""
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_entity", "entity", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the command line / the system
    source: Mapped[str] = mapped_column(String(20))  # api | web | cli | import | process
    entity: Mapped[str] = mapped_column(String(20))  # user | region | budget | definition | instance | task
    key: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(40))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
