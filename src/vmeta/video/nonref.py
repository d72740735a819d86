"""Which H.264 packets no other frame needs — read from their NAL headers, before anything is decoded.

FFmpeg's `skip_frame=NONREF` discards the same pictures (slices with `nal_ref_idc == 0`), but only once the
packet is inside the decoder: each one still costs a trip through PyAV and, with frame threads, a whole thread
slot, which is why FFmpeg's frame threads made the sampler *slower* on short one-GOP clips. Dropping those
packets before `decode` is the same rule applied earlier (a stream without its non-reference pictures is still
a conforming stream: H.264 §7.4.1, nal_ref_idc), so the frames that do come out are bit-identical (tested).

No library exposes this: FFmpeg's `filter_units` bitstream filter selects by NAL type, not by nal_ref_idc, and
parsing a NAL header is two bytes. Anything unexpected (another codec, a length that does not add up) answers
"needed", so the packet is fed and the decoder's own `skip_frame` decides, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SLICES = frozenset({1, 2, 3, 4})  # coded slice of a non-IDR picture, data partitions A-C
ALONGSIDE = frozenset({6, 9, 12})  # SEI, access unit delimiter, filler: about this picture only


def _droppable(nal_headers: list[int]) -> bool:
    """Only non-reference slices (nal_ref_idc, bits 5-6, zero) and NAL units that describe that picture alone:
    a packet carrying a parameter set, an end of sequence or anything unknown is fed."""
    has_slice = False
    for h in nal_headers:
        kind = h & 0x1F
        if kind in SLICES:
            if h & 0x60:
                return False
            has_slice = True
        elif kind not in ALONGSIDE:
            return False
    return has_slice


def _avcc_headers(data: memoryview, length_size: int) -> list[int] | None:
    """NAL header bytes of a length-prefixed (MP4/MKV) packet; None when the lengths do not add up."""
    headers: list[int] = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + length_size >= end:
            return None
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > end:
            return None
        headers.append(data[pos])
        pos += size
    return headers


def _annexb_headers(data: bytes) -> list[int] | None:
    """NAL header bytes of a start-code (MPEG-TS, raw .h264) packet; None unless it starts with a start code."""
    if not data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        return None
    headers: list[int] = []
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(data):
        headers.append(data[pos + 3])
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return headers or None


def nonref_test(stream: Any) -> Callable[[Any], bool] | None:
    """A function telling whether a packet of `stream` holds only non-reference pictures, or None when the
    stream is not H.264 (the decoder's skip_frame then does the work)."""
    cc = stream.codec_context
    if cc.name != "h264":
        return None
    extra = bytes(cc.extradata or b"")
    if len(extra) >= 7 and extra[0] == 1:  # avcC: lengthSizeMinusOne in the low bits of byte 4
        length_size = (extra[4] & 0x03) + 1

        def avcc(packet: Any) -> bool:
            headers = _avcc_headers(memoryview(packet), length_size)
            return headers is not None and _droppable(headers)

        return avcc
    if not extra.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        return None  # no extradata to tell the packet format by: a length prefix can look like a start code

    def annexb(packet: Any) -> bool:
        headers = _annexb_headers(bytes(packet))
        return headers is not None and _droppable(headers)

    return annexb


__all__ = ["nonref_test"]
