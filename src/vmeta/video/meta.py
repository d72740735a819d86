"""`VideoMeta`: what probing a video file found (readable or why not, container, codec, size, fps, rotation,
audio). `vmeta.video.probe` fills it; a dataset record stores it as `video_meta`."""

from __future__ import annotations

from pydantic import BaseModel


class VideoMeta(BaseModel):
    readable: bool = False
    error: str | None = None
    size_bytes: int | None = None
    mtime: float | None = None
    container: str | None = None
    codec: str | None = None
    duration_s: float | None = None
    fps: float | None = None
    frames: int | None = None
    width: int | None = None  # as stored
    height: int | None = None
    rotation: int = 0  # degrees clockwise a player applies
    display_width: int | None = None  # after rotation: what a viewer sees
    display_height: int | None = None
    has_audio: bool = False
    audio_codec: str | None = None
