"""The expense claim story through the real UI, in a real browser."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import instance_id_from_url
from tests.conftest import PDF

pytestmark = pytest.mark.browser


def test_expense_claim_from_filing_to_payment(ui):
    # --- alice files a claim; a zh browser gets Chinese by default
    alice = ui("alice", locale="zh-CN")
    page = alice.page
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("#my-tasks h2")).to_contain_text("我的任务")
    expect(page.locator("#submitted h2")).to_contain_text("我发起的")

    page.click("text=发起申请 >> nth=0")
    page.click("a[data-process=expense_approval]")
    expect(page.locator("h1")).to_have_text("费用报销")
    page.select_option("select[name=category]", "travel")
    page.fill("input[name=amount]", "1200")
    page.fill("input[name=incurred_on]", "2025-03-03")
    page.fill("textarea[name=description]", "上海客户拜访高铁票 high-speed rail to Shanghai")
    page.set_input_files("input[name=invoices__upload]", files=[{"name": "高铁票.pdf", "mimeType": "application/pdf",
                                                                 "buffer": PDF}])
    page.click("#start-form button[type=submit]")

    expect(page).to_have_url(re.compile(r"/instances/\d+$"))
    instance_id = instance_id_from_url(page.url)
    expect(page.locator(".flash-success")).to_contain_text(f"#{instance_id}")
    expect(page.locator("#instance-status")).to_contain_text("进行中")
    expect(page.locator(".open-tasks")).to_contain_text("直属经理审批")
    expect(page.locator(".diagram svg")).to_be_visible()

    page.click("nav >> text=待办")
    row = page.locator(f"#submitted tr[data-instance-id='{instance_id}']")
    expect(row).to_contain_text("费用报销")
    expect(row.locator(".status-cell")).to_have_text(re.compile(r"^\s*进行中\s*$"))
    expect(row).to_contain_text("直属经理审批")

    # switch to English once: the same inbox, in English
    alice.switch_language("en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#submitted h2")).to_contain_text("Started by me")
    expect(row.locator(".status-cell")).to_contain_text("Running")
    expect(row).to_contain_text("Manager approval")
    alice.switch_language("zh")
    expect(page.locator("#submitted h2")).to_contain_text("我发起的")
    alice.logout()
    expect(page.locator("h1")).to_have_text("登录")

    # --- dave, alice's manager, finds it in his inbox and approves
    dave = ui("dave")
    page = dave.page
    task_row = page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")
    expect(task_row).to_contain_text("直属经理审批")
    expect(task_row).to_contain_text("费用报销")
    task_row.locator("a").first.click()
    expect(page.locator("#task-title")).to_have_text("直属经理审批")
    details = page.locator(".datalist").first
    expect(details.locator("[data-key=category] dd")).to_have_text("差旅费")
    expect(details.locator("[data-key=amount] dd")).to_have_text("¥1,200.00")
    expect(details.locator("[data-key=incurred_on] dd")).to_have_text("2025-03-03")
    expect(details.locator("[data-key=description] dd")).to_contain_text("上海客户拜访")
    history = page.locator("table.history")
    expect(history.locator("tr[data-action=started]")).to_contain_text("Alice")
    expect(history.locator("tr[data-action=completed]")).to_contain_text("填写报销单")

    # returning without a comment is refused inline by the engine, the choice is kept
    page.check("input[name=decision][value=return]")
    page.click("#complete")
    expect(page.locator("[data-field=comment] .field-error")).to_have_text("退回或驳回时必须填写说明")
    expect(page.locator("input[name=decision][value=return]")).to_be_checked()

    page.check("input[name=decision][value=approve]")
    page.fill("textarea[name=comment]", "同意，票据齐全")
    page.click("#complete")
    expect(page).to_have_url(re.compile(rf"/instances/{instance_id}$"))
    expect(page.locator(".flash-success")).to_contain_text("直属经理审批")
    approved = page.locator("table.history tr[data-action=approved]")
    expect(approved).to_contain_text("Dave")
    expect(approved).to_contain_text("同意，票据齐全")
    expect(page.locator(".open-tasks")).to_contain_text("财务审核付款")
    page.click("nav >> text=待办")
    expect(page.locator("#my-tasks h2")).to_be_visible()
    expect(page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")).to_have_count(0)
    dave.close()

    # --- heidi (finance) approves and pays
    heidi = ui("heidi")
    page = heidi.page
    task_row = page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")
    expect(task_row).to_contain_text("财务审核付款")
    task_row.locator("a").first.click()
    expect(page.locator("[data-key=manager_review]")).to_contain_text("同意，票据齐全")
    page.check("input[name=decision][value=approve]")
    page.click("#complete")
    expect(page.locator("#instance-status")).to_contain_text("已完成")
    heidi.close()

    # --- alice sees the outcome
    alice = ui("alice")
    page = alice.page
    row = page.locator(f"#submitted tr[data-instance-id='{instance_id}']")
    expect(row.locator(".status-cell")).to_contain_text("已完成")
    expect(row.locator(".status-cell")).to_contain_text("已通过")
    row.locator("a").first.click()
    expect(page.locator("#outcome")).to_have_text("已通过")
    expect(page.locator("table.history tr[data-action=instance_completed]")).to_contain_text("已通过")
    expect(page.locator("#withdraw")).to_have_count(0)
