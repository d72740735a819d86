"""Which frames a Qwen-VL model sees, and at what size — exactly as `qwen-vl-utils` 0.0.14 `fetch_video` picks them.

Pure functions, no decoding and no torch: `plan_frames(settings, total_frames, video_fps, height, width)`
returns a `FramePlan` (frame indices, output height/width, sample fps). `vmeta.video.decode` then decodes
exactly those frames.

What `fetch_video` does (qwen-vl-utils 0.0.14, `vision_process.py`), reproduced here:

1. **Frame count** (`smart_nframes`): with `nframes`, round it to a multiple of FRAME_FACTOR (2) with
   Python's `round` (half to even); otherwise `total_frames / video_fps * fps`, clamped to
   `[ceil2(min_frames), floor2(max_frames or min(768, total_frames))]`, then to `total_frames`, then floored to
   a multiple of 2. The result must lie in `[2, total_frames]` (a 1-frame video is an error).
2. **Indices**: `torch.linspace(start, end, nframes).round()` in float32. Torch computes element `i` as
   `start + step*i` for the first half and `end - step*(n-1-i)` for the second half, with the multiply-add
   fused (one rounding); we reproduce that bit for bit in numpy (`_torch_linspace_f32`), then round half to
   even like `torch.round`. A test compares against torch on a large grid.
3. **Per-frame pixel budget**: `min_pixels` (default VIDEO_MIN_TOKEN_NUM 128 x 28²), `total_pixels`
   (default MODEL_SEQ_LEN x 28² x 0.9, MODEL_SEQ_LEN = 128000), `max_pixels = max(min(768 x 28²,
   total_pixels / nframes x 2), int(min_pixels x 1.05))`, lowered to the user's `max_pixels` if that is smaller.
4. **Size** (`smart_resize`): round height and width to multiples of 28 (`image_factor`), scale down (floor) to
   fit `max_pixels` or up (ceil) to reach `min_pixels`, keeping the aspect ratio. `resized_height` and
   `resized_width` together override that (rounded with the image defaults, 4..16384 tokens).
5. **sample fps** (`video_sample_fps`, what Qwen2.5-VL turns into `second_per_grid_ts`):
   `nframes / total_frames * video_fps`.

Which `total_frames` / `video_fps`: this module follows the **decord** backend — `len(VideoReader)` (the
container's frame count, `nb_frames`) and `get_avg_fps()` (the stream's average frame rate), optionally cut to
`video_start`/`video_end` (`calculate_video_frame_range`). torchcodec reports the same numbers from its own
metadata. The **torchvision** backend differs: it decodes the whole video and counts the frames it got
(`len(read_video(...))`) and takes `video_fps` from the container; on files whose header frame count disagrees
with the decodable frames the indices can differ by a frame, and torchvision ignores `video_start/end` in the
frame arithmetic. `vmeta.video.decode` reads `nb_frames` and `average_rate` with PyAV, which are decord's numbers.

Rotation: decord (0.6) applies the display-matrix rotation, so a phone video stored 1280x720 with rotation 90
comes out upright 720x1280 and is sized from the displayed picture; we do the same (`plan_frames` takes the
displayed height/width; `smart_resize` is symmetric, so sizing stored then swapping is identical).

Environment: qwen-vl-utils reads MODEL_SEQ_LEN (default 128000) at import; it only sets the default
`total_pixels`. We take it as `FrameSettings.model_seq_len` instead (house rule: only config.py reads the
environment); tests pin both sides to the default.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vmeta.video.settings_dict import settings_from_dict

# qwen-vl-utils 0.0.14 constants.
MAX_RATIO = 200
SPATIAL_MERGE_SIZE = 2
IMAGE_MIN_TOKEN_NUM = 4
IMAGE_MAX_TOKEN_NUM = 16384
VIDEO_MIN_TOKEN_NUM = 128
VIDEO_MAX_TOKEN_NUM = 768
FPS = 2.0
FRAME_FACTOR = 2
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
MODEL_SEQ_LEN = 128000
IMAGE_FACTOR = 28  # patch 14 x spatial merge 2 (Qwen2-VL / Qwen2.5-VL)


class SamplingError(ValueError):
    """The settings cannot be satisfied for this video (e.g. fewer frames than the minimum of 2)."""


def round_by_factor(number: float, factor: int) -> int:
    return round(number / factor) * factor


def ceil_by_factor(number: float, factor: int) -> int:
    return math.ceil(number / factor) * factor


def floor_by_factor(number: float, factor: int) -> int:
    return math.floor(number / factor) * factor


@dataclass(frozen=True)
class FrameSettings:
    """Frame sampling settings; the names and defaults of qwen-vl-utils 0.0.14's video element keys.

    `fps` and `nframes` are alternatives: when `nframes` is set, `fps`, `min_frames` and `max_frames` are
    not used. Pixel values are counts of pixels per frame (`min_pixels`, `max_pixels`) or per video
    (`total_pixels`); None means qwen-vl-utils' default. `resized_height` and `resized_width` go together.
    `image_factor` is patch size x spatial merge (28 for Qwen2/2.5-VL, 32 for Qwen3-VL); `frame_factor` is the
    temporal patch (2) — qwen-vl-utils hard-codes it, so a different value is ours only.
    `video_start` / `video_end` (seconds) cut the video first, as qwen-vl-utils' decord backend does.
    """

    fps: float = FPS
    min_frames: int = FPS_MIN_FRAMES
    max_frames: int = FPS_MAX_FRAMES
    nframes: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    total_pixels: int | None = None
    resized_height: int | None = None
    resized_width: int | None = None
    image_factor: int = IMAGE_FACTOR
    frame_factor: int = FRAME_FACTOR
    video_start: float | None = None
    video_end: float | None = None
    model_seq_len: int = field(default=MODEL_SEQ_LEN, repr=False)
    index_rule: str = "qwen"  # see INDEX_RULES: which frames of the range the count is spread over

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"frame settings: {name}={getattr(self, name)!r} {why}")

        if not (isinstance(self.fps, int | float) and math.isfinite(self.fps) and self.fps > 0):
            bad("fps", "must be a positive number of frames per second (qwen-vl-utils default 2.0)")
        for name in ("min_frames", "max_frames", "image_factor", "frame_factor", "model_seq_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be a positive whole number")
        if self.min_frames > self.max_frames:
            bad("min_frames", f"is larger than max_frames={self.max_frames}")
        if self.nframes is not None and (not isinstance(self.nframes, int) or self.nframes < 1):
            bad("nframes", "must be a positive whole number (it is rounded to an even count)")
        if self.nframes is not None and round_by_factor(self.nframes, self.frame_factor) < self.frame_factor:
            bad("nframes", f"rounds to fewer than {self.frame_factor} frames; ask for at least {self.frame_factor}")
        for name in ("min_pixels", "max_pixels", "total_pixels", "resized_height", "resized_width"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int | float) or isinstance(v, bool) or v <= 0):
                bad(name, "must be a positive number (or left unset)")
        if (self.resized_height is None) != (self.resized_width is None):
            raise ValueError("frame settings: resized_height and resized_width must be given together")
        if self.max_pixels is not None and self.max_pixels < self.effective_min_pixels:
            bad("max_pixels", f"is smaller than min_pixels={self.effective_min_pixels}; lower --min-pixels too")
        for name in ("video_start", "video_end"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int | float) or v < 0):
                bad(name, "must be a time in seconds >= 0")
        if self.video_start is not None and self.video_end is not None and self.video_start >= self.video_end:
            bad("video_start", f"must be before video_end={self.video_end}")
        if self.index_rule not in INDEX_RULES:
            bad("index_rule", f"is not one of {', '.join(INDEX_RULES)}")

    @property
    def effective_min_pixels(self) -> float:
        return self.min_pixels if self.min_pixels is not None else VIDEO_MIN_TOKEN_NUM * self.image_factor**2

    @property
    def effective_total_pixels(self) -> float:
        if self.total_pixels is not None:
            return self.total_pixels
        return self.model_seq_len * self.image_factor * self.image_factor * 0.9

    def to_dict(self) -> dict[str, Any]:
        """All fields (for run configs / prediction records)."""
        return asdict(self)

    def to_qwen_element(self, video: str | None = None) -> dict[str, Any]:
        """The qwen-vl-utils video element with the same meaning (only keys that differ from its defaults)."""
        if self.index_rule != "qwen":
            raise ValueError(f"frame settings: index_rule={self.index_rule!r} has no qwen-vl-utils equivalent")
        ele: dict[str, Any] = {} if video is None else {"type": "video", "video": video}
        if self.nframes is not None:
            ele["nframes"] = self.nframes
        else:
            if self.fps != FPS:
                ele["fps"] = self.fps
            if self.min_frames != FPS_MIN_FRAMES:
                ele["min_frames"] = self.min_frames
            if self.max_frames != FPS_MAX_FRAMES:
                ele["max_frames"] = self.max_frames
        for name in (
            "min_pixels",
            "max_pixels",
            "total_pixels",
            "resized_height",
            "resized_width",
            "video_start",
            "video_end",
        ):
            v = getattr(self, name)
            if v is not None:
                ele[name] = v
        return ele

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameSettings:
        return settings_from_dict(cls, data, "frame settings")


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: float | None = None,
    max_pixels: float | None = None,
) -> tuple[int, int]:
    """qwen-vl-utils `smart_resize`: sides multiples of `factor`, pixels within [min_pixels, max_pixels]."""
    max_pixels = max_pixels if max_pixels is not None else IMAGE_MAX_TOKEN_NUM * factor**2
    min_pixels = min_pixels if min_pixels is not None else IMAGE_MIN_TOKEN_NUM * factor**2
    if max_pixels < min_pixels:
        raise SamplingError(f"max_pixels ({max_pixels}) must be >= min_pixels ({min_pixels})")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise SamplingError(
            f"absolute aspect ratio must be smaller than {MAX_RATIO}, got {max(height, width) / min(height, width)}"
        )
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = floor_by_factor(height / beta, factor)
        w_bar = floor_by_factor(width / beta, factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def smart_nframes(settings: FrameSettings, total_frames: int, video_fps: float) -> int:
    """qwen-vl-utils `smart_nframes`: how many frames to sample (even, within [2, total_frames])."""
    ff = settings.frame_factor
    if settings.nframes is not None:
        nframes = round_by_factor(settings.nframes, ff)
    else:
        min_frames = ceil_by_factor(settings.min_frames, ff)
        # qwen-vl-utils' default max_frames is min(768, total_frames); an explicit value is not capped there,
        # but the min(..., total_frames) below makes both the same.
        max_frames = floor_by_factor(settings.max_frames, ff)
        if settings.max_frames == FPS_MAX_FRAMES:
            max_frames = floor_by_factor(min(FPS_MAX_FRAMES, total_frames), ff)
        nframes = total_frames / video_fps * settings.fps
        nframes = min(min(max(nframes, min_frames), max_frames), total_frames)
        nframes = floor_by_factor(nframes, ff)
    if not (ff <= nframes <= total_frames):
        raise SamplingError(f"nframes should be in [{ff}, {total_frames}] but the settings give {nframes}")
    return nframes


def video_frame_range(settings: FrameSettings, total_frames: int, video_fps: float) -> tuple[int, int, int]:
    """qwen-vl-utils `calculate_video_frame_range`: (start_frame, end_frame, frame_count) for video_start/end."""
    if video_fps <= 0:
        raise SamplingError("video_fps must be a positive number")
    if total_frames <= 0:
        raise SamplingError("the video has no frames")
    if settings.video_start is None and settings.video_end is None:
        return 0, total_frames - 1, total_frames
    max_duration = total_frames / video_fps
    start_frame = 0
    if settings.video_start is not None:
        start_frame = math.ceil(max(0.0, min(settings.video_start, max_duration)) * video_fps)
    end_frame = total_frames - 1
    if settings.video_end is not None:
        end_frame = min(math.floor(max(0.0, min(settings.video_end, max_duration)) * video_fps), total_frames - 1)
    if start_frame >= end_frame:
        raise SamplingError(
            f"invalid time range: start frame {start_frame} is not before end frame {end_frame} "
            f"(video: {max_duration:.2f}s, {total_frames} frames at {video_fps:g} fps)"
        )
    return start_frame, end_frame, end_frame - start_frame + 1


def _torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """`torch.linspace(start, end, steps)` (float32, CPU) bit for bit: forward half / backward half, fused multiply-add.

    The product of two float32 values is exact in float64, so computing `s + step*i` in float64 and rounding
    once to float32 is the fused multiply-add torch's compiled kernel performs.
    """
    s, e = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([s], dtype=np.float32)
    step = np.float32((e - s) / np.float32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    fwd = (np.float64(s) + np.float64(step) * i).astype(np.float32)
    bwd = (np.float64(e) - np.float64(step) * (steps - 1 - i)).astype(np.float32)
    return np.where(i < steps // 2, fwd, bwd)


def frame_indices(start_frame: int, end_frame: int, nframes: int) -> list[int]:
    """`torch.linspace(start_frame, end_frame, nframes).round().long().tolist()` without torch."""
    return [int(v) for v in np.rint(_torch_linspace_f32(start_frame, end_frame, nframes))]


def segment_middle_indices(start_frame: int, count: int, nframes: int) -> list[int]:
    """The middle frame of each of `nframes` equal segments of the range: transformers'
    `InternVLVideoProcessor.sample_frames` (`torch.arange(step / 2, count, step).int()`, step = count / nframes),
    shifted to the range's start — without torch. Identical below 100,000 frames (55 min at 30 fps); past that
    torch's vectorised float32 arithmetic, which depends on the CPU's vector width, can differ by one frame."""
    step = count / nframes
    values = (step / 2 + step * np.arange(nframes, dtype=np.float64)).astype(np.float32)
    return [start_frame + int(v) for v in values]


# How the sampled frames are spread over the range. "qwen": evenly from the first to the last frame, both
# included (qwen-vl-utils; Qwen2-VL, Qwen2.5-VL, VideoLLaMA3). "segment_middle": the middle of each of N equal
# segments (InternVL: what its -hf video processor samples; the first and last frames are never taken).
INDEX_RULES = ("qwen", "segment_middle")


def per_frame_pixel_range(settings: FrameSettings, nframes: int) -> tuple[float, float]:
    """(min_pixels, max_pixels) for one frame after the per-video budget, as fetch_video computes them."""
    f = settings.image_factor
    frame_max = VIDEO_MAX_TOKEN_NUM * f * f
    min_pixels = settings.effective_min_pixels
    max_pixels = max(
        min(frame_max, settings.effective_total_pixels / nframes * settings.frame_factor), int(min_pixels * 1.05)
    )
    if settings.max_pixels is not None:
        max_pixels = min(settings.max_pixels, max_pixels)
    return min_pixels, max_pixels


def output_size(settings: FrameSettings, nframes: int, height: int, width: int) -> tuple[int, int]:
    """(height, width) every sampled frame is resized to; height/width are the decoded (displayed) frame's."""
    if settings.resized_height is not None and settings.resized_width is not None:
        return smart_resize(settings.resized_height, settings.resized_width, factor=settings.image_factor)
    min_pixels, max_pixels = per_frame_pixel_range(settings, nframes)
    return smart_resize(height, width, factor=settings.image_factor, min_pixels=min_pixels, max_pixels=max_pixels)


