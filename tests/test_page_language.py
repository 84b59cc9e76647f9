"""Pages in one language show no labels of the other: every string the templates and views show is in
the zh catalogue (extracted afresh, so a string added without a translation fails here), English pages
carry no Chinese outside what people typed, Chinese pages no known English labels, and no raw keys."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import invoiced
from tests.test_views import CJK, NAMES, app, login, no_diagram, text_of  # noqa: F401 - the app fixture

WEBUI = Path(__file__).resolve().parent.parent / "webui"


def test_pybabel_extract_finds_no_untranslated_string(tmp_path):
    from babel.messages.pofile import read_po
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "_l",
                    "-k", "N_", "-o", str(pot), "."], cwd=WEBUI, check=True, capture_output=True)
    with open(pot, "rb") as fh:
        template = read_po(fh)
    with open(WEBUI / "translations" / "zh" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        catalog = read_po(fh, locale="zh")
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}
    assert len(ids) > 300
    untranslated = sorted(i for i in ids if not (catalog.get(i) and catalog.get(i).string))
    assert untranslated == [], "run pybabel extract/update and translate: " + repr(untranslated[:20])
    assert [m.id for m in catalog if m.id and m.fuzzy] == []
    mo = WEBUI / "translations" / "zh" / "LC_MESSAGES" / "messages.mo"
    assert mo.stat().st_mtime >= (WEBUI / "translations" / "zh" / "LC_MESSAGES" / "messages.po").stat().st_mtime - 5


TYPED = ("发票.pdf", "高铁票", "上海", "出租车", "苏州华达机械", "两套设备", "同意", "完成目标", "订单", "目标基本达成",
         "每月跟进回款", "中文")


def chinese_left(text: str) -> list[str]:
    for typed in TYPED + NAMES:
        text = text.replace(typed, "")
    return [text[max(0, m.start() - 30):m.end() + 30] for m in CJK.finditer(text)]


ENGLISH_LABELS = ("Request details", "History", "Inbox", "My tasks", "Started by", "Due", "Status", "Budget",
                  "Approved", "Submit", "Process diagram", "Review result", "Booked", "Period", "Remaining",
                  "returned", "Waiting", "Task created", "Score", "Grade", "Submitter", "Manager approval",
                  "To do", "Copied to me", "Search", "routed to")
RAW = ("budget_remaining", "budget_booking", "review_result", "major_reason", "manager_review", "submit_claim",
       "task_created", "manager_approval", "None", "True", "False")


def _pages(app):
    eng = app.extensions["salesflow"]
    claim = eng.start("expense_approval", "alice", invoiced(eng, "alice", {
        "category": "travel", "amount": 25000, "incurred_on": "2025-03-03", "description": "高铁票 上海"}))
    for user in ("dave", "frank", "judy", "heidi"):
        [task] = eng.tasks(user, instance_id=claim["id"])
        eng.complete(task["id"], user, {"decision": "approve", "comment": "同意"})
    contract = eng.start("contract_review", "alice")
    [task] = eng.tasks("alice", instance_id=contract["id"])
    eng.complete(task["id"], "alice", {"customer": "苏州华达机械", "amount": 600000, "payment_terms": "non_standard",
                                       "customer_has_credit_record": False, "summary": "两套设备"})
    [legal] = eng.tasks("grace", instance_id=contract["id"])
    eng.complete(legal["id"], "grace", {"decision": "return", "comment": "同意"})
    return claim["id"], contract["id"], legal["id"]


def test_english_pages_show_no_chinese_and_chinese_pages_no_english_labels(app):
    claim, contract, legal = _pages(app)
    paths = ["/", "/?tab=done", "/?tab=started", "/?tab=cc", "/start", "/start/expense_approval",
             f"/instances/{claim}", f"/instances/{contract}", f"/tasks/{legal}", "/profile"]
    # /notifications is left out: a notification's text is written once, in the language its recipient had
    # stored when it was sent (as its mail is)
    for user in ("alice", "grace"):
        en = login(app, user, "en")
        for path in paths:
            r = en.get(path)
            if r.status_code == 404:
                continue
            html = r.get_data(as_text=True)
            assert r.status_code == 200, (user, path, r.status_code)
            text = text_of(html)  # the diagram included: its labels are translated too
            assert chinese_left(text) == [], (user, path, chinese_left(text)[:5])
            for raw in RAW:
                assert not re.search(rf"\b{raw}\b", text), (user, path, raw)
        zh = login(app, user)
        for path in paths:
            r = zh.get(path)
            if r.status_code == 404:
                continue
            text = text_of(no_diagram(r.get_data(as_text=True)))
            for label in ENGLISH_LABELS:
                assert not re.search(rf"\b{re.escape(label)}\b", text), (user, path, label)
            for raw in RAW:
                assert not re.search(rf"\b{raw}\b", text), (user, path, raw)


def test_the_diagram_is_in_the_page_language(app):
    claim, contract, _legal = _pages(app)
    zh = login(app, "alice").get(f"/instances/{contract}").get_data(as_text=True)
    svg = text_of(re.search(r"<svg.*?</svg>", zh, re.S).group(0))
    assert "提交人" in svg and "Submitter" not in svg and "Contract review" not in svg
    en = login(app, "alice", "en").get(f"/instances/{contract}").get_data(as_text=True)
    svg = text_of(re.search(r"<svg.*?</svg>", en, re.S).group(0))
    assert chinese_left(svg) == []
    assert "Submitter" in svg and "Round result?" in svg and "Approved" in svg
