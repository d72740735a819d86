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
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vmeta.errors import UserError
from vmeta.video.nonref import nonref_test
from vmeta.video.sampling import FramePlan, FrameSettings, SamplingError, plan_frames

# Decoders working at once when not told (bench/video_sampling.py, 2 cores, 60 s portrait clips): 4 single-threaded
# decoders beat 2 (they fill each other's stalls: draining a GOP, the Python between packets) by 5-20%, and beat
# 2 decoders with 2 FFmpeg threads each; one decoder with FFmpeg's threads is 1.6-1.8x slower.
AUTO_DECODERS = 4
SMALL_PICTURE = 320 * 240
DENSE_FRAME_BYTES = 1024  # compressed bytes per frame from which a small picture is worth two frame threads
CONVERT_AHEAD = 3  # decoded frames that may wait for a converter thread
HOLD_BYTES = 48 << 20  # decoded frames a lone frame-threaded decoder may keep until it is done (~16 at 1080p)
REEXPORT_HINT = "re-export it as H.264 MP4 (e.g. ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4)"


class DecodeError(UserError):
    """A video that cannot be decoded as asked; the message names the file."""


class _MissingFrames(Exception):
    def __init__(self, missing: list[int]):
        super().__init__(f"frames not decoded: {missing[:8]}")
        self.missing = missing


@dataclass
class StreamIndex:
    """Per-packet facts from the index pass (no decoding)."""

    total_frames: int  # decord's len(VideoReader): nb_frames from the container, else the packet count
    video_fps: float
    width: int  # as stored
    height: int
    packet_pts: list[int]  # decode order
    video_bytes: int  # compressed size of all packets
    keyframe_pos: list[int]  # decode-order positions of keyframes
    display_pts: list[int]  # sorted pts: display index -> pts
    pts_to_pos: dict[int, int]


@dataclass
class DecodeStats:
    packets_indexed: int = 0
    packets_fed: int = 0
    packets_dropped: int = 0  # non-reference pictures nobody wants, never given to the decoder
    frames_out: int = 0  # frames the decoder produced (not discarded)
    frames_converted: int = 0  # frames turned into RGB (== number of distinct wanted frames)
    frames_held: int = 0  # of those, converted after decoding had finished (HOLD_BYTES)
    seeks: int = 0
    gops_decoded: int = 0
    decoders: int = 1  # decoders that worked on different GOPs at once


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


def _cores() -> int:
    """CPUs this process may run on (an affinity mask or a container's cpuset counts, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows
        return os.cpu_count() or 1


def _clockwise(ccw: float | int | None) -> int:
    """FFmpeg's display-matrix angle is counter-clockwise; a player rotates clockwise by its negation."""
    if not ccw:
        return 0
    return round(-float(ccw) / 90.0) * 90 % 360


def _explain_open_failure(path: Path, exc: Exception) -> UserError:
    """The probe's classified message (missing / empty / not a video / audio only / corrupt) when it has one."""
    try:
        from vmeta.video.probe import probe

        probe(path)
    except UserError as perr:
        return perr
    except Exception:  # pragma: no cover - probe itself failed oddly; fall through to the generic message
        pass
    return DecodeError(f"{path}: cannot be read as a video ({exc}); {REEXPORT_HINT}.")


def _decoder_params(stream) -> tuple:
    """What a decoder made from this stream starts from (the reorder delay decides which early frames it
    would drop as out of order)."""
    cc = stream.codec_context
    return cc.name, cc.width, cc.height, cc.has_b_frames, bytes(cc.extradata or b""), stream.time_base


def _open_like(path: Path, probed):
    """Another handle on a file whose video stream `probed` was opened normally, for a second decoder.

    FFmpeg's stream probing decodes frames, single-threaded, on every open: 60-90 ms for a 1080x1920 clip, paid
    again by each decoder. This handle skips that decoding (`skip_frame=all` for the probe only; the decoder
    we make is unaffected) and is used only when its stream gives a decoder the same parameters as `probed`;
    otherwise the file is opened normally."""
    import av

    try:
        container = av.open(str(path), "r", metadata_errors="ignore", options={"skip_frame": "all"})
    except (av.error.FFmpegError, OSError, ValueError):
        return _open(path)
    if container.streams.video and _decoder_params(container.streams.video[0]) == _decoder_params(probed):
        return container
    container.close()
    return _open(path)


