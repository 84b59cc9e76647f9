"""The HTML views through Flask's test client (CSRF on, as in production)."""
from __future__ import annotations

import io

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import PDF, at, invoiced
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
    """File a claim through the web form, with a PDF invoice uploaded in the same form (the claim requires one)."""
    data = {**CLAIM, "csrf_token": client.token, "invoices__upload": (io.BytesIO(PDF), "发票.pdf"), **changes}
    return client.post("/start/expense_approval", data=data, content_type="multipart/form-data")


# ---------------------------------------------------------------- authentication
def test_pages_need_a_login(app):
    client = app.test_client()
    for path in ("/", "/start", "/start/expense_approval", "/instances/1", "/tasks/00000000-0000-4000-8000-000000000000"):
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
    for words in ("待办", "已办", "我的任务", "可认领的任务", "我发起的", "抄送我的", "退出登录"):
        assert words in text
    assert "My tasks" not in text

    en = login(app, "alice", "en-US,en;q=0.9")
    text = text_of(en.get("/"))
    for words in ("Inbox", "To do", "Done", "My tasks", "Tasks I can claim", "Started by me", "Copied to me", "Log out"):
        assert words in text
    assert "我的任务" not in text


def test_language_switch_overrides_the_browser(app):
    client = login(app, "alice", "zh-CN")
    r = client.post("/language/en", data={"csrf_token": client.token, "next": "/"})
    assert r.status_code == 302 and r.location == "/"
    assert "Started by me" in text_of(client.get("/"))
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
    # an open step's "task created" row reads as waiting; money as ¥1,200.00
    assert "差旅费" in page and "¥1,200.00" in page and "已发起" in page and "待处理" in page
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
    assert text.count("this field is required") == 4  # category, date, description, invoices


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


# ---------------------------------------------------------------- the approval desk
BIG = {**CLAIM, "amount": "25000"}  # manager, sales director, general manager, finance
APPROVE = {"decision": "approve", "comment": "同意"}
NAMES = ("Alice 艾丽斯", "Bob 包博", "Carol 曹卡罗", "Dave 戴经理", "Erin 易经理", "Frank 方总监", "Grace 葛法务",
         "Heidi 何财务", "Ivan 尹人事", "Judy 朱总", "Oscar 欧运营", "Administrator 管理员")
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def no_chinese(text: str) -> list[str]:
    """Chinese left in an English page once the people's names, the invoices' file names (what people
    typed or uploaded) and the language switch are taken out."""
    text = text.replace("中文", "").replace("发票.pdf", "")
    for name in NAMES:
        text = text.replace(name, "")
    return [text[max(0, m.start() - 30):m.end() + 30] for m in CJK.finditer(text)]


def no_diagram(html: str) -> str:
    """The page without its process diagram, whose gateways and service tasks carry the BPMN's
    Chinese names only (the engine translates the titles of tasks and events)."""
    return re.sub(r'<div class="diagram".*?</svg>', " ", html, flags=re.S)


def _claim(app, user="alice", data=None):
    eng = app.extensions["salesflow"]
    return eng.start("expense_approval", user, invoiced(eng, user, {k: (float(v) if k == "amount" else v)
                                                                    for k, v in (data or CLAIM).items()}))


def _task(app, instance_id, name):
    return next(t for t in app.extensions["salesflow"].instance(instance_id, "admin")["tasks"] if t["name"] == name)


def _options(html: str, select_id: str) -> list[str]:
    select = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no select #{select_id}"
    return re.findall(r'<option value="([^"]*)"', select.group(1))


def _checkboxes(html: str, group_id: str) -> list[str]:
    group = re.search(rf'<div class="people" role="group" id="{group_id}">(.*?)</div>', html, re.S)
    assert group, f"no people picker #{group_id}"
    return re.findall(r'name="users" value="([^"]+)"', group.group(1))


