"""Notifications that reach people: in the app, and by mail through a real SMTP server (aiosmtpd) run in
the test process — recipients, language, links, Message-ID, a server that goes away and comes back, several
workers at once; reminders the working day before a task falls due; out of office."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from engine.models import OutboxMail, User
from tests.helpers import APPROVE, CLAIM, at, free_port, invoiced

BASE = "https://salesflow.example.com"


class Inbox:
    """aiosmtpd handler: every message the server accepted."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 Message accepted"

    def to(self, address):
        return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture
def smtp():
    port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()

    class Server:
        url = f"smtp://127.0.0.1:{port}"
        messages = inbox

        def stop(self):
            controller.stop()

        def start(self):
            nonlocal controller
            controller = Controller(inbox, hostname="127.0.0.1", port=port)
            controller.start()
    server = Server()
    yield server
    try:
        controller.stop()
    except (AssertionError, RuntimeError):
        pass


def work(engine, smtp_url, when=None):
    return engine.work(smtp_url=smtp_url, mail_from="SalesFlow <noreply@salesflow.example>", base_url=BASE,
                       at=when)


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def test_a_new_task_is_mailed_to_its_owner_in_their_language_with_a_link(engine, smtp):
    engine.update_me("dave", {"locale": "en"})
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    task = inst["tasks"][0]
    assert [n["kind"] for n in engine.notifications("dave")] == ["task_assigned"]
    assert engine.notifications("dave")[0]["text"].startswith("New task: Manager approval — Expense reimbursement #")
    counts = work(engine, smtp.url)["mail"]
    assert counts == {"sent": 1, "retry": 0, "failed": 0}
    [message] = smtp.messages.to("dave@salesflow.example")
    assert message["Subject"].startswith("[SalesFlow] New task")
    assert message["Message-ID"].startswith("<notification-")
    assert f"{BASE}/tasks/{task['id']}" in text_of(message) and "Hello Dave" in text_of(message)
    assert message.get_body(("html",)) is not None
    # the outcome goes to alice, in Chinese (her language)
    engine.complete(task["id"], "dave", APPROVE)
    finance = engine.instance(inst["id"], "alice")["tasks"][0]
    engine.complete(finance["id"], "heidi", APPROVE)
    work(engine, smtp.url)
    [outcome] = smtp.messages.to("alice@salesflow.example")
    assert "已办结" in outcome["Subject"] and "已批准" in text_of(outcome)
    assert f"{BASE}/instances/{inst['id']}" in text_of(outcome)
    assert len(smtp.messages.to("heidi@salesflow.example")) == 1  # her finance task
    assert work(engine, smtp.url)["mail"]["sent"] == 0  # never twice


def test_mail_off_and_no_address_send_nothing_but_the_app_still_tells(engine, smtp):
    engine.update_me("dave", {"mail_notifications": False})
    engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    assert work(engine, smtp.url)["mail"]["sent"] == 0 and smtp.messages.messages == []
    assert engine.unread_count("dave") == 1


def test_without_an_smtp_url_the_outbox_keeps_the_mail(engine, smtp):
    engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    assert work(engine, None)["mail"] == {"sent": 0, "retry": 0, "failed": 0}
    with engine.db.read() as s:
        assert [m.status for m in s.scalars(select(OutboxMail))] == ["pending"]
    work(engine, smtp.url)
    assert len(smtp.messages.to("dave@salesflow.example")) == 1


def test_a_mail_server_that_goes_away_gets_the_mail_once_it_is_back(engine, smtp):
    engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    smtp.stop()
    now = at("2026-12-01T10:00")
    with engine.db.write() as s:  # the mail was written at the real clock: make it due at the test's clock
        for m in s.scalars(select(OutboxMail)):
            m.created_at = m.next_attempt_at = now
    assert work(engine, smtp.url, now)["mail"] == {"sent": 0, "retry": 1, "failed": 0}
    with engine.db.read() as s:
        [mail] = s.scalars(select(OutboxMail)).all()
        assert mail.status == "pending" and mail.attempts == 1 and mail.last_error
        assert mail.next_attempt_at - now <= timedelta(seconds=10)  # the first retry within 10 s
    smtp.start()
    assert work(engine, smtp.url, now + timedelta(seconds=2))["mail"]["sent"] == 0  # not due yet
    assert work(engine, smtp.url, now + timedelta(seconds=10))["mail"]["sent"] == 1
    assert work(engine, smtp.url, now + timedelta(minutes=5))["mail"]["sent"] == 0
    assert len(smtp.messages.to("dave@salesflow.example")) == 1


