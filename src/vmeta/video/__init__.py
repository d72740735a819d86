"""Video files: probe (validate and describe), sampling (which frames, what size — qwen-vl-utils-exact),
decoding (seek-based, upright, uint8) and an optional decoded-frame cache.

The names below are loaded on first use (PEP 562), so importing one small module of this package — the
dataset records import `vmeta.video.meta` — does not load numpy and the decoders. `vmeta.video.probe` is the
probe module (its function is `vmeta.video.probe.probe`): a lazy package cannot also rebind that name to the
function, as the eager one did."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmeta.video.cache import FrameCache
    from vmeta.video.container import DecodeError, plan_for_file
    from vmeta.video.decode import SampledVideo, load_video
    from vmeta.video.meta import VideoMeta
    from vmeta.video.probe import PROBE_ERROR_KINDS, ProbeCache, ProbeError
    from vmeta.video.sampling import FramePlan, FrameSettings, SamplingError, plan_frames

_WHERE = {
    "FrameCache": "cache",
    "DecodeError": "container",
    "SampledVideo": "decode",
    "load_video": "decode",
    "plan_for_file": "container",
    "VideoMeta": "meta",
    "PROBE_ERROR_KINDS": "probe",
    "ProbeCache": "probe",
    "ProbeError": "probe",
    "FramePlan": "sampling",
    "FrameSettings": "sampling",
    "SamplingError": "sampling",
    "plan_frames": "sampling",
}

__all__ = [
    "PROBE_ERROR_KINDS",
    "DecodeError",
    "FrameCache",
    "FramePlan",
    "FrameSettings",
    "ProbeCache",
    "ProbeError",
    "SampledVideo",
    "SamplingError",
    "VideoMeta",
    "load_video",
    "plan_for_file",
    "plan_frames",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"vmeta.video.{_WHERE[name]}"), name)
