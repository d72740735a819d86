"""Store each record's on-screen text (issue #15): `vmeta data build --screen-text`, `vmeta data screen-text`.

    report = add_screen_text(Dataset("data/ds"), ScreenTextSettings(fps=1.0), progress=on_progress)

Every record without stored text (or read with other settings; all of them with `redo`) gets its video read by
`vmeta.video.screen_text_reader.read_screen_text` through the OCR cache, and a `ScreenTextInfo` (the distinct lines,
their times, the settings) on the record. What makes a long job safe to run, stop and re-run:

- results are saved in batches (every `save_every` videos or `save_seconds`) through `Dataset.update`: under
  the dataset lock, on freshly re-read records, changing only the `screen_text` of those records — a label
  edited on the review page meanwhile is never overwritten;
- Ctrl-C (or any stop) saves the batch in hand first: a rerun continues with the videos not done;
- a video that cannot be read keeps its record (no reject, no stored text), is reported with the record id,
  the file and the reason, and is tried again on the next run;
- a missing `[ocr]` extra stops the job before any video is read, with the install hint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta.dataset.records import Dataset, Record, ScreenTextInfo
from vmeta.errors import UserError
from vmeta.video.ocr_engine import OcrEngine
from vmeta.video.screen_text import ScreenText, ScreenTextSettings
from vmeta.video.screen_text_cache import ScreenTextCache

SAVE_EVERY = 10  # videos per batch saved to records.jsonl
SAVE_SECONDS = 30.0  # ... or sooner, when reading them took this long


@dataclass
class ScreenTextFailure:
    id: str
    video: str  # the path as the dataset resolves it
    reason: str

    def line(self) -> str:
        return f"{self.id} ({self.video}): {self.reason}"


@dataclass
class ScreenTextReport:
    """What a run did. `read` counts videos whose text was stored now (OCR run or taken from the cache)."""

    dataset: Path
    settings: dict[str, Any]
    total: int = 0  # records in the dataset
    selected: int = 0  # records that needed reading this run
    read: int = 0
    from_cache: int = 0
    with_text: int = 0  # of `read`, videos that show text
    skipped_done: int = 0  # already read with these settings
    stale: int = 0  # record removed, or its video changed, while it was being read: not stored
    failures: list[ScreenTextFailure] = field(default_factory=list)
    frames_sampled: int = 0  # over the videos OCR'd now (not cached)
    frames_read: int = 0
    ocr_seconds: float = 0.0  # decoding + OCR of the videos read now
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def missing(self) -> int:
        """Records still without text for these settings after this run (failed or stale)."""
        return self.selected - self.read


def screen_text_info(result: ScreenText) -> ScreenTextInfo:
    """What a record keeps of a reading: the text, the lines' text and times, the settings (boxes and scores
    stay in the OCR cache)."""
    return ScreenTextInfo(
        text=result.text,
        lines=[{"text": ln.text, "start": ln.start, "end": ln.end} for ln in result.lines],
        settings=result.settings.to_dict(),
    )


def needs_screen_text(record: Record, settings: ScreenTextSettings) -> bool:
    """True when the record has no stored text, or text read with other settings."""
    return record.screen_text is None or record.screen_text.settings != settings.to_dict()


def default_cache() -> ScreenTextCache:
    from vmeta.config import get_settings

    return ScreenTextCache(get_settings().resolved_cache_dir / "screen_text")


def add_screen_text(
    dataset: Dataset | str | Path,
    settings: ScreenTextSettings | None = None,
    *,
    redo: bool = False,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[ScreenTextFailure], None] | None = None,
    engine: OcrEngine | None = None,
    cache: ScreenTextCache | bool = True,
    save_every: int = SAVE_EVERY,
    save_seconds: float = SAVE_SECONDS,
) -> ScreenTextReport:
    """Read and store the on-screen text of every record that lacks it (see the module docstring).

    `redo`: read every record again (a cached result for the same file and settings is still used; pass
    `cache=False` to run OCR again). `progress(done, total)` after each video; `warn(failure)` as a video
    fails (the failures are also in the report). `engine` replaces rapidocr (tests). `cache`: True = the
    cache dir's `screen_text/`, False = none, or a `ScreenTextCache`.
    """
    from vmeta.video.ocr_engine import default_engine
    from vmeta.video.screen_text_reader import read_screen_text

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    ds.require()
    settings = settings or ScreenTextSettings()
    started = time.monotonic()
    records = ds.load()
    report = ScreenTextReport(dataset=ds.root, settings=settings.to_dict(), total=len(records))
    todo = [r for r in records if redo or needs_screen_text(r, settings)]
    report.skipped_done = len(records) - len(todo)
    report.selected = len(todo)
    if not todo:
        report.seconds = time.monotonic() - started
        return report
    if engine is None:
        engine = default_engine(settings.det_side)  # a missing [ocr] extra: the install hint, before any work
    store = default_cache() if cache is True else (cache or None)

    pending: dict[str, tuple[str, ScreenTextInfo]] = {}  # id -> (record.video when read, info)

    def apply(batch: dict[str, tuple[str, ScreenTextInfo]], fresh: list[Record]) -> None:
        """Under the lock, on re-read records: set `screen_text` of the batch's records, nothing else."""
        for r in fresh:
            got = batch.pop(r.id, None)
            if got is None:
                continue
            video, info = got
            if r.video != video:  # the record now points at another file: what we read is not its text
                report.stale += 1
                continue
            r.screen_text = info
            report.read += 1
            report.with_text += bool(info.text)
        report.stale += len(batch)  # removed meanwhile

    def flush() -> None:
        nonlocal pending, last_save
        if pending:
            batch, pending = pending, {}
            ds.update(lambda fresh: apply(batch, fresh))
        last_save = time.monotonic()

    last_save = time.monotonic()
    if progress:
        progress(0, len(todo))
    try:
        for done, record in enumerate(todo, 1):
            path = ds.video_path(record)
            try:
                result = read_screen_text(path, settings, cache=store, engine=engine)
            except Exception as exc:  # one bad video must not stop the others; it is named below
                reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                reason = reason.removeprefix(f"{path}: ")  # the failure names the file already
                failure = ScreenTextFailure(record.id, os.path.normpath(path), reason)
                report.failures.append(failure)
                if warn:
                    warn(failure)
            else:
                pending[record.id] = (record.video, screen_text_info(result))
                s = result.stats
                if s.cached:
                    report.from_cache += 1
                else:
                    report.frames_sampled += s.frames_sampled
                    report.frames_read += s.frames_read
                    report.ocr_seconds += s.decode_s + s.ocr_s
            if progress:
                progress(done, len(todo))
            if len(pending) >= max(1, save_every) or time.monotonic() - last_save >= save_seconds:
                flush()
    finally:  # also on Ctrl-C: what was read is kept
        flush()
        report.seconds = time.monotonic() - started
    return report


def check_ocr(settings: ScreenTextSettings | None = None) -> None:
    """Raise the install hint now when rapidocr is missing (before a build that would end with OCR)."""
    from vmeta.video.ocr_engine import default_engine

    default_engine((settings or ScreenTextSettings()).det_side)


def screen_text_settings(fps: float | None, *, option: str = "--fps") -> ScreenTextSettings:
    """Settings from the command line's `--fps`, as a UserError naming the option when out of range."""
    try:
        return ScreenTextSettings() if fps is None else ScreenTextSettings(fps=fps)
    except ValueError as exc:
        raise UserError(f"{option} {fps:g}: {exc}.") from None


__all__ = [
    "SAVE_EVERY",
    "SAVE_SECONDS",
    "ScreenTextFailure",
    "ScreenTextReport",
    "add_screen_text",
    "check_ocr",
    "default_cache",
    "needs_screen_text",
    "screen_text_info",
    "screen_text_settings",
]
