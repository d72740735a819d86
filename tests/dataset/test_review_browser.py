"""The review page in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium).

Skipped when Chromium is missing, unless $CI is set (then a missing browser is a failure).
Install it with: apt-get install -y chromium
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from vmeta.testing.browser import launch_chromium, require_browser, serve_in_thread

pytestmark = pytest.mark.browser

# The dataset builder (records + tiny PyAV clips) lives beside the API tests; load it by path so this file
# does not depend on pytest's import mode.
_spec = importlib.util.spec_from_file_location("_review_test_data", Path(__file__).with_name("test_review.py"))
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)


@pytest.fixture
def served(tmp_path):
    """(base URL, Dataset): the review app on an ephemeral 127.0.0.1 port, in a thread."""
    from vmeta.dataset.review_app import create_review_app

    ds = _data.build_review_dataset(tmp_path / "ds")
    with serve_in_thread(create_review_app(ds.root, "browser-tester"), lifespan="off") as url:
        yield url, ds


@pytest.fixture
def page():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        # an English browser locale: the page must still default to Chinese
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.on("response", lambda res: errors.append(f"HTTP {res.status} {res.url}") if res.status >= 400 else None)
        pg.errors = errors
        try:
            yield pg
        finally:
            context.close()
            browser.close()


def _records(ds) -> dict:
    return {r.id: r for r in ds.load()}


def _log(ds) -> list[dict]:
    return [json.loads(x) for x in ds.audit_path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_review_page_end_to_end(page, served, tmp_path):
    from playwright.sync_api import expect

    base, ds = served
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)

    # Chinese UI, first item, progress 1 / N, slots highlighted, the stripped LLM note shown
    expect(page.locator("h1")).to_have_text("隐喻标签人工复审")
    expect(page.locator("#progress")).to_have_text("1 / 3")
    expect(page.locator("#item-id")).to_have_text("r001")
    expect(page.locator("#legend")).to_contain_text("视频内容")
    expect(page.locator("#legend")).to_contain_text("情绪/态度")
    expect(page.locator("#btn-accept")).to_contain_text("接受")
    expect(page.locator("#current-label .slot-concept")).to_have_text("搬沙发跳舞")
    expect(page.locator("#current-label .slot-emotion")).to_have_text("从压抑到欢快的情绪转变")
    expect(page.locator("#notices")).to_contain_text("已删除大模型附加的说明")
    expect(page.locator("#raw-label")).to_have_text("情侣搬沙发跳舞，化解坏心情")
    # the video loads through the range-capable endpoint
    page.wait_for_function("document.getElementById('video').readyState >= 1", timeout=15000)
    assert page.evaluate("document.getElementById('video').duration") > 0.5

    page.screenshot(path=str(tmp_path / "review-zh.png"), full_page=True)

    # A accepts and moves on
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("a")
    expect(page.locator("#progress")).to_have_text("2 / 3")
    expect(page.locator("#item-id")).to_have_text("r002")

    # shortcuts do not fire while typing; Ctrl+Enter saves the edit
    editor = page.locator("#editor")
    editor.click()
    page.keyboard.type("ajr")
    expect(page.locator("#progress")).to_have_text("2 / 3")
    assert editor.input_value().endswith("ajr")
    page.locator("#btn-accept").click()  # unsaved edits: the first Accept only warns
    expect(page.locator("#toast")).to_contain_text("未保存的修改")
    expect(page.locator("#progress")).to_have_text("2 / 3")
    editor.fill(_data.EDITED)
    expect(page.locator("#preview .slot-concept")).to_have_text("早八人")  # live highlighting via /api/parse
    expect(page.locator("#conformance")).to_have_text("符合模板")
    editor.press("Control+Enter")
    expect(page.locator("#progress")).to_have_text("3 / 3")
    expect(page.locator("#item-id")).to_have_text("r003")
    expect(page.locator("#notices")).to_contain_text("标签不符合模板")

    # reject with a note: type the note, Esc leaves the field, R rejects
    page.locator("#note").fill("标签与视频无关")
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    expect(page.locator("#item-status")).to_have_attribute("data-status", "rejected")
    expect(page.locator("#counts")).to_contain_text("已拒绝 1")

    # English is one click away
    page.locator("#lang-toggle").click()
    expect(page.locator("h1")).to_have_text("Metaphor label review")
    expect(page.locator("#btn-accept")).to_contain_text("Accept")
    # the choice survives a reload; the pending queue is now empty
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    expect(page.locator("h1")).to_have_text("Metaphor label review")
    expect(page.locator("#progress")).to_have_text("0 / 0")
    expect(page.locator("#empty")).to_have_text("No items for this filter.")
    page.locator("#lang-toggle").click()
    expect(page.locator("#empty")).to_have_text("当前筛选下没有条目。")
    page.locator("#filter").select_option("all")
    expect(page.locator("#progress")).to_have_text("1 / 4")
    expect(page.locator("h1")).to_have_text("隐喻标签人工复审")
    page.screenshot(path=str(tmp_path / "review-after.png"), full_page=True)

    recs = _records(ds)
    assert recs["r001"].review.status == "accepted" and recs["r001"].review.reviewer == "browser-tester"
    assert recs["r002"].review.status == "edited" and recs["r002"].label == _data.EDITED
    assert recs["r002"].raw_label == _data.GOOD2
    assert recs["r003"].review.status == "rejected" and recs["r003"].review.note == "标签与视频无关"
    assert recs["r004"].review.status == "accepted"  # untouched
    log = _log(ds)
    assert [(e["id"], e["action"]) for e in log] == [("r001", "accept"), ("r002", "edit"), ("r003", "reject")]
    assert log[1]["before"]["label"] == _data.GOOD2 and log[1]["after"]["label"] == _data.EDITED
    assert log[2]["note"] == "标签与视频无关" and all(e["reviewer"] == "browser-tester" for e in log)
    assert not page.errors, page.errors

    shots = os.environ.get("VMETA_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for name in ("review-zh.png", "review-after.png"):
            (Path(shots) / name).write_bytes((tmp_path / name).read_bytes())


def test_review_page_conflict_and_narrow_layout(page, served, tmp_path):
    """A rewrite job changes the label behind the page: the decision is refused (409) and the item reloaded."""
    from playwright.sync_api import expect

    base, ds = served
    page.set_viewport_size({"width": 420, "height": 900})
    page.goto(base + "/?filter=all")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    expect(page.locator("#progress")).to_have_text("1 / 4")
    page.keyboard.press("j")
    expect(page.locator("#item-id")).to_have_text("r002")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#item-id")).to_have_text("r001")

    def change(records):
        for r in records:
            if r.id == "r001":
                r.set_label(_data.GOOD2, "rewrite")

    ds.update(change)
    page.keyboard.press("a")
    expect(page.locator("#toast")).to_contain_text("已被他人或改写任务修改")
    expect(page.locator("#editor")).to_have_value(_data.GOOD2)
    assert _records(ds)["r001"].review.status == "pending"
    assert not ds.audit_path.exists()
    # video sits above the labels on a narrow screen
    video_box = page.locator("#video").bounding_box()
    editor_box = page.locator("#editor").bounding_box()
    assert video_box["y"] + video_box["height"] <= editor_box["y"]
    page.screenshot(path=str(tmp_path / "review-narrow.png"), full_page=True)
    shots = os.environ.get("VMETA_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        (Path(shots) / "review-narrow.png").write_bytes((tmp_path / "review-narrow.png").read_bytes())