def test_task_page_offers_the_verbs_with_pickers_of_who_may_take_it(app):
    inst = _claim(app)
    task = _task(app, inst["id"], "manager_approval")
    dave = login(app, "dave")
    html = dave.get(f"/tasks/{task['id']}").get_data(as_text=True)
    text = text_of(html)
    for words in ("转交", "加签", "抄送", "前加签", "后加签", "会签", "他们先审批", "同意", "退回修改", "驳回"):
        assert words in text, words
    # transfer and add signer: only people who may take the task (not the subject, a peer, admin, dave himself)
    for people in (_options(html, "delegate-to")[1:], _checkboxes(html, "signer-users")):
        assert "frank" in people and "heidi" in people
        assert not {"alice", "bob", "admin", "dave"} & set(people), people
    # CC: anyone active but the caller
    assert set(_checkboxes(html, "cc-users")) == {u["username"] for u in app.extensions["salesflow"].users()} - {"dave"}
    # the step picker offers the submitter's step, selected, and shows only for a return (CSS)
    assert _options(html, "f-return_to") == ["submit_claim"]
    assert re.search(r'<div class="field return-target" data-field="return_to">', html)
    assert re.search(r'<div class="action-bar" id="action-bar">.*?name="decision".*?id="complete"', html, re.S)
    assert "(dave)" not in text and "(frank)" not in text  # display names, not usernames


def test_add_signer_before_and_its_refusals(app):
    inst = _claim(app)
    task = _task(app, inst["id"], "manager_approval")
    dave = login(app, "dave")
    url = f"/tasks/{task['id']}/add-signer"
    r = dave.post(url, data={"mode": "before", "csrf_token": dave.token})
    assert r.status_code == 422 and "请选择 1 到 10 人" in text_of(r)
    assert re.search(r'<details class="verb" id="add-signer" open>', r.get_data(as_text=True))
    r = dave.post(url, data={"users": ["alice", "bob", "frank"], "mode": "before", "comment": "请看",
                             "csrf_token": dave.token})
    assert r.status_code == 422
    text = text_of(r)
    assert "以下人员不能处理此任务" in text
    assert "Alice 艾丽斯：不能审批自己的申请" in text and "Bob 包博：此人没有审批此环节的岗位" in text
    assert "cannot take" not in text and "(nobody" not in text
    html = r.get_data(as_text=True)
    assert re.search(r'value="frank"\s+checked', html) and 'value="请看"' in html  # the choices are kept
    r = dave.post(url, data={"users": "frank", "mode": "sideways", "csrf_token": dave.token})
    assert r.status_code == 422 and "请选择前加签、后加签或会签" in text_of(r)
    assert app.extensions["salesflow"].tasks("frank") == []

    r = dave.post(url, data={"users": "frank", "mode": "before", "comment": "请方总监先看预算", "csrf_token": dave.token},
                  follow_redirects=True)
    text = text_of(r)
    assert "已加签（前加签）：Frank 方总监" in text
    assert "等待加签人审批：Frank 方总监" in text and "待审批" in text
    assert 'id="task-form"' not in r.get_data(as_text=True)
    # the owner's task waits: a completion now is refused with the engine's reason, translated
    r = dave.post(f"/tasks/{task['id']}/complete", data={**APPROVE, "csrf_token": dave.token}, follow_redirects=True)
    assert "此任务正在等待您添加的加签人" in text_of(r)

    frank = login(app, "frank")
    [signer] = app.extensions["salesflow"].tasks("frank")
    text = text_of(frank.get(f"/tasks/{signer['id']}"))
    assert "Dave 戴经理 请您加签（前加签）：请方总监先看预算" in text
    assert 'id="add-signer-form"' not in frank.get(f"/tasks/{signer['id']}").get_data(as_text=True)
    r = frank.post(f"/tasks/{signer['id']}/complete", data={**APPROVE, "csrf_token": frank.token})
    assert r.status_code == 302
    text = text_of(dave.get(f"/tasks/{task['id']}"))
    assert "等待加签人审批" not in text and "已审批" in text
    history = text_of(dave.get(f"/instances/{inst['id']}"))
    for words in ("加签 直属经理审批 人员: Frank 方总监 加签方式: 前加签 说明: 请方总监先看预算", "加签人均已同意",
                  "加签人: Frank 方总监"):
        assert words in history, words
    assert "signer_added" not in history and "before" not in history


