"""Video files: probe (validate and describe a file); sampling and decoding come with the model stage."""

from vmeta.video.probe import PROBE_ERROR_KINDS, ProbeCache, ProbeError, probe

__all__ = ["PROBE_ERROR_KINDS", "ProbeCache", "ProbeError", "probe"]
