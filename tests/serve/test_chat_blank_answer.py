"""The chat page shows a whitespace-only answer (what the tiny random-weight model says) as a short muted note,
not as a bubble stretched by newlines; in Chinese first, in English when the page is English.

Drives Debian's Chromium like tests/serve/test_chat_browser.py, whose fixtures it reuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from chat_page import T, _answer, _guest, _wait_done

from vmeta.serve.echo_engine import EchoEngine
from vmeta.serve.engine_api import ChatRequest, Event, Token

pytestmark = pytest.mark.browser


class BlankEngine(EchoEngine):
    """The echo engine, except that a message containing 空白 gets only newlines and spaces, and one containing
    换行 gets two newlines before the echoed words."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        text = str(request.messages[-1].get("content", ""))
        first = True
        async for event in super().stream(request):
            if isinstance(event, Token) and "空白" in text:
                event = Token(text="\n \n")
            elif isinstance(event, Token) and "换行" in text and first:
                event = Token(text="\n\n" + event.text)
            first = first and not isinstance(event, Token)
            yield event


def test_a_whitespace_answer_is_a_short_note_not_a_blank_box(new_page, serve):
    from playwright.sync_api import expect

    url = serve(BlankEngine(delay_s=0.02))
    page = new_page()
    _guest(page, url)
    page.locator("#input").fill("空白")
    page.locator("#send-btn").click()
    _wait_done(page, 0)
    blank = _answer(page, 0)
    expect(blank.locator(".blank-note")).to_have_text("（模型只输出了空白）")
    expect(blank.locator(".text")).to_be_hidden()
    assert blank.locator(".text").text_content().strip() == "" and "\n" in blank.locator(".text").text_content()
    assert blank.locator(".bubble").bounding_box()["height"] < 60  # one line, not ten blank ones

    # an answer that starts with newlines and then says something: the text, and no note
    page.locator("#input").fill("换行")
    page.locator("#send-btn").click()
    _wait_done(page, 1)
    expect(_answer(page, 1).locator(".text")).to_be_visible()
    expect(_answer(page, 1).locator(".text")).to_contain_text("echo[echo] turn=2")
    expect(_answer(page, 1).locator(".blank-note")).to_be_hidden()

    # the stored answer keeps its whitespace: after a reload it is a note again, and in English when switched
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=T)
    expect(_answer(page, 0).locator(".blank-note")).to_have_text("（模型只输出了空白）", timeout=T)
    page.locator("#lang-toggle-top").click()
    expect(_answer(page, 0).locator(".blank-note")).to_have_text("(the model answered only whitespace)")
    expect(_answer(page, 1).locator(".blank-note")).to_be_hidden()
    assert not page.errors, page.errors
