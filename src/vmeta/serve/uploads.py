"""Receiving files: streamed multipart parsing with a hard size limit, probing, and storage.

`receive_file` parses the multipart body chunk by chunk as it arrives (python-multipart's push parser) and
writes the file part straight to a hidden `.part-*` file in the destination folder; the moment the count
passes the limit it stops, deletes the partial file and answers 413 — the body is never held in memory and
nothing is left on disk. A declared Content-Length above the limit is refused before reading anything.

Videos are then probed (`vmeta.video.probe`): not a video, audio only, damaged/truncated, empty, too long or
too large a frame each get one clear 4xx sentence (naming the user's file name, never a server path).
Accepted files are renamed to a random name under DATA_DIR/uploads/<user_id>/ — outside the static root, served
only through the owner-checked GET /api/uploads/{id}.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

from vmeta.config import Settings

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers beyond the file itself
VIDEO_EXTENSIONS = {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv", "webm": ".webm", "avi": ".avi", "mpegts": ".ts"}


@dataclass
class Received:
    path: Path
    filename: str
    content_type: str
    size: int


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"


def too_large(what: str, limit: int) -> HTTPException:
    return HTTPException(413, f"the {what} is larger than the limit of {_mib(limit)}; send a shorter or smaller file.")


def safe_filename(name: str) -> str:
    name = Path(name.replace("\\", "/")).name
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()
    return name[:200] or "upload"


async def receive_file(
    request: Request, dest_dir: Path, max_bytes: int, what: str = "video", field: str = "file"
) -> Received:
    """Stream the multipart part `field` into a temp file in `dest_dir`, enforcing `max_bytes` while reading."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(415, f"send the {what} as multipart/form-data with a '{field}' field.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise too_large(what, max_bytes)

    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".part-{secrets.token_hex(8)}"
    state: dict = {
        "headers": {},
        "field": b"",
        "value": b"",
        "in_file": False,
        "done": False,
        "size": 0,
        "over": False,
        "filename": "",
        "ctype": "",
    }
    fh = None

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        nonlocal fh
        _disp, opts = parse_options_header(state["headers"].get("content-disposition", b""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        if name == field and b"filename" in opts and not state["done"]:
            state["in_file"] = True
            state["filename"] = safe_filename(opts[b"filename"].decode("utf-8", "replace"))
            state["ctype"] = state["headers"].get("content-type", b"").decode("latin-1")
            fh = tmp.open("wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not state["in_file"] or state["over"]:
            return
        state["size"] += end - start
        if state["size"] > max_bytes:
            state["over"] = True
            return
        fh.write(data[start:end])

    def on_part_end() -> None:
        if state["in_file"]:
            state["in_file"] = False
            state["done"] = True

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if state["over"]:
                raise too_large(what, max_bytes)
        parser.finalize()
    except HTTPException:
        if fh:
            fh.close()
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # malformed multipart, client went away
        if fh:
            fh.close()
        tmp.unlink(missing_ok=True)
        raise HTTPException(400, f"the upload could not be read ({type(exc).__name__}); try again.") from None
    if fh:
        fh.close()
    if not state["done"]:
        tmp.unlink(missing_ok=True)
        raise HTTPException(400, f"no file found in the '{field}' field of the form; attach the {what} as '{field}'.")
    return Received(path=tmp, filename=state["filename"], content_type=state["ctype"], size=state["size"])


def check_video(path: Path, filename: str | None, settings: Settings):
    """Probe `path`; raise a 4xx HTTPException when it cannot be used. The sentence names `filename` (a file the
    page's user picked) or, when None, says "the video": an API caller prefixes where the part was, and is told
    what to send rather than what to pick in a file dialog."""
    from vmeta.video.probe import ProbeError, probe

    name = f"'{filename}'" if filename is not None else "the video"
    empty_fix = "choose the video file again" if filename is not None else "send the file's contents, not an empty one"
    try:
        meta = probe(path)
    except ProbeError as exc:
        sentence = {
            "zero_byte": (400, f"{name} is empty (0 bytes); {empty_fix}."),
            "not_video": (415, f"{name} is not a video file; upload an MP4, MOV, MKV or WebM video."),
            "audio_only": (415, f"{name} has sound but no picture; upload the video itself."),
            "corrupt": (
                422,
                f"{name} is damaged or truncated and cannot be played; export it again (H.264 MP4) and retry.",
            ),
        }.get(exc.kind, (400, f"{name} cannot be used as a video."))
        raise HTTPException(*sentence) from None
    except Exception:
        raise HTTPException(
            422, f"{name} could not be read as a video; export it again (H.264 MP4) and retry."
        ) from None
    if meta.duration_s is not None and meta.duration_s > settings.upload_max_duration_s:
        raise HTTPException(
            422,
            f"{name} is {meta.duration_s:.0f} s long; the limit is {settings.upload_max_duration_s:.0f} s — trim it and retry.",
        )
    w, h = meta.width or 0, meta.height or 0
    if w * h > settings.upload_max_pixels:
        raise HTTPException(
            422,
            f"{name} is {w}x{h}; the largest frame accepted is {settings.upload_max_pixels:,} pixels — scale it down and retry.",
        )
    return meta


def video_extension(meta, filename: str) -> str:
    names = (meta.container or "").split(",")
    for n in names:
        if n in VIDEO_EXTENSIONS:
            return VIDEO_EXTENSIONS["mp4" if n == "mov" and filename.lower().endswith(".mp4") else n]
    suffix = Path(filename).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


def video_media_type(ext: str) -> str:
    return {
        ".mp4": "video/mp4",
        ".mov": "video/quicktime",
        ".mkv": "video/x-matroska",
        ".webm": "video/webm",
        ".avi": "video/x-msvideo",
        ".ts": "video/mp2t",
    }.get(ext, "application/octet-stream")


def random_name(ext: str) -> str:
    return secrets.token_hex(16) + ext


# ----------------------------------------------------------------------------------------- data: URLs
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


def decode_data_url(url: str, dest_dir: Path, max_bytes: int, what: str) -> tuple[Path, str]:
    """Write a base64 `data:` URL to a temp file in `dest_dir`; returns (path, media type)."""
    m = _DATA_URL.match(url[:512])
    if not m or not m.group("b64"):
        raise HTTPException(400, f"the {what} data: URL must be base64 encoded (data:<type>;base64,<data>).")
    payload = url[m.end() :]
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise too_large(what, max_bytes)
    try:
        raw = base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"the {what} data: URL is not valid base64.") from None
    if len(raw) > max_bytes:
        raise too_large(what, max_bytes)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"data-{secrets.token_hex(8)}"
    path.write_bytes(raw)
    return path, (m.group("type") or "application/octet-stream").lower()


# ------------------------------------------------------------------------------------------- images
def reencode_image(src: Path, dest: Path, max_side: int, what: str = "image") -> None:
    """Open with Pillow (refusing decompression bombs), drop metadata, shrink to `max_side`, save as PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src) as im:
            if im.width * im.height > 40_000_000:
                raise HTTPException(422, f"the {what} is too large in pixels; use a smaller picture.")
            im.load()
            im = im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB")
            im.thumbnail((max_side, max_side))
            dest.parent.mkdir(parents=True, exist_ok=True)
            im.save(dest, format="PNG", optimize=True)
    except HTTPException:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(415, f"the {what} is not a readable picture; use a PNG, JPEG, GIF or WebP image.") from None
