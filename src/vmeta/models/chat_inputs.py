"""Chat messages -> the processor's tensors on the model's device, for every family the registry knows.

Messages are OpenAI/Qwen style: ``{"role": "system"|"user"|"assistant", "content": str | [parts]}`` with parts
``{"type": "text", "text": ...}``, ``{"type": "video", "video": path | SampledVideo | uint8 array (T,H,W,C) or
(T,C,H,W)}`` and ``{"type": "image", "image": path | PIL.Image | array}``. Video files are decoded with
:mod:`vmeta.video` using the frame settings given, so the frames are the ones the model saw in training; a
malformed message is a :class:`UserError` naming the turn. Kept apart from generation so tests and benchmarks can
build the exact inputs a generation reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.models.load import LoadedModel
from vmeta.models.registry import QWEN_FAMILIES
from vmeta.video.sampling import FrameSettings


@dataclass
class Prepared:
    inputs: Any  # BatchFeature
    frames: list[list[dict[str, Any]]]  # per conversation: per video info
    prep_s: float


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _strip_file_url(x: Any) -> Any:
    if isinstance(x, str) and x.startswith("file://"):
        return x[len("file://") :]
    return x


def _load_image(value: Any):  # type: ignore[no-untyped-def]
    value = _strip_file_url(value)
    if isinstance(value, str | Path):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(value) as im:
                return im.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"{value}: cannot be read as an image ({exc}).") from None
    return value


def _video_entry(value: Any, fs: FrameSettings) -> tuple[Any, dict[str, Any], dict[str, Any], bool]:
    """-> (frames for the processor, metadata for the processor, info for stats, decoded-by-us)."""
    from vmeta.video.decode import SampledVideo, load_video

    value = _strip_file_url(value)
    if isinstance(value, str | Path):
        value = load_video(value, fs)
    if isinstance(value, SampledVideo):
        info = {
            "indices": list(value.indices),
            "nframes": len(value.indices),
            "height": value.size[0],
            "width": value.size[1],
            "sample_fps": value.sample_fps,
            "video_fps": value.video_fps,
            "total_frames": value.total_frames,
            "rotation": value.rotation,
        }
        meta = {
            "total_num_frames": value.total_frames,
            "fps": value.video_fps,
            "frames_indices": list(value.indices),
            "height": value.size[0],
            "width": value.size[1],
        }
        return value.frames, meta, info, True
    if _is_array(value):
        shape = tuple(value.shape)
        if len(shape) != 4:
            raise UserError(f"a video array must have 4 dimensions (T,H,W,C) or (T,C,H,W); got shape {shape}.")
        t = shape[0]
        info = {"indices": list(range(t)), "nframes": t, "shape": list(shape), "sample_fps": fs.fps, "source": "array"}
        meta = {"total_num_frames": t, "fps": fs.fps, "frames_indices": list(range(t))}
        return value, meta, info, False
    if isinstance(value, list | tuple) and value:  # a list of frames (PIL images or arrays)
        t = len(value)
        info = {"indices": list(range(t)), "nframes": t, "sample_fps": fs.fps, "source": "frames"}
        meta = {"total_num_frames": t, "fps": fs.fps, "frames_indices": list(range(t))}
        return list(value), meta, info, False
    raise UserError(f"a video part must hold a file path, decoded frames or an array, not {type(value).__name__}.")


def _normalise(messages: Sequence[dict[str, Any]], fs: FrameSettings):  # type: ignore[no-untyped-def]
    """-> (template messages, videos, video metadata, video infos, images, all videos decoded by us)."""
    if not isinstance(messages, list | tuple) or not messages:
        raise UserError("messages must be a non-empty list of {'role': ..., 'content': ...} turns.")
    out: list[dict[str, Any]] = []
    videos: list[Any] = []
    metas: list[dict[str, Any]] = []
    infos: list[dict[str, Any]] = []
    images: list[Any] = []
    ours = True
    for n, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg:
            raise UserError(f"message {n}: must be a dict with 'role' and 'content'.")
        role = msg["role"]
        if role not in ("system", "user", "assistant"):
            raise UserError(f"message {n}: role {role!r} is not one of system, user, assistant.")
        content = msg.get("content")
        if content is None:
            content = ""
        if isinstance(content, str):
            out.append({"role": role, "content": [{"type": "text", "text": content}]})
            continue
        if not isinstance(content, list | tuple):
            raise UserError(f"message {n}: content must be a string or a list of parts.")
        parts: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
                continue
            if not isinstance(part, dict):
                raise UserError(f"message {n}: a content part must be a dict, not {type(part).__name__}.")
            kind = part.get("type") or next((k for k in ("text", "video", "image") if k in part), None)
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind in ("video", "video_url"):
                value = part.get("video")
                if value is None and isinstance(part.get("video_url"), dict):
                    value = part["video_url"].get("url")
                frames, meta, info, decoded = _video_entry(value, fs)
                if isinstance(value, str | Path):
                    info["source"] = str(value)
                videos.append(frames)
                metas.append(meta)
                infos.append(info)
                ours = ours and decoded
                parts.append({"type": "video"})
            elif kind in ("image", "image_url"):
                value = part.get("image")
                if value is None and isinstance(part.get("image_url"), dict):
                    value = part["image_url"].get("url")
                images.append(_load_image(value))
                parts.append({"type": "image"})
            else:
                raise UserError(f"message {n}: unknown content part type {kind!r} (use text, video or image).")
        out.append({"role": role, "content": parts})
    if out[-1]["role"] == "assistant":
        raise UserError("the last message is the assistant's; end with a user message so the model can answer.")
    return out, videos, metas, infos, images, ours


def prepare_inputs(
    loaded: LoadedModel, conversations: Sequence[Sequence[dict[str, Any]]], fs: FrameSettings
) -> Prepared:
    t0 = time.perf_counter()
    processor = loaded.processor
    if loaded.family == "videollama3":
        if len(conversations) != 1:
            raise UserError("VideoLLaMA3 (remote code) generates one conversation at a time; use --batch-size 1.")
        return prepare_videollama3(loaded, conversations[0], fs, t0)
    texts: list[str] = []
    all_videos: list[Any] = []
    all_metas: list[dict[str, Any]] = []
    all_images: list[Any] = []
    frames: list[list[dict[str, Any]]] = []
    ours = True
    for conv in conversations:
        msgs, videos, metas, infos, images, decoded = _normalise(conv, fs)
        texts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        all_videos += videos
        all_metas += metas
        all_images += images
        frames.append(infos)
        ours = ours and decoded
    kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
    if len(texts) > 1:
        kwargs["padding_side"] = "left"  # decoder-only batching: pad before the prompt
    if all_videos:
        kwargs["videos"] = all_videos
        kwargs["video_metadata"] = all_metas
        if loaded.family in QWEN_FAMILIES and ours:
            # vmeta.video already sized every frame (multiples of 28 within the pixel budget): keep it exact.
            kwargs["videos_kwargs"] = {"do_resize": False}
    if all_images:
        kwargs["images"] = all_images
    try:
        inputs = processor(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"the processor of {loaded.name} rejected the input: {exc}") from None
    return Prepared(inputs=inputs, frames=frames, prep_s=time.perf_counter() - t0)


def prepare_videollama3(loaded: LoadedModel, conv: Sequence[dict[str, Any]], fs: FrameSettings, t0: float) -> Prepared:
    """VideoLLaMA3's remote-code processor takes the conversation itself and reads videos by path."""
    conversation = []
    infos: list[dict[str, Any]] = []
    for msg in conv:
        content = msg.get("content")
        if isinstance(content, str):
            conversation.append({"role": msg["role"], "content": content})
            continue
        parts = []
        for part in content or []:
            kind = part.get("type") if isinstance(part, dict) else "text"
            if kind == "video":
                path = _strip_file_url(part.get("video"))
                if not isinstance(path, str | Path):
                    raise UserError("VideoLLaMA3 takes videos as file paths only.")
                parts.append(
                    {"type": "video", "video": {"video_path": str(path), "fps": fs.fps, "max_frames": fs.max_frames}}
                )
                infos.append({"source": str(path), "sample_fps": fs.fps, "max_frames": fs.max_frames})
            elif kind == "image":
                parts.append({"type": "image", "image": {"image_path": str(_strip_file_url(part.get("image")))}})
            else:
                parts.append({"type": "text", "text": part.get("text", "") if isinstance(part, dict) else str(part)})
        conversation.append({"role": msg["role"], "content": parts})
    inputs = loaded.processor(
        conversation=conversation, add_system_prompt=True, add_generation_prompt=True, return_tensors="pt"
    )
    return Prepared(inputs=inputs, frames=[infos], prep_s=time.perf_counter() - t0)


def to_device(loaded: LoadedModel, inputs):  # type: ignore[no-untyped-def]
    import torch

    out = {}
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            v = v.to(loaded.device)
            if v.is_floating_point() and k.startswith("pixel_values"):
                v = v.to(loaded.dtype)  # image/video pixels in the model's dtype; time grids etc. stay float32
        out[k] = v
    return out


__all__ = ["Prepared", "prepare_inputs", "to_device"]
