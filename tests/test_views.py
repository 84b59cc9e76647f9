"""The HTML views through Flask's test client (CSRF on, as in production)."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import at
from webui import create_app
from webui.formrender import data_fields

PASSWORD = "salesflow-demo"
SHANGHAI = ZoneInfo("Asia/Shanghai")
TRANSLATIONS = Path(__file__).resolve().parent.parent / "webui" / "translations"


@pytest.fixture
def app(engine, tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "test", "TESTING": True}, engine=engine)
    assert app.config.get("WTF_CSRF_ENABLED", True) is True
    return app


def csrf_token(client, path="/login", **kw) -> str:
    html = client.get(path, **kw).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token in {path}"
    return match.group(1)


def login(app, username, lang="zh-CN"):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    token = csrf_token(client)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    client.token = token
    return client


def text_of(response) -> str:
    """The visible text (of a response or some HTML), roughly: tags removed, whitespace collapsed."""
    html = response if isinstance(response, str) else response.get_data(as_text=True)
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


CLAIM = {"category": "travel", "amount": "1200", "incurred_on": "2025-03-03", "description": "高铁票 Shanghai"}


def file_claim(client, **changes):
    return client.post("/start/expense_approval", data={**CLAIM, "csrf_token": client.token, **changes})


# ---------------------------------------------------------------- authentication
def test_pages_need_a_login(app):
    client = app.test_client()
    for path in ("/", "/start", "/start/expense_approval", "/instances/1", "/tasks/x"):
        r = client.get(path)
        assert r.status_code == 302, path
        assert r.location.startswith("/login?next="), r.location


def test_wrong_password_is_401_with_a_message(app):
    client = app.test_client()
    token = csrf_token(client, headers={"Accept-Language": "en"})
    r = client.post("/login", data={"username": "alice", "password": "nope", "csrf_token": token},
                    headers={"Accept-Language": "en"})
    assert r.status_code == 401
    assert "Wrong username or password." in text_of(r)
    assert client.get("/").status_code == 302  # still logged out


def test_login_then_logout(app):
    client = login(app, "alice")
    assert client.get("/").status_code == 200
    r = client.post("/logout", data={"csrf_token": client.token})
    assert r.status_code == 302 and r.location.endswith("/login")
    assert client.get("/").status_code == 302


def test_posts_without_csrf_token_are_rejected(app):
    client = app.test_client()
    r = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert r.status_code == 400
    assert client.get("/").status_code == 302  # not logged in

    client = login(app, "alice")
    r = file_claim(client, csrf_token="")
    assert r.status_code == 400
    assert "表单已过期" in text_of(r)  # a friendly page, in the user's language
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still logged in
    assert app.extensions["salesflow"].instances("alice", mine=True) == []


# ---------------------------------------------------------------- inbox and language
def test_inbox_in_chinese_and_english(app):
    zh = login(app, "alice", "zh-CN,zh;q=0.9")
    text = text_of(zh.get("/"))
    for words in ("待办", "我的任务", "可认领的任务", "我发起的", "退出登录"):
        assert words in text
    assert "My tasks" not in text

    en = login(app, "alice", "en-US,en;q=0.9")
    text = text_of(en.get("/"))
    for words in ("Inbox", "My tasks", "Tasks I can claim", "Submitted by me", "Log out"):
        assert words in text
    assert "我的任务" not in text


def test_language_switch_overrides_the_browser(app):
    client = login(app, "alice", "zh-CN")
    r = client.post("/language/en", data={"csrf_token": client.token, "next": "/"})
    assert r.status_code == 302 and r.location == "/"
    assert "Submitted by me" in text_of(client.get("/"))
    assert app.extensions["salesflow"].user_info("alice")["locale"] == "en"


def test_submitted_claim_shows_status_step_and_translated_history(app):
    alice = login(app, "alice")
    r = file_claim(alice)
    assert r.status_code == 302
    instance_id = int(r.location.rsplit("/", 1)[1])
    inbox = alice.get("/").get_data(as_text=True)
    row = re.search(rf'<tr class="instance-row" data-instance-id="{instance_id}">(.*?)</tr>', inbox, re.S)
    assert row, "the claim is not in 'Submitted by me'"
    assert "进行中" in row.group(1) and "直属经理审批" in row.group(1) and "费用报销" in row.group(1)

    page = text_of(alice.get(f"/instances/{instance_id}"))
    assert "差旅费" in page and "1,200" in page and "已发起" in page and "任务已创建" in page
    assert "<svg" in alice.get(f"/instances/{instance_id}").get_data(as_text=True)


# ---------------------------------------------------------------- start form
def test_invalid_amount_is_shown_inline_and_creates_nothing(app):
    client = login(app, "alice")
    r = file_claim(client, amount="-5")
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    field = re.search(r'<div class="field has-error" data-field="amount">(.*?)</div>', html, re.S)
    assert field, "no inline error on the amount field"
    assert "必须是大于 0 的数字" in field.group(1)
    assert 'value="-5"' in field.group(1)  # the user's values are kept
    assert "高铁票 Shanghai</textarea>" in html
    assert re.search(r'<option value="travel"\s+selected', html)
    assert app.extensions["salesflow"].instances("alice", mine=True) == []
    assert app.extensions["salesflow"].instances("admin") == []


def test_text_in_a_number_field_and_missing_fields(app):
    client = login(app, "alice", "en")
    r = client.post("/start/expense_approval", data={"amount": "abc", "csrf_token": client.token})
    assert r.status_code == 422
    text = text_of(r)
    assert "must be a number greater than 0" in text
    assert text.count("this field is required") == 3  # category, date, description


# ---------------------------------------------------------------- tasks
def _open_task(app, username):
    tasks = app.extensions["salesflow"].tasks(username)
    assert len(tasks) == 1, tasks
    return tasks[0]


def test_task_page_is_404_for_a_stranger(app):
    alice = login(app, "alice")
    file_claim(alice)
    task = _open_task(app, "dave")
    carol = login(app, "carol")  # another region's rep
    for path in (f"/tasks/{task['id']}", f"/instances/{task['instance_id']}",
                 f"/instances/{task['instance_id']}/diagram.svg"):
        r = carol.get(path)
        assert r.status_code == 404, path
        assert "未找到" in text_of(r)
    r = carol.post(f"/tasks/{task['id']}/complete", data={"decision": "approve", "csrf_token": carol.token})
    assert r.status_code == 404
    assert _open_task(app, "dave")["status"] == "open"


def test_approval_errors_inline_then_conflict_after_completion(app):
    file_claim(login(app, "alice"))
    task = _open_task(app, "dave")
    dave = login(app, "dave")
    page = text_of(dave.get(f"/tasks/{task['id']}"))
    assert "直属经理审批" in page and "差旅费" in page and "同意" in page and "退回修改" in page

    r = dave.post(f"/tasks/{task['id']}/complete", data={"decision": "reject", "csrf_token": dave.token})
    assert r.status_code == 422
    assert "退回或驳回时必须填写说明" in text_of(r)
    assert re.search(r'value="reject"\s+checked', r.get_data(as_text=True))

    r = dave.post(f"/tasks/{task['id']}/complete",
                  data={"decision": "approve", "comment": "好", "csrf_token": dave.token})
    assert r.status_code == 302 and r.location == f"/instances/{task['instance_id']}"
    r = dave.post(f"/tasks/{task['id']}/complete",
                  data={"decision": "approve", "comment": "again", "csrf_token": dave.token}, follow_redirects=True)
    assert r.status_code == 200
    assert "此任务已经办理完成" in text_of(r)  # the engine's own reason, translated


def test_someone_elses_task_is_forbidden(app):
    file_claim(login(app, "alice"))
    task = _open_task(app, "dave")
    frank = login(app, "frank")  # dave's manager sees the instance, but the task is dave's
    page = frank.get(f"/tasks/{task['id']}")
    assert page.status_code == 200
    assert "此任务不由您处理" in text_of(page)
    r = frank.post(f"/tasks/{task['id']}/complete", data={"decision": "approve", "csrf_token": frank.token})
    assert r.status_code == 403
    assert "无权" in text_of(r)


def test_delegate_and_withdraw(app):
    alice = login(app, "alice")
    r = file_claim(alice)
    instance_id = int(r.location.rsplit("/", 1)[1])
    task = _open_task(app, "dave")
    dave = login(app, "dave")
    r = dave.post(f"/tasks/{task['id']}/delegate", data={"to": "alice", "csrf_token": dave.token})
    assert r.status_code == 422 and "不能审批自己的申请" in text_of(r)
    r = dave.post(f"/tasks/{task['id']}/delegate", data={"to": "erin", "comment": "出差", "csrf_token": dave.token})
    assert r.status_code == 302
    assert _open_task(app, "erin")["id"] == task["id"]

    r = alice.post(f"/instances/{instance_id}/withdraw", data={"csrf_token": alice.token}, follow_redirects=True)
    text = text_of(r)
    assert "申请已撤回" in text and "已取消" in text and "已撤回" in text and "已转交" in text
    assert app.extensions["salesflow"].tasks("erin") == []
    r = dave.post(f"/instances/{instance_id}/withdraw", data={"csrf_token": dave.token})
    assert r.status_code == 403


def test_overdue_tasks_are_marked_with_local_due_time(app):
    # started back then (the engine leaves due_at empty for a deadline already past at creation)
    app.extensions["salesflow"].start(
        "performance_appraisal", "ivan",
        {"employee": "alice", "period": "2025-01", "cycle": "monthly", "period_end": "2025-01-31"},
        at=datetime(2025, 2, 3, 9, 0, tzinfo=SHANGHAI))
    task = _open_task(app, "alice")
    assert task["overdue"] is True
    due_local = datetime.fromisoformat(task["due_at"]).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")

    alice = login(app, "alice")
    inbox = alice.get("/").get_data(as_text=True)
    row = re.search(r'<tr class="task-row is-overdue"[^>]*>.*?</tr>', inbox, re.S)
    assert row, "no overdue row in the inbox"
    assert "员工自评" in row.group(0) and "已逾期" in row.group(0)
    assert due_local in row.group(0)  # shown in Asia/Shanghai time

    page = text_of(alice.get(f"/tasks/{task['id']}"))
    assert "已逾期" in page and due_local in page


def test_nested_scores_are_sent_as_an_object(app):
    from werkzeug.datastructures import MultiDict

    from webui.views import parse_form
    schema = {"type": "object", "properties": {
        "scores": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "integer"}}},
        "ok": {"type": "boolean"}, "note": {"type": "string"}}}
    assert parse_form(schema, MultiDict({"scores.a": "7.5", "scores.b": "8", "ok": "on", "note": " "})) == \
        {"scores": {"a": 7.5, "b": 8}, "ok": True}
    assert parse_form(schema, MultiDict({"scores.a": "x", "scores.b": "nan"})) == \
        {"scores": {"a": "x", "b": "nan"}, "ok": False}


# ---------------------------------------------------------------- labels from each step's own form
def _history_row(html: str, step_title: str) -> str:
    """The text of the history row of a step's input (the step column shows its title)."""
    rows = [text_of(r) for r in re.findall(
        r'<tr class="history-row" data-action="(?:completed|approved|returned|rejected)">.*?</tr>', html, re.S)]
    matching = [r for r in rows if step_title in r]
    assert len(matching) == 1, rows
    return matching[0]


