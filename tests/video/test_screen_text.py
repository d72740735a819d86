"""On-screen text (vmeta.video.screen_text, `vmeta video text`) on generated 720x1280 clips with burned-in
Chinese captions: each caption found once, within one sampling step, CER <= 5%; unchanged frames and cached
videos are not OCR'd again; a clip without text is empty; unreadable files and a missing extra are UserErrors."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from vmeta.errors import UserError
from vmeta.testing.captions import Caption, cer, make_caption_clip, require_cjk_font
from vmeta.testing.needs import require_ocr

runner = CliRunner()

STATIC_CAPTIONS = [
    Caption("作者配文：阴阳两隔", 0.0, 3.0, size=48, outline=3, y=0.78),
    Caption("今天也要好好吃饭", 3.0, 6.0, size=36, color=(255, 220, 0), outline=0, y=0.15),
]
MOVING_CAPTIONS = [
    Caption("我们终将走散", 0.0, 4.0, size=40, dx=0.04, y=0.5),  # slides right over a moving scene
    Caption("梦想与现实的距离", 0.0, 4.0, size=52, color=(250, 70, 70), outline=2, y=0.82),
]


class Counting:
    """The real engine, with this test's own call counters."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.detect_calls = 0
        self.recognize_calls = 0
        self.crops = 0

    def detect(self, image):
        self.detect_calls += 1
        return self.inner.detect(image)

    def crop(self, image, quad):
        return self.inner.crop(image, quad)

    def recognize(self, crops):
        self.recognize_calls += 1
        self.crops += len(crops)
        return self.inner.recognize(crops)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    require_ocr()
    font = require_cjk_font()
    d = tmp_path_factory.mktemp("captions")
    return {
        "static": make_caption_clip(d / "static.mp4", STATIC_CAPTIONS, 6.0, fps=10, moving_background=False, font=font),
        "moving": make_caption_clip(d / "moving.mp4", MOVING_CAPTIONS, 4.0, fps=10, moving_background=True, font=font),
        "blank": make_caption_clip(d / "blank.mp4", [], 2.0, fps=10, moving_background=True, font=font),
    }


@pytest.fixture
def engine():
    from vmeta.video.ocr_engine import default_engine

    return Counting(default_engine())


def _check_captions(result, captions) -> None:
    """Each caption is one line (CER <= 5% over all captions) whose start/end are within one sampling step."""
    times = result.sample_times
    step = max(b - a for a, b in itertools.pairwise(times))
    dist = total = 0
    for cap in captions:
        matches = [ln for ln in result.lines if cer(cap.text, ln.text) <= 0.5]
        assert len(matches) == 1, (cap.text, [ln.text for ln in result.lines])
        line = matches[0]
        dist += round(cer(cap.text, line.text) * len(cap.text))
        total += len(cap.text)
        assert cap.start - 1e-6 <= line.start <= cap.start + step, (cap, line, times)
        assert cap.end - step - 1e-6 <= line.end <= cap.end, (cap, line, times)
    assert dist / total <= 0.05, [ln.text for ln in result.lines]
    assert len(result.lines) == len(captions), [ln.text for ln in result.lines]
    assert [ln.start for ln in result.lines] == sorted(ln.start for ln in result.lines)


def test_static_captions_read_once_per_change(clips, engine):
    from vmeta.video.screen_text import ScreenTextSettings
    from vmeta.video.screen_text_reader import read_screen_text

    result = read_screen_text(clips["static"], ScreenTextSettings(fps=1.0), engine=engine)
    _check_captions(result, STATIC_CAPTIONS)
    assert result.stats.frames_sampled == 6
    # six sampled frames, two pictures: each unchanged stretch is OCR'd once
    assert engine.detect_calls == result.stats.frames_read == 2, result.stats
    assert engine.crops == 2
    print(f"static: {[(ln.text, ln.start, ln.end, ln.score) for ln in result.lines]} stats={result.stats}")


def test_moving_captions_over_moving_scene(clips, engine):
    from vmeta.video.screen_text import ScreenTextSettings
    from vmeta.video.screen_text_reader import read_screen_text

    result = read_screen_text(clips["moving"], ScreenTextSettings(fps=1.0), engine=engine)
    _check_captions(result, MOVING_CAPTIONS)
    assert engine.detect_calls == result.stats.frames_read == result.stats.frames_sampled  # the scene moves
    # the static caption keeps its box and strokes: recognised again at most every other frame
    assert result.stats.boxes_reused >= 1, result.stats
    print(f"moving: {[(ln.text, ln.start, ln.end, ln.box) for ln in result.lines]} stats={result.stats}")


def test_no_text_is_empty(clips, engine):
    from vmeta.video.screen_text_reader import read_screen_text

    result = read_screen_text(clips["blank"], engine=engine)
    assert result.lines == [] and result.text == ""
    assert engine.detect_calls >= 1


