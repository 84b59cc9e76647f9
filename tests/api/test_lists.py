"""Lists, search, summaries (CONTRACT "Lists, search, bulk") and attachments (CONTRACT "Attachments")."""
from __future__ import annotations

import io
import zipfile

import pytest

from tests.conftest import PDF

CLAIM = {"category": "travel", "amount": 3580.5, "incurred_on": "2026-11-10", "description": "拜访客户 client visit"}
APPROVE = {"decision": "approve", "comment": "同意"}


def test_summary_and_subject_on_tasks_and_instances(api, engine):
    inst = api.start("alice", "expense_approval", CLAIM)
    assert inst["summary"] == "Alice 艾丽斯 · 差旅费 · ¥3,580.50" or inst["summary"].endswith("差旅费 · ¥3,580.50")
    [task] = api.get("dave", "/tasks").get_json()
    assert task["subject"] == "alice" and task["summary"] == inst["summary"]
    engine.update_me("dave", {"locale": "en"})
    [task] = api.get("dave", "/tasks").get_json()
    assert task["summary"].endswith("· Travel · ¥3,580.50")  # in the caller's language


def test_done_scope_search_and_overdue(api):
    a = api.start("alice", "expense_approval", CLAIM)
    b = api.start("bob", "expense_approval", {**CLAIM, "category": "marketing", "amount": 120})
    api.complete("dave", api.open_task(a, "manager_approval")["id"], APPROVE)
    done = api.get("dave", "/tasks?scope=done").get_json()
    assert [t["instance_id"] for t in done] == [a["id"]] and done[0]["status"] == "completed"
    assert [t["instance_id"] for t in api.get("dave", "/tasks").get_json()] == [b["id"]]
    # q: the summary, people's names, the instance id
    assert [t["instance_id"] for t in api.get("dave", "/tasks?q=市场推广").get_json()] == [b["id"]]
    assert [t["instance_id"] for t in api.get("dave", "/tasks?q=BOB").get_json()] == [b["id"]]
    assert [t["instance_id"] for t in api.get("dave", f"/tasks?q=%23{b['id']}").get_json()] == [b["id"]]
    assert api.get("dave", "/tasks?q=nothing-like-this").get_json() == []
    assert api.get("dave", "/tasks?q=100%25").get_json() == []  # % is literal
    r = api.get("dave", "/tasks?q=bob&scope=open")
    assert r.headers["X-Total-Count"] == "1"
    assert api.get("dave", "/tasks?overdue=1").get_json() == []  # expense steps have no deadline
    assert api.get("dave", "/tasks?scope=later").status_code == 422


def test_instance_scopes(api):
    mine = api.start("alice", "expense_approval", CLAIM)
    other = api.start("bob", "expense_approval", CLAIM)
    api.complete("dave", api.open_task(other, "manager_approval")["id"], APPROVE)
    api.post("bob", f"/instances/{other['id']}/cc", json={"users": ["carol"]})
    ids = lambda user, q: [i["id"] for i in api.get(user, "/instances" + q).get_json()]  # noqa: E731
    assert ids("alice", "?scope=started") == [mine["id"]]
    assert ids("dave", "?scope=involved") == [other["id"]]
    assert ids("carol", "?scope=cc") == [other["id"]]
    assert ids("dave", "?scope=all") == [other["id"], mine["id"]]
    assert ids("dave", "?q=bob") == [other["id"]]
    assert api.get("dave", "/instances?scope=mine").status_code == 422


# ---------------------------------------------------------------- attachments
def zipped(names):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return out.getvalue()


PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
OFD = zipped(["OFD.xml", "Doc_0/Document.xml"])
XLSX = zipped(["[Content_Types].xml", "xl/workbook.xml"])
DOCX = zipped(["[Content_Types].xml", "word/document.xml"])


