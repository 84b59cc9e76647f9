"""The inbox people decide from, in a real browser at 1280 and 390 px: a claim with an invoice through
approval, the 已办 tab after approving, search, and bulk approval of several claims. Screenshots of the
main pages (zh and en) are left in test-artifacts/ (ignored by git) to look at."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import instance_id_from_url
from tests.conftest import PDF, invoiced

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def shot(page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"inbox-{name}.png"), full_page=True)


def file_claim(page, amount: str, description: str) -> int:
    page.goto("/start/expense_approval")
    page.select_option("select[name=category]", "travel")
    page.fill("input[name=amount]", amount)
    page.fill("input[name=incurred_on]", "2025-03-03")
    page.fill("textarea[name=description]", description)
    page.set_input_files("input[name=invoices__upload]",
                         files=[{"name": "发票.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    page.click("#start-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/instances/\d+$"))
    return instance_id_from_url(page.url)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_claim_with_invoice_done_tab_search_and_bulk_approval(ui, engine, size):
    # --- alice files a claim with an invoice; it reads as one line in dave's inbox
    alice = ui("alice")
    alice.page.set_viewport_size(SIZES[size])
    first = file_claim(alice.page, "3580.50", "上海客户拜访高铁票")
    expect(alice.page.locator("#files")).to_contain_text("发票.pdf")
    expect(alice.page.locator("[data-key=amount] dd")).to_have_text("¥3,580.50")
    expect(alice.page.locator("#budget")).to_contain_text("¥10,000.00 → ¥6,419.50")
    expect(alice.page.locator("#withdraw-form")).not_to_be_visible()  # withdraw asks first
    alice.page.click("#withdraw")
    expect(alice.page.locator("#withdraw-confirm")).to_be_visible()
    shot(alice.page, f"instance-zh-{size}")
    # two more claims through the engine (each with its invoice), for the bulk approval
    others = [engine.start("expense_approval", "alice", invoiced(engine, "alice", {
        "category": "travel", "amount": amount, "incurred_on": "2025-03-04", "description": f"出租车 {amount}"}))["id"]
        for amount in (120, 240.5)]

    dave = ui("dave")
    page = dave.page
    page.set_viewport_size(SIZES[size])
    row = page.locator(f"#my-tasks tr[data-instance-id='{first}']")
    expect(row).to_contain_text("Alice 艾丽斯 · 差旅费 · ¥3,580.50")
    expect(row).to_contain_text("直属经理审批")
    expect(page.locator("#my-tasks tr.task-row")).to_have_count(3)
    shot(page, f"todo-zh-{size}")

    # --- search narrows the list: by the amount, by the instance number
    page.fill("#q", "3,580")
    page.click("#search")
    expect(page.locator("#my-tasks tr.task-row")).to_have_count(1)
    expect(page.locator("#my-tasks tr.task-row")).to_contain_text("¥3,580.50")
    page.fill("#q", "¥120.00")
    page.click("#search")
    expect(page.locator("#my-tasks tr.task-row")).to_have_count(1)

    # --- dave approves the first claim on its page (the invoice is there to open)
    page.goto("/")
    page.locator(f"#my-tasks tr[data-instance-id='{first}'] a.summary").click()
    expect(page.locator("#files")).to_contain_text("发票.pdf")
    page.check("input[name=decision][value=approve]")
    page.fill("textarea[name=comment]", "票据齐全")
    page.click("#complete")
    expect(page).to_have_url(re.compile(rf"/instances/{first}$"))
    expect(page.locator("table.history tr[data-action=approved]")).to_contain_text("票据齐全")
    shot(page, f"instance-after-approval-zh-{size}")

    # --- the 已办 tab lists it
    page.goto("/")
    page.click("a.tab[data-tab=done]")
    done = page.locator(f"#done-tasks tr[data-instance-id='{first}']")
    expect(done).to_contain_text("¥3,580.50")
    expect(done).to_contain_text("直属经理审批")
    shot(page, f"done-zh-{size}")

    # --- bulk: tick the two other claims, one comment, approve; the page says what happened
    page.click("a.tab[data-tab=todo]")
    for iid in others:
        page.locator(f"#my-tasks tr[data-instance-id='{iid}'] input[name=ids]").check()
    page.fill("#bulk-comment", "同意")
    shot(page, f"bulk-zh-{size}")
    page.click("#bulk-approve")
    expect(page.locator(".flash-success")).to_contain_text("已同意 2 项任务")
    expect(page.locator("#my-tasks tr.task-row")).to_have_count(0)
    for iid in others:
        assert engine.instance(iid, "admin")["tasks"][0]["name"] == "finance_approval"

    # --- the same pages in English: no Chinese labels
    dave.switch_language("en")
    expect(page.locator("a.tab[data-tab=done]")).to_have_text(re.compile("Done"))
    page.click("a.tab[data-tab=done]")
    expect(page.locator("#done-tasks tr.task-row")).to_have_count(3)
    expect(page.locator(f"#done-tasks tr[data-instance-id='{first}']")).to_contain_text("Travel")
    shot(page, f"done-en-{size}")
    page.goto(f"/instances/{first}")
    expect(page.locator("#budget")).to_contain_text("¥10,000.00 → ¥6,419.50")
    expect(page.locator(".diagram svg g[data-element-id=manager_approval]")).to_contain_text("approval")
    expect(page.locator(".diagram svg g.lane").first).to_contain_text("Submitter")
    shot(page, f"instance-en-{size}")
    dave.switch_language("zh")


def test_bulk_approval_says_why_some_were_not_approved(ui, engine):
    ids = [engine.start("expense_approval", "alice", invoiced(engine, "alice", {
        "category": "travel", "amount": amount, "incurred_on": "2025-03-04", "description": "出租车"}))["id"]
        for amount in (100, 200)]
    dave = ui("dave")
    page = dave.page
    for iid in ids:
        page.locator(f"#my-tasks tr[data-instance-id='{iid}'] input[name=ids]").check()
    # meanwhile the first claim is withdrawn
    engine.withdraw(ids[0], "alice")
    page.click("#bulk-approve")
    expect(page.locator(".flash-success")).to_contain_text("已同意 1 项任务")
    expect(page.locator(".flash-error")).to_contain_text("未能审批")
    expect(page.locator(".flash-error")).to_contain_text("直属经理审批 · Alice 艾丽斯 · 差旅费 · ¥100.00")
    expect(page.locator(".flash-error")).to_contain_text("此任务已取消")
    shot(page, "bulk-partly-zh-desktop")


def test_appraisal_and_contract_pages_read_well(ui, engine):
    """The pages with the most derived values, at both widths and in both languages."""
    from datetime import date, timedelta
    contract = engine.start("contract_review", "alice")
    [task] = engine.tasks("alice", instance_id=contract["id"])
    engine.complete(task["id"], "alice", {"customer": "苏州华达机械", "amount": 600000, "payment_terms": "non_standard",
                                          "customer_has_credit_record": False, "summary": "两套设备"})
    appraisal = engine.start("performance_appraisal", "ivan", {
        "employee": "alice", "period": "2026-Q1", "cycle": "quarterly",
        "period_end": (date.today() - timedelta(days=1)).isoformat()})
    steps = [("alice", {"achievements": "完成目标", "evidence": "订单"}),
             ("dave", {"scores": {"sales_achievement": 70, "new_customers": 75, "collection_rate": 72,
                                  "lead_conversion": 68, "customer_satisfaction": 80, "compliance": 85,
                                  "teamwork": 78, "learning": 82}, "report": "目标基本达成"}),
             ("dave", {"talk_minutes": 45, "improvement_plan": "每月跟进回款"})]
    for user, data in steps:
        [task] = engine.tasks(user, instance_id=appraisal["id"])
        engine.complete(task["id"], user, data)
    for locale in ("zh-CN", "en"):
        person = ui("grace", locale=locale)
        page = person.page
        for size, viewport in SIZES.items():
            page.set_viewport_size(viewport)
            page.goto(f"/instances/{contract['id']}")
            reasons = page.locator("[data-key=major_reason] dd")
            expect(reasons).to_contain_text("客户无信用记录" if locale == "zh-CN" else "no credit record")
            expect(page.locator("[data-key=amount] dd").first).to_have_text("¥600,000.00")
            shot(page, f"contract-{locale[:2]}-{size}")
        person.close()
        hr = ui("ivan", locale=locale)
        page = hr.page
        for size, viewport in SIZES.items():
            page.set_viewport_size(viewport)
            page.goto(f"/instances/{appraisal['id']}")
            card = page.locator("#appraisal-result")
            expect(card.locator("[data-key=grade] dd")).to_have_text("B")
            expect(card.locator("[data-key=score] dd")).to_have_text("75.3")
            shot(page, f"appraisal-{locale[:2]}-{size}")
        hr.close()
