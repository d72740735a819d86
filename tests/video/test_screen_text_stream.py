"""read_screen_text decodes a chunk of frames at a time (`iter_video`): the same lines as reading the whole
video at once, with the decoded frames of one chunk in memory instead of every sampled frame."""

from __future__ import annotations

import tracemalloc

import pytest

from vmeta.testing.captions import Caption, make_caption_clip, require_cjk_font

CAPTIONS = [
    Caption("第一句字幕出现了", 0.0, 4.0, size=44),
    Caption("然后换成第二句", 4.0, 8.0, size=44, y=0.2),
    Caption("最后一句", 8.0, 12.0, size=44),
]
FRAME_BYTES = 720 * 1280 * 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    pytest.importorskip("rapidocr")
    font = require_cjk_font()
    # 12 s, a keyframe every second: 12 GOPs, so chunks of a few frames are possible
    path = tmp_path_factory.mktemp("stream") / "twelve.mp4"
    return make_caption_clip(path, CAPTIONS, 12.0, fps=5, moving_background=False, font=font, gop=5)


def test_chunked_reading_gives_the_same_lines_in_less_memory(clip, monkeypatch):
    from vmeta.video import screen_text_reader
    from vmeta.video.ocr_engine import default_engine
    from vmeta.video.screen_text import ScreenTextSettings
    from vmeta.video.screen_text_reader import read_screen_text

    settings = ScreenTextSettings(fps=1.0)
    engine = default_engine()
    monkeypatch.setattr(screen_text_reader, "_CHUNK_FRAMES", 100)  # every frame in one chunk (GOPs allowing)
    tracemalloc.start()
    whole = read_screen_text(clip, settings, engine=engine)
    whole_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    monkeypatch.setattr(screen_text_reader, "_CHUNK_FRAMES", 2)
    tracemalloc.start()
    chunked = read_screen_text(clip, settings, engine=engine)
    chunked_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert [(ln.text, ln.start, ln.end) for ln in chunked.lines] == [(ln.text, ln.start, ln.end) for ln in whole.lines]
    assert len(chunked.lines) == 3 and chunked.sample_times == whole.sample_times
    assert chunked.stats.frames_sampled == whole.stats.frames_sampled == 12
    assert chunked.stats.frames_read == whole.stats.frames_read == 3  # one per caption: the picture is still
    # all 12 frames at once hold >= 12 frames; chunks of 2 hold a few (plus OCR's own working memory)
    assert whole_peak >= 12 * FRAME_BYTES, whole_peak
    assert chunked_peak < whole_peak - 6 * FRAME_BYTES, (chunked_peak, whole_peak)
    print(f"peak traced memory: whole {whole_peak / 2**20:.0f} MiB, chunks of 2 {chunked_peak / 2**20:.0f} MiB")