def test_add_signer_in_english_has_no_chinese_and_a_stranger_cannot(app):
    inst = _claim(app, data={**CLAIM, "description": "client visit"})
    task = _task(app, inst["id"], "manager_approval")
    dave = login(app, "dave", "en")
    r = dave.post(f"/tasks/{task['id']}/add-signer", data={"users": ["alice"], "mode": "after",
                                                           "csrf_token": dave.token})
    assert r.status_code == 422
    text = text_of(r)
    assert "These people cannot take this task:" in text and "Alice 艾丽斯: nobody approves their own request" in text
    assert no_chinese(text) == []
    dave.post(f"/tasks/{task['id']}/add-signer", data={"users": ["frank"], "mode": "after", "csrf_token": dave.token})
    r = dave.post(f"/tasks/{task['id']}/complete", data={"decision": "approve", "csrf_token": dave.token},
                  follow_redirects=True)
    text = text_of(dave.get(f"/tasks/{task['id']}"))
    assert "Your approval is held until the added signers have approved: Frank 方总监." in text
    assert "Sign after" in text and no_chinese(text) == []
    bob = login(app, "bob")
    assert bob.post(f"/tasks/{task['id']}/add-signer", data={"users": "frank", "mode": "before",
                                                             "csrf_token": bob.token}).status_code == 404


def test_return_to_a_chosen_step_with_the_picker(app):
    inst = _claim(app, data=BIG)
    eng = app.extensions["salesflow"]
    for name, user in (("manager_approval", "dave"), ("director_approval", "frank"), ("gm_approval", "judy")):
        eng.complete(_task(app, inst["id"], name)["id"], user, APPROVE)
    finance = _task(app, inst["id"], "finance_approval")
    heidi = login(app, "heidi")
    html = heidi.get(f"/tasks/{finance['id']}").get_data(as_text=True)
    assert _options(html, "f-return_to") == ["submit_claim", "manager_approval", "director_approval", "gm_approval"]
    assert re.search(r'<option value="manager_approval"\s*>直属经理审批 · Dave 戴经理</option>', html)
    url = f"/tasks/{finance['id']}/complete"
    # a step not offered: the engine refuses, shown translated on the field
    r = heidi.post(url, data={"decision": "return", "comment": "x", "return_to": "finance_approval",
                              "csrf_token": heidi.token})
    assert r.status_code == 422 and "请从列出的环节中选择" in text_of(r)
    # the picker counts only for a return: an approval with the (always filled) select is not refused
    # (checked on a second claim below); a return goes back to the manager, who sees why
    r = heidi.post(url, data={"decision": "return", "comment": "发票抬头不对，请经理复核", "return_to": "manager_approval",
                              "csrf_token": heidi.token})
    assert r.status_code == 302
    again = _task(app, inst["id"], "manager_approval")
    assert again["assignee"] == "dave"
    dave = login(app, "dave")
    html = dave.get(f"/tasks/{again['id']}").get_data(as_text=True)
    returned = re.search(r'<section class="callout callout-returned" id="returned".*?</section>', html, re.S)
    assert returned, "no return box"
    assert html.index('id="returned"') < html.index('id="task-form"')
    text = text_of(returned.group(0))
    assert "退回原因" in text and "Heidi 何财务 在“财务审核付款”退回" in text and "发票抬头不对，请经理复核" in text
    history = text_of(dave.get(f"/instances/{inst['id']}"))
    assert "退回到此环节 直属经理审批" in history and "退回到: 直属经理审批" in history
    assert "manager_approval" not in history and "returned_to" not in history

    other = _claim(app, "bob")
    task = _task(app, other["id"], "manager_approval")
    r = dave.post(f"/tasks/{task['id']}/complete", data={**APPROVE, "return_to": "submit_claim",
                                                         "csrf_token": dave.token})
    assert r.status_code == 302, text_of(r)


