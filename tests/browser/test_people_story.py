"""Notifications and the profile in a real browser: the unread count appears in the header after
another person acts, the notifications page opens the task; the profile page sets out of office and
the next claim goes to the stand-in — at 1280 and 390 px, in Chinese and English."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect
from tests.conftest import invoiced

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "people"
CLAIM = {"category": "travel", "amount": 1200, "incurred_on": "2026-11-10", "description": "拜访客户 client visit"}


def shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("locale, viewport", [("zh-CN", {"width": 1280, "height": 800}),
                                              ("en-US", {"width": 390, "height": 844})])
def test_unread_count_after_another_user_acts_and_the_notification_opens_the_task(ui, engine, locale, viewport):
    dave = ui(None, locale=locale)
    dave.page.set_viewport_size(viewport)
    page = dave.login("dave")
    expect(page.locator("#unread-count")).to_have_count(0)
    inst = engine.start("expense_approval", "alice", invoiced(engine, "alice", CLAIM))  # alice acts
    page.reload()
    expect(page.locator("#unread-count")).to_have_text("1")
    tag = "zh-1280" if locale == "zh-CN" else "en-390"
    shot(page, f"header-unread-{tag}")
    page.click("#notifications-link")
    first = page.locator("#notifications li").first
    expect(first).to_contain_text("#%d" % inst["id"])
    expect(first).to_contain_text("新待办" if locale == "zh-CN" else "New task")
    shot(page, f"notifications-{tag}")
    first.locator(".notice-text").click()
    expect(page.locator("#task-title")).to_be_visible()
    expect(page.locator("#unread-count")).to_have_count(0)  # opening it marked it read


@pytest.mark.parametrize("locale, viewport", [("zh-CN", {"width": 390, "height": 844}),
                                              ("en-US", {"width": 1280, "height": 800})])
def test_the_profile_page_sets_out_of_office(ui, engine, locale, viewport):
    dave = ui(None, locale=locale)
    dave.page.set_viewport_size(viewport)
    page = dave.login("dave")
    page.click("#profile-link")
    expect(page.locator("#profile-form")).to_be_visible()
    page.check("#away")
    page.fill("#ooo_from", "2026-01-01T09:00")
    page.fill("#ooo_until", "2099-01-01T18:00")
    page.select_option("#ooo_delegate", "frank")
    tag = "zh-390" if locale == "zh-CN" else "en-1280"
    shot(page, f"profile-{tag}")
    page.click("#save-profile")
    expect(page.locator(".flash-success")).to_be_visible()
    expect(page.locator("#away")).to_be_checked()
    expect(page.locator("#ooo_delegate")).to_have_value("frank")
    assert engine.me("dave")["out_of_office"]["delegate"] == "frank"
    inst = engine.start("expense_approval", "bob", invoiced(engine, "bob", CLAIM))
    assert inst["tasks"][0]["assignee"] == "frank"  # the stand-in takes dave's new task, for dave
    # a refused setting keeps what was typed and says why
    page.fill("#ooo_until", "2025-01-01T09:00")
    page.click("#save-profile")
    expect(page.locator("[data-field], .field.has-error").first).to_be_visible()
    expect(page.locator(".field.has-error #ooo_until")).to_be_visible()
    shot(page, f"profile-error-{tag}")