def test_cache_avoids_second_pass_and_round_trips(clips, engine, tmp_path):
    from vmeta.video.screen_text import ScreenText, ScreenTextSettings
    from vmeta.video.screen_text_cache import ScreenTextCache
    from vmeta.video.screen_text_reader import read_screen_text

    cache = ScreenTextCache(tmp_path / "cache")
    settings = ScreenTextSettings(fps=1.0)
    first = read_screen_text(clips["static"], settings, cache=cache, engine=engine)
    calls = engine.detect_calls, engine.recognize_calls
    copy = tmp_path / "copy.mp4"  # same content elsewhere: the key is the content, not the path
    copy.write_bytes(clips["static"].read_bytes())
    second = read_screen_text(copy, settings, cache=cache, engine=engine)
    assert (engine.detect_calls, engine.recognize_calls) == calls
    assert second.stats.cached and cache.hits == 1
    assert second.lines == first.lines and second.video == str(copy)
    assert ScreenText.from_dict(json.loads(json.dumps(first.to_dict()))).to_dict() == first.to_dict()
    read_screen_text(clips["static"], ScreenTextSettings(fps=2.0), cache=cache, engine=engine)  # other settings
    assert engine.detect_calls > calls[0]


def test_cli_prints_lines_and_json(clips):
    from vmeta.cli import app

    res = runner.invoke(app, ["video", "text", str(clips["static"]), "--no-cache"])
    assert res.exit_code == 0, res.output
    rows = [ln for ln in res.stdout.splitlines() if "–" in ln]
    assert len(rows) == 2 and rows[0].startswith("00:00.0–00:0"), res.stdout
    assert "阴阳两隔" in rows[0] and "好好吃饭" in rows[1]
    res = runner.invoke(app, ["video", "text", str(clips["static"]), "--json", "--no-cache", "--fps", "1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["lines"][0]["text"].endswith("阴阳两隔")
    assert set(data["lines"][0]) == {"text", "start", "end", "score", "box"}


def test_unreadable_and_bad_settings_are_user_errors(tmp_path):
    from vmeta.cli import app
    from vmeta.video.screen_text import ScreenTextSettings
    from vmeta.video.screen_text_reader import read_screen_text

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(UserError, match=r"bad\.mp4"):
        read_screen_text(bad, engine=Counting(None))
    with pytest.raises(UserError, match=r"missing\.mp4"):
        read_screen_text(tmp_path / "missing.mp4", engine=Counting(None))
    res = runner.invoke(app, ["video", "text", str(bad), "--no-cache"])
    assert isinstance(res.exception, UserError) and "bad.mp4" in str(res.exception)  # main() prints it
    with pytest.raises(ValueError, match="fps"):
        ScreenTextSettings(fps=0)


def test_missing_extra_says_what_to_install(monkeypatch):
    from vmeta.video.ocr_engine import RapidOcrEngine

    monkeypatch.setitem(sys.modules, "rapidocr", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"vmeta\[ocr\]"):
        RapidOcrEngine()


def test_thumb_ignores_noise_but_sees_a_caption():
    """The change test: encoder-level noise is not a change, a small caption is."""
    from vmeta.video.screen_text import ScreenTextSettings
    from vmeta.video.screen_text_reader import _thumb

    s = ScreenTextSettings()
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, size=(3, 1280, 720)).astype(np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-6, 7, size=base.shape), 0, 255).astype(np.uint8)
    assert int((np.abs(_thumb(base) - _thumb(noisy)) > s.change_level).sum()) < s.change_blocks
    text = base.copy()
    text[:, 1000:1024, 100:124:3] = 255  # a few strokes of one small character
    assert int((np.abs(_thumb(base) - _thumb(text)) > s.change_level).sum()) >= s.change_blocks


def test_merge_keeps_one_line_through_a_partial_reading():
    """Pure merging: a frame that read only the start of a caption continues its line; the full text wins."""
    from rapidfuzz.fuzz import ratio

    from vmeta.video.screen_text import format_time
    from vmeta.video.screen_text_reader import _merge, _Seen, _Track

    sig = np.zeros((8, 48), np.float32)
    tracks: list[_Track] = []
    frames = [["躺平是一种态度"], ["躺平是一"], ["躺平是一种态度"], ["打工人打工魂"]]
    for i, texts in enumerate(frames):
        _merge(tracks, i, float(i), [_Seen((0, 0, 10, 10), sig, t, 0.99) for t in texts], 80.0, ratio)
    lines = [tr.line() for tr in tracks]
    assert [(ln.text, ln.start, ln.end) for ln in lines] == [("躺平是一种态度", 0.0, 2.0), ("打工人打工魂", 3.0, 3.0)]
    assert format_time(75.25) == "01:15.2" and format_time(0) == "00:00.0"
