"""Video files: probe (validate and describe), sampling (which frames, what size — qwen-vl-utils-exact),
decoding (seek-based, upright, uint8) and an optional decoded-frame cache."""

from vmeta.video.cache import FrameCache
from vmeta.video.decode import DecodeError, SampledVideo, load_video, plan_for_file
from vmeta.video.probe import PROBE_ERROR_KINDS, ProbeCache, ProbeError, probe
from vmeta.video.sampling import FramePlan, FrameSettings, SamplingError, plan_frames

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
    "load_video",
    "plan_for_file",
    "plan_frames",
    "probe",
]
