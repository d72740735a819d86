"""Decode exactly the frames `vmeta.video.sampling` chose, with PyAV, by seeking — never the whole video.

`load_video(path, settings)` -> `SampledVideo` whose `frames` is a uint8 array **(T, C, H, W)**, RGB — the
layout `qwen_vl_utils.fetch_video` returns (it returns float32 holding whole numbers; Qwen2-VL's video
processor accepts uint8 TCHW directly and rescales it itself, so we stay uint8 until the processor needs
floats). `indices` are qwen-vl-utils' `frames_indices`; `sample_fps` its `video_sample_fps` (Qwen2.5-VL's
`second_per_grid_ts = temporal_patch_size / sample_fps`).

How it decodes:

1. **Index pass.** Demux (no decoding) every packet of the video stream and keep only its pts and keyframe
   flag. Frame index k is the k-th smallest pts — the display-order numbering decord uses, so B-frames are
   handled. Frame count and fps are the container's `nb_frames` and average rate (decord's numbers).
2. **Plan.** `plan_frames` picks the indices (qwen-vl-utils semantics). Each wanted frame belongs to the GOP
   of the last keyframe before its packet (decode order).
3. **Seek + decode forward.** For each GOP holding wanted frames, seek to its keyframe (or, when it is fewer
   than `seek_gap` packets ahead, read up to it without decoding), then feed packets only until the GOP's last
   wanted frame is in the decoder and drain it: the rest of the GOP, and every GOP with no wanted frame, is
   never decoded. Inside a GOP, packets of frames nobody references and we do not want never reach the
   decoder (H.264: read from the NAL headers, `vmeta.video.nonref`; other codecs: the decoder discards them,
   `skip_frame=NONREF`, set per packet). MPEG-TS seeks, which land a few packets late, step back a keyframe.
   **In parallel:** the GOPs are split into contiguous runs of about equal cost, one per decoder (its own
   thread and file handle; `AUTO_DECODERS`); FFmpeg's decoding and swscale release the GIL, so the decoders
   use every core — what FFmpeg's own frame threads do poorly here, as each GOP ends with a drain.
4. **Convert only wanted frames**, one at a time, in the decoder's thread (a lone decoder hands them to a
   second thread and goes on decoding, or, when FFmpeg's frame threads already fill every core, keeps up to
   `HOLD_BYTES` of them and converts them on all cores at the end), with swscale contexts kept from frame to
   frame: YUV -> RGB at full size, then swscale's bicubic on RGB (antialiased when shrinking; within rounding
   of torchvision's `resize(..., BICUBIC, antialias=True)`), rotated upright, written into the preallocated
   output; the full-size frame is dropped at once. Peak memory is the output plus a few frames per decoder
   (at most `HOLD_BYTES` held), whatever the video length.

`iter_video(path, settings, chunk_frames=16)` yields the same frames a few whole GOPs at a time (same index
pass, plan and decoders per chunk, no GOP decoded twice), for a consumer that needs one frame after the other
rather than all of them in memory (on-screen text OCR at 720x1280).

"The same frames as qwen-vl-utils": same indices and output size, and pixels within a tolerance — YUV->RGB
and resize implementations differ by rounding only (tests assert max abs diff <= 16 and mean abs
diff < 0.5 out of 255 against `fetch_video` with the decord backend; typical numbers are in the test output).

This module plans the work and runs the decoders; opening, indexing, seeking and planning a file are in
`vmeta.video.container`, what one decoder does in `vmeta.video.gop_decoder`, the pixels in
`vmeta.video.frame_convert`.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmeta.video.container import (
    REEXPORT_HINT,
    DecodeError,
    StreamIndex,
    index_or_explain,
    open_container,
    open_like,
    plan_or_explain,
)
from vmeta.video.frame_convert import FrameSink
from vmeta.video.gop_decoder import DecodeOptions, DecodeStats, cores, decode_gops
from vmeta.video.sampling import FramePlan, FrameSettings

# Decoders working at once when not told (bench/video_sampling.py, 2 cores, 60 s portrait clips): 4 single-threaded
# decoders beat 2 (they fill each other's stalls: draining a GOP, the Python between packets) by 5-20%, and beat
# 2 decoders with 2 FFmpeg threads each; one decoder with FFmpeg's threads is 1.6-1.8x slower.
AUTO_DECODERS = 4
SMALL_PICTURE = 320 * 240
DENSE_FRAME_BYTES = 1024  # compressed bytes per frame from which a small picture is worth two frame threads


class _MissingFrames(Exception):
    def __init__(self, missing: list[int]):
        super().__init__(f"frames not decoded: {missing[:8]}")
        self.missing = missing


@dataclass
class SampledVideo:
    frames: np.ndarray  # uint8 (T, 3, H, W) RGB
    indices: list[int]
    timestamps: list[float]  # seconds (frame pts)
    video_fps: float  # the source's average fps (qwen-vl-utils' video_metadata["fps"])
    sample_fps: float  # qwen-vl-utils' video_sample_fps
    total_frames: int
    size: tuple[int, int]  # (height, width) of every frame
    rotation: int  # clockwise degrees applied to make the picture upright
    source_size: tuple[int, int]  # (height, width) as stored
    plan: FramePlan
    stats: DecodeStats = field(default_factory=DecodeStats)

    @property
    def metadata(self) -> dict[str, Any]:
        """qwen-vl-utils' video_metadata (for processors that take it)."""
        return {
            "fps": self.video_fps,
            "frames_indices": list(self.indices),
            "total_num_frames": self.total_frames,
            "video_backend": "vmeta",
        }


