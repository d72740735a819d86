"""Open a video file, index its packets, seek in it, plan its frames — everything about the container that
decodes nothing (`vmeta.video.decode` then decodes what the plan names).

Errors name the file and, where the probe can tell, what is wrong with it (missing, empty, audio only, ...), so
every reader of a video fails with the same sentence.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.video.sampling import FramePlan, FrameSettings, SamplingError, plan_frames

REEXPORT_HINT = "re-export it as H.264 MP4 (e.g. ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4)"


class DecodeError(UserError):
    """A video that cannot be decoded as asked; the message names the file."""


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


def explain_open_failure(path: Path, exc: Exception) -> UserError:
    """The probe's classified message (missing / empty / not a video / audio only / corrupt) when it has one."""
    try:
        from vmeta.video.probe import probe

        probe(path)
    except UserError as perr:
        return perr
    except Exception:  # pragma: no cover - probe itself failed oddly; fall through to the generic message
        pass
    return DecodeError(f"{path}: cannot be read as a video ({exc}); {REEXPORT_HINT}.")


def decoder_params(stream) -> tuple:
    """What a decoder made from this stream starts from (the reorder delay decides which early frames it
    would drop as out of order)."""
    cc = stream.codec_context
    return cc.name, cc.width, cc.height, cc.has_b_frames, bytes(cc.extradata or b""), stream.time_base


def open_like(path: Path, probed):
    """Another handle on a file whose video stream `probed` was opened normally, for a second decoder.

    FFmpeg's stream probing decodes frames, single-threaded, on every open: 60-90 ms for a 1080x1920 clip, paid
    again by each decoder. This handle skips that decoding (`skip_frame=all` for the probe only; the decoder
    we make is unaffected) and is used only when its stream gives a decoder the same parameters as `probed`;
    otherwise the file is opened normally."""
    import av

    try:
        container = av.open(str(path), "r", metadata_errors="ignore", options={"skip_frame": "all"})
    except (av.error.FFmpegError, OSError, ValueError):
        return open_container(path)
    if container.streams.video and decoder_params(container.streams.video[0]) == decoder_params(probed):
        return container
    container.close()
    return open_container(path)


def open_container(path: Path):
    import av

    if not path.is_file():
        raise explain_open_failure(path, FileNotFoundError(str(path)))
    try:
        container = av.open(str(path), "r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise explain_open_failure(path, exc) from None
    if not container.streams.video:
        container.close()
        raise explain_open_failure(path, ValueError("no video stream"))
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
        pts = pts_of(packet)
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
    path = Path(path)
    container = open_container(path)
    try:
        return index_or_explain(path, container)
    finally:
        container.close()


def index_or_explain(path: Path, container) -> StreamIndex:
    """`index_stream` of an opened file's video stream; a file that will not demux gets the probe's message."""
    import av

    try:
        return index_stream(container, container.streams.video[0])
    except (av.error.FFmpegError, ValueError) as exc:
        raise explain_open_failure(path, exc) from None


def plan_or_explain(path: str | Path, settings: FrameSettings, idx: StreamIndex) -> FramePlan:
    """`plan_frames` for an indexed stream; frame settings the video cannot satisfy become a DecodeError."""
    try:
        return plan_frames(settings, idx.total_frames, idx.video_fps, idx.height, idx.width)
    except SamplingError as exc:
        raise DecodeError(f"{path}: cannot sample frames: {exc}; change the frame settings.") from None


def plan_for_file(path: str | Path, settings: FrameSettings | None = None) -> tuple[FramePlan, StreamIndex]:
    """The frames `load_video` would decode (indices, size before rotation) without decoding anything."""
    idx = read_stream_index(path)
    return plan_or_explain(path, settings or FrameSettings(), idx), idx


def seek_before(container, stream, idx: StreamIndex, key: int) -> Iterator[Any]:
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
        landed = idx.pts_to_pos.get(pts_of(first))
        if landed is None or landed <= key:
            return itertools.chain([first], packets)
    container.seek(0, backward=True, any_frame=False)
    return container.demux(stream)


def pts_of(packet) -> int | None:
    return packet.pts if packet.pts is not None else packet.dts


__all__ = [
    "REEXPORT_HINT",
    "DecodeError",
    "StreamIndex",
    "explain_open_failure",
    "index_or_explain",
    "index_stream",
    "open_container",
    "open_like",
    "plan_for_file",
    "plan_or_explain",
    "pts_of",
    "read_stream_index",
    "seek_before",
]
