"""Attachments: invoices and supporting files.

Bytes live outside the database in an fsspec store (a folder in the instance directory by default;
any fsspec URL — an S3 bucket — when several app machines share the work). The database holds the
metadata and the link to the instance, written in the same transaction as the command that links
it. The type is decided by the content (puremagic, plus a look inside ZIP containers to tell
XLSX, DOCX and OFD apart), never by the name; the size limit is enforced while the upload streams
into the store, never after reading it all into memory.
"""
from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import secrets
import tempfile
import unicodedata
import zipfile
from datetime import datetime, timedelta

import fsspec
import puremagic
from sqlalchemy import select

from . import access, clock
from .errors import EngineError, Forbidden, NotFound, ValidationFailed
from .models import Attachment, ProcessInstance
from .tables import iso, usernames

log = logging.getLogger("salesflow.attachments")

MAX_BYTES = 20 * 1024 * 1024
CHUNK = 256 * 1024
PURGE_AFTER = timedelta(days=1)
# what may be uploaded, by content: PDF, OFD and XML (electronic invoices), JPEG, PNG, XLSX, DOCX
ALLOWED = {
    "application/pdf": ".pdf",
    "application/ofd": ".ofd",
    "application/xml": ".xml",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}


class TooLarge(EngineError):
    status = 413


class UnsupportedType(EngineError):
    status = 415


