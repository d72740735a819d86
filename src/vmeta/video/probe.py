"""Probe a video file with PyAV: is it readable, and what is it (container, codec, size, fps, rotation, audio).

`probe(path)` opens the container, reads the stream headers and decodes only the first video frame, so it
is fast and still catches files that open but cannot be decoded. Bad files raise `ProbeError`, whose `kind`
is one of `PROBE_ERROR_KINDS` and whose message names the file and says what to do.

`ProbeCache` remembers results in an append-only JSONL file keyed by (device, inode, size, mtime_ns), with a
second key (size, mtime_ns, hash of the first and last 64 KiB) so hard links, unchanged copies and re-runs
skip probing.
"""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.video.meta import VideoMeta

PROBE_ERROR_KINDS = ("missing", "zero_byte", "not_video", "audio_only", "corrupt")
REEXPORT_HINT = (
    "re-export the video as H.264 MP4 (e.g. ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4) and replace the file"
)

# File signatures of containers a video could be in: a file starting like this that will not open is
# a damaged video ("corrupt"); anything else that will not open is "not_video".
_VIDEO_MAGIC: tuple[tuple[int, bytes], ...] = (
    (4, b"ftyp"),  # MP4 / MOV / 3GP / M4V
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (4, b"skip"),
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x00\x00\x01\xb3"),
    (0, b"\x47"),  # MPEG-TS sync byte
    (0, b"OggS"),
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
)
_MAX_PACKETS_FOR_FIRST_FRAME = 600
_PATH_TOKEN = "{path}"  # cached error messages name the file through this token


class ProbeError(UserError):
    """A video that cannot be used. `kind` is one of PROBE_ERROR_KINDS."""

    def __init__(self, path: str | Path, kind: str, message: str):
        super().__init__(message)
        self.path = str(path)
        self.kind = kind


def _looks_like_video_container(head: bytes) -> bool:
    return any(head[off : off + len(magic)] == magic for off, magic in _VIDEO_MAGIC)


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(Fraction(value))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f > 0 else None


def _clockwise(ccw: float | int | None) -> int:
    """FFmpeg's display matrix angle is counter-clockwise; a player rotates clockwise by its negation."""
    if not ccw:
        return 0
    return round(-float(ccw) / 90.0) * 90 % 360


