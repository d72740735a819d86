"""Decoded frames -> the output array: YUV -> RGB, resized like torchvision's antialiased bicubic, rotated
upright, written into the slots of the frames wanted — with swscale contexts kept from frame to frame.

Kept apart from the decoding because it is the part whose pixels the tests compare against qwen-vl-utils, and
the part every decoder thread runs on its own frames.
"""

from __future__ import annotations

import threading

import numpy as np

from vmeta.video.sampling import FramePlan


def clockwise(ccw: float | int | None) -> int:
    """FFmpeg's display-matrix angle is counter-clockwise; a player rotates clockwise by its negation."""
    if not ccw:
        return 0
    return round(-float(ccw) / 90.0) * 90 % 360


def tag_rotation(stream) -> int:
    """Older muxers: a 'rotate' tag in the stream metadata (clockwise degrees)."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        return round(float(tag) / 90.0) * 90 % 360 if tag else 0
    except ValueError:
        return 0


class Converter:
    """Per decoder thread: swscale contexts kept from frame to frame. (`frame.reformat` makes a new context per
    frame, and setting up a bicubic context costs more than converting a small frame: 2-4x slower overall.)"""

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self.to_rgb = VideoReformatter()
        self.resize = VideoReformatter()


def convert_into(dst: np.ndarray, frame, rotation: int, conv: Converter) -> None:
    """One decoded frame -> `dst` (3, H, W) uint8 RGB, upright, resized like torchvision's antialiased bicubic.

    YUV -> RGB at full size first, then swscale's bicubic on RGB (its filter widens with the downscale
    factor, i.e. it antialiases), written as planar RGB so each channel is one contiguous copy. Measured
    against torch's `interpolate(bicubic, antialias=True)` on the same RGB frames: max abs diff 2-4, mean
    0.1-0.2 — as close as Pillow's bicubic, at a fraction of its cost. (Scaling in YUV before the RGB
    conversion is faster still but differs by up to 129 at colour edges. Planar RGB in as well as out is
    5-20% faster, but swscale's planar scaler then reads the uninitialised padding past a width that is not
    a multiple of 16: random pixels along the right edge.)
    """
    _, height, width = dst.shape
    if rotation in (90, 270):
        width, height = height, width  # resize in stored orientation, then rotate
    rgb = conv.to_rgb.reformat(frame, format="rgb24")
    gbr = conv.resize.reformat(rgb, width, height, format="gbrp", interpolation="BICUBIC")
    del rgb
    k = -(rotation // 90)  # np.rot90 turns counter-clockwise
    for channel, plane_index in enumerate((2, 0, 1)):  # gbrp planes are G, B, R
        plane = gbr.planes[plane_index]
        img = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]
        dst[channel] = np.rot90(img, k) if k else img


class FrameSink:
    """The output every decoder writes its converted frames into (disjoint slots; allocated by the first)."""

    def __init__(self, plan: FramePlan, want_pts: dict[int, list[int]], stream) -> None:
        self.plan, self.want_pts, self.stream = plan, want_pts, stream
        self.time_base, self.start_pts = stream.time_base, stream.start_time or 0
        self.out: np.ndarray | None = None
        self.rotation = 0
        self.timestamps = [0.0] * plan.nframes
        self._lock = threading.Lock()

    def put(self, frame, conv: Converter) -> None:
        if self.out is None:
            with self._lock:
                if self.out is None:
                    self.rotation = clockwise(getattr(frame, "rotation", 0)) or tag_rotation(self.stream)
                    plan = self.plan
                    h, w = (plan.width, plan.height) if self.rotation in (90, 270) else (plan.height, plan.width)
                    self.out = np.empty((plan.nframes, 3, h, w), dtype=np.uint8)
        slots = self.want_pts[frame.pts]
        convert_into(self.out[slots[0]], frame, self.rotation, conv)
        for slot in slots:
            if slot != slots[0]:
                self.out[slot] = self.out[slots[0]]
            self.timestamps[slot] = float((frame.pts - self.start_pts) * self.time_base) if self.time_base else 0.0


__all__ = ["Converter", "FrameSink", "clockwise", "convert_into", "tag_rotation"]
