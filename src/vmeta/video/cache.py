"""Optional decoded-frame cache: repeated epochs / evaluations load the sampled frames instead of decoding.

    cache = FrameCache(get_settings().resolved_cache_dir / "frames")
    video = load_video(path, settings, cache=cache)   # decodes once, then reads a .npy

Key = (file content key, frame settings, decoder version):

- **File content key**: size + SHA-256 of the first and last MiB. Hashing whole videos (tens to hundreds of
  MB) on every lookup would cost more than decoding the few sampled frames; the head and tail hold the MP4
  header boxes (ftyp/moov with every sample's size and offset) and the last encoded data, so any re-encode,
  trim or replacement changes them, and the size catches appended or truncated files. mtime is deliberately
  *not* in the key, so copies, moves and `touch`ed files (datasets copied between machines, re-extracted
  archives) still hit. The blind spot is an in-place edit of the middle that keeps the size, head and tail
  bytes — not something video tools do.
- **Settings**: every `FrameSettings` field.
- **Decoder version**: `DECODER_VERSION` here plus PyAV's version, so a change in how we decode invalidates
  old entries.

Entries are `<key>.npy` (uint8 frames, T x C x H x W) + `<key>.json` (indices, fps, ...), each written to a
temporary file and renamed, the JSON last, so a reader never sees a half-written entry and a crash leaves at
most an orphan temp file. Unreadable entries count as misses and are rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from vmeta.video.sampling import FramePlan, FrameSettings

DECODER_VERSION = "vmeta-seek-1"
_CHUNK = 1 << 20


def file_content_key(path: str | Path) -> str:
    """size + sha256(first MiB + last MiB): fast, and stable across copies and mtime changes."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as fh:
        h.update(fh.read(_CHUNK))
        if size > _CHUNK:
            fh.seek(max(_CHUNK, size - _CHUNK))
            h.update(fh.read(_CHUNK))
    return f"{size}-{h.hexdigest()[:32]}"


def _settings_key(settings: FrameSettings) -> str:
    import av

    blob = json.dumps({"s": settings.to_dict(), "d": DECODER_VERSION, "av": av.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FrameCache:
    """Decoded frames on disk under `root`, keyed by (file content, settings, decoder version)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _paths(self, path: str | Path, settings: FrameSettings) -> tuple[Path, Path]:
        key = f"{file_content_key(path)}-{_settings_key(settings)}"
        folder = self.root / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def get(self, path: str | Path, settings: FrameSettings):
        """The cached `SampledVideo`, or None."""
        from vmeta.video.decode import SampledVideo
        from vmeta.video.gop_decoder import DecodeStats

        npy, meta = self._paths(path, settings)
        if not meta.exists() or not npy.exists():
            self.misses += 1
            return None
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            frames = np.load(npy, allow_pickle=False)
            plan_d = info["plan"]
            plan_d["indices"] = tuple(plan_d["indices"])
            plan = FramePlan(**plan_d)
            if frames.dtype != np.uint8 or frames.shape[0] != len(plan.indices):
                raise ValueError("entry does not match its metadata")
        except (OSError, ValueError, KeyError, TypeError):
            self.misses += 1
            return None
        self.hits += 1
        return SampledVideo(
            frames=frames,
            indices=list(plan.indices),
            timestamps=info["timestamps"],
            video_fps=plan.video_fps,
            sample_fps=plan.sample_fps,
            total_frames=plan.total_frames,
            size=(frames.shape[2], frames.shape[3]),
            rotation=info["rotation"],
            source_size=tuple(info["source_size"]),
            plan=plan,
            stats=DecodeStats(),
        )

    def put(self, path: str | Path, settings: FrameSettings, video) -> None:
        npy, meta = self._paths(path, settings)
        npy.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(npy, lambda fh: np.save(fh, np.ascontiguousarray(video.frames), allow_pickle=False))
        info = {
            "source": str(path),
            "plan": dataclasses.asdict(video.plan),
            "timestamps": video.timestamps,
            "rotation": video.rotation,
            "source_size": list(video.source_size),
            "settings": settings.to_dict(),
        }
        _atomic_write(meta, lambda fh: fh.write(json.dumps(info, ensure_ascii=False).encode("utf-8")))


__all__ = ["DECODER_VERSION", "FrameCache", "file_content_key"]
