"""The context block (issue #15): one template, capped length, nothing for a video without text."""

from __future__ import annotations

import pytest

from vmeta.dataset.context import (
    ContextSettings,
    context_block,
    context_values,
    record_context,
    with_context,
)
from vmeta.dataset.records import Record, ScreenTextInfo, SourceRef
from vmeta.errors import UserError


def test_block_joins_lines_in_order_and_goes_before_the_instruction():
    block = context_block({"screen_text": "作者配文：阴阳两隔\n\n上班第一天 "})
    assert block == "画面文字：作者配文：阴阳两隔 / 上班第一天"
    assert with_context("解释视频的隐喻。", block) == "画面文字：作者配文：阴阳两隔 / 上班第一天\n解释视频的隐喻。"


def test_no_text_adds_nothing():
    assert context_block({"screen_text": ""}) == ""
    assert context_block({}) == ""
    assert with_context("解释视频的隐喻。", "") == "解释视频的隐喻。"


def test_long_text_is_capped_with_an_ellipsis():
    block = context_block({"screen_text": "字" * 500}, max_chars=50)
    text = block.removeprefix("画面文字：")
    assert len(text) == 50 and text.endswith("…")


def test_settings_round_trip_and_refuse_unknown_kinds():
    ctx = ContextSettings(kinds=("screen_text",), max_chars=80, screen_text={"fps": 2.0})
    assert ContextSettings.from_dict(ctx.to_dict()) == ctx
    assert ContextSettings.from_dict(["screen_text"]).kinds == ("screen_text",)
    assert not ContextSettings.from_dict(None).enabled
    assert ctx.screen_text_settings().fps == 2.0
    with pytest.raises(UserError, match=r"unknown context 'subtitles'.*screen_text"):
        ContextSettings(kinds=("subtitles",))
    with pytest.raises(UserError, match=r"context\.screen_text: .*fps"):
        ContextSettings(kinds=("screen_text",), screen_text={"fps": -1}).screen_text_settings()


def test_stored_text_is_used_without_reading_the_video(tmp_path):
    rec = Record(
        id="a",
        video="a.mp4",
        category="c",
        raw_label="x",
        label="x",
        source=SourceRef(sheet="s.csv", row=2),
        screen_text=ScreenTextInfo(text="上班第一天"),
    )
    ctx = ContextSettings(kinds=("screen_text",))
    # the video does not exist: reading it would raise, so the stored text must be what is used
    assert context_values(ctx, tmp_path / "missing.mp4", stored=record_context(rec)) == {"screen_text": "上班第一天"}
    unread = rec.model_copy(update={"screen_text": None})
    assert record_context(unread) == {"screen_text": None}
    with pytest.raises(UserError):
        context_values(ctx, tmp_path / "missing.mp4", stored=record_context(unread))
