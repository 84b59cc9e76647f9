"""The performance appraisal and appeal story through the real UI, in a real browser.

Field names follow CONTRACT.md and workflows/forms/appraisal_*.json."""
from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import expect

from .conftest import instance_id_from_url

pytestmark = pytest.mark.browser

# quantitative 70/75/72/68 (60%) and qualitative 80/85/78/82 (40%): 0.15*285 + 0.10*325 = 75.25 -> B
SCORES = {"sales_achievement": 70, "new_customers": 75, "collection_rate": 72, "lead_conversion": 68,
          "customer_satisfaction": 80, "compliance": 85, "teamwork": 78, "learning": 82}


def open_task(page, instance_id: int, title: str):
    page.click("nav >> text=待办")
    row = page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")
    expect(row).to_contain_text(title)
    row.locator("a", has_text=title).click()
    expect(page.locator("#task-title")).to_have_text(title)


def test_appraisal_with_appeal_decided_by_the_director(ui):
    period_end = (date.today() - timedelta(days=1)).isoformat()  # deadlines still ahead: nothing overdue

    # --- ivan (HR) starts the appraisal of alice
    ivan = ui("ivan")
    page = ivan.page
    page.click("nav >> text=发起申请")
    page.click("a[data-process=performance_appraisal]")
    expect(page.locator("h1")).to_have_text("绩效考核")
    page.select_option("select[name=employee]", "alice")
    page.fill("input[name=period]", "2026-10")
    page.check("input[name=cycle][value=monthly]")
    page.fill("input[name=period_end]", period_end)
    page.click("#start-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/instances/\d+$"))
    instance_id = instance_id_from_url(page.url)
    expect(page.locator("#instance-status")).to_contain_text("进行中")
    expect(page.locator(".open-tasks")).to_contain_text("员工自评")
    expect(page.locator(".datalist [data-key=cycle] dd")).to_have_text("月度")
    ivan.close()

    # --- alice evaluates herself
    alice = ui("alice")
    page = alice.page
    row = page.locator(f"#my-tasks tr[data-instance-id='{instance_id}']")
    expect(row).to_contain_text("绩效考核")
    expect(row.locator(".due")).not_to_have_class(re.compile("overdue"))
    open_task(page, instance_id, "员工自评")
    page.fill("textarea[name=achievements]", "完成季度销售目标的 95%，新签 3 家客户")
    page.fill("textarea[name=evidence]", "订单号 SO-1001、SO-1002；回款记录")
    page.click("#complete")
    expect(page.locator(".flash-success")).to_contain_text("员工自评")
    expect(page.locator(".open-tasks")).to_contain_text("上级评估")
    alice.close()

    # --- dave (her manager) scores the eight indicators, then records the result talk
    dave = ui("dave")
    page = dave.page
    open_task(page, instance_id, "上级评估")
    expect(page.locator("[data-key=self_evaluation]")).to_contain_text("新签 3 家客户")
    scores = page.locator("fieldset.group[data-field=scores]")
    expect(scores.locator("input[type=number]")).to_have_count(8)
    for key, value in SCORES.items():
        scores.locator(f"input[name='scores.{key}']").fill(str(value))
    page.fill("textarea[name=report]", "目标基本达成，回款需加强")
    page.click("#complete")
    # the next step is dave's own: the UI goes straight to it
    expect(page.locator("#task-title")).to_have_text("绩效面谈")
    expect(page.locator(".flash-info")).to_contain_text("绩效面谈")
    expect(page.locator(".datalist [data-key=grade] dd").first).to_have_text("B")
    # the result card shows the score rounded (the exact one, which the grade bands, on hover)
    expect(page.locator(".datalist [data-key=score] dd").first).to_have_text("75.3")
    expect(page.locator(".datalist [data-key=score] dd").first).to_have_attribute("title", "75.25")
    page.fill("input[name=talk_minutes]", "45")
    page.fill("textarea[name=improvement_plan]", "每月跟进回款，参加谈判培训")
    page.click("#complete")
    expect(page.locator(".open-tasks")).to_contain_text("确认或申诉")
    dave.close()

    # --- alice appeals, with a reason
    alice = ui("alice")
    page = alice.page
    open_task(page, instance_id, "确认或申诉")
    page.check("input[name=decision][value=appeal]")
    page.click("#complete")  # no reason yet: the engine refuses it inline
    expect(page.locator("[data-field=reason] .field-error")).to_be_visible()
    expect(page.locator("input[name=decision][value=appeal]")).to_be_checked()
    page.fill("textarea[name=reason]", "新客户开发数统计遗漏了 10 月底签约的两家客户")
    page.click("#complete")
    expect(page.locator(".open-tasks")).to_contain_text("人力资源复核申诉")
    alice.close()

    # --- ivan (HR) answers: uphold
    ivan = ui("ivan")
    page = ivan.page
    open_task(page, instance_id, "人力资源复核申诉")
    expect(page.locator("[data-key=employee_decision]")).to_contain_text("统计遗漏")
    page.check("input[name=decision][value=uphold]")
    page.fill("textarea[name=comment]", "评分依据充分，建议维持")
    page.click("#complete")
    expect(page.locator(".open-tasks")).to_contain_text("销售总监裁定")
    ivan.close()

    # --- frank (sales director) decides: the grade changes to A
    frank = ui("frank")
    page = frank.page
    open_task(page, instance_id, "销售总监裁定")
    expect(page.locator("[data-key=hr_appeal_review]")).to_contain_text("评分依据充分")
    page.check("input[name=decision][value=change]")
    page.select_option("select[name=grade]", "A")
    page.fill("textarea[name=comment]", "补计两家新客户后上调为 A")
    page.click("#complete")
    expect(page).to_have_url(re.compile(rf"/instances/{instance_id}$"))
    expect(page.locator("#instance-status")).to_contain_text("已完成")
    frank.close()

    # --- alice sees the final grade
    alice = ui("alice")
    page = alice.page
    page.goto(f"/instances/{instance_id}")
    expect(page.locator("#outcome")).to_have_text("已通过")
    details = page.locator(".datalist").first
    expect(details.locator(":scope > [data-key=grade] dd")).to_have_text("A")
    expect(details.locator(":scope > [data-key=original_grade] dd")).to_have_text("B")
    expect(details.locator(":scope > [data-key=appeal_result] dd")).to_have_text("已调整")
    history = page.locator("table.history")
    expect(history.locator("tr[data-action=completed]", has_text="销售总监裁定")).to_contain_text("调整等级")
    expect(history.locator("tr[data-action=instance_completed]")).to_contain_text("已通过")
