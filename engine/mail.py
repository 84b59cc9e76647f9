"""Mail delivery of the outbox over SMTP (the standard library's smtplib).

Each outbox row is one notification's mail. A worker takes a row with a lease (an UPDATE that
only one worker can win), renders it in the recipient's language (Jinja2: plain text and HTML),
sends it with the notification's stable Message-ID, and marks it sent; a failure is retried with
backoff (the first retry within 10 seconds) and given up after a day (status `failed`, listed for
the administrator). Without SALESFLOW_SMTP_URL nothing is sent and the outbox keeps its rows.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select, update

from . import notify
from .models import Notification, OutboxMail, User

log = logging.getLogger("salesflow.mail")

BACKOFF = (5, 30, 120, 600, 1800, 3600)  # seconds before retry n (then hourly)
GIVE_UP_AFTER = timedelta(days=1)
LEASE = timedelta(seconds=60)
SUBJECT = {"zh": "【销售流程】{text}", "en": "[SalesFlow] {text}"}
WORDS = {"zh": {"greeting": "{name}，您好：", "open": "打开", "footer": "这封邮件由销售流程系统自动发送；可在个人设置中关闭邮件通知。"},
         "en": {"greeting": "Hello {name},", "open": "Open", "footer":
                "Sent by SalesFlow. You can turn mail off in your profile."}}
_templates = Environment(loader=FileSystemLoader(Path(__file__).parent / "mail_templates"),
                         autoescape=select_autoescape(["html"]))


class MailConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> "SmtpSettings":
        """smtp://host:port, smtp+starttls://user:password@host:port, or smtps://…"""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtp+starttls", "smtps") or not parts.hostname:
            raise MailConfigError(f"SALESFLOW_SMTP_URL {url!r}: use smtp://host:port or "
                                  "smtp+starttls://user:password@host:port")
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 587 if parts.scheme == "smtp+starttls" else 25)
        except ValueError as exc:
            raise MailConfigError(f"SALESFLOW_SMTP_URL: {exc}") from None
        return cls(parts.hostname, port, starttls=parts.scheme == "smtp+starttls", ssl=parts.scheme == "smtps",
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None)


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=BACKOFF[min(attempts, len(BACKOFF)) - 1] if attempts else 0)


def render(rt, session, n: Notification, user: User, base_url: str | None) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a notification's mail, in the recipient's language."""
    lang = "en" if user.locale == "en" else "zh"
    text = notify.describe(rt, session, n, lang)
    link = None
    if base_url:
        base = base_url.rstrip("/")
        link = f"{base}/tasks/{n.task_id}" if n.task_id and n.kind not in ("outcome", "cc", "mention") \
            else f"{base}/instances/{n.instance_id}" if n.instance_id else base + "/"
    words = WORDS[lang]
    values = {"lang": lang, "text": text, "link": link, "greeting": words["greeting"].format(name=user.display_name),
              "open_label": words["open"], "footer": words["footer"]}
    subject = SUBJECT[lang].format(text=notify._short(text, 80))
    return subject, _templates.get_template("notification.txt").render(**values), \
        _templates.get_template("notification.html").render(subject=subject, **values)


def deliver(rt, smtp_url: str | None, mail_from: str | None, base_url: str | None, now: datetime,
            limit: int = 100) -> dict:
    """Send the outbox rows that are due. Returns counts {"sent", "retry", "failed"}."""
    counts = {"sent": 0, "retry": 0, "failed": 0}
    if not smtp_url:
        return counts
    settings = SmtpSettings.from_url(smtp_url)
    sender = mail_from or "salesflow@localhost"
    with rt.db.read() as session:
        due = session.scalars(select(OutboxMail.id).where(
            OutboxMail.status == "pending", OutboxMail.next_attempt_at <= now,
            (OutboxMail.lease_until.is_(None)) | (OutboxMail.lease_until < now))
            .order_by(OutboxMail.next_attempt_at, OutboxMail.id).limit(limit)).all()
    connection = None
    try:
        for mail_id in due:
            if not _take(rt, mail_id, now):
                continue  # another worker has it
            with rt.db.read() as session:
                mail = session.get(OutboxMail, mail_id)
                n = session.get(Notification, mail.notification_id)
                user = session.get(User, n.user_id)
                subject, plain, html = render(rt, session, n, user, base_url)
                message = EmailMessage()
                message["Subject"] = subject
                message["From"] = sender
                message["To"] = formataddr((user.display_name, mail.to_addr))
                message["Message-ID"] = mail.message_id
                message["Date"] = formatdate(localtime=False)
                message.set_content(plain)
                message.add_alternative(html, subtype="html")
                created, attempts = mail.created_at, mail.attempts
            try:
                if connection is None:
                    connection = _connect(settings)
                connection.send_message(message)
            except (OSError, smtplib.SMTPException) as exc:
                connection = _close(connection)
                gave_up = now - created >= GIVE_UP_AFTER
                _finish(rt, mail_id, status="failed" if gave_up else "pending", attempts=attempts + 1,
                        next_attempt_at=now + backoff(attempts + 1), last_error=f"{exc.__class__.__name__}: {exc}")
                counts["failed" if gave_up else "retry"] += 1
                log.warning("mail %s to %s failed (attempt %s): %s", mail_id, mail.to_addr, attempts + 1, exc)
            else:
                _finish(rt, mail_id, status="sent", attempts=attempts + 1, sent_at=now, last_error=None)
                counts["sent"] += 1
    finally:
        _close(connection)
    return counts


def _take(rt, mail_id: int, now: datetime) -> bool:
    """Lease the row for this worker: of several workers exactly one wins the UPDATE."""
    with rt.db.write() as session:
        taken = session.execute(update(OutboxMail).where(
            OutboxMail.id == mail_id, OutboxMail.status == "pending",
            (OutboxMail.lease_until.is_(None)) | (OutboxMail.lease_until < now))
            .values(lease_until=now + LEASE)).rowcount
    return taken == 1


def _finish(rt, mail_id: int, **values) -> None:
    with rt.db.write() as session:
        session.execute(update(OutboxMail).where(OutboxMail.id == mail_id).values(lease_until=None, **values))


def _connect(settings: SmtpSettings):
    if settings.ssl:
        connection = smtplib.SMTP_SSL(settings.host, settings.port, timeout=20, context=ssl.create_default_context())
    else:
        connection = smtplib.SMTP(settings.host, settings.port, timeout=20)
        if settings.starttls:
            connection.starttls(context=ssl.create_default_context())
    if settings.username:
        connection.login(settings.username, settings.password or "")
    return connection


def _close(connection):
    if connection is not None:
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            pass
    return None


def failed(rt, limit: int = 200) -> list[dict]:
    """Mails given up on, for the administrator."""
    with rt.db.read() as session:
        rows = session.execute(select(OutboxMail, User.username).join(
            Notification, Notification.id == OutboxMail.notification_id).join(User, User.id == Notification.user_id)
            .where(OutboxMail.status == "failed").order_by(OutboxMail.id.desc()).limit(limit)).all()
        return [{"id": m.id, "to": m.to_addr, "user": username, "attempts": m.attempts, "error": m.last_error,
                 "created_at": notify.iso(m.created_at)} for m, username in rows]
