"""The approval desk through the real UI, in a real browser: add a signer (前加签), return to a
chosen step, CC with comments and urging — on a desktop (1280 px) and a phone (390 px), in Chinese
and English. Screenshots go to test-artifacts/approval-desk/ (ignored by git) for a person to look at."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from tests.conftest import invoiced

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "approval-desk"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CLAIM = {"category": "travel", "amount": 1200, "incurred_on": "2026-11-10", "description": "拜访客户 client visit"}
BIG = {**CLAIM, "amount": 25000}  # manager, sales director, general manager, finance
APPROVE = {"decision": "approve", "comment": "同意"}


def shot(page, name: str):
    """The whole page, and on a phone also the screen as it shows (the action bar fixed at its bottom)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if page.viewport_size["width"] < 760:
        page.screenshot(path=str(SHOTS / f"{name}-screen.png"))


def person(ui, username: str, locale: str = "zh-CN", viewport=DESKTOP):
    someone = ui(None, locale=locale)
    someone.page.set_viewport_size(viewport)
    someone.login(username)
    return someone


def open_task_of(page, instance_id: int):
    page.goto("/")
    page.locator(f"#my-tasks tr[data-instance-id='{instance_id}'] a").first.click()
    expect(page.locator("#task-title")).to_be_visible()


