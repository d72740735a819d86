"""What a test needs from the machine (a browser, a font, OCR, a speech model, PostgreSQL): missing, the test is
skipped on a developer's machine and fails in CI (`CI` set), where setup.sh must have installed it."""

from __future__ import annotations

import os
from typing import NoReturn


def skip_or_fail(message: str) -> NoReturn:
    import pytest

    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_ocr() -> None:
    """rapidocr and onnxruntime (the `[ocr]` extra, in the dev extra)."""
    try:
        import onnxruntime  # noqa: F401
        import rapidocr  # noqa: F401
    except ImportError as exc:
        skip_or_fail(f"rapidocr/onnxruntime not installed ({exc}): pip install 'vmeta[ocr]'")


__all__ = ["require_ocr", "skip_or_fail"]