@pytest.mark.parametrize("content, name, expected", [
    (PDF, "invoice.pdf", "application/pdf"), (PNG, "receipt.png", "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\0" * 20, "a.jpg", "image/jpeg"),
    (b'<?xml version="1.0"?><invoice/>', "e-invoice.xml", "application/xml"), (OFD, "发票.ofd", "application/ofd"),
    (XLSX, "list.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    (DOCX, "note.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (PDF, "renamed.exe", "application/pdf"),  # by content, never by name
])
def test_upload_decides_the_type_by_content(api, content, name, expected):
    r = api.upload("alice", content, name)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["content_type"] == expected and body["size"] == len(content) and len(body["sha256"]) == 64
    assert body["filename"] == name and set(body) == {"id", "filename", "content_type", "size", "sha256"}


@pytest.mark.parametrize("content, name", [(b"MZ\x90\x00" + b"\0" * 60, "invoice.pdf"), (b"hello", "a.txt"),
                                           (zipped(["a.txt"]), "a.zip"), (b"GIF89a" + b"\0" * 20, "x.png")])
def test_other_types_are_415(api, content, name):
    assert api.upload("alice", content, name).status_code == 415


def test_too_big_is_413_and_a_missing_part_422(api):
    big = PDF + b"\0" * (20 * 1024 * 1024)
    assert api.upload("alice", big, "big.pdf").status_code == 413
    r = api.client.post("/api/v1/attachments", headers=api._headers("alice"), data={"other": "x"},
                        content_type="multipart/form-data")
    assert r.status_code == 422 and "file" in r.get_json()["errors"]
    assert api.upload(None, PDF, "a.pdf").status_code == 401


def test_expense_claims_require_invoices_of_their_own(api):
    path = "/processes/expense_approval/instances"
    r = api.post("alice", path, json={"data": CLAIM})
    assert r.status_code == 422 and "invoices" in r.get_json()["errors"]
    r = api.post("alice", path, json={"data": {**CLAIM, "invoices": []}})
    assert r.status_code == 422 and "invoices" in r.get_json()["errors"]
    bobs = api.invoice("bob")
    r = api.post("alice", path, json={"data": {**CLAIM, "invoices": [bobs]}})
    assert r.status_code == 422 and "invoices" in r.get_json()["errors"]  # another user's upload
    r = api.post("alice", path, json={"data": {**CLAIM, "invoices": ["0" * 32]}})
    assert r.status_code == 422 and "invoices" in r.get_json()["errors"]
    own = api.invoice("alice")
    inst = api.start("alice", "expense_approval", {**CLAIM, "invoices": [own]})
    assert inst["data"]["invoices"] == [own]
    files = api.get("dave", f"/instances/{inst['id']}/attachments").get_json()
    assert [(f["id"], f["uploaded_by"], f["content_type"]) for f in files] == [(own, "alice", "application/pdf")]
    # a linked invoice cannot be reused by another claim
    r = api.post("alice", path, json={"data": {**CLAIM, "invoices": [own]}})
    assert r.status_code == 422


def test_download_for_whoever_can_see_the_instance(api):
    own = api.invoice("alice")
    r = api.get("bob", f"/attachments/{own}")
    assert r.status_code == 403  # not linked yet: only its uploader
    r = api.get("alice", f"/attachments/{own}")
    assert r.status_code == 200 and r.data == PDF and r.headers["Content-Type"] == "application/pdf"
    assert r.headers["Content-Disposition"].startswith("attachment")
    inst = api.start("alice", "expense_approval", {**CLAIM, "invoices": [own]})
    assert api.get("dave", f"/attachments/{own}").status_code == 200  # the approver
    assert api.get("carol", f"/attachments/{own}").status_code == 403
    api.post("alice", f"/instances/{inst['id']}/cc", json={"users": ["carol"]})
    assert api.get("carol", f"/attachments/{own}").status_code == 200  # CC included
    assert api.get("alice", "/attachments/" + "f" * 32).status_code == 404
    assert api.get("alice", "/attachments/nonsense").status_code == 404


def test_participants_add_supporting_files_and_attach_them_to_comments(api):
    inst = api.start("alice", "expense_approval", CLAIM)
    r = api.upload("dave", PNG, "现场照片.png", path=f"/instances/{inst['id']}/attachments")
    assert r.status_code == 201
    photo = r.get_json()["id"]
    assert [f["filename"] for f in api.get("alice", f"/instances/{inst['id']}/attachments").get_json()][-1] \
        == "现场照片.png"
    assert api.upload("carol", PNG, "x.png", path=f"/instances/{inst['id']}/attachments").status_code == 404
    note = api.invoice("alice")
    r = api.post("alice", f"/instances/{inst['id']}/comments", json={"text": "补充说明见附件", "attachments": [note]})
    assert r.status_code == 201 and [a["id"] for a in r.get_json()["attachments"]] == [note]
    thread = api.get("dave", f"/instances/{inst['id']}/comments").get_json()
    assert thread[0]["attachments"][0]["filename"] == "发票.pdf"
    assert api.get("dave", f"/attachments/{note}").status_code == 200
    assert photo != note


def test_unlinked_uploads_are_purged_after_a_day_and_linked_ones_stay(api, engine):
    from datetime import timedelta

    from engine import clock
    from engine.models import Attachment
    stray = api.invoice("alice")
    kept = api.invoice("alice")
    api.start("alice", "expense_approval", {**CLAIM, "invoices": [kept]})
    assert engine.work(at=clock.now() + timedelta(hours=23))["purged"] == 0
    assert engine.work(at=clock.now() + timedelta(days=1, minutes=1))["purged"] == 1
    with engine.db.read() as s:
        assert s.get(Attachment, stray) is None and s.get(Attachment, kept) is not None
    assert api.get("alice", f"/attachments/{stray}").status_code == 404
    assert api.get("alice", f"/attachments/{kept}").status_code == 200  # its bytes are still in the store


def test_files_live_in_any_fsspec_store(engine):
    import io

    from engine.attachments import Storage
    engine.storage = Storage("memory://salesflow-test")
    meta = engine.upload("alice", io.BytesIO(PDF), "inv.pdf")
    opened, handle = engine.open_attachment(meta["id"], "alice")
    assert handle.read() == PDF and opened["content_type"] == "application/pdf"
