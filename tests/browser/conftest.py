"""Browser tests: the real app served by a real HTTP server, driven by headless Debian Chromium.

Only SQLite here (a file database shared by the server's threads). Playwright's own browser
download does not work on these machines: the system chromium is used (SALESFLOW_CHROMIUM
overrides the path). Deselect with `-m "not browser"` where no chromium is installed.
"""
from __future__ import annotations

import os
import re
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from engine.db import Database
from webui import create_app

CHROMIUM = os.environ.get("SALESFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORD = "salesflow-demo"


@pytest.fixture(params=["sqlite"])
def database(request, tmp_path, sqlite_template):
    """Overrides the root fixture: browser tests run on a SQLite file only."""
    path = tmp_path / "salesflow.sqlite3"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    yield db
    db.dispose()


@pytest.fixture
def live_server(engine, tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": "browser-tests"}, engine=engine)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no chromium at {CHROMIUM}: apt-get install -y chromium, or deselect with -m 'not browser'")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class UI:
    """One person at one browser: a fresh context (cookies, language) per user."""

    def __init__(self, browser, base_url: str, locale: str = "zh-CN"):
        self.context = browser.new_context(locale=locale, base_url=base_url, timezone_id="Asia/Shanghai")
        self.context.set_default_timeout(15000)
        self.page = self.context.new_page()

    def login(self, username: str, password: str = PASSWORD):
        from playwright.sync_api import expect
        page = self.page
        page.goto("/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#login-submit")
        expect(page.locator("#logout")).to_be_visible()
        return page

    def logout(self):
        from playwright.sync_api import expect
        self.page.click("#logout")
        expect(self.page.locator("#password")).to_be_visible()

    def switch_language(self, lang: str):
        self.page.click(f"button[data-lang={lang}]")
        self.page.wait_for_load_state()

    def close(self):
        self.context.close()


@pytest.fixture
def ui(browser, live_server):
    """ui("alice") → a logged-in UI for alice (closed after the test)."""
    opened = []

    def open_as(username: str | None = None, locale: str = "zh-CN") -> UI:
        person = UI(browser, live_server, locale)
        opened.append(person)
        if username:
            person.login(username)
        return person

    yield open_as
    for person in opened:
        person.close()


def instance_id_from_url(url: str) -> int:
    match = re.search(r"/instances/(\d+)", url)
    assert match, f"not an instance page: {url}"
    return int(match.group(1))
