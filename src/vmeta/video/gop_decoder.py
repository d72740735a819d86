"""One decoder walking its GOPs: seek to each (or demux across a short gap), feed packets until the GOP's
wanted frames are out, hand them to the converter — never decoding a GOP nobody wants a frame of.

`vmeta.video.decode` splits the GOPs over several of these (each its own thread and file handle); this module
is what one of them does, and the counters it keeps (`DecodeStats`).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from vmeta.video.container import StreamIndex, pts_of, seek_before
from vmeta.video.frame_convert import Converter, FrameSink
from vmeta.video.nonref import nonref_test

CONVERT_AHEAD = 3  # decoded frames that may wait for a converter thread
HOLD_BYTES = 48 << 20  # decoded frames a lone frame-threaded decoder may keep until it is done (~16 at 1080p)


@dataclass
class DecodeStats:
    """What decoding cost (`SampledVideo.stats`): per decoder here, summed over decoders by `vmeta.video.decode`."""

    packets_indexed: int = 0
    packets_fed: int = 0
    packets_dropped: int = 0  # non-reference pictures nobody wants, never given to the decoder
    frames_out: int = 0  # frames the decoder produced (not discarded)
    frames_converted: int = 0  # frames turned into RGB (== number of distinct wanted frames)
    frames_held: int = 0  # of those, converted after decoding had finished (HOLD_BYTES)
    seeks: int = 0
    gops_decoded: int = 0
    decoders: int = 1  # decoders that worked on different GOPs at once


@dataclass(frozen=True)
class DecodeOptions:
    """How `load_video` / `iter_video` were asked to decode (see `load_video`'s arguments)."""

    decoders: int
    threads: int
    seek_gap: int
    skip_nonref: bool


def cores() -> int:
    """CPUs this process may run on (an affinity mask or a container's cpuset counts, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows
        return os.cpu_count() or 1


def decode_gops(
    container,
    stream,
    idx: StreamIndex,
    keys: list[int],
    gops: dict[int, set[int]],
    sink: FrameSink,
    opts: DecodeOptions,
    threads: int,
    offload: bool = False,
) -> tuple[DecodeStats, set[int]]:
    """One decoder: seek to each GOP in `keys` (or demux across a short gap), feed packets until the GOP's
    wanted frames are out, convert them into `sink`. Returns its counters and the wanted pts it never saw.
    `offload`: convert in a second thread while this one decodes (for a decoder that has the cores alone)."""
    cc = stream.codec_context
    cc.thread_type = "AUTO"
    cc.thread_count = threads
    stats = DecodeStats()
    pending = set().union(*(gops[k] for k in keys))
    droppable = nonref_test(stream) if opts.skip_nonref else None
    conv = Converter()
    pool = ThreadPoolExecutor(1, thread_name_prefix="vmeta-convert") if offload else None
    converting: deque[Any] = deque()
    # With FFmpeg's frame threads on every core, converting alongside only steals cores from them (and a
    # preempted frame thread stalls the others): hold the decoded frames, up to HOLD_BYTES, and convert them
    # on all cores once decoding is done (176x144 sample: 10% faster; 1280x720: 3%).
    held: list[Any] = []
    hold_left = HOLD_BYTES if offload and threads != 1 else 0

    def take(frames) -> None:
        nonlocal hold_left
        for frame in frames:
            stats.frames_out += 1
            if frame.pts in pending:
                pending.discard(frame.pts)
                stats.frames_converted += 1
                size = sum(plane.buffer_size for plane in frame.planes) if hold_left else None
                if size is not None and size <= hold_left:
                    hold_left -= size
                    held.append(frame)
                    stats.frames_held += 1
                    continue
                if pool is None:
                    sink.put(frame, conv)
                    continue
                while len(converting) >= CONVERT_AHEAD:  # a few full-size frames wait at most: memory stays flat
                    converting.popleft().result()
                converting.append(pool.submit(sink.put, frame, conv))

    def drain() -> None:
        cc.skip_frame = "DEFAULT"
        take(cc.decode(None))
        cc.flush_buffers()

    def walk() -> None:
        it = None  # the demuxer iterator, or None before the first seek / after the end of the file
        next_pos = 0  # decode-order position of the next packet `it` yields
        for key in keys:
            wanted = gops[key] & pending
            if not wanted:
                continue  # came out while decoding an earlier GOP
            stats.gops_decoded += 1
            if it is None or next_pos > key or key - next_pos >= opts.seek_gap:
                it = seek_before(container, stream, idx, key)
                cc.flush_buffers()
                stats.seeks += 1
                next_pos = key
            unfed = set(wanted)
            skipped = False
            for packet in it:
                if packet.size == 0:
                    continue
                pts = pts_of(packet)
                pos = idx.pts_to_pos.get(pts)
                if pos is not None:
                    next_pos = pos + 1
                    if pos < key:  # between GOPs: demux only, nothing decoded
                        skipped = True
                        continue
                if skipped:
                    cc.flush_buffers()
                    skipped = False
                if opts.skip_nonref:
                    if droppable is not None and pts not in pending and droppable(packet):
                        stats.packets_dropped += 1
                        continue
                    cc.skip_frame = "DEFAULT" if pts in pending else "NONREF"
                stats.packets_fed += 1
                take(cc.decode(packet))
                unfed.discard(pts)
                if not (wanted & pending):
                    break
                if not unfed:  # every wanted packet of this GOP is in the decoder: drain it rather than feed more
                    drain()
                    break
            else:  # end of file
                drain()
                it = None
            if not pending:
                break

    if pool is None:
        walk()
    else:
        with pool:  # waits for the conversions, also when decoding failed
            walk()
            while converting:
                converting.popleft().result()
    if held:
        n = min(len(held), cores())
        convs = [conv, *(Converter() for _ in range(n - 1))]
        with ThreadPoolExecutor(n, thread_name_prefix="vmeta-convert") as workers:
            for done in [workers.submit(_put_all, sink, held[i::n], convs[i]) for i in range(n)]:
                done.result()
    return stats, pending


def _put_all(sink: FrameSink, frames: list[Any], conv: Converter) -> None:
    for frame in frames:
        sink.put(frame, conv)


__all__ = ["CONVERT_AHEAD", "HOLD_BYTES", "DecodeOptions", "DecodeStats", "cores", "decode_gops"]