def test_a_mail_failing_for_a_day_is_given_up_and_shown_to_the_administrator(engine):
    engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    dead = f"smtp://127.0.0.1:{free_port()}"
    now = at("2026-12-01T10:00")
    with engine.db.write() as s:
        for m in s.scalars(select(OutboxMail)):
            m.created_at = m.next_attempt_at = now
    assert work(engine, dead, now)["mail"]["retry"] == 1
    assert work(engine, dead, now + timedelta(days=1, minutes=1))["mail"]["failed"] == 1
    [failed] = engine.failed_mail()
    assert failed["to"] == "dave@salesflow.example" and failed["attempts"] == 2 and failed["error"]


def test_several_workers_at_once_never_send_one_mail_twice(engine, smtp):
    for who in ("alice", "bob") * 5:
        engine.start("expense_approval", who, invoiced(engine, who, CLAIM))
    with engine.db.read() as s:
        total = len(s.scalars(select(OutboxMail)).all())
    assert total == 10
    barrier = threading.Barrier(4)
    errors = []

    def run():
        try:
            barrier.wait()
            work(engine, smtp.url)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [m["Message-ID"] for _rcpt, m in smtp.messages.messages]
    assert len(ids) == total and len(set(ids)) == total


# ---------------------------------------------------------------- the app's notifications
def test_notifications_list_mark_read_and_read_all(engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    engine.urge(inst["id"], "alice", "请尽快")
    kinds = [n["kind"] for n in engine.notifications("dave")]
    assert kinds == ["urge", "task_assigned"]  # newest first
    urge = engine.notifications("dave")[0]
    assert "催办" in urge["text"] and "请尽快" in urge["text"] and urge["instance_id"] == inst["id"]
    assert engine.mark_read("dave", urge["id"]) == 1
    assert [n["kind"] for n in engine.notifications("dave", unread=True)] == ["task_assigned"]
    assert engine.mark_read("dave") == 1 and engine.unread_count("dave") == 0
    from engine.errors import NotFound
    with pytest.raises(NotFound):
        engine.mark_read("alice", urge["id"])  # not hers


# ---------------------------------------------------------------- reminders
Q3 = {"employee": "alice", "period": "2025-Q3", "cycle": "quarterly", "period_end": "2025-09-30"}


def test_the_working_day_before_a_task_falls_due_its_owner_is_reminded_once(engine):
    engine.start("performance_appraisal", "ivan", Q3, at=at("2025-09-30T18:00"))
    # self-evaluation due Saturday 11 October 2025 (a 调休 working day): reminded Friday 10 October
    engine.work(at=at("2025-10-10T08:00"))
    assert [n["kind"] for n in engine.notifications("alice")] == ["task_assigned"]
    engine.work(at=at("2025-10-10T09:30"))
    assert [n["kind"] for n in engine.notifications("alice")] == ["reminder", "task_assigned"]
    assert "明天到期" in engine.notifications("alice")[0]["text"]
    engine.work(at=at("2025-10-10T15:00"))
    assert [n["kind"] for n in engine.notifications("alice")].count("reminder") == 1
    # past due: the owner hears once that it is overdue (and the manager from the BPMN escalation)
    engine.work(at=at("2025-10-12T08:00"))
    engine.work(at=at("2025-10-12T09:00"))
    assert [n["kind"] for n in engine.notifications("alice")].count("overdue") == 1
    assert "escalation" in [n["kind"] for n in engine.notifications("dave")]


def test_no_reminder_for_a_task_already_overdue_when_it_opened(engine):
    engine.start("performance_appraisal", "ivan", Q3, at=at("2025-10-20T10:00"))
    engine.work(at=at("2025-10-20T11:00"))
    kinds = [n["kind"] for n in engine.notifications("alice")]
    assert "reminder" not in kinds and "overdue" not in kinds


# ---------------------------------------------------------------- out of office
def test_out_of_office_sends_new_tasks_to_the_delegate_for_the_absent_person(engine):
    engine.update_me("dave", {"out_of_office": {"from": "2026-01-01T00:00", "until": "2099-01-01T00:00",
                                                "delegate": "frank"}})
    assert engine.me("dave")["out_of_office"]["delegate"] == "frank"
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    [task] = inst["tasks"]
    assert task["assignee"] == "frank"
    created = [h for h in inst["history"] if h["action"] == "task_created" and h["task"] == "manager_approval"][0]
    assert created["detail"]["for"] == "dave"
    assert "代Dave" in engine.notifications("frank")[0]["text"]
    # frank is not the natural owner: his later director step is not skipped as "asked twice"
    big = engine.start("expense_approval", "bob", invoiced(engine, "bob", {**CLAIM, "amount": 25000}))
    done = engine.complete(big["tasks"][0]["id"], "frank", APPROVE)
    assert [t["name"] for t in done["tasks"]] == ["director_approval"]


def test_a_delegate_who_may_not_take_the_task_hands_it_to_the_absent_persons_manager(engine):
    engine.update_me("dave", {"out_of_office": {"from": "2026-01-01T00:00", "until": "2099-01-01T00:00",
                                                "delegate": "bob"}})  # a rep: may not decide a manager step
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    assert inst["tasks"][0]["assignee"] == "frank"
    # and the absence ends: tasks come to dave again
    engine.update_me("dave", {"out_of_office": None})
    assert engine.start("expense_approval", "bob", invoiced(engine, "bob", CLAIM))["tasks"][0]["assignee"] == "dave"


def test_claim_pools_skip_the_absent(engine):
    from engine.models import UserRole
    from engine.org import hash_password
    with engine.db.write() as s:
        judy = s.scalar(select(User.id).where(User.username == "judy"))
        hank = User(username="hank", display_name="Hank", password_hash=hash_password("salesflow-demo"),
                    manager_id=judy, active=True)
        hank.roles = [UserRole(role="finance")]
        s.add(hank)
    engine.update_me("hank", {"out_of_office": {"from": "2026-01-01T00:00", "until": "2099-01-01T00:00"}})
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    inst = engine.complete(inst["tasks"][0]["id"], "dave", APPROVE)["instance"]
    assert inst["tasks"][0]["assignee"] == "heidi"  # hank is away: heidi alone, assigned


def test_me_settings_are_checked(engine):
    from engine.errors import ValidationFailed
    for changes, field in (({"locale": "fr"}, "locale"), ({"email": "nope"}, "email"),
                           ({"mail_notifications": "yes"}, "mail_notifications"), ({"role": "admin"}, "role"),
                           ({"out_of_office": {"from": "2026-01-02T00:00", "until": "2026-01-01T00:00"}},
                            "out_of_office.until"),
                           ({"out_of_office": {"from": "x", "until": "2026-01-01T00:00"}}, "out_of_office.from"),
                           ({"out_of_office": {"from": "2026-01-01T00:00", "until": "2026-01-05T00:00",
                                               "delegate": "dave"}}, "out_of_office.delegate")):
        with pytest.raises(ValidationFailed) as err:
            engine.update_me("dave", changes)
        assert field in err.value.errors, changes
    assert engine.me("dave")["locale"] is None and engine.me("dave")["out_of_office"] is None
    me = engine.me("alice")
    assert (me["email"], me["manager"], me["roles"], me["region"]) == \
        ("alice@salesflow.example", "dave", ["sales_rep"], "east")


def test_time_of_first_retry_is_within_ten_seconds():
    from engine.mail import backoff
    assert backoff(1) <= timedelta(seconds=10) and backoff(2) > backoff(1) and backoff(50) == timedelta(hours=1)
    time.sleep(0)


def test_a_pass_reads_the_tasks_to_remind_only_up_to_the_first_not_due_yet(engine, monkeypatch):
    # three self-evaluations falling due a few days apart: before any reminder is due, the pass works
    # out one reminder time (the soonest's), not one per task within the horizon; later, it reminds
    # exactly the tasks whose working day before has come, in due order
    for employee, period_end in (("alice", "2025-09-30"), ("bob", "2025-10-15"), ("carol", "2025-10-31")):
        engine.start("performance_appraisal", "ivan", {**Q3, "employee": employee, "period_end": period_end},
                     at=at("2025-09-30T18:00"))
    from engine.calendar import BusinessCalendar
    worked_out = []
    real = BusinessCalendar.previous_working_day
    monkeypatch.setattr(BusinessCalendar, "previous_working_day",
                        lambda self, day: worked_out.append(day) or real(self, day))
    engine.work(at=at("2025-10-10T08:00"))
    assert len(worked_out) == 1
    assert all("reminder" not in [n["kind"] for n in engine.notifications(u)] for u in ("alice", "bob", "carol"))
    engine.work(at=at("2025-10-10T09:30"))  # alice's is due Saturday 11 October: reminded, the others not yet
    reminded = {u: [n["kind"] for n in engine.notifications(u)].count("reminder") for u in ("alice", "bob", "carol")}
    assert reminded == {"alice": 1, "bob": 0, "carol": 0}


def test_the_pass_reads_through_their_partial_indexes(engine):
    # SQLite keeps no statistics here: repeating each index's terms word for word is what makes it
    # take them (else it reads every open task through the index on status). PostgreSQL's planner
    # weighs the table's size, so there the plan is left to it.
    if not engine.db.is_sqlite:
        pytest.skip("SQLite's planner")
    from engine.notify import _NOT_REMINDED, _OVERDUE_UNSENT
    with engine.db.read() as s:
        conn = s.connection()
        for statement, index in ((_OVERDUE_UNSENT, "ix_human_tasks_overdue_unsent"), (_NOT_REMINDED, "ix_human_tasks_not_reminded")):
            sql = str(statement.compile(dialect=conn.dialect))
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ("2026-01-01", "2026-01-15", 500, 0)
                                        if statement is _NOT_REMINDED else ("2026-01-01", 500, 0)).all()
            assert any(f"USING INDEX {index}" in row[-1] for row in plan), plan
