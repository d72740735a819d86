"""On-screen text results on disk, so a second read of the same video with the same settings runs no OCR.

The key is (file content key, settings, OCR versions): a copied or touched file still hits, and a new rapidocr,
onnxruntime or reading algorithm (`OCR_VERSION`) misses instead of returning what an older one read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vmeta.errors import UserError
from vmeta.video.screen_text import ScreenText, ScreenTextSettings

OCR_VERSION = "vmeta-screen-text-1"  # bump when the algorithm changes what a cached result would hold


def ocr_versions() -> dict[str, str]:
    """Versions that decide what OCR returns (part of the cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"vmeta": OCR_VERSION}
    for dist in ("rapidocr", "onnxruntime"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


class ScreenTextCache:
    """Results as JSON under `root`, keyed by (file content key, settings, OCR versions); atomic writes."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, path: str | Path, settings: ScreenTextSettings) -> Path:
        from vmeta.video.cache import file_content_key

        blob = json.dumps({"s": settings.to_dict(), "v": ocr_versions()}, sort_keys=True)
        key = f"{file_content_key(path)}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"
        return self.root / key[:2] / f"{key}.json"

    def get(self, path: str | Path, settings: ScreenTextSettings) -> ScreenText | None:
        from vmeta.jsonio import read_json

        entry = self._path(path, settings)
        if not entry.exists():
            self.misses += 1
            return None
        try:
            result = ScreenText.from_dict(read_json(entry))
        except (UserError, OSError, ValueError, KeyError, TypeError):
            self.misses += 1  # a damaged entry only costs reading the video again
            return None
        self.hits += 1
        result.video = str(path)
        result.stats.cached = True
        return result

    def put(self, path: str | Path, settings: ScreenTextSettings, result: ScreenText) -> None:
        from vmeta.jsonio import write_json

        entry = self._path(path, settings)
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_json(entry, result.to_dict())


__all__ = ["OCR_VERSION", "ScreenTextCache", "ocr_versions"]