def _open(path: Path):
    import av

    if not path.is_file():
        raise _explain_open_failure(path, FileNotFoundError(str(path)))
    try:
        container = av.open(str(path), "r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise _explain_open_failure(path, exc) from None
    if not container.streams.video:
        container.close()
        raise _explain_open_failure(path, ValueError("no video stream"))
    return container


def index_stream(container, stream) -> StreamIndex:
    """Demux the video stream once (no decoding): pts and keyframe flag of every packet."""
    packet_pts: list[int] = []
    keyframe_pos: list[int] = []
    video_bytes = 0
    for packet in container.demux(stream):
        size = packet.size
        if size == 0:
            continue
        video_bytes += size
        pts = _pts(packet)
        if pts is None:
            raise ValueError("packet without timestamps")
        if packet.is_keyframe:
            keyframe_pos.append(len(packet_pts))
        packet_pts.append(int(pts))
    if not packet_pts:
        raise ValueError("no video packets")
    if not keyframe_pos or keyframe_pos[0] != 0:
        keyframe_pos.insert(0, 0)  # treat the first packet as a starting point (decoders resync)
    display_pts = sorted(packet_pts)
    pts_to_pos = {p: i for i, p in enumerate(packet_pts)}
    if len(pts_to_pos) != len(packet_pts):
        raise ValueError("duplicate packet timestamps")
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    cc = stream.codec_context
    return StreamIndex(
        total_frames=int(stream.frames) if stream.frames else len(packet_pts),
        video_fps=float(fps) if fps else 0.0,
        width=cc.width,
        height=cc.height,
        packet_pts=packet_pts,
        video_bytes=video_bytes,
        keyframe_pos=keyframe_pos,
        display_pts=display_pts,
        pts_to_pos=pts_to_pos,
    )


def read_stream_index(path: str | Path) -> StreamIndex:
    """The index pass alone: frame count, fps, stored size and packet timestamps (clear error for bad files)."""
    import av

    path = Path(path)
    container = _open(path)
    try:
        return index_stream(container, container.streams.video[0])
    except (av.error.FFmpegError, ValueError) as exc:
        raise _explain_open_failure(path, exc) from None
    finally:
        container.close()


def plan_for_file(path: str | Path, settings: FrameSettings | None = None) -> tuple[FramePlan, StreamIndex]:
    """The frames `load_video` would decode (indices, size before rotation) without decoding anything."""
    idx = read_stream_index(path)
    try:
        plan = plan_frames(settings or FrameSettings(), idx.total_frames, idx.video_fps, idx.height, idx.width)
    except SamplingError as exc:
        raise DecodeError(f"{path}: cannot sample frames: {exc}; change the frame settings.") from None
    return plan, idx


class _Converter:
    """Per decoder thread: swscale contexts kept from frame to frame. (`frame.reformat` makes a new context per
    frame, and setting up a bicubic context costs more than converting a small frame: 2-4x slower overall.)"""

    def __init__(self) -> None:
        from av.video.reformatter import VideoReformatter

        self.to_rgb = VideoReformatter()
        self.resize = VideoReformatter()


def _convert_into(dst: np.ndarray, frame, rotation: int, conv: _Converter) -> None:
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
    opts = _Options(decoders=decoders, threads=threads, seek_gap=seek_gap, skip_nonref=skip_nonref)
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
    opts = _Options(decoders=decoders, threads=threads, seek_gap=seek_gap, skip_nonref=skip_nonref)
    return _decode_chunks(Path(path), settings or FrameSettings(), opts, chunk_frames)


@dataclass(frozen=True)
class _Options:
    decoders: int
    threads: int
    seek_gap: int
    skip_nonref: bool


def _load_video(path: Path, settings: FrameSettings, opts: _Options) -> SampledVideo:
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
    path: Path, settings: FrameSettings, opts: _Options, chunk_frames: int | None
) -> Iterator[SampledVideo]:
    """Index, plan, then decode the planned frames chunk by chunk (`_chunk_bounds`; None = all at once)."""
    import av

    container = _open(path)  # the index pass, then the first decoder
    try:
        stream = container.streams.video[0]
        try:
            idx = index_stream(container, stream)
        except (av.error.FFmpegError, ValueError) as exc:
            raise _explain_open_failure(path, exc) from None
        try:
            plan = plan_frames(settings, idx.total_frames, idx.video_fps, idx.height, idx.width)
        except SamplingError as exc:
            raise DecodeError(f"{path}: cannot sample frames: {exc}; change the frame settings.") from None
        n_packets = len(idx.display_pts)
        # Frame index -> pts. decord numbers frames by sorted pts; an index past the packets (nb_frames larger
        # than the packets we found) maps to the last frame.
        slot_pts = [idx.display_pts[min(k, n_packets - 1)] for k in plan.indices]
        lead_in = 0
        for n, (lo, hi) in enumerate(_chunk_bounds(idx, slot_pts, chunk_frames)):
            if n:  # a decoder's threads are set when it opens: each chunk starts from a fresh handle
                fresh = _open_like(path, container.streams.video[0])
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
                    container = _open(path)
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


