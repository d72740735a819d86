"""Fixtures for model tests (the tiny model itself: tiny_model_dir / tiny_data_dir in tests/conftest.py)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vmeta.devtools import torchvision_shim

# PyPI's CUDA torchvision next to CPU torch (dev/test only; a no-op where torchvision's ops load).
# Must run before anything imports torchvision; tests/conftest.py should do the same for the whole suite.
torchvision_shim.install()


@pytest.fixture
def video_4x56() -> np.ndarray:
    """A 4-frame 56x56 RGB uint8 video (T, H, W, C)."""
    return np.random.RandomState(0).randint(0, 256, size=(4, 56, 56, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def lively_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with larger random weights (std 0.2), so greedy answers vary with the prompt instead of
    repeating one token: output equality then says something. Read-only."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    out = tmp_path_factory.mktemp("models") / "lively"
    shutil.copytree(tiny_model_dir, out)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(out))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory):
    """A 1 s 160x120 10 fps clip without audio."""
    from vmeta.testing.media import make_clip

    return make_clip(tmp_path_factory.mktemp("small-clip") / "c.mp4", 160, 120, 10, 1.0, audio=False)
