"""Training data: dataset split -> records -> decoded frames (cached) -> encoded supervised samples.

Frames come from :func:`vmeta.video.decode.load_video` with the run's frame settings (recorded in run.json,
so `vmeta predict --run` shows the model the same frames). A frame cache keeps decoded frames so epoch 2 does
not decode again: ``disk`` (:mod:`vmeta.video.cache`, under the cache dir, keyed by the video's content and
the frame settings) or ``memory`` (this process only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmeta.dataset.context import with_context
from vmeta.errors import UserError
from vmeta.video.sampling import FrameSettings


@dataclass
class Frames:
    frames: np.ndarray  # uint8 (T, C, H, W)
    metadata: dict[str, Any]  # for the processor (fps, frames_indices, total_num_frames)


class FrameCache:
    """Decoded frames for the training set: ``disk`` (vmeta.video.cache: survives runs, keyed by file content
    and frame settings), ``memory`` (this process only) or ``off``."""

    def __init__(self, mode: str, folder: Path | None = None):
        self.mode = mode
        self.memory: dict[tuple[str, str], Frames] = {}
        self.disk = None
        if mode == "disk":
            from vmeta.video.cache import FrameCache as DiskCache

            if folder is None:
                raise ValueError("a disk frame cache needs a folder")
            self.disk = DiskCache(folder)
        self.hits = 0
        self.misses = 0

    def load(self, path: Path, fs: FrameSettings) -> Frames:
        from vmeta.video.decode import load_video

        if self.mode == "memory":
            key = (str(Path(path).resolve()), json.dumps(fs.to_dict(), sort_keys=True))
            if key in self.memory:
                self.hits += 1
                return self.memory[key]
            self.misses += 1
            got = self.memory[key] = _frames(load_video(path, fs))
            return got
        if self.disk is not None:
            before = self.disk.hits
            video = load_video(path, fs, cache=self.disk)
            if self.disk.hits > before:
                self.hits += 1
            else:
                self.misses += 1
            return _frames(video)
        self.misses += 1
        return _frames(load_video(path, fs))


def _frames(video: Any) -> Frames:
    return Frames(
        np.ascontiguousarray(video.frames),
        {"fps": video.video_fps, "frames_indices": list(video.indices), "total_num_frames": video.total_frames},
    )


def split_records(dataset_root: Path, split: str | None, *, limit: int | None = None) -> list[Any]:
    """The records of one split (in file order), with a clear error when the split is empty."""
    from vmeta.dataset.records import Dataset

    ds = Dataset(dataset_root).require()
    records = ds.load()
    if split is None:
        return []
    rows = [r for r in records if r.split == split]
    if not rows:
        counts: dict[str, int] = {}
        for r in records:
            counts[str(r.split)] = counts.get(str(r.split), 0) + 1
        raise UserError(
            f"{dataset_root}: no record is in split {split!r} (splits here: {counts}); run `vmeta data split` "
            "first or choose the split with --set data.train_split=... / data.val_split=..."
        )
    return rows[:limit] if limit else rows


class SupervisedDataset:
    """A torch-style dataset: index -> encoded features (see :func:`vmeta.train.collate.encode_sample`)."""

    def __init__(
        self,
        records: list[Any],
        dataset_root: Path,
        processor: Any,
        frames: FrameSettings,
        prompt: str,
        cutoff_len: int,
        cache: FrameCache,
        *,
        blocks: dict[str, str] | None = None,
    ):
        self.records = records
        self.root = Path(dataset_root)
        self.processor = processor
        self.frames = frames
        self.prompt = prompt
        self.cutoff_len = cutoff_len
        self.cache = cache
        self.blocks = blocks or {}  # record id -> context block put before the prompt (vmeta.dataset.context)
        self.truncated: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    def video_path(self, record: Any) -> Path:
        p = Path(record.video)
        return p if p.is_absolute() else self.root / p

    def __getitem__(self, i: int) -> dict[str, Any]:
        from vmeta.train.collate import encode_sample

        rec = self.records[i]
        path = self.video_path(rec)
        try:
            fr = self.cache.load(path, self.frames)
        except UserError as exc:
            raise UserError(f"sample {rec.id}: {exc}") from None
        prompt = with_context(self.prompt, self.blocks.get(rec.id, ""))
        enc = encode_sample(
            self.processor, fr.frames, fr.metadata, prompt, rec.label, cutoff_len=self.cutoff_len, sample_id=rec.id
        )
        if enc.truncated:
            self.truncated.add(rec.id)
        return enc.features


def preflight(
    records: list[Any], frames: FrameSettings, prompt_tokens: int, cutoff_len: int, *, patch: int = 14, merge: int = 2
) -> dict[str, Any]:
    """Check, from the probed video metadata alone (no decoding), that every sample's vision tokens fit the
    cutoff; raise one clear error naming the worst sample. Returns {max_vision_tokens, checked}."""
    from vmeta.video.sampling import SamplingError, plan_frames

    worst: tuple[int, str] | None = None
    checked = 0
    for r in records:
        m = r.video_meta
        h = m.display_height or m.height
        w = m.display_width or m.width
        if not (m.frames and m.fps and h and w):
            continue
        try:
            plan = plan_frames(frames, int(m.frames), float(m.fps), int(h), int(w))
        except (SamplingError, ValueError):
            continue
        checked += 1
        n = plan.token_count(patch_size=patch, temporal_patch=frames.frame_factor, merge=merge)
        if worst is None or n > worst[0]:
            worst = (n, r.id)
    if worst is not None and worst[0] + prompt_tokens + 1 > cutoff_len:
        need = worst[0] + prompt_tokens + 64
        raise UserError(
            f"sample {worst[1]} has {worst[0]} vision tokens with these frame settings, which with the prompt "
            f"(~{prompt_tokens} tokens) exceeds data.cutoff_len={cutoff_len}; vision tokens are never cut. Raise "
            f"data.cutoff_len to at least {need}, or lower data.frames.max_pixels / fps / max_frames."
        )
    return {"max_vision_tokens": worst[0] if worst else None, "checked": checked}


__all__ = ["FrameCache", "Frames", "SupervisedDataset", "preflight", "split_records"]