def assert_in_viewport(page, selector: str):
    """The element is on screen now, without scrolling (the phone's sticky action bar)."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] + 1, (selector, box, size)


def open_task(engine, instance_id, name):
    return next(t for t in engine.instance(instance_id, "admin")["tasks"] if t["name"] == name)


def test_add_signer_before_then_back_to_the_owner(ui, engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    # --- dave adds frank before himself (前加签), with a note
    dave = person(ui, "dave")
    page = dave.page
    open_task_of(page, inst["id"])
    expect(page.locator("#task-title")).to_have_text("直属经理审批")
    page.click("#add-signer summary")
    picker = page.locator("#signer-users")
    expect(picker).to_contain_text("Frank 方总监")
    expect(picker).not_to_contain_text("Alice 艾丽斯")  # nobody approves their own request: not offered
    expect(picker).not_to_contain_text("Dave 戴经理")  # not the caller
    expect(page.locator("input[name=mode][value=before]")).to_be_checked()
    expect(page.locator("#add-signer .modes")).to_contain_text("他们先审批")
    # nobody picked: the engine's refusal, translated, inline
    page.click("#add-signer-submit")
    expect(page.locator("#add-signer .field-error")).to_have_text("请选择 1 到 10 人")
    expect(page.locator("#add-signer")).to_have_attribute("open", "")
    picker.locator("input[value=frank]").check()
    page.fill("#signer-comment", "请方总监先看预算")
    shot(page, "add-signer-form-zh-1280")
    page.set_viewport_size(PHONE)
    page.locator("#add-signer").scroll_into_view_if_needed()
    shot(page, "add-signer-form-zh-390")
    page.set_viewport_size(DESKTOP)
    page.click("#add-signer-submit")
    expect(page.locator(".flash-success")).to_contain_text("已加签（前加签）：Frank 方总监")
    expect(page.locator("#waiting")).to_contain_text("等待加签人审批：Frank 方总监")
    expect(page.locator("#signers li[data-user=frank]")).to_contain_text("待审批")
    expect(page.locator("#task-form")).to_have_count(0)
    expect(page.locator("table.history tr[data-action=signer_added]")).to_contain_text("加签方式: 前加签")
    shot(page, "add-signer-waiting-zh-1280")
    dave.close()

    # --- frank, on his phone, sees why he is asked and signs from the bottom bar
    frank = person(ui, "frank", viewport=PHONE)
    page = frank.page
    open_task_of(page, inst["id"])
    banner = page.locator("#signer-banner")
    expect(banner).to_contain_text("Dave 戴经理 请您加签（前加签）：请方总监先看预算")
    expect(page.locator("#add-signer")).to_have_count(0)  # an added signer adds nobody
    assert_in_viewport(page, "#complete")
    assert_in_viewport(page, "#action-bar input[name=decision][value=approve]")
    shot(page, "signer-task-zh-390")
    page.check("#action-bar input[name=decision][value=approve]")
    page.fill("textarea[name=comment]", "预算内，同意")
    page.click("#complete")
    expect(page).to_have_url(re.compile(rf"/instances/{inst['id']}$"))
    expect(page.locator("table.history tr[data-action=signers_approved]")).to_have_count(1)
    frank.close()

    # --- back to dave, in English this time: he decides, the claim moves on to finance
    dave = person(ui, "dave", locale="en-US")
    page = dave.page
    open_task_of(page, inst["id"])
    expect(page.locator("#waiting")).to_have_count(0)
    expect(page.locator("#signers li[data-user=frank]")).to_contain_text("Signed")
    expect(page.locator("#signers li[data-user=frank]")).to_contain_text("Sign first")
    shot(page, "owner-after-signer-en-1280")
    page.check("input[name=decision][value=approve]")
    page.click("#complete")
    expect(page.locator(".open-tasks")).to_contain_text("Finance approval and payment")
    history = page.locator("table.history")
    expect(history.locator("tr[data-action=signer_added]")).to_contain_text("Frank 方总监")
    expect(history.locator("tr[data-action=signer_added]")).to_contain_text("How they sign: Sign first")
    expect(history.locator("tr[data-action=approved]").first).to_contain_text("Added signer: Frank 方总监")


def test_finance_returns_a_big_claim_to_the_manager_step(ui, engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", BIG))
    for name, user in (("manager_approval", "dave"), ("director_approval", "frank"), ("gm_approval", "judy")):
        engine.complete(open_task(engine, inst["id"], name)["id"], user, APPROVE)
    # --- heidi (finance, English) returns it to the manager's step with the picker
    heidi = person(ui, "heidi", locale="en-US")
    page = heidi.page
    open_task_of(page, inst["id"])
    picker = page.locator("select[name=return_to]")
    expect(picker).to_be_hidden()  # only for a return
    page.check("input[name=decision][value=return]")
    expect(picker).to_be_visible()
    options = [o.strip() for o in picker.locator("option").all_inner_texts()]
    assert options == ["Fill in the claim · Alice 艾丽斯", "Manager approval · Dave 戴经理",
                       "Sales director approval · Frank 方总监", "General manager special approval · Judy 朱总"], options
    expect(picker).to_have_value("submit_claim")  # the submitter's step unless another is chosen
    picker.select_option("manager_approval")
    page.fill("textarea[name=comment]", "发票抬头不对，请经理复核 (invoice title is wrong)")
    shot(page, "return-picker-en-1280")
    page.set_viewport_size(PHONE)
    assert_in_viewport(page, "#complete")
    shot(page, "return-picker-en-390")
    page.click("#complete")
    expect(page).to_have_url(re.compile(rf"/instances/{inst['id']}$"))
    expect(page.locator("table.history tr[data-action=returned_to]")).to_contain_text("Manager approval")
    expect(page.locator(".open-tasks")).to_contain_text("Manager approval")
    heidi.close()

    # --- dave, on his phone in Chinese, sees who sent it back and why, at the top
    dave = person(ui, "dave", viewport=PHONE)
    page = dave.page
    open_task_of(page, inst["id"])
    box = page.locator("#returned")
    expect(box).to_contain_text("退回原因")
    expect(box).to_contain_text("Heidi 何财务 在“财务审核付款”退回")
    expect(box.locator(".reason")).to_have_text("发票抬头不对，请经理复核 (invoice title is wrong)")
    assert page.locator("#returned").bounding_box()["y"] < page.locator("#task-form").bounding_box()["y"]
    assert_in_viewport(page, "#complete")
    shot(page, "returned-task-zh-390")
    page.set_viewport_size(DESKTOP)
    shot(page, "returned-task-zh-1280")


def test_cc_then_the_copied_colleague_reads_and_comments(ui, engine):
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))
    # --- alice copies carol (another region: she could not see it before), comments and urges
    alice = person(ui, "alice")
    page = alice.page
    page.goto(f"/instances/{inst['id']}")
    page.click("#cc summary")
    page.locator("#cc-users input[value=carol]").check()
    page.fill("#cc-comment", "供参考")
    page.click("#cc-submit")
    expect(page.locator(".flash-success")).to_contain_text("已抄送给 Carol 曹卡罗")
    expect(page.locator("#copied-to")).to_have_text("Carol 曹卡罗")
    expect(page.locator("table.history tr[data-action=copied]")).to_contain_text("抄送给: Carol 曹卡罗")
    page.fill("#comment-text", "@dave 发票已补，请审批")
    page.click("#comment-submit")
    expect(page.locator("#comments .comment")).to_have_count(1)
    expect(page.locator("#comments .mention")).to_have_text("@Dave 戴经理")
    page.fill("#urge-comment", "客户等着报价")
    page.click("#urge")
    expect(page.locator(".flash-success")).to_contain_text("已催办 Dave 戴经理")
    page.click("#urge")
    expect(page.locator(".flash-warning")).to_contain_text(re.compile(r"\d+ 分钟后可再次催办"))
    shot(page, "instance-cc-comments-zh-1280")
    page.set_viewport_size(PHONE)
    shot(page, "instance-cc-comments-zh-390")
    alice.close()

    # --- carol, on her phone in English, reads it and comments; she decides nothing
    carol = person(ui, "carol", locale="en-US", viewport=PHONE)
    page = carol.page
    page.goto(f"/instances/{inst['id']}")
    expect(page.locator("h1")).to_contain_text("Expense reimbursement")
    expect(page.locator("#copied-to")).to_have_text("Carol 曹卡罗")
    expect(page.locator("#urge")).to_have_count(0)  # neither the starter nor the subject
    expect(page.locator("#withdraw")).to_have_count(0)
    page.fill("#comment-text", "Read, thanks @alice")
    page.click("#comment-submit")
    expect(page.locator(".flash-success")).to_have_text("Your comment was added.")
    comments = page.locator("#comments .comment")
    expect(comments).to_have_count(2)
    expect(comments.nth(1)).to_contain_text("Carol 曹卡罗")
    expect(comments.nth(1).locator(".mention")).to_have_text("@Alice 艾丽斯")
    page.click("#cc summary")
    page.click("#cc-submit")
    expect(page.locator("#cc .field-error")).to_have_text("give 1 to 20 usernames")  # nobody picked
    shot(page, "instance-cc-carol-en-390")
    page.set_viewport_size(DESKTOP)
    shot(page, "instance-cc-carol-en-1280")
    task = open_task(engine, inst["id"], "manager_approval")
    page.goto(f"/tasks/{task['id']}")
    expect(page.locator("#task-form")).to_have_count(0)
    expect(page.locator("body")).to_contain_text("This task is not yours to complete.")