def load_video(
    path: str | Path,
    settings: FrameSettings | None = None,
    *,
    decoders: int = 0,
    threads: int = 0,
    seek_gap: int = 64,
    skip_nonref: bool = True,
    cache: Any = None,
) -> SampledVideo:
    """Decode the frames qwen-vl-utils would give for `settings`, upright, resized, uint8 (T, C, H, W).

    `decoders`: decoders working on different GOPs at once, each in its own thread with its own file handle
    (0 = AUTO_DECODERS; never more than the GOPs to decode). `threads`: FFmpeg threads per decoder
    (0 = one per core when one decoder does everything, fewer on small pictures; 1 when several share the
    cores). `seek_gap`: when the next GOP to decode starts fewer than this many packets ahead, reach it by
    demuxing (reading packets without decoding them) instead of seeking. `cache`: a
    `vmeta.video.cache.FrameCache` to read/write.
    """
    settings = settings or FrameSettings()
    path = Path(path)
    if cache is not None:
        hit = cache.get(path, settings)
        if hit is not None:
            return hit
    opts = DecodeOptions(decoders=decoders, threads=threads, seek_gap=seek_gap, skip_nonref=skip_nonref)
    result = _load_video(path, settings, opts)
    if cache is not None:
        cache.put(path, settings, result)
    return result


