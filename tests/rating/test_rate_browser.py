"""The rating page in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium).

Skipped when Chromium is missing, unless $CI is set (then a missing browser is a failure).
Screenshots go to $VMETA_SCREENSHOT_DIR when it is set (desktop and phone width).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from appdata import SECRETS, make_study

from vmeta.testing.browser import chromium, serve_in_thread

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path):
    from vmeta.rating.app import create_rate_app

    study = make_study(tmp_path, raters_per_item=1)
    with serve_in_thread(create_rate_app(study.root), lifespan="off") as url:
        yield url, study


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def new_page(browser, width: int, height: int, **phone):
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-US", **phone)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda res: errors.append(f"HTTP {res.status} {res.url}") if res.status >= 400 else None)
    page.errors = errors
    return context, page


def _keep(tmp_path: Path, name: str) -> None:
    shots = os.environ.get("VMETA_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / name).write_bytes((tmp_path / name).read_bytes())


def test_rate_page_end_to_end(browser, served, tmp_path):
    from playwright.sync_api import expect

    base, study = served
    context, page = new_page(browser, 1280, 900)
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)

    # first visit: Chinese UI, asked for a name; an empty or over-long name is refused with a sentence
    expect(page.locator("h1")).to_have_text("回答对比盲评")
    expect(page.locator("#login")).to_be_visible()
    page.locator("#login-form button").click()
    expect(page.locator("#login-error")).to_have_text("名字不能为空，请输入你的名字。")
    page.locator("#rater-input").fill("x" * 65)
    page.keyboard.press("Enter")
    expect(page.locator("#login-error")).to_have_text("名字太长了：最多 64 个字符。")
    page.locator("#rater-input").fill("王芳")
    page.keyboard.press("Enter")

    # the item: video (through the Range endpoint), reference, two blind answers, progress
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#rater-name")).to_have_text("王芳")
    expect(page.locator("#progress")).to_have_text("我的进度 0 / 18 · 全体 0 / 18")
    expect(page.locator("#answer-a h2")).to_contain_text("回答 A")
    expect(page.locator("#choices")).to_contain_text("都不对")
    expect(page.locator("#reference .slot-concept")).to_have_count(1)
    first_item = page.evaluate("document.getElementById('video').dataset.item || ''")
    if first_item:  # t06 has no video; every other id has one
        page.wait_for_function("() => document.getElementById('video').readyState >= 1", timeout=15000)
        assert page.evaluate("document.getElementById('video').duration") > 0.5
    page.screenshot(path=str(tmp_path / "rate-desktop.png"), full_page=True)
    _keep(tmp_path, "rate-desktop.png")

    # Enter with nothing chosen only warns; 2 picks B, Enter stores it
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("Enter")
    expect(page.locator("#toast")).to_contain_text("请先选择")
    page.keyboard.press("2")
    expect(page.locator(".choice[data-choice='b']")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    expect(page.locator("#progress")).to_have_text("我的进度 1 / 18 · 全体 1 / 18")

    # a slot judgement by click, a note, T for tie, Enter inside the note submits
    page.locator("#judges-a .judge[data-slot='core_concept'][data-value='1']").click()
    page.locator("#judges-b .judge[data-slot='emotion'][data-value='0']").click()
    expect(page.locator("#judges-a .judge[data-slot='core_concept'][data-value='1']")).to_have_attribute(
        "aria-pressed", "true"
    )
    page.keyboard.press("t")
    page.locator("#note").fill("两个都还行")
    page.locator("#note").press("Enter")
    expect(page.locator("#progress")).to_have_text("我的进度 2 / 18 · 全体 2 / 18")
    # the next item starts clean
    expect(page.locator(".judge[aria-pressed='true']")).to_have_count(0)
    expect(page.locator("#note")).to_have_value("")

    # a click picks "both wrong"; then reload mid-item: same item, name remembered, progress kept
    page.locator(".choice[data-choice='both_wrong']").click()
    before = page.locator("#text-a").inner_text(), page.locator("#text-b").inner_text()
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#progress")).to_have_text("我的进度 2 / 18 · 全体 2 / 18")
    assert (page.locator("#text-a").inner_text(), page.locator("#text-b").inner_text()) == before
    page.locator(".choice[data-choice='both_wrong']").click()
    page.locator("#submit").click()
    expect(page.locator("#progress")).to_have_text("我的进度 3 / 18 · 全体 3 / 18")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#progress")).to_have_text("我的进度 4 / 18 · 全体 4 / 18")

    # English is one click away
    page.locator("#lang-toggle").click()
    expect(page.locator("h1")).to_have_text("Blind answer comparison")
    expect(page.locator("#progress")).to_have_text("Mine 4 / 18 · all raters 4 / 18")
    page.locator("#lang-toggle").click()

    rows = study.ratings()
    assert [r["rater"] for r in rows] == ["王芳"] * 4
    assert [r["winner"] for r in rows][1:3] == ["tie", "both_wrong"]
    assert rows[0]["winner"] == rows[0]["model_b"] and rows[3]["winner"] == rows[3]["model_a"]
    assert rows[1]["slots"] == {rows[1]["model_a"]: {"core_concept": 1}, rows[1]["model_b"]: {"emotion": 0}}
    assert rows[1]["note"] == "两个都还行" and all(r["seconds"] is not None for r in rows)
    html = page.content().lower()
    assert not [s for s in SECRETS if s.lower() in html]
    assert not page.errors, page.errors
    context.close()

    # a phone: answers stack under the video; a second rater joins with their own name
    context, phone = new_page(browser, 390, 844, is_mobile=True, has_touch=True)
    phone.goto(base + "/")
    phone.wait_for_selector("body[data-ready='1']", timeout=15000)
    phone.locator("#rater-input").fill("bob")
    phone.keyboard.press("Enter")
    expect(phone.locator("#progress")).to_have_text("我的进度 0 / 14 · 全体 4 / 18")
    media = phone.locator(".media").bounding_box()
    a = phone.locator("#answer-a").bounding_box()
    b = phone.locator("#answer-b").bounding_box()
    choices = phone.locator("#choices").bounding_box()
    assert media["y"] + media["height"] <= a["y"] and a["y"] + a["height"] <= b["y"] and b["y"] < choices["y"]
    assert a["width"] > 300 and b["width"] > 300  # full width, not squeezed side by side
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    expect(phone.locator(".shortcuts")).to_be_hidden()  # no keyboard on a phone
    phone.locator(".choice[data-choice='a']").tap()
    expect(phone.locator(".choice[data-choice='a']")).to_have_attribute("aria-pressed", "true")
    # viewport shots (a full-page shot drops the touch emulation while it is taken): the top, then the choices
    phone.evaluate("window.scrollTo(0, 0)")
    phone.screenshot(path=str(tmp_path / "rate-phone.png"))
    phone.locator("#choices").scroll_into_view_if_needed()
    phone.screenshot(path=str(tmp_path / "rate-phone-choices.png"))
    _keep(tmp_path, "rate-phone.png")
    _keep(tmp_path, "rate-phone-choices.png")
    assert not phone.errors, phone.errors
    context.close()
