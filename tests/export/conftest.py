"""Fixtures for export tests: the tiny base models (helpers that make adapters and run folders: exporthelpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def base_dir(tiny_model_dir) -> Path:
    """The suite's tiny Qwen2-VL with the real Qwen2 tokenizer (~40 MB; its embedding alone is ~39 MB). Read-only."""
    return tiny_model_dir


@pytest.fixture(scope="session")
def small_vocab_base_dir(tmp_path_factory) -> Path:
    """The tiny Qwen2-VL with the small fallback tokenizer (~0.85 MB, no tensor above ~0.25 MB): for sharding tests."""
    from vmeta.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("export-models-small") / "tiny-small", seed=1, tokenizer="fallback")
