"""Fixtures for the sampling/decoding tests: qwen-vl-utils (decord backend) as the reference, and small clips."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

# qwen-vl-utils reads these at import: pin the backend and the default sequence length.
os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"
os.environ.pop("MODEL_SEQ_LEN", None)


@pytest.fixture(scope="session")
def qwen_vp():
    """qwen_vl_utils.vision_process, importable on CPU torch via the dev torchvision shim; skip if absent."""
    pytest.importorskip("decord")
    pytest.importorskip("torch")
    try:
        from vmeta.devtools.torchvision_shim import install

        install()
    except ImportError:  # pragma: no cover - the shim ships with the repo
        pass
    vp = pytest.importorskip("qwen_vl_utils.vision_process")
    assert vp.get_video_reader_backend() == "decord"
    return vp


def write_clip(
    path: Path,
    frames,
    fps: int = 30,
    gop: int | None = None,
    rotation: int = 0,
    bframes: bool = True,
    codec: str = "h264",
    options: dict[str, str] | None = None,
) -> Path:
    """Encode an iterable of RGB frames (H, W, 3) as H.264 (B-frames on unless told otherwise); another
    `codec` takes its encoder `options` instead of the H.264 ones."""
    import av

    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    with av.open(str(path), "w") as container:
        vs = container.add_stream(codec, rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        opts = {"preset": "veryfast", "crf": "18"}
        if not bframes:
            opts["bf"] = "0"
        if gop:
            opts |= {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        vs.options = opts if options is None else options
        if rotation:
            vs.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        for i, img in enumerate(_chain(first, frames)):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = i
            for p in vs.encode(f):
                container.mux(p)
        for p in vs.encode(None):
            container.mux(p)
    return path


def _chain(first, rest):
    yield first
    yield from rest


def numbered_frame(i: int, width: int, height: int) -> np.ndarray:
    """A frame whose content identifies i: a horizontal position bar plus a gray level."""
    img = np.full((height, width, 3), (i * 37) % 200 + 20, dtype=np.uint8)
    x = (i * 13) % max(1, width - 16)
    img[:, x : x + 16] = (255, 0, 0)
    return img


@pytest.fixture(scope="session")
def video_clips(tmp_path_factory) -> dict[str, Path]:
    """Small H.264 clips with B-frames: portrait, landscape with short GOP, odd frame rate, a 1-frame clip."""
    d = tmp_path_factory.mktemp("video_clips")
    return {
        "portrait_gop250": write_clip(d / "portrait.mp4", (numbered_frame(i, 180, 320) for i in range(90)), 30, 250),
        "landscape_gop12": write_clip(d / "landscape.mp4", (numbered_frame(i, 320, 176) for i in range(75)), 25, 12),
        "odd_24fps": write_clip(d / "odd.mp4", (numbered_frame(i, 202, 134) for i in range(61)), 24, 30),
        "one_frame": write_clip(d / "one.mp4", [numbered_frame(0, 64, 64)], 30),
    }


@pytest.fixture(scope="session")
def clip_tools():
    """(write_clip, numbered_frame) for tests that make their own clips."""
    return write_clip, numbered_frame


def portrait_marker_frames(n: int, width: int = 720, height: int = 1280):
    """Displayed (upright) portrait frames: red square in the top-left, blue bar along the bottom."""
    for i in range(n):
        img = np.full((height, width, 3), 90, dtype=np.uint8)
        img[:160, :160] = (255, 0, 0)
        img[-80:, :] = (0, 0, 255)
        img[400 + i : 420 + i, 300:400] = 200
        yield img


@pytest.fixture(scope="session")
def rotated_clip(tmp_path_factory) -> Path:
    """Stored 1280x720 with rotation 90 (a player shows 720x1280): the upright picture has a red top-left square."""
    d = tmp_path_factory.mktemp("rotated")
    # To display `img` after a clockwise 90 degree turn, store it turned counter-clockwise.
    stored = (np.ascontiguousarray(np.rot90(img, k=1)) for img in portrait_marker_frames(20))
    return write_clip(d / "rotated.mp4", stored, 30, rotation=90)