def test_cc_from_the_instance_and_from_a_task_page(app):
    inst = _claim(app)
    alice = login(app, "alice")
    url = f"/instances/{inst['id']}/cc"
    for data, message in (({}, "请选择 1 到 20 人"), ({"users": "alice"}, "抄送给自己没有意义")):
        r = alice.post(url, data={**data, "csrf_token": alice.token, "next": f"/instances/{inst['id']}"})
        assert r.status_code == 422 and message in text_of(r), message
    r = alice.post(url, data={"users": "carol", "comment": "供参考", "csrf_token": alice.token,
                              "next": f"/instances/{inst['id']}"}, follow_redirects=True)
    text = text_of(r)
    assert "已抄送给 Carol 曹卡罗" in text and "抄送给 Carol 曹卡罗" in text and "抄送给: Carol 曹卡罗" in text
    carol = login(app, "carol")
    assert carol.get(f"/instances/{inst['id']}").status_code == 200
    # from dave's task page: errors come back on that page, success returns to it
    task = _task(app, inst["id"], "manager_approval")
    dave = login(app, "dave")
    r = dave.post(url, data={"csrf_token": dave.token, "next": f"/tasks/{task['id']}"})
    assert r.status_code == 422 and 'id="task-title"' in r.get_data(as_text=True) and "请选择 1 到 20 人" in text_of(r)
    assert re.search(r'<details class="verb" id="cc" open>', r.get_data(as_text=True))
    r = dave.post(url, data={"users": ["frank", "heidi"], "csrf_token": dave.token, "next": f"/tasks/{task['id']}"})
    assert r.status_code == 302 and r.location == f"/tasks/{task['id']}"
    assert app.extensions["salesflow"].instance(inst["id"], "admin")["copied_to"] == ["carol", "frank", "heidi"]
    # an unknown user is named in the error; a stranger cannot copy
    r = alice.post(url, data={"users": ["nobody"], "csrf_token": alice.token, "next": "https://evil.example/"})
    assert r.status_code == 422 and "以下用户不存在或已停用" in text_of(r) and "nobody" in text_of(r)
    erin = login(app, "erin")
    assert erin.post(url, data={"users": "carol", "csrf_token": erin.token}).status_code == 404


def test_urge_once_an_hour_by_the_starter(app):
    inst = _claim(app)
    alice = login(app, "alice")
    page = alice.get(f"/instances/{inst['id']}").get_data(as_text=True)
    assert 'id="urge"' in page
    url = f"/instances/{inst['id']}/urge"
    r = alice.post(url, data={"comment": "请尽快", "csrf_token": alice.token}, follow_redirects=True)
    assert "已催办 Dave 戴经理" in text_of(r)
    assert "催办 — 已提醒: Dave 戴经理 说明: 请尽快" in text_of(r)
    r = alice.post(url, data={"csrf_token": alice.token}, follow_redirects=True)
    assert re.search(r"此申请一小时内已催办过，\d+ 分钟后可再次催办", text_of(r))
    dave = login(app, "dave")
    assert 'id="urge"' not in dave.get(f"/instances/{inst['id']}").get_data(as_text=True)
    assert dave.post(url, data={"csrf_token": dave.token}).status_code == 403
    alice.post(f"/instances/{inst['id']}/withdraw", data={"csrf_token": alice.token})
    r = alice.post(url, data={"csrf_token": alice.token}, follow_redirects=True)
    assert "此申请已不在进行中（已取消）" in text_of(r)
    assert 'id="urge"' not in r.get_data(as_text=True)


