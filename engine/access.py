"""Who may see an instance, who may act on a task, who may start a process: one place that the
commands and the read side both ask."""
from __future__ import annotations

from sqlalchemy import select

from . import org
from .errors import Conflict, Forbidden, NotFound, Unauthorized
from .models import InstanceParticipant, ProcessInstance, User
from .tables import IS_CANDIDATE, current_lang


def actor(session, name: str) -> User:
    """The acting user; unknown or inactive → Unauthorized."""
    user = org.user_by_name(session, name)
    if user is None or not user.active:
        raise Unauthorized(f"unknown or inactive user {name!r}")
    current_lang.set("en" if user.locale == "en" else "zh")
    return user


def command_actor(session, name: str, token: str | None = None) -> "org.Person":
    """The acting user of a command, from the org chart (`token`: read with the command's lock);
    unknown or inactive → Unauthorized."""
    person = org.chart(session, token).by_name.get(name)
    if person is None or not person.active:
        raise Unauthorized(f"unknown or inactive user {name!r}")
    current_lang.set("en" if person.locale == "en" else "zh")
    return person


def reader(session, name: str) -> "org.Person":
    """The user a read is for, from the org chart (the read costs one small statement, the org
    token, not an ORM user); unknown or inactive → Unauthorized. Reads never change the user."""
    return command_actor(session, name)


def admin(session, name: str) -> User:
    """The acting administrator; anyone else → Forbidden (403)."""
    user = actor(session, name)
    if org.ADMIN_ROLE not in user.role_names:
        raise Forbidden("only administrators may do this")
    return user


def can_see(session, inst, user: User) -> bool:
    """Participants (starter, subject, everyone who had or was offered a task, people copied),
    the managers above the subject or starter, and administrators."""
    if org.ADMIN_ROLE in user.role_names:
        return True
    if session.get(InstanceParticipant, (inst.id, user.id)) is not None:
        return True
    team = org.reports_of(session, user)
    return inst.subject_id in team or inst.started_by_id in team


def visible_filter(session, user: User):
    """SQL condition: instances `user` may see (the same rule as can_see)."""
    if org.ADMIN_ROLE in user.role_names:
        return True
    team = org.reports_of(session, user)
    participant = select(InstanceParticipant.instance_id).where(InstanceParticipant.user_id == user.id)
    cond = ProcessInstance.id.in_(participant)
    if team:
        cond = cond | ProcessInstance.subject_id.in_(team) | ProcessInstance.started_by_id.in_(team)
    return cond


def is_candidate(session, row, user: User) -> bool:
    return session.execute(IS_CANDIDATE, {"task_id": row.id, "user_id": user.id}).first() is not None


def may_view_task(session, row, inst, user: User) -> bool:
    return row.assignee_id == user.id or is_candidate(session, row, user) or can_see(session, inst, user)


def can_act(session, row, user: User) -> bool:
    """Whether `user` may complete the (open) task now: it is theirs, or unassigned and they are a candidate."""
    return row.status == "open" and (
        row.assignee_id == user.id or (row.assignee_id is None and is_candidate(session, row, user)))


def check_can_act(session, inst, row, user: User) -> None:
    """Raise unless `user` may complete the task: 404 for someone who cannot even see it,
    409 when it is closed, 403 when it is someone else's."""
    if row.status != "open":
        if not is_candidate(session, row, user) and row.assignee_id != user.id and not can_see(session, inst, user):
            raise NotFound(f"task {row.id} not found")
        raise Conflict(f"task {row.id} is already {row.status}")
    if row.assignee_id == user.id:
        return
    if row.assignee_id is None and is_candidate(session, row, user):
        return
    if row.assignee_id is not None and is_candidate(session, row, user):
        raise Forbidden(f"task {row.id} is held by {org.chart(session).username(row.assignee_id)}")
    raise Forbidden(f"task {row.id} is not yours")


def may_start(session, parsed, user: User) -> bool:
    rule = parsed.catalog.get("starters", {})
    roles = set(rule.get("roles", []))
    if roles and not (roles & user.role_names):
        return False
    if rule.get("requires_manager") and org.first_active_manager(session, user) is None:
        return False
    return True