def test_lead_customer_feedback_is_labelled_by_its_own_form(app):
    eng = app.extensions["salesflow"]
    iid = eng.start("lead_to_aftersales", "alice", {"company": "苏州华达机械有限公司", "contact": "王经理",
                                                    "source": "trade_show", "rep": "alice"})["id"]
    for name, data in (
            ("initial_contact", {"basic_needs": "产线自动化改造", "purchase_intent": "high", "budget": 300000,
                                 "qualified": True}),
            ("needs_analysis", {"business_situation": "订单增长", "pain_points": "人工成本高", "decision_process": "总经理拍板",
                                "requirements": "自动上下料", "confirmed_with_customer": True}),
            ("proposal", {"products": "自动上下料系统 x2", "quoted_amount": 280000, "delivery_plan": "签约后60天交付",
                          "after_sales_terms": "一年质保"}),
            ("customer_feedback", {"decision": "approve", "comment": "客户认可"})):
        [task] = eng.instance(iid, "alice")["tasks"]
        assert task["name"] == name
        eng.complete(task["id"], "alice", data)

    html = login(app, "alice").get(f"/instances/{iid}").get_data(as_text=True)
    row = _history_row(html, "客户确认方案")  # the step's title
    assert "客户意见: 客户确认方案" in row and "客户意见说明: 客户认可" in row
    assert "审批意见" not in row and "同意" not in row  # not the approval form's labels
    group = re.search(r'<div class="dl-row" data-key="customer_feedback">\s*<dt>(.*?)</dt>(.*?)</dl>', html, re.S)
    assert group and group.group(1) == "客户确认方案"  # titled by its step
    assert "客户意见" in group.group(2) and "审批意见" not in group.group(2)