class _Sink:
    """The output every decoder writes its converted frames into (disjoint slots; allocated by the first)."""

    def __init__(self, plan: FramePlan, want_pts: dict[int, list[int]], stream) -> None:
        self.plan, self.want_pts, self.stream = plan, want_pts, stream
        self.time_base, self.start_pts = stream.time_base, stream.start_time or 0
        self.out: np.ndarray | None = None
        self.rotation = 0
        self.timestamps = [0.0] * plan.nframes
        self._lock = threading.Lock()

    def put(self, frame, conv: _Converter) -> None:
        if self.out is None:
            with self._lock:
                if self.out is None:
                    self.rotation = _clockwise(getattr(frame, "rotation", 0)) or _tag_rotation(self.stream)
                    plan = self.plan
                    h, w = (plan.width, plan.height) if self.rotation in (90, 270) else (plan.height, plan.width)
                    self.out = np.empty((plan.nframes, 3, h, w), dtype=np.uint8)
        slots = self.want_pts[frame.pts]
        _convert_into(self.out[slots[0]], frame, self.rotation, conv)
        for slot in slots:
            if slot != slots[0]:
                self.out[slot] = self.out[slots[0]]
            self.timestamps[slot] = float((frame.pts - self.start_pts) * self.time_base) if self.time_base else 0.0


def _decode_planned(
    path: Path, container, idx: StreamIndex, plan: FramePlan, want_pts, opts: _Options, lead_in: int = 0
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
        auto_threads = _cores()
    else:
        auto_threads = min(2, _cores()) if idx.video_bytes >= DENSE_FRAME_BYTES * len(idx.packet_pts) else 1
    threads = opts.threads or auto_threads
    sink = _Sink(plan, want_pts, stream)

    def other_run(keys: list[int]) -> tuple[DecodeStats, set[int]]:
        own = _open_like(path, stream)
        try:
            return _decode_gops(own, own.streams.video[0], idx, keys, gops, sink, opts, threads)
        finally:
            own.close()

    results: list[tuple[DecodeStats, set[int]]] = []
    if len(runs) == 1:
        results.append(_decode_gops(container, stream, idx, runs[0], gops, sink, opts, threads, offload=True))
    else:
        with ThreadPoolExecutor(len(runs) - 1, thread_name_prefix="vmeta-decode") as pool:
            futures = [pool.submit(other_run, keys) for keys in runs[1:]]
            results.append(_decode_gops(container, stream, idx, runs[0], gops, sink, opts, threads))
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


def _decode_gops(
    container,
    stream,
    idx: StreamIndex,
    keys: list[int],
    gops: dict[int, set[int]],
    sink: _Sink,
    opts: _Options,
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
    conv = _Converter()
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
                it = _seek_before(container, stream, idx, key)
                cc.flush_buffers()
                stats.seeks += 1
                next_pos = key
            unfed = set(wanted)
            skipped = False
            for packet in it:
                if packet.size == 0:
                    continue
                pts = _pts(packet)
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
        n = min(len(held), _cores())
        convs = [conv, *(_Converter() for _ in range(n - 1))]
        with ThreadPoolExecutor(n, thread_name_prefix="vmeta-convert") as workers:
            for done in [workers.submit(_put_all, sink, held[i::n], convs[i]) for i in range(n)]:
                done.result()
    return stats, pending


def _put_all(sink: _Sink, frames: list[Any], conv: _Converter) -> None:
    for frame in frames:
        sink.put(frame, conv)


def _seek_before(container, stream, idx: StreamIndex, key: int) -> Iterator[Any]:
    """Packets from a seek that starts at or before decode-order position `key` (a keyframe).

    Seeking to a keyframe's pts lands on it in MP4 and Matroska, but MPEG-TS searches by dts and lands a few
    packets past it, where the GOP's first frames could not be decoded. Then the keyframes before it are
    tried, and last the start of the file; the caller demuxes (without decoding) up to `key`."""
    k = bisect.bisect_right(idx.keyframe_pos, key) - 1
    for pos in reversed(idx.keyframe_pos[max(0, k - 2) : k + 1]):
        container.seek(idx.packet_pts[pos], stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        first = next((p for p in packets if p.size), None)
        if first is None:
            return iter(())  # nothing after the seek point: the caller drains and reports what is missing
        landed = idx.pts_to_pos.get(_pts(first))
        if landed is None or landed <= key:
            return itertools.chain([first], packets)
    container.seek(0, backward=True, any_frame=False)
    return container.demux(stream)


def _pts(packet) -> int | None:
    return packet.pts if packet.pts is not None else packet.dts


def _tag_rotation(stream) -> int:
    """Older muxers: a 'rotate' tag in the stream metadata (clockwise degrees)."""
    tag = (stream.metadata or {}).get("rotate")
    try:
        return round(float(tag) / 90.0) * 90 % 360 if tag else 0
    except ValueError:
        return 0


__all__ = [
    "DecodeError",
    "DecodeStats",
    "SampledVideo",
    "StreamIndex",
    "index_stream",
    "iter_video",
    "load_video",
    "plan_for_file",
    "read_stream_index",
]