@dataclass(frozen=True)
class FramePlan:
    """The frames a model sees: indices into the video's frames (display order), and their output size."""

    indices: tuple[int, ...]
    height: int
    width: int
    total_frames: int  # frames in the (cut) range, as decord counts them
    video_fps: float
    sample_fps: float  # qwen-vl-utils' video_sample_fps
    start_frame: int = 0
    end_frame: int = 0

    @property
    def nframes(self) -> int:
        return len(self.indices)

    @property
    def timestamps(self) -> list[float]:
        """Seconds from the start of the video, assuming a constant frame rate (index / fps)."""
        return [i / self.video_fps for i in self.indices]

    def token_count(self, patch_size: int = 14, temporal_patch: int = FRAME_FACTOR, merge: int = 2) -> int:
        """Visual tokens after merging: (T / 2) x (H / 14) x (W / 14) / 4 for Qwen2-VL / Qwen2.5-VL."""
        grid_t = -(-self.nframes // temporal_patch)
        return grid_t * (self.height // patch_size) * (self.width // patch_size) // (merge * merge)


def plan_frames(settings: FrameSettings, total_frames: int, video_fps: float, height: int, width: int) -> FramePlan:
    """The qwen-vl-utils (decord backend) frame indices and output size for a video with these properties.

    `height`/`width` are the frame as decoded and shown (after rotation); `total_frames`/`video_fps` the
    container's frame count and average frame rate.
    """
    if total_frames is None or total_frames < 1:
        raise SamplingError("the video reports no frames")
    if not video_fps or video_fps <= 0:
        raise SamplingError("the video reports no frame rate")
    start, end, count = video_frame_range(settings, total_frames, video_fps)
    nframes = smart_nframes(settings, count, video_fps)
    if settings.index_rule == "segment_middle":
        indices = segment_middle_indices(start, count, nframes)
    else:
        indices = frame_indices(start, end, nframes)
    h, w = output_size(settings, nframes, height, width)
    sample_fps = nframes / max(count, 1e-6) * video_fps
    return FramePlan(
        indices=tuple(indices),
        height=h,
        width=w,
        total_frames=count,
        video_fps=float(video_fps),
        sample_fps=sample_fps,
        start_frame=start,
        end_frame=end,
    )


__all__ = [
    "FRAME_FACTOR",
    "IMAGE_FACTOR",
    "FramePlan",
    "FrameSettings",
    "SamplingError",
    "frame_indices",
    "output_size",
    "per_frame_pixel_range",
    "plan_frames",
    "segment_middle_indices",
    "smart_nframes",
    "smart_resize",
    "video_frame_range",
]