class Storage:
    """Files by key in an fsspec filesystem under `url` (file://…, s3://bucket/prefix, memory://…)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        if getattr(self.fs, "protocol", None) in ("file", ("file", "local")) or self.url.startswith(("file:", "/")):
            os.makedirs(self.root, exist_ok=True)

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, key)

    def open_write(self, key: str):
        parent = posixpath.dirname(self._path(key))
        self.fs.makedirs(parent, exist_ok=True)
        return self.fs.open(self._path(key), "wb")

    def open_read(self, key: str):
        return self.fs.open(self._path(key), "rb")

    def delete(self, key: str) -> None:
        try:
            self.fs.rm(self._path(key))
        except FileNotFoundError:
            pass


def default_storage_url() -> str:
    return os.environ.get("SALESFLOW_FILES_URL") or \
        "file://" + os.path.join(tempfile.gettempdir(), f"salesflow-files-{os.getuid()}")


def sniff(head: bytes, path_reader) -> str | None:
    """The content type of a file from its first bytes (and, for a ZIP container, its member names)."""
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    mimes = [m.mime_type for m in matches]
    if head.startswith(b"PK\x03\x04"):
        try:
            with path_reader() as handle, zipfile.ZipFile(handle) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, EOFError):
            return None
        if "OFD.xml" in names:
            return "application/ofd"
        if "[Content_Types].xml" in names:
            if any(n.startswith("xl/") for n in names):
                return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            if any(n.startswith("word/") for n in names):
                return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        return None
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if "application/xml" in mimes or text.startswith(b"<?xml"):
        return "application/xml"
    return None


def _clean_name(filename: str | None) -> str:
    name = unicodedata.normalize("NFC", os.path.basename((filename or "").replace("\\", "/"))).strip()
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|:*?')
    return (name or "file")[:200]


def upload(rt, username: str, stream, filename: str | None, *, instance_id: int | None = None) -> dict:
    """Store an upload (streamed in chunks; more than 20 MiB → 413; a type not allowed by content →
    415). With `instance_id`, it is added to that running instance at once (anyone who can see it)."""
    now = clock.now()
    with rt.db.read() as session:
        user = access.actor(session, username)
        if instance_id is not None:
            inst = session.get(ProcessInstance, instance_id)
            if inst is None or not access.can_see(session, inst, user):
                raise NotFound(f"instance {instance_id} not found")
            if inst.status != "running":
                from .errors import Conflict
                raise Conflict(f"instance {instance_id} is {inst.status}: files can be added while it runs")
    key = f"{now:%Y/%m}/{secrets.token_hex(16)}"
    digest, size, head = hashlib.sha256(), 0, b""
    storage = rt.storage
    try:
        with storage.open_write(key) as out:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_BYTES:
                    raise TooLarge("the file is larger than 20 MiB")
                if len(head) < 8192:
                    head += chunk[: 8192 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise ValidationFailed({"file": "the file is empty"})
        content_type = sniff(head, lambda: storage.open_read(key))
        if content_type not in ALLOWED:
            raise UnsupportedType("this kind of file is not accepted: PDF, OFD, XML, JPEG, PNG, XLSX or DOCX")
    except BaseException:
        storage.delete(key)
        raise
    attachment_id = secrets.token_hex(16)
    try:
        if instance_id is None:
            with rt.db.write() as session:
                session.add(Attachment(id=attachment_id, filename=_clean_name(filename), content_type=content_type,
                                       size=size, sha256=digest.hexdigest(), path=key, uploaded_by_id=user.id,
                                       uploaded_at=now))
        else:
            with rt.command(username, instance_id=instance_id) as cmd:
                if not access.can_see(cmd.session, cmd.instance, cmd.actor):
                    raise NotFound(f"instance {instance_id} not found")
                cmd.session.add(Attachment(id=attachment_id, filename=_clean_name(filename),
                                           content_type=content_type, size=size, sha256=digest.hexdigest(), path=key,
                                           uploaded_by_id=user.id, uploaded_at=now, instance_id=instance_id,
                                           linked_at=now))
                cmd.record("attachment_added", None, filename=_clean_name(filename), attachment=attachment_id)
                rt._save(cmd)
    except BaseException:
        storage.delete(key)
        raise
    return {"id": attachment_id, "filename": _clean_name(filename), "content_type": content_type, "size": size,
            "sha256": digest.hexdigest()}


def attachment_fields(schema: dict | None) -> list[str]:
    """Form fields that link attachments: {"type": "array", "items": {"format": "attachment"}}."""
    return [name for name, prop in ((schema or {}).get("properties") or {}).items()
            if isinstance(prop, dict) and prop.get("type") == "array"
            and (prop.get("items") or {}).get("format") == "attachment"]


def link(cmd, ids_by_field: dict[str, list]) -> None:
    """Link attachments named in accepted form data (or a comment) to the command's instance, in its
    transaction. An id that is unknown, another user's unlinked upload, or another instance's → 422
    naming the field."""
    session, inst, actor = cmd.session, cmd.instance, cmd.actor
    errors = {}
    rows = []
    for field, ids in ids_by_field.items():
        for attachment_id in ids or []:
            row = session.get(Attachment, attachment_id) if isinstance(attachment_id, str) else None
            ok = row is not None and (row.instance_id == inst.id or
                                      (row.instance_id is None and row.uploaded_by_id == actor.id))
            if not ok:
                errors[field] = f"unknown attachment {attachment_id!r} (upload it first, as yourself)"
                break
            rows.append(row)
    if errors:
        raise ValidationFailed(errors)
    for row in rows:
        if row.instance_id is None:
            row.instance_id, row.linked_at = inst.id, cmd.now


def link_form(cmd, schema: dict | None, accepted: dict) -> None:
    fields = attachment_fields(schema)
    if fields:
        link(cmd, {f: accepted.get(f) for f in fields if accepted.get(f)})


def attachment_dict(row, names: dict) -> dict:
    return {"id": row.id, "filename": row.filename, "content_type": row.content_type, "size": row.size,
            "uploaded_by": names.get(row.uploaded_by_id), "at": iso(row.uploaded_at)}


def of_instance(rt, instance_id: int, username: str) -> list[dict]:
    with rt.db.read() as session:
        user = access.actor(session, username)
        inst = session.get(ProcessInstance, instance_id)
        if inst is None or not access.can_see(session, inst, user):
            raise NotFound(f"instance {instance_id} not found")
        rows = session.scalars(select(Attachment).where(Attachment.instance_id == inst.id)
                               .order_by(Attachment.uploaded_at, Attachment.id)).all()
        names = usernames(session, {r.uploaded_by_id for r in rows})
        return [attachment_dict(r, names) for r in rows]


def open_for(rt, attachment_id: str, username: str):
    """(metadata, a readable file) for someone who can see its instance (an unlinked upload: its
    uploader only); 404 for an unknown id, 403 for a known one they may not read."""
    with rt.db.read() as session:
        user = access.actor(session, username)
        row = session.get(Attachment, attachment_id) if isinstance(attachment_id, str) and \
            len(attachment_id) == 32 else None
        if row is None:
            raise NotFound(f"attachment {attachment_id} not found")
        if row.instance_id is None:
            if row.uploaded_by_id != user.id:
                raise Forbidden("this file is not yours")
        else:
            inst = session.get(ProcessInstance, row.instance_id)
            if not access.can_see(session, inst, user):
                raise Forbidden("you cannot see the request this file belongs to")
        meta = {"id": row.id, "filename": row.filename, "content_type": row.content_type, "size": row.size,
                "sha256": row.sha256}
        path = row.path
    return meta, rt.storage.open_read(path)


def purge_unlinked(rt, now: datetime) -> int:
    """Delete uploads never linked to an instance within a day (the worker's pass). Looked for in a
    read first: a pass with nothing to delete takes no write lock (on SQLite it would hold up every
    command for its while, every 2 seconds)."""
    stale = (Attachment.instance_id.is_(None), Attachment.uploaded_at < now - PURGE_AFTER)
    with rt.db.read() as session:
        if session.scalar(select(Attachment.id).where(*stale).limit(1)) is None:
            return 0
    with rt.db.write() as session:
        rows = session.scalars(select(Attachment).where(*stale).limit(500)).all()
        for row in rows:
            rt.storage.delete(row.path)
            session.delete(row)
        return len(rows)


def describe_many(rt, ids, username: str) -> dict[str, dict]:
    """id -> {filename, content_type, size} of the attachments among `ids` the user may use or read."""
    ids = [i for i in dict.fromkeys(ids or []) if isinstance(i, str) and len(i) == 32]
    if not ids:
        return {}
    with rt.db.read() as session:
        user = access.actor(session, username)
        rows = session.scalars(select(Attachment).where(Attachment.id.in_(ids))).all()
        result = {}
        for row in rows:
            if row.instance_id is None:
                if row.uploaded_by_id != user.id:
                    continue
            elif not access.can_see(session, session.get(ProcessInstance, row.instance_id), user):
                continue
            result[row.id] = {"id": row.id, "filename": row.filename, "content_type": row.content_type,
                              "size": row.size}
        return result
