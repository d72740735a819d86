"""The chat page in a real browser, shared by its browser tests: Debian's Chromium under Playwright, a fresh app
with the EchoEngine on a live server, pages with an English browser locale that collect their errors, and the
steps every test takes (open, enter as a guest, wait for an answer). The fixtures are registered in conftest.py."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import fast_settings

from vmeta.serve.app import create_app
from vmeta.serve.echo_engine import EchoEngine
from vmeta.testing.browser import chromium, serve_in_thread

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
T = 15_000  # ms: generous for a loaded CI machine; the happy path takes well under a second per step


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """serve(engine=None) -> base URL of a fresh app (own SQLite data dir) on a live server."""
    with contextlib.ExitStack() as stack:
        count = itertools.count()

        def start(engine: EchoEngine | None = None) -> str:
            settings = fast_settings(tmp_path / f"data{next(count)}")
            app = create_app(settings, engine or EchoEngine(delay_s=0.03), background_tasks=False)
            stack.callback(app.state.db_engine.dispose)
            return stack.enter_context(serve_in_thread(app))

        yield start


@pytest.fixture
def new_page(browser):
    """new_page(viewport) -> a page in a fresh context (own cookies) with an English browser locale (the page
    must still start in Chinese). Page errors and console errors are collected in page.errors (the browser's
    own "Failed to load resource" lines for expected 4xx answers are left out)."""
    contexts = []

    def make(viewport: dict = DESKTOP):
        ctx = browser.new_context(viewport=viewport, locale="en-US")
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
        )
        page.errors = errors
        contexts.append(ctx)
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    shots = os.environ.get("VMETA_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / name).write_bytes(path.read_bytes())
    return path


def _open(page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=T)


def _guest(page, url: str) -> None:
    from playwright.sync_api import expect

    _open(page, url)
    page.locator("#guest-start").click()
    expect(page.locator("#app")).to_be_visible(timeout=T)


def _answer(page, i: int):
    return page.locator(".msg.assistant").nth(i)


def _wait_done(page, i: int) -> None:
    from playwright.sync_api import expect

    expect(_answer(page, i)).to_have_attribute("data-status", "complete", timeout=T)