def probe(path: str | Path) -> VideoMeta:
    """Read a video's metadata and decode its first frame. Raises ProbeError for unusable files."""
    import av  # PyAV: imported here so importing vmeta.video stays cheap

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ProbeError(
            path, "missing", f"{path}: file not found; check the file name and the --videos folder."
        ) from None
    if not path.is_file():
        raise ProbeError(path, "not_video", f"{path}: not a file; point at a video file (mp4/mov/mkv/webm/avi).")
    if st.st_size == 0:
        raise ProbeError(
            path,
            "zero_byte",
            f"{path}: the file is empty (0 bytes), probably a failed copy or download; copy it again.",
        )
    with path.open("rb") as fh:
        head = fh.read(16)

    try:
        container = av.open(str(path), "r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        if _looks_like_video_container(head):
            raise ProbeError(
                path,
                "corrupt",
                f"{path}: the video is damaged or truncated and cannot be opened ({exc.strerror}); {REEXPORT_HINT}.",
            ) from None
        raise ProbeError(
            path, "not_video", f"{path}: not a video file (the format is not recognised); {REEXPORT_HINT}."
        ) from None

    try:
        vstreams = list(container.streams.video)
        astreams = list(container.streams.audio)
        if not vstreams:
            if astreams:
                raise ProbeError(
                    path,
                    "audio_only",
                    f"{path}: has audio but no video stream; export the clip with its picture (as H.264 MP4).",
                )
            raise ProbeError(path, "not_video", f"{path}: contains no video stream; {REEXPORT_HINT}.")
        vs = vstreams[0]
        container_name = container.format.name if container.format else None
        codec = vs.codec_context.name if vs.codec_context else None

        # First frame: proves the stream decodes, and carries the display matrix (rotation).
        first = None
        try:
            for n, packet in enumerate(container.demux(vs)):
                for frame in packet.decode():
                    first = frame
                    break
                if first is not None or n >= _MAX_PACKETS_FOR_FIRST_FRAME:
                    break
            if first is None:  # flush the decoder: some codecs hold the first frame back
                try:
                    for frame in vs.codec_context.decode(None):
                        first = frame
                        break
                except av.error.FFmpegError:
                    pass
        except av.error.FFmpegError as exc:
            raise ProbeError(
                path, "corrupt", f"{path}: the video stream cannot be decoded ({exc.strerror}); {REEXPORT_HINT}."
            ) from None
        if first is None:
            raise ProbeError(
                path, "corrupt", f"{path}: no picture could be decoded (damaged or truncated); {REEXPORT_HINT}."
            )

        fps = _rate(vs.average_rate) or _rate(vs.guessed_rate) or _rate(vs.base_rate)
        duration = None
        if vs.duration and vs.time_base:
            duration = float(vs.duration * vs.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        frames = int(vs.frames) if vs.frames else (round(duration * fps) if duration and fps else None)
        width = vs.codec_context.width or first.width
        height = vs.codec_context.height or first.height

        rotation = _clockwise(getattr(first, "rotation", 0))
        if not rotation:  # older muxers: a 'rotate' tag in the stream metadata (clockwise degrees)
            tag = (vs.metadata or {}).get("rotate")
            try:
                rotation = round(float(tag) / 90.0) * 90 % 360 if tag else 0
            except ValueError:
                rotation = 0
        swap = rotation in (90, 270)
        return VideoMeta(
            readable=True,
            size_bytes=st.st_size,
            mtime=st.st_mtime,
            container=container_name,
            codec=codec,
            duration_s=round(duration, 4) if duration is not None else None,
            fps=round(fps, 4) if fps else None,
            frames=frames,
            width=width,
            height=height,
            rotation=rotation,
            display_width=height if swap else width,
            display_height=width if swap else height,
            has_audio=bool(astreams),
            audio_codec=(astreams[0].codec_context.name if astreams and astreams[0].codec_context else None),
        )
    finally:
        container.close()


def check_image(path: str | Path) -> None:
    """An image a person attached must exist and decode as a picture (PIL's verify); a UserError that names it
    otherwise. Beside :func:`probe`, its counterpart for videos, as media checks live in this package."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"the image {p.name} cannot be found; upload it again.")
    try:
        with Image.open(p) as im:
            im.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        raise UserError(f"the image {p.name} cannot be read as a picture; upload a PNG, JPEG or WebP.") from None


def unreadable_meta(path: str | Path, error: ProbeError) -> VideoMeta:
    """A VideoMeta for a file that failed probing (what `vmeta data stats` lists as unreadable)."""
    meta = VideoMeta(readable=False, error=f"{error.kind}: {error}")
    try:
        st = Path(path).stat()
        meta.size_bytes, meta.mtime = st.st_size, st.st_mtime
    except OSError:
        pass
    return meta


def _content_key(path: Path, st: os.stat_result) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        h.update(fh.read(1 << 16))
        if st.st_size > (1 << 17):
            fh.seek(-(1 << 16), os.SEEK_END)
            h.update(fh.read(1 << 16))
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()}"


class ProbeCache:
    """Probe results remembered on disk (append-only JSONL), so unchanged files are probed once.

    Lookup: first by (st_dev, st_ino, size, mtime_ns) from one stat call — hard links share it; then by
    (size, mtime_ns, hash of head and tail) — unchanged copies share that. Failures are cached too
    (as their ProbeError kind and message); missing files are not.
    """

    VERSION = 1

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self._by_inode: dict[str, dict] = {}
        self._by_content: dict[str, dict] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.exists():
            from vmeta.jsonio import iter_jsonl

            try:
                for entry in iter_jsonl(self.path):
                    if entry.get("v") != self.VERSION:
                        continue
                    self._by_inode[entry["ikey"]] = entry
                    self._by_content[entry["ckey"]] = entry
            except (UserError, KeyError, TypeError):
                # A damaged cache only costs re-probing: start over with what could be read.
                pass

    def __len__(self) -> int:
        return len(self._by_content)

    @staticmethod
    def _inode_key(st: os.stat_result) -> str:
        return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"

    def probe(self, path: str | Path) -> VideoMeta:
        """Like `probe(path)`, answering from the cache when the file is unchanged."""
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            return probe(path)  # raises ProbeError("missing")
        ikey = self._inode_key(st)
        entry = self._by_inode.get(ikey)
        ckey = None
        if entry is None and st.st_size > 0:
            ckey = _content_key(path, st)
            entry = self._by_content.get(ckey)
            if entry is not None:  # a copy: remember its inode too (in memory)
                self._by_inode[ikey] = entry
        if entry is not None:
            self.hits += 1
            return self._answer(path, st, entry)
        self.misses += 1
        try:
            meta = probe(path)
            entry = {"v": self.VERSION, "ikey": ikey, "ckey": ckey or "", "meta": meta.model_dump(mode="json")}
        except ProbeError as exc:
            if exc.kind == "missing":
                raise
            message = str(exc).replace(str(path), _PATH_TOKEN)
            entry = {
                "v": self.VERSION,
                "ikey": ikey,
                "ckey": ckey or "",
                "error": {"kind": exc.kind, "message": message},
            }
        if not entry["ckey"]:
            entry["ckey"] = f"{st.st_size}:{st.st_mtime_ns}:empty" if st.st_size == 0 else _content_key(path, st)
        self._by_inode[ikey] = entry
        self._by_content[entry["ckey"]] = entry
        if self.path is not None:
            from vmeta.jsonio import append_jsonl

            append_jsonl(self.path, entry)
        return self._answer(path, st, entry)

    @staticmethod
    def _answer(path: Path, st: os.stat_result, entry: dict) -> VideoMeta:
        if "error" in entry:
            kind, message = entry["error"]["kind"], entry["error"]["message"]
            raise ProbeError(path, kind, message.replace(_PATH_TOKEN, str(path)))
        meta = VideoMeta.model_validate(entry["meta"])
        meta.size_bytes, meta.mtime = st.st_size, st.st_mtime
        return meta
