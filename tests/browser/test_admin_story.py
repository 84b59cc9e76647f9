"""The administration area and the budgets, through the real UI in Chromium: an admin changes a
person's manager and the next claim goes to the new manager; finance proposes a month's budget in a
table form and the general manager approves it."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import instance_id_from_url
from tests.conftest import PDF

pytestmark = pytest.mark.browser


def test_admin_changes_a_manager_and_the_next_claim_goes_to_the_new_one(ui):
    admin = ui("admin", locale="zh-CN")
    page = admin.page
    expect(page.locator("#nav-admin")).to_have_text("系统管理")
    page.click("#nav-admin")
    expect(page.locator("h1")).to_have_text("系统管理")
    page.fill("input[name=q]", "艾丽")
    page.click("form.search button")
    rows = page.locator("#users tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".manager-cell")).to_have_text("dave")
    rows.first.locator("a").click()
    expect(page.locator("#f-display_name")).to_have_value("Alice 艾丽斯")
    page.select_option("#f-manager", "erin")
    page.click("#save-user")
    expect(page.locator(".flash-success")).to_contain_text("alice")
    expect(page.locator("#f-manager")).to_have_value("erin")
    expect(page.locator("#audit tr[data-action=changed]").first).to_contain_text("dave")
    expect(page.locator("#audit tr[data-action=changed]").first).to_contain_text("erin")

    # a cycle is refused on the page, with the reason in Chinese
    page.goto("/admin/users/erin")
    page.select_option("#f-manager", "alice")
    page.click("#save-user")
    expect(page.locator("[data-field=manager] .field-error")).to_contain_text("上下级关系形成循环")
    # the org chart now draws alice under erin
    page.click("a[data-tab=org]")
    expect(page.locator("li[data-username=erin] li[data-username=alice]")).to_have_count(1)
    expect(page.locator("li[data-username=dave] li[data-username=alice]")).to_have_count(0)
    admin.close()

    alice = ui("alice")
    page = alice.page
    expect(page.locator("#nav-admin")).to_have_count(0)
    page.goto("/start/expense_approval")
    page.select_option("select[name=category]", "travel")
    page.fill("input[name=amount]", "800")
    page.fill("input[name=incurred_on]", "2026-11-03")
    page.fill("textarea[name=description]", "客户拜访打车费")
    page.set_input_files("input[name=invoices__upload]", files=[{"name": "taxi.pdf", "mimeType": "application/pdf",
                                                                 "buffer": PDF}])
    page.click("#start-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/instances/\d+$"))
    instance_id = instance_id_from_url(page.url)
    alice.close()

    erin = ui("erin")
    expect(erin.page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")).to_contain_text("直属经理审批")
    erin.close()
    dave = ui("dave")
    expect(dave.page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")).to_have_count(0)
    dave.close()


def test_finance_proposes_a_budget_and_the_general_manager_approves_it(ui):
    heidi = ui("heidi", locale="zh-CN")
    page = heidi.page
    page.click("#nav-budgets")
    page.fill("#f-month", "2026-12")
    page.click("#budget-filter button[type=submit]")
    east = page.locator(".budget-region[data-region=east]")
    expect(east.locator("tr[data-category=travel] .amount")).to_have_text("10,000.00")
    page.click("#plan-budget")
    expect(page.locator("h1")).to_have_text("月度预算编制")
    page.fill("input[name=month]", "2026-12")
    table = page.locator("table[data-table=lines]")
    expect(table.locator("tbody tr")).to_have_count(3)
    page.click("button[data-add-row=lines]")
    expect(table.locator("tbody tr")).to_have_count(4)
    page.select_option("select[name='lines.0.region']", "east")
    page.select_option("select[name='lines.0.category']", "travel")
    page.fill("input[name='lines.0.amount']", "12000")
    page.select_option("select[name='lines.3.region']", "north")  # the added row
    page.select_option("select[name='lines.3.category']", "marketing")
    page.fill("input[name='lines.3.amount']", "30000")
    page.click("#start-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/instances/\d+$"))
    instance_id = instance_id_from_url(page.url)
    expect(page.locator(".open-tasks")).to_contain_text("总经理审批预算")
    heidi.close()

    judy = ui("judy")
    page = judy.page
    row = page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")
    expect(row).to_contain_text("总经理审批预算")
    row.locator("a").first.click()
    lines = page.locator("[data-key=lines] table")
    expect(lines.locator("tbody tr")).to_have_count(2)
    expect(lines.locator("tbody tr").first).to_contain_text("差旅费")
    expect(lines.locator("tbody tr").first).to_contain_text("12,000")
    page.check("input[name=decision][value=approve]")
    page.fill("textarea[name=comment]", "同意")
    page.click("#complete")
    expect(page.locator("#instance-status")).to_contain_text("已完成")
    page.goto("/budgets?month=2026-12")
    expect(page.locator(".budget-region[data-region=east] tr[data-category=travel] .amount")).to_have_text("12,000.00")
    expect(page.locator(".budget-region[data-region=north] tr[data-category=marketing] .amount")).to_have_text(
        "30,000.00")
    expect(page.locator(".budget-region[data-region=east] tr[data-category=other] .amount")).to_have_text("10,000.00")
    judy.close()

    # a region manager sees their own region only
    dave = ui("dave", locale="en-US")
    page = dave.page
    page.goto("/budgets?month=2026-12")
    expect(page.locator(".budget-region")).to_have_count(1)
    expect(page.locator(".budget-region[data-region=east] tr[data-category=travel] .amount")).to_have_text("12,000.00")
    dave.close()
