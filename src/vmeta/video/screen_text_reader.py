"""On-screen text of a video (burned-in captions, meme text, title cards) read by offline OCR.

    result = read_screen_text("clip.mp4", ScreenTextSettings(fps=1.0), cache=ScreenTextCache(cache_dir))
    for line in result.lines:            # ordered by first appearance
        print(line.start, line.end, line.text)

Why: short-video metaphors often live in the caption, and a 2B video model at 256x256 per frame cannot read it
(issue #15). The settings and results are in `vmeta.video.screen_text`; this module is how they are read.

How (costs measured in bench/screen_text.py):

1. **Frames**: sampled at `fps` (default 1) by `vmeta.video.decode.iter_video` (seek-based, upright) at a budget
   of about 720x1280 pixels, so text keeps the detail recognition needs; decoded a few GOPs (>= 16 frames,
   ~45 MB) at a time and dropped once read, so memory does not grow with the video's length.
2. **Skip unchanged frames**: each frame's 8x8-block-mean grayscale thumbnail is compared with that of the last
   frame actually read; when fewer than `change_blocks` blocks moved by more than `change_level`, nothing new
   can have appeared, so the frame is not OCR'd and the lines seen last are extended to it.
3. **Detect, then recognise only changed boxes**: text detection (rapidocr's PP-OCR det, on a picture whose
   long side is `det_side`) runs on a changed frame; a box at the same place as a box of the last read frame
   whose crop looks the same (block means) keeps that box's text, so a static caption over a moving
   background is recognised once. Boxes lower than `min_box_height` (fraction of the frame width) and
   recognitions scoring below `min_score` are dropped.
4. **Merge across frames**: a recognised text continues a line seen in the previous sampled frame when they
   match fuzzily (rapidfuzz ratio >= `merge_ratio`), so a caption shown for 3 s is one line with its first
   and last time (the sampled frames' times); its text is the variant with the highest total score.

Results are cached on disk by (file content key, settings, OCR versions; `vmeta.video.screen_text_cache`) — a
second call reads JSON and runs no OCR. `rapidocr` and `onnxruntime` are the `[ocr]` extra, imported only when
OCR actually runs (`vmeta.video.ocr_engine`).
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmeta.errors import UserError
from vmeta.video.ocr_engine import OcrEngine, default_engine
from vmeta.video.screen_text import ScreenText, ScreenTextLine, ScreenTextSettings, ScreenTextStats
from vmeta.video.screen_text_cache import ScreenTextCache

_FRAME_PIXELS = 720 * 1280  # decode budget: a portrait short video at its usual size
_BLOCK = 8
_CHUNK_FRAMES = 16  # frames decoded at once: ~45 MB at 720x1280 instead of every sampled frame


def _thumb(frame_chw: np.ndarray) -> np.ndarray:
    """8x8 block means of the luma (float32): averages out encoding noise, keeps a caption's strokes."""
    r, g, b = (frame_chw[c].astype(np.float32) for c in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    h, w = (y.shape[0] // _BLOCK) * _BLOCK, (y.shape[1] // _BLOCK) * _BLOCK
    return y[:h, :w].reshape(h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK).mean(axis=(1, 3))


def _crop_sig(crop: np.ndarray) -> np.ndarray:
    """A crop's strokes at a fixed 8x48 size: block means of the grey-level gradient. Strokes are sharp and
    the scene behind a caption mostly smooth, so a caption over a moving background keeps its signature."""
    g = crop.astype(np.float32).mean(axis=2) if crop.ndim == 3 else crop.astype(np.float32)
    e = np.zeros_like(g)
    e[:, 1:] += np.abs(np.diff(g, axis=1))
    e[1:, :] += np.abs(np.diff(g, axis=0))
    ys = np.linspace(0, g.shape[0], 9).astype(int)
    xs = np.linspace(0, g.shape[1], 49).astype(int)
    rows = np.add.reduceat(e, ys[:-1], axis=0) / np.maximum(np.diff(ys), 1)[:, None]
    return (np.add.reduceat(rows, xs[:-1], axis=1) / np.maximum(np.diff(xs), 1)[None, :]).astype(np.float32)


def _same_look(a: np.ndarray, b: np.ndarray, aspect: float) -> bool:
    """The same text re-rendered: stroke signatures (each scaled to its mean strength, so a scene that moves
    behind the strokes matters less) differ by < 0.3 in every character-wide window. Measured on rendered
    captions: same text over a moving scene 0.17-0.36 (above 0.3 it is simply recognised again), one
    character changed 0.37-0.44 — a changed character is never taken for the old text."""
    a = a / max(float(a.mean()), 1e-3)
    b = b / max(float(b.mean()), 1e-3)
    col = np.abs(a - b).mean(axis=0)
    k = max(1, round(col.size * aspect))  # a character is about as wide as the line is high
    return float(np.convolve(col, np.ones(k) / k, mode="valid").max()) < 0.3


def _has_word(text: str) -> bool:
    """Letters, digits or CJK — a lone '_' or '|' read off an edge in the scene is not text."""
    return any(ch.isalnum() for ch in text)


def _bbox(quad: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0 = np.rint(quad.min(axis=0)).astype(int).tolist()
    x1, y1 = np.rint(quad.max(axis=0)).astype(int).tolist()
    return x0, y0, x1, y1


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Seen:
    """A box of the last read frame: where, how it looked, what it said."""

    box: tuple[int, int, int, int]
    sig: np.ndarray
    text: str
    score: float


@dataclass
class _Track:
    """A line being followed across sampled frames."""

    start: float
    end: float
    variants: dict[str, list[float]]  # text -> scores
    best_box: tuple[int, int, int, int]
    best_score: float
    last_index: int

    def line(self) -> ScreenTextLine:
        text = max(self.variants, key=lambda t: (sum(self.variants[t]), len(self.variants[t])))
        scores = self.variants[text]
        return ScreenTextLine(
            text=text,
            start=round(self.start, 3),
            end=round(self.end, 3),
            score=round(sum(scores) / len(scores), 4),
            box=self.best_box,
        )


def _similarity(a: str, b: str, fuzz_ratio) -> float:
    """rapidfuzz ratio, or 100 when one text is most of the other: a frame where the scene swallowed the end
    of a caption ("躺平是一" for "躺平是一种态度") continues the line instead of starting a new one."""
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 3 and len(short) >= 0.5 * len(long_) and short in long_:
        return 100.0
    return fuzz_ratio(a, b)


def _merge(tracks: list[_Track], index: int, t: float, seen: list[_Seen], ratio: float, fuzz_ratio) -> None:
    """Continue the lines seen in the previous sampled frame with this frame's texts, or start new ones."""
    open_tracks = [tr for tr in tracks if tr.last_index == index - 1]
    taken: set[int] = set()
    for s in seen:
        best, best_r = None, ratio
        for k, tr in enumerate(open_tracks):
            if k in taken:
                continue
            r = max(_similarity(s.text, v, fuzz_ratio) for v in tr.variants)
            if r >= best_r:
                best, best_r = k, r
        if best is None:
            tracks.append(_Track(t, t, {s.text: [s.score]}, s.box, s.score, index))
            continue
        taken.add(best)
        tr = open_tracks[best]
        tr.end, tr.last_index = t, index
        tr.variants.setdefault(s.text, []).append(s.score)
        if s.score > tr.best_score:
            tr.best_box, tr.best_score = s.box, s.score


def _read_frame(
    engine: OcrEngine,
    frame: np.ndarray,
    last_seen: list[_Seen],
    min_h: float,
    settings: ScreenTextSettings,
    stats: ScreenTextStats,
) -> list[_Seen]:
    """Detect the text boxes of one changed frame; recognise those not seen unchanged in the last read frame."""
    bgr = np.ascontiguousarray(frame[::-1].transpose(1, 2, 0))  # rapidocr works on OpenCV's BGR
    seen: list[_Seen] = []
    todo: list[tuple[_Seen, np.ndarray]] = []
    for quad in engine.detect(bgr):
        box = _bbox(quad)
        if box[3] - box[1] < min_h:
            continue
        crop = engine.crop(bgr, quad)
        sig = _crop_sig(crop)
        item = _Seen(box, sig, "", 0.0)
        aspect = (box[3] - box[1]) / max(1, box[2] - box[0])
        for prev in last_seen:
            if _iou(prev.box, box) >= 0.8 and _same_look(prev.sig, sig, aspect):
                item.text, item.score = prev.text, prev.score
                stats.boxes_reused += 1
                break
        else:
            todo.append((item, crop))
        seen.append(item)
    for (item, _), (text, score) in zip(todo, engine.recognize([c for _, c in todo]), strict=True):
        item.text, item.score = text.strip(), score
    stats.boxes_recognized += len(todo)
    seen = [s for s in seen if _has_word(s.text) and s.score >= settings.min_score]
    seen.sort(key=lambda s: (s.box[1], s.box[0]))
    return seen


def read_screen_text(
    path: str | Path,
    settings: ScreenTextSettings | None = None,
    *,
    cache: ScreenTextCache | None = None,
    engine: OcrEngine | None = None,
) -> ScreenText:
    """The on-screen text of the video at `path` (see the module docstring for how and what it costs).

    Raises the decoder's DecodeError / ProbeError (UserErrors naming the file) for unreadable videos, and a
    UserError saying what to install when rapidocr is missing. `engine` replaces the default rapidocr engine
    (tests count its calls).
    """
    from rapidfuzz.fuzz import ratio as fuzz_ratio

    from vmeta.video.decode import iter_video
    from vmeta.video.sampling import FrameSettings, SamplingError

    settings = settings or ScreenTextSettings()
    path = Path(path)
    if not path.is_file():  # the probe's message says what is wrong (missing, a folder, ...)
        from vmeta.video.probe import probe

        probe(path)
    if cache is not None:
        hit = cache.get(path, settings)
        if hit is not None:
            return hit
    if engine is None:
        engine = default_engine(settings.det_side)  # before decoding: a missing extra fails fast

    frame_settings = FrameSettings(
        fps=settings.fps,
        min_frames=1,
        max_frames=settings.max_frames,
        frame_factor=1,
        image_factor=_BLOCK,
        min_pixels=_FRAME_PIXELS,
        max_pixels=_FRAME_PIXELS,
    )
    stats = ScreenTextStats()
    tracks: list[_Track] = []
    last_thumb: np.ndarray | None = None
    last_seen: list[_Seen] = []
    sample_times: list[float] = []
    size = (0, 0)
    chunks = iter_video(path, frame_settings, chunk_frames=_CHUNK_FRAMES)
    with closing(chunks):
        while True:
            t0 = time.perf_counter()
            try:
                video = next(chunks, None)
            except SamplingError as exc:
                raise UserError(f"{path}: cannot sample frames to read text from ({exc}).") from None
            stats.decode_s += time.perf_counter() - t0
            if video is None:
                break
            size = video.size
            min_h = settings.min_box_height * size[1]
            t1 = time.perf_counter()
            for frame, t in zip(video.frames, video.timestamps, strict=True):
                i = len(sample_times)
                sample_times.append(float(t))
                thumb = _thumb(frame)
                if last_thumb is not None:
                    changed = int((np.abs(thumb - last_thumb) > settings.change_level).sum())
                    if changed < settings.change_blocks:
                        _merge(tracks, i, t, last_seen, 100.0, fuzz_ratio)  # same picture: the same lines go on
                        continue
                last_thumb = thumb
                stats.frames_read += 1
                last_seen = _read_frame(engine, frame, last_seen, min_h, settings, stats)
                _merge(tracks, i, t, last_seen, settings.merge_ratio, fuzz_ratio)
            stats.ocr_s += time.perf_counter() - t1
            del video  # the next chunk replaces it rather than joining it
    stats.frames_sampled = len(sample_times)
    height, width = size

    lines = [tr.line() for tr in tracks]
    lines.sort(key=lambda ln: (ln.start, ln.box[1], ln.box[0]))
    result = ScreenText(
        video=str(path),
        lines=lines,
        frame_size=(height, width),
        sample_times=sample_times,
        settings=settings,
        stats=stats,
    )
    if cache is not None:
        cache.put(path, settings, result)
    return result


__all__ = ["read_screen_text"]
