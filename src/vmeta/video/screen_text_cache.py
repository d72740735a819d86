"""On-screen text results on disk, so a second read of the same video with the same settings runs no OCR.

The key is (file content key, settings, OCR versions): a copied or touched file still hits, and a new rapidocr,
onnxruntime or reading algorithm (`OCR_VERSION`) misses instead of returning what an older one read.
"""

from __future__ import annotations

from pathlib import Path

from vmeta.video.result_cache import ResultCache, reader_versions
from vmeta.video.screen_text import ScreenText, ScreenTextSettings

OCR_VERSION = "vmeta-screen-text-1"  # bump when the algorithm changes what a cached result would hold


def ocr_versions() -> dict[str, str]:
    """Versions that decide what OCR returns (part of the cache key)."""
    return reader_versions(OCR_VERSION, ("rapidocr", "onnxruntime"))


class ScreenTextCache(ResultCache):
    """On-screen text results keyed by (file content key, settings, OCR versions)."""

    def get(self, path: str | Path, settings: ScreenTextSettings) -> ScreenText | None:
        result = self.load(path, _key(settings), ScreenText.from_dict)
        if result is not None:
            result.video = str(path)
            result.stats.cached = True
        return result

    def put(self, path: str | Path, settings: ScreenTextSettings, result: ScreenText) -> None:
        self.store(path, _key(settings), result.to_dict())


def _key(settings: ScreenTextSettings) -> dict:
    return {"s": settings.to_dict(), "v": ocr_versions()}


__all__ = ["OCR_VERSION", "ScreenTextCache", "ocr_versions"]