def iter_video(
    path: str | Path,
    settings: FrameSettings | None = None,
    *,
    chunk_frames: int = 16,
    decoders: int = 0,
    threads: int = 0,
    seek_gap: int = 64,
    skip_nonref: bool = True,
) -> Iterator[SampledVideo]:
    """`load_video`'s frames a few at a time, in display order: for a consumer that looks at one frame after the
    other (OCR at 720x1280 holds 2.8 MB a frame; a 3-minute video's 180 frames would be 500 MB at once).

    Each chunk is a `SampledVideo` of the next wanted frames of whole GOPs, at least `chunk_frames` of them
    (the last chunk may hold fewer; a GOP is never split, so a GOP holding more wanted frames makes its chunk
    larger): no GOP is decoded twice, and the frames are those `load_video` returns, pixel for pixel. Its
    `plan` is the full plan with `indices` cut to the chunk. The file stays open until the iterator is
    exhausted or closed (use `contextlib.closing` when stopping early). Options as in `load_video`.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, not {chunk_frames}")
    opts = DecodeOptions(decoders=decoders, threads=threads, seek_gap=seek_gap, skip_nonref=skip_nonref)
    return _decode_chunks(Path(path), settings or FrameSettings(), opts, chunk_frames)


def _load_video(path: Path, settings: FrameSettings, opts: DecodeOptions) -> SampledVideo:
    with closing(_decode_chunks(path, settings, opts, chunk_frames=None)) as chunks:
        return next(chunks)


def _chunk_bounds(idx: StreamIndex, slot_pts: list[int], chunk_frames: int | None) -> list[tuple[int, int]]:
    """Slot ranges [lo, hi) of at least `chunk_frames` slots (None: one range), cut only where every slot
    before belongs to an earlier GOP than every slot after — so no GOP is decoded for two chunks."""
    n = len(slot_pts)
    if chunk_frames is None or n <= chunk_frames:
        return [(0, n)]
    keys = [bisect.bisect_right(idx.keyframe_pos, idx.pts_to_pos[p]) for p in slot_pts]  # GOP number
    suffix_min = keys[:]
    for i in range(n - 2, -1, -1):
        suffix_min[i] = min(keys[i], suffix_min[i + 1])
    bounds: list[tuple[int, int]] = []
    lo, prefix_max = 0, -1
    for i in range(1, n):
        prefix_max = max(prefix_max, keys[i - 1])
        if i - lo >= chunk_frames and prefix_max < suffix_min[i]:
            bounds.append((lo, i))
            lo = i
    bounds.append((lo, n))
    return bounds


def _decode_chunks(
    path: Path, settings: FrameSettings, opts: DecodeOptions, chunk_frames: int | None
) -> Iterator[SampledVideo]:
    """Index, plan, then decode the planned frames chunk by chunk (`_chunk_bounds`; None = all at once)."""
    import av

    container = open_container(path)  # the index pass, then the first decoder
    try:
        idx = index_or_explain(path, container)
        plan = plan_or_explain(path, settings, idx)
        n_packets = len(idx.display_pts)
        # Frame index -> pts. decord numbers frames by sorted pts; an index past the packets (nb_frames larger
        # than the packets we found) maps to the last frame.
        slot_pts = [idx.display_pts[min(k, n_packets - 1)] for k in plan.indices]
        lead_in = 0
        for n, (lo, hi) in enumerate(_chunk_bounds(idx, slot_pts, chunk_frames)):
            if n:  # a decoder's threads are set when it opens: each chunk starts from a fresh handle
                fresh = open_like(path, container.streams.video[0])
                container.close()
                container = fresh
            part = dataclasses.replace(plan, indices=plan.indices[lo:hi]) if (lo, hi) != (0, len(slot_pts)) else plan
            want_pts: dict[int, list[int]] = {}
            for slot, pts in enumerate(slot_pts[lo:hi]):
                want_pts.setdefault(pts, []).append(slot)
            try:
                try:
                    video = _decode_planned(path, container, idx, part, want_pts, opts, lead_in=lead_in)
                except _MissingFrames:
                    if not opts.skip_nonref:
                        raise
                    # A wanted frame did not come out: a codec with unusual skip_frame semantics, or an open GOP
                    # whose leading frames need the previous GOP. Once more (and for the chunks still to come)
                    # from fresh decoders, decoding every packet and starting one keyframe earlier.
                    container.close()
                    container = open_container(path)
                    opts, lead_in = dataclasses.replace(opts, skip_nonref=False), 1
                    video = _decode_planned(path, container, idx, part, want_pts, opts, lead_in=lead_in)
            except _MissingFrames as exc:
                raise DecodeError(
                    f"{path}: frames {exc.missing[:8]}{'...' if len(exc.missing) > 8 else ''} could not be decoded "
                    f"(the file may be truncated or damaged); {REEXPORT_HINT}."
                ) from None
            except av.error.FFmpegError as exc:
                raise DecodeError(
                    f"{path}: decoding failed ({exc}); the file may be damaged; {REEXPORT_HINT}."
                ) from None
            yield video
    finally:
        container.close()


def split_work(costs: list[int], parts: int) -> list[range]:
    """Contiguous runs of items (GOPs in decode order) with about equal total cost, at most `parts` of them:
    a decoder then walks its run forward, demuxing across short gaps instead of seeking."""
    parts = max(1, min(parts, len(costs)))
    total = sum(costs)
    runs: list[range] = []
    start, acc = 0, 0
    for i, cost in enumerate(costs):
        acc += cost
        left_items, left_parts = len(costs) - i - 1, parts - len(runs) - 1
        if left_parts and (acc >= total * (len(runs) + 1) / parts or left_items == left_parts):
            runs.append(range(start, i + 1))
            start = i + 1
    runs.append(range(start, len(costs)))
    return [r for r in runs if len(r)]


def _decode_planned(
    path: Path, container, idx: StreamIndex, plan: FramePlan, want_pts, opts: DecodeOptions, lead_in: int = 0
) -> SampledVideo:
    """Decode the GOPs holding wanted frames, split over `opts.decoders` decoders (threads: decoding and
    swscale release the GIL, so they use separate cores)."""
    stream = container.streams.video[0]
    # Wanted pts grouped by the GOP (keyframe position) holding their packet, in decode order; a GOP's cost is
    # the packets to feed up to its last wanted one.
    gops: dict[int, set[int]] = {}
    last_pos: dict[int, int] = {}
    for pts in want_pts:
        pos = idx.pts_to_pos[pts]
        key = idx.keyframe_pos[max(0, bisect.bisect_right(idx.keyframe_pos, pos) - 1 - lead_in)]
        gops.setdefault(key, set()).add(pts)
        last_pos[key] = max(last_pos.get(key, key), pos)
    order = sorted(gops)
    decoders = opts.decoders or AUTO_DECODERS
    runs = [[order[i] for i in r] for r in split_work([last_pos[k] - k + 1 for k in order], decoders)]
    # FFmpeg's frame threads only for a decoder that has the cores alone: one per core (FFmpeg's own choice,
    # cores + 1, was 6% slower on the 1280x720 sample, as the converter thread needs a core too). On small
    # pictures handing a frame between threads costs about what decoding it does unless it carries many bits:
    # 176x144 and 320x240 clips at 200-800 B/frame decode 5-25% slower with 2 threads, at ~1 KB/frame even,
    # at 4.9 KB/frame (the carphone_pristine sample) 15-20% faster; more than 2 only add hand-overs there.
    if len(runs) > 1:
        auto_threads = 1
    elif idx.width * idx.height > SMALL_PICTURE:
        auto_threads = cores()
    else:
        auto_threads = min(2, cores()) if idx.video_bytes >= DENSE_FRAME_BYTES * len(idx.packet_pts) else 1
    threads = opts.threads or auto_threads
    sink = FrameSink(plan, want_pts, stream)

    def other_run(keys: list[int]) -> tuple[DecodeStats, set[int]]:
        own = open_like(path, stream)
        try:
            return decode_gops(own, own.streams.video[0], idx, keys, gops, sink, opts, threads)
        finally:
            own.close()

    results: list[tuple[DecodeStats, set[int]]] = []
    if len(runs) == 1:
        results.append(decode_gops(container, stream, idx, runs[0], gops, sink, opts, threads, offload=True))
    else:
        with ThreadPoolExecutor(len(runs) - 1, thread_name_prefix="vmeta-decode") as pool:
            futures = [pool.submit(other_run, keys) for keys in runs[1:]]
            results.append(decode_gops(container, stream, idx, runs[0], gops, sink, opts, threads))
            results += [f.result() for f in futures]
    stats = DecodeStats(packets_indexed=len(idx.packet_pts), decoders=len(runs))
    pending: set[int] = set()
    summed = [f.name for f in dataclasses.fields(DecodeStats) if f.name not in ("packets_indexed", "decoders")]
    for part, left in results:
        for name in summed:
            setattr(stats, name, getattr(stats, name) + getattr(part, name))
        pending |= left
    if pending:
        raise _MissingFrames(sorted(plan.indices[want_pts[p][0]] for p in pending))
    out = sink.out
    assert out is not None
    if sink.rotation in (90, 270):  # the plan was sized from the stored picture; report the displayed size
        plan = dataclasses.replace(plan, height=out.shape[2], width=out.shape[3])
    return SampledVideo(
        frames=out,
        indices=list(plan.indices),
        timestamps=sink.timestamps,
        video_fps=plan.video_fps,
        sample_fps=plan.sample_fps,
        total_frames=plan.total_frames,
        size=(out.shape[2], out.shape[3]),
        rotation=sink.rotation,
        source_size=(idx.height, idx.width),
        plan=plan,
        stats=stats,
    )


__all__ = ["AUTO_DECODERS", "SampledVideo", "iter_video", "load_video", "split_work"]
