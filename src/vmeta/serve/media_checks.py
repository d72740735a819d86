"""Checks of a request's videos and images before it waits in the engine's queue: an unreadable file is a
sentence for the person (an EngineError) now, not a failure minutes later when its turn comes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.serve.engine_api import EngineError


async def check_media(messages: list[dict[str, Any]], *, probe_videos: bool = True) -> None:
    """Unreadable videos/images fail here, before the request waits in the queue."""
    for n, msg in enumerate(messages or []):
        if not isinstance(msg, dict):
            raise EngineError(f"message {n + 1} is not an object with 'role' and 'content'.")
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("video", "video_url"):
                value = part.get("video") if kind == "video" else (part.get("video_url") or {}).get("url")
                path = _local_path(value)
                if path is None:
                    continue  # arrays / decoded frames: nothing to check
                if probe_videos:
                    await asyncio.to_thread(_probe_video, path)
                elif not Path(path).is_file():
                    raise EngineError(f"the video {Path(path).name} cannot be found; upload it again.")
            elif kind in ("image", "image_url"):
                value = part.get("image") if kind == "image" else (part.get("image_url") or {}).get("url")
                path = _local_path(value)
                if path is not None:
                    await asyncio.to_thread(_check_image, path)


def _local_path(value: Any) -> str | None:
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        return None
    if value.startswith("file://"):
        return value[len("file://") :]
    if value.startswith(("data:", "http://", "https://")):
        raise EngineError(
            "the engine takes videos and images as uploaded files; data: and http(s) URLs must be resolved by the "
            "server first."
        )
    return value


def _probe_video(path: str) -> None:
    from vmeta.video.probe import probe

    _as_engine_error(probe, path, f"the video {Path(path).name} cannot be read")


def _check_image(path: str) -> None:
    from vmeta.video.probe import check_image

    _as_engine_error(check_image, path, f"the image {Path(path).name} cannot be read")


def _as_engine_error(check: Any, path: str, unreadable: str) -> None:
    """A media check's UserError as the EngineError the client sees; anything else (PyAV/PIL oddities) still a
    sentence."""
    try:
        check(path)
    except UserError as exc:
        raise EngineError(str(exc)) from None
    except Exception as exc:
        raise EngineError(f"{unreadable} ({type(exc).__name__}).") from None


__all__ = ["check_media"]