def test_appraisal_decision_is_labelled_by_its_own_form(app):
    eng = app.extensions["salesflow"]
    ivan = login(app, "ivan")
    assert re.search(r'<select id="f-employee" name="employee"', ivan.get("/start/performance_appraisal")
                     .get_data(as_text=True))  # x-widget "user": a user picker
    iid = eng.start("performance_appraisal", "ivan", {"employee": "alice", "period": "2025-Q3", "cycle": "quarterly",
                                                      "period_end": "2025-09-30"}, at=at("2025-09-30T18:00"))["id"]
    indicators = ["sales_achievement", "new_customers", "collection_rate", "lead_conversion",
                  "customer_satisfaction", "compliance", "teamwork", "learning"]
    for name, user, data, when in (
            ("self_evaluation", "alice", {"achievements": "新签客户5家", "evidence": "CRM订单报表"}, "2025-10-09T10:00"),
            ("manager_evaluation", "dave", {"scores": dict.fromkeys(indicators, 75), "report": "表现稳定"},
             "2025-10-13T10:00"),
            ("result_talk", "dave", {"talk_minutes": 45, "improvement_plan": "每周跟进重点客户"}, "2025-10-20T10:00"),
            ("employee_decision", "alice", {"decision": "appeal", "reason": "新客户数统计遗漏两家"}, "2025-10-21T10:00")):
        [task] = eng.instance(iid, "admin")["tasks"]
        assert task["name"] == name
        eng.complete(task["id"], user, data, at=at(when))

    html = login(app, "alice").get(f"/instances/{iid}").get_data(as_text=True)
    row = _history_row(html, "确认或申诉")
    assert "确认结果: 向人力资源部申诉" in row and "申诉理由: 新客户数统计遗漏两家" in row
    assert "复核意见" not in row and "appeal" not in row
    group = re.search(r'<div class="dl-row" data-key="employee_decision">\s*<dt>(.*?)</dt>(.*?)</dl>', html, re.S)
    assert group and group.group(1) == "确认或申诉"
    assert "向人力资源部申诉" in group.group(2) and "复核意见" not in group.group(2)
    fields = data_fields({**eng.instance(iid, "admin", labels=True), "history": []})  # no history: titled by the steps alone
    assert fields["employee_decision"]["x-title-zh"] == "确认或申诉" and fields["hr_appeal_review"]["properties"]
    # HR's task page labels the instance data the same way
    review = text_of(login(app, "ivan").get(f"/tasks/{eng.instance(iid, 'admin')['tasks'][0]['id']}"))
    assert "确认或申诉" in review and "向人力资源部申诉" in review


# ---------------------------------------------------------------- errors and translations
def test_unknown_pages_are_friendly_html_and_the_api_stays_json(app):
    client = login(app, "alice")
    r = client.get("/no/such/page")
    assert r.status_code == 404 and r.mimetype == "text/html" and "未找到" in text_of(r)
    r = client.get("/start/no_such_process")
    assert r.status_code == 404 and "未找到" in text_of(r)
    r = client.get("/instances/abc")
    assert r.status_code == 404
    r = client.get("/api/v1/nowhere")
    assert r.status_code == 404 and r.is_json


def test_every_message_has_a_chinese_translation():
    from babel.messages.pofile import read_po
    with open(TRANSLATIONS / "messages.pot", "rb") as fh:
        template = read_po(fh)
    with open(TRANSLATIONS / "zh" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        catalog = read_po(fh, locale="zh")
    ids = {m.id for m in template if m.id}
    assert len(ids) > 100
    missing = sorted(i for i in ids if not (catalog.get(i) and catalog.get(i).string))
    assert missing == []
    assert not [m.id for m in catalog if m.id and m.fuzzy]
    assert (TRANSLATIONS / "zh" / "LC_MESSAGES" / "messages.mo").is_file()
