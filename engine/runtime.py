"""`Engine`: the one object `webui/` and the CLI talk to — a thin facade.

Where things live:
- `runner.py` — the transaction runner every command goes through (lock, load, act, settle,
  save, sync the task and timer tables, history — or roll back whole); `Engine` is a Runner.
- `commands/` — the verbs, one small function each, by subject: `instances` (start, withdraw, CC,
  urge, comment), `tasks` (complete — approve, return to any step, reject —, claim, transfer,
  bulk), `signers` (add signer before / after / parallel), `timers`.
- `queries.py` — the read side (inbox, instance and task views, diagrams).
- `access.py` — who may see an instance, act on a task, start a process (both sides ask it).
- `org.py` — people and the org chart (lane owners, manager chains, passwords).
- `commands/admin.py`, `commands/operations.py`, `commands/migrate.py` — the administrator's verbs
  (people, regions, import/export; retry, cancel, reassign; moving instances to a new version),
  `admin_queries.py` their read side and the budgets overview, `audit.py` the audit trail.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from . import access, admin_queries, attachments, clock, mail, notify, org, people, queries
from .commands import admin as admin_commands
from .commands import instances as instance_commands
from .commands import migrate as migrate_commands
from .commands import operations as operation_commands
from .commands import signers as signer_commands
from .commands import tasks as task_commands
from .commands import timers as timer_commands
from .models import User
from .runner import DEFAULT_WORKFLOWS_DIR, Runner
from .tables import compact_inbox_counts

__all__ = ["DEFAULT_WORKFLOWS_DIR", "Engine"]


class Engine(Runner):
    @property
    def storage(self) -> attachments.Storage:
        """Where attachments' bytes live (set `engine.storage` to configure; default SALESFLOW_FILES_URL)."""
        if getattr(self, "_storage", None) is None:
            self._storage = attachments.Storage(attachments.default_storage_url())
        return self._storage

    @storage.setter
    def storage(self, value: attachments.Storage) -> None:
        self._storage = value

    # ------------------------------------------------------------------ setup
    def setup(self) -> list[str]:
        """Migrate the database and deploy what changed in workflows/. Returns the new versions."""
        self.db.migrate()
        return self.deploy()

    def deploy(self) -> list[str]:
        with self.db.write() as session:
            created = self.definitions.deploy(session)
            names = [f"{row.process_id} v{row.version}" for row in created]
        with self.db.read() as session:
            self.definitions.refresh_latest(session)
        return names

    # ------------------------------------------------------------ commands
    def start(self, process_id: str, username: str, data: dict | None = None, *, at: datetime | None = None) -> dict:
        return instance_commands.start(self, process_id, username, data, at=at)

    def withdraw(self, instance_id, username: str) -> dict:
        return instance_commands.withdraw(self, instance_id, username)

    def complete(self, task_id: str, username: str, data: dict | None, *, at: datetime | None = None) -> dict:
        return task_commands.complete(self, task_id, username, data, at=at)

    def claim(self, task_id: str, username: str) -> dict:
        return task_commands.claim(self, task_id, username)

    def delegate(self, task_id: str, username: str, to: str, comment: str | None = None) -> dict:
        return task_commands.delegate(self, task_id, username, to, comment)

    def add_signer(self, task_id: str, username: str, users, mode, comment=None) -> dict:
        return signer_commands.add_signer(self, task_id, username, users, mode, comment)

    def bulk_complete(self, ids, username: str, data) -> list[dict]:
        return task_commands.bulk_complete(self, ids, username, data)

    def copy(self, instance_id, username: str, users, comment=None) -> dict:
        return instance_commands.copy(self, instance_id, username, users, comment)

    def urge(self, instance_id, username: str, comment=None) -> dict:
        return instance_commands.urge(self, instance_id, username, comment)

    def comment(self, instance_id, username: str, text, attachments=None) -> dict:
        return instance_commands.comment(self, instance_id, username, text, attachments)

    def fire_due_timers(self, at: datetime | None = None, limit: int = 1000) -> list[dict]:
        return timer_commands.fire_due_timers(self, at, limit)

    def upload(self, username: str, stream, filename: str | None, *, instance_id: int | None = None) -> dict:
        return attachments.upload(self, username, stream, filename, instance_id=instance_id)

    # ------------------------------------------------------------ reads
    def attachments(self, instance_id: int, username: str) -> list[dict]:
        return attachments.of_instance(self, instance_id, username)

    def describe_attachments(self, ids, username: str) -> dict[str, dict]:
        return attachments.describe_many(self, ids, username)

    def open_attachment(self, attachment_id: str, username: str):
        return attachments.open_for(self, attachment_id, username)

    def processes(self, username: str) -> list[dict]:
        return queries.processes(self, username)

    def process_names(self) -> dict[str, dict]:
        return queries.process_names(self)

    def vocabulary(self) -> dict:
        """The words of every process's data, declared in workflows/ (see ParsedDefinition.vocabulary)."""
        return queries.vocabulary(self)

    def lane_titles(self) -> dict[str, dict]:
        """Each lane's name in zh and en (lanes.json)."""
        return queries.lane_titles(self)

    def instance(self, instance_id, username: str, *, labels: bool = False) -> dict:
        return queries.instance(self, instance_id, username, labels=labels)

    def instances(self, username: str, process_id: str | None = None, status: str | None = None,
                  mine: bool = False, limit: int = 200, offset: int = 0, *, scope: str = "all",
                  q: str | None = None) -> list[dict]:
        return queries.instances(self, username, process_id, status, mine, limit, offset, scope=scope, q=q)

    def tasks(self, username: str, process_id: str | None = None, instance_id=None,
              limit: int = 200, offset: int = 0, with_total: bool = False, *, scope: str = "open",
              q: str | None = None, overdue: bool = False):
        return queries.tasks(self, username, process_id, instance_id, limit, offset, with_total,
                             scope=scope, q=q, overdue=overdue)

    def subject_choices(self, process_id: str, username: str) -> list[dict]:
        return queries.subject_choices(self, process_id, username)

    def task(self, task_id: str, username: str) -> dict:
        return queries.task(self, task_id, username)

    def eligible_users(self, task_id: str, username: str) -> list[dict]:
        return queries.eligible_users(self, task_id, username)

    def comments(self, instance_id, username: str) -> list[dict]:
        return queries.comments(self, instance_id, username)

    def diagram(self, instance_id, username: str, titles_lang: str = "zh", process: str | None = None,
                link=None) -> str:
        return queries.diagram(self, instance_id, username, titles_lang, process, link)

    def called_processes(self, instance_id, username: str) -> list[dict]:
        return queries.called_processes(self, instance_id, username)

    # ------------------------------------------------------------ notifications and the worker
    def notifications(self, username: str, *, unread: bool = False, limit: int = 100, offset: int = 0,
                      lang: str | None = None) -> list[dict]:
        return notify.notifications(self, username, unread=unread, limit=limit, offset=offset, lang=lang)

    def unread_count(self, username: str) -> int:
        return notify.unread_count(self, username)

    def mark_read(self, username: str, notification_id=None) -> int:
        return notify.mark_read(self, username, notification_id, now=clock.now())

    def read_notification(self, username: str, notification_id) -> dict:
        return notify.read_one(self, username, notification_id, now=clock.now())

    def work(self, *, smtp_url: str | None = None, mail_from: str | None = None, base_url: str | None = None,
             at: datetime | None = None) -> dict:
        """One pass of the background worker: due timers, reminders and overdue notices, the mail
        outbox, unlinked uploads, each person's inbox-total rows folded into one; then (SQLite) the
        write-ahead log goes back into the database."""
        now = at or clock.now()
        fired = self.fire_due_timers(now)
        reminded = notify.remind(self, now)
        mailed = mail.deliver(self, smtp_url, mail_from, base_url, now)
        purged = attachments.purge_unlinked(self, now)
        compact_inbox_counts(self.db)
        self.db.checkpoint()
        return {"fired": fired, "reminded": reminded, "mail": mailed, "purged": purged}

    def failed_mail(self) -> list[dict]:
        return mail.failed(self)

    # ------------------------------------------------------------ people
    def me(self, username: str) -> dict:
        return people.me(self, username)

    def update_me(self, username: str, changes: dict) -> dict:
        return people.update_me(self, username, changes)

    def change_password(self, username: str, old, new) -> None:
        people.change_password(self, username, old, new)

    def authenticate(self, username: str, password: str) -> dict | None:
        with self.db.read() as session:
            user = org.user_by_name(session, username or "")
            return org.user_dict(user) if org.verify_password(user, password or "") else None

    def user_info(self, username: str) -> dict | None:
        with self.db.read() as session:
            user = org.user_by_name(session, username or "")
            return org.user_dict(user) if user is not None and user.active else None

    def users(self) -> list[dict]:
        with self.db.read() as session:
            return [org.user_dict(u) for u in session.scalars(select(User).where(User.active.is_(True))
                                                              .order_by(User.username))]

    def set_locale(self, username: str, locale: str | None) -> None:
        with self.db.write() as session:
            access.actor(session, username).locale = locale

    # ------------------------------------------------------------ administration (admin_name None: the CLI)
    def admin_users(self, admin_name: str, q: str | None = None) -> list[dict]:
        return admin_queries.users(self, admin_name, q)

    def admin_user(self, admin_name: str, username: str) -> dict:
        return admin_queries.user(self, admin_name, username)

    def create_user(self, admin_name: str | None, values: dict, source: str = "api") -> dict:
        return admin_commands.create_user(self, admin_name, values, source)

    def update_user(self, admin_name: str | None, username: str, values: dict, source: str = "api") -> dict:
        return admin_commands.update_user(self, admin_name, username, values, source)

    def set_password(self, username: str, password: str, admin_name: str | None = None, source: str = "cli") -> None:
        admin_commands.set_password(self, username, password, admin_name, source)

    def import_org(self, text: str, admin_name: str | None = None, source: str = "import") -> dict:
        return admin_commands.import_org(self, text, admin_name, source)

    def export_org(self) -> str:
        return admin_commands.export_org(self)

    def org_chart(self, admin_name: str) -> list[dict]:
        return admin_queries.org_chart(self, admin_name)

    def regions(self, username: str, *, admin: bool = True) -> list[dict]:
        return admin_queries.regions(self, username, admin=admin)

    def add_region(self, admin_name: str | None, values: dict, source: str = "api") -> dict:
        return admin_commands.add_region(self, admin_name, values, source)

    def update_region(self, admin_name: str | None, code: str, values: dict, source: str = "api") -> dict:
        return admin_commands.update_region(self, admin_name, code, values, source)

    def roles(self, admin_name: str) -> list[dict]:
        return admin_queries.roles(self, admin_name)

    def admin_definitions(self, admin_name: str) -> list[dict]:
        return admin_queries.definitions(self, admin_name)

    def admin_instances(self, admin_name: str, status: str | None = "error") -> list[dict]:
        return admin_queries.instances(self, admin_name, status)

    def audit(self, admin_name: str, entity: str | None = None, key: str | None = None,
              limit: int = 200, offset: int = 0) -> list[dict]:
        return admin_queries.audit_events(self, admin_name, entity, key, limit, offset)

    def retry(self, instance_id, admin_name: str) -> dict:
        return operation_commands.retry(self, instance_id, admin_name)

    def cancel(self, instance_id, admin_name: str, comment) -> dict:
        return operation_commands.cancel(self, instance_id, admin_name, comment)

    def reassign(self, task_id: str, admin_name: str, to) -> dict:
        return operation_commands.reassign(self, task_id, admin_name, to)

    def migrate(self, process_id: str, to_version: int | None = None, dry_run: bool = False) -> list[dict]:
        return migrate_commands.migrate(self, process_id, to_version, dry_run)

    def budgets(self, username: str, month: str | None = None, region: str | None = None) -> list[dict]:
        return admin_queries.budgets(self, username, month, region)

    def seed_demo(self, only_if_empty: bool = False) -> int:
        from .demo import is_empty, seed_demo
        with self.db.write() as session:
            if only_if_empty and not is_empty(session):
                return 0
            return seed_demo(session)