def test_comment_thread_with_mentions(app):
    inst = _claim(app, data={**CLAIM, "description": "client visit"})
    alice = login(app, "alice")
    url = f"/instances/{inst['id']}/comments"
    r = alice.post(url, data={"text": "   ", "csrf_token": alice.token})
    assert r.status_code == 422 and "此项必填" in text_of(r)
    r = alice.post(url, data={"text": "@dave 发票已补 <b>urgent</b> @nobody", "csrf_token": alice.token},
                   follow_redirects=True)
    html = r.get_data(as_text=True)
    assert "评论已发表" in text_of(html)
    assert '<span class="mention" title="@dave">@Dave 戴经理</span> 发票已补 &lt;b&gt;urgent&lt;/b&gt; @nobody' in html
    dave = login(app, "dave", "en")
    r = dave.post(url, data={"text": "Got it, @alice", "csrf_token": dave.token}, follow_redirects=True)
    text = text_of(r)
    assert "Your comment was added." in text and "Comments 2" in text
    comments = text_of(re.search(r'<section class="card" id="comments">.*?</section>', r.get_data(as_text=True),
                                 re.S).group(0))
    assert "Alice 艾丽斯" in comments and "Dave 戴经理" in comments
    page = dave.get(f"/instances/{inst['id']}").get_data(as_text=True)
    assert no_chinese(text_of(no_diagram(page)).replace("发票已补", "")) == []
    erin = login(app, "erin")  # another region's manager: cannot see it
    assert erin.post(url, data={"text": "hi", "csrf_token": erin.token}).status_code == 404


def test_desk_pages_in_english_have_no_chinese_and_no_raw_keys(app):
    inst = _claim(app, data={**BIG, "description": "client visit"})
    eng = app.extensions["salesflow"]
    task = _task(app, inst["id"], "manager_approval")
    eng.add_signer(task["id"], "dave", ["frank"], "parallel", "please check the budget")
    eng.copy(inst["id"], "alice", ["carol"], "for your information")
    eng.comment(inst["id"], "alice", "@frank see the receipts")
    eng.urge(inst["id"], "alice", "customer is waiting")
    [signer] = eng.tasks("frank")
    frank = login(app, "frank", "en")
    for path in (f"/tasks/{signer['id']}", f"/tasks/{task['id']}", f"/instances/{inst['id']}"):
        text = text_of(no_diagram(frank.get(path).get_data(as_text=True)))
        assert no_chinese(text) == [], (path, no_chinese(text))
        for raw in ("signer_added", "copied", "urged", "parallel", "manager_approval", "submit_claim"):
            assert raw not in text, (path, raw)
    assert "Dave 戴经理 asks you to sign (Countersign): please check the budget" in text_of(frank.get(f"/tasks/{signer['id']}"))
    zh = text_of(login(app, "dave").get(f"/tasks/{task['id']}"))
    for english in ("Add signer", "Transfer", "Copy to", "Added signers", "Countersign", "Waiting for them"):
        assert english not in zh, english
    assert "会签" in zh and "待审批" in zh


def test_inbox_marks_an_added_signers_task_and_shows_names(app):
    inst = _claim(app)
    task = _task(app, inst["id"], "manager_approval")
    app.extensions["salesflow"].add_signer(task["id"], "dave", ["frank"], "parallel", None)
    row = re.search(rf'<tr class="task-row"[^>]*data-instance-id="{inst["id"]}">.*?</tr>',
                    login(app, "frank").get("/").get_data(as_text=True), re.S)
    assert row and "加签人" in text_of(row.group(0))
    submitted = text_of(login(app, "alice").get("/"))
    assert "直属经理审批 · Dave 戴经理" in submitted and "· dave" not in submitted


def test_a_refused_invoice_says_why_in_the_pages_language(app):
    client = login(app, "alice")
    r = client.post("/start/expense_approval", content_type="multipart/form-data",
                    data={**CLAIM, "csrf_token": client.token, "invoices__upload": (io.BytesIO(b"MZ\x90\x00" * 20), "a.pdf")})
    assert r.status_code == 422
    assert "a.pdf: 不接受此类文件" in text_of(r)
    assert app.extensions["salesflow"].instances("alice") == []
