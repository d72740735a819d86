"""The one generation function: chat messages (text, video and image parts, multi-turn) -> a stream of text.

Everything that turns a prompt into model output goes through this module — `vmeta predict`, evaluation, the
web app and the OpenAI-compatible API. Nothing else calls ``model.generate``.

- :func:`generate_stream` yields ``str`` pieces as they are produced, then one :class:`GenerationStats`
  (time to first token, total time, prompt/new tokens, tokens/s, the frames each video contributed).
  Generation runs in a background thread feeding transformers' ``TextIteratorStreamer``; closing the
  iterator early or setting its ``cancel`` event (a client that went away) stops generation within one
  layer, also during the prompt's forward pass (a long video).
- :func:`generate` consumes the stream and returns a :class:`Result`.
- Calls on the same :class:`LoadedModel` are serialised by its ``lock`` (Qwen-VL models keep per-generation
  state such as ``rope_deltas`` on the module, so two concurrent ``generate`` calls would corrupt each other).
- :func:`generate_batch` runs several conversations in one left-padded batch (prediction), videos of
  different lengths included; with ``do_sample=False`` its outputs are those of one-by-one generation.

Messages are OpenAI/Qwen style: ``{"role": "system"|"user"|"assistant", "content": str | [parts]}`` with parts
``{"type": "text", "text": ...}``, ``{"type": "video", "video": path | SampledVideo | uint8 array (T,H,W,C) or
(T,C,H,W)}`` and ``{"type": "image", "image": path | PIL.Image | array}``. Video files are decoded with
:mod:`vmeta.video` using the frame settings given, else the model family's defaults (:func:`frame_settings_for`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from vmeta.errors import UserError
from vmeta.models.load import LoadedModel
from vmeta.models.prompt_cache import PromptCache, media_of, read_prompt
from vmeta.models.registry import ModelSpec
from vmeta.video.sampling import FrameSettings

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "tiny")


# ---------------------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings. Greedy (``do_sample=False``) by default, so predictions are reproducible.

    ``temperature`` / ``top_p`` / ``top_k`` apply only when sampling; ``seed`` seeds torch before sampling.
    """

    max_new_tokens: int = 512
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise UserError(f"generation settings: {name}={getattr(self, name)!r} {why}")

        for name in ("max_new_tokens", "min_new_tokens", "top_k"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                bad(name, "must be a whole number")
        if self.max_new_tokens < 1:
            bad("max_new_tokens", "must be at least 1")
        if self.min_new_tokens < 0 or self.min_new_tokens > self.max_new_tokens:
            bad("min_new_tokens", f"must be between 0 and max_new_tokens={self.max_new_tokens}")
        if not isinstance(self.do_sample, bool):
            bad("do_sample", "must be true or false")
        for name in ("temperature", "top_p", "repetition_penalty"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                bad(name, "must be a number")
        if self.temperature < 0:
            bad("temperature", "must be >= 0")
        if self.do_sample and self.temperature == 0:
            bad("temperature", "is 0 while sampling; use do_sample=False (greedy) for deterministic output")
        if not 0 < self.top_p <= 1:
            bad("top_p", "must be in (0, 1]")
        if self.top_k < 0:
            bad("top_k", "must be >= 0 (0 turns top-k off)")
        if self.repetition_penalty <= 0:
            bad("repetition_penalty", "must be > 0 (1.0 means no penalty)")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            bad("seed", "must be a whole number or unset")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"generation settings: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def frame_settings_for(spec: ModelSpec) -> FrameSettings:
    """The frame settings a model family expects (the registry's quirks) as :class:`FrameSettings`."""
    q = spec.quirks
    if q.fixed_size is not None:
        h, w = q.fixed_size
        return FrameSettings(
            fps=q.fps or 2.0,
            nframes=q.num_frames,
            min_frames=q.min_frames,
            max_frames=q.max_frames,
            resized_height=h,
            resized_width=w,
            frame_factor=q.frame_factor,
            index_rule=q.index_rule,
        )
    return FrameSettings(
        fps=q.fps or 2.0,
        nframes=q.num_frames,
        min_frames=q.min_frames,
        max_frames=q.max_frames,
        min_pixels=q.video_min_pixels,
        max_pixels=q.video_max_pixels,
        total_pixels=q.video_total_pixels,
        image_factor=q.size_factor,
        frame_factor=q.frame_factor,
        index_rule=q.index_rule,
    )


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class GenerationStats:
    """Timing and size facts of one generation (all times in seconds from the call)."""

    ttft_s: float | None  # time to first token (includes video decoding and preprocessing)
    total_s: float  # call to last token
    prep_s: float  # video decoding + chat template + processor
    prompt_tokens: int  # input tokens, visual tokens included
    new_tokens: int  # generated tokens (the end-of-turn token included)
    tokens_per_s: float | None  # new_tokens / seconds from the start of generate (prefill included) to the last token
    finish_reason: str  # "stop" (end-of-turn token) | "length" (max_new_tokens) | "cancelled"
    frames: list[dict[str, Any]] = field(default_factory=list)  # one entry per video, in order
    frame_settings: dict[str, Any] | None = None
    # Token-level clock (text pieces can lag: a token may decode to nothing until the next one completes a character)
    first_token_s: float | None = None  # call to the first generated token
    decode_tokens_per_s: float | None = None  # tokens after the first / seconds after the first
    visual_tokens: int = 0  # of prompt_tokens, those standing for video frames and images
    cached_tokens: int = 0  # of prompt_tokens, those whose model state came from a PromptCache (not read again)
    model: str | None = None
    adapter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Result:
    text: str
    stats: GenerationStats


Piece = str | GenerationStats


# ---------------------------------------------------------------------------------------------------------------
# Message preparation


@dataclass
class _Prepared:
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


def _prepare(loaded: LoadedModel, conversations: Sequence[Sequence[dict[str, Any]]], fs: FrameSettings) -> _Prepared:
    t0 = time.perf_counter()
    processor = loaded.processor
    if loaded.family == "videollama3":
        if len(conversations) != 1:
            raise UserError("VideoLLaMA3 (remote code) generates one conversation at a time; use --batch-size 1.")
        return _prepare_videollama3(loaded, conversations[0], fs, t0)
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
    return _Prepared(inputs=inputs, frames=frames, prep_s=time.perf_counter() - t0)


def _prepare_videollama3(
    loaded: LoadedModel, conv: Sequence[dict[str, Any]], fs: FrameSettings, t0: float
) -> _Prepared:
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
    return _Prepared(inputs=inputs, frames=[infos], prep_s=time.perf_counter() - t0)


def _to_device(loaded: LoadedModel, inputs):  # type: ignore[no-untyped-def]
    import torch

    out = {}
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            v = v.to(loaded.device)
            if v.is_floating_point() and k.startswith("pixel_values"):
                v = v.to(loaded.dtype)  # image/video pixels in the model's dtype; time grids etc. stay float32
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------------------------
# Generation


def _generation_config(loaded: LoadedModel, gen: GenerationSettings):  # type: ignore[no-untyped-def]
    base = getattr(loaded.model, "generation_config", None)
    cfg = copy.deepcopy(base) if base is not None else None
    if cfg is None:
        from transformers import GenerationConfig

        cfg = GenerationConfig()
    cfg.max_new_tokens = gen.max_new_tokens
    cfg.max_length = None
    cfg.min_new_tokens = gen.min_new_tokens or None
    cfg.do_sample = gen.do_sample
    cfg.repetition_penalty = gen.repetition_penalty
    if gen.do_sample:
        cfg.temperature, cfg.top_p, cfg.top_k = gen.temperature, gen.top_p, gen.top_k
    else:  # greedy: sampling knobs off (avoids the checkpoint's sampling defaults leaking in)
        cfg.temperature, cfg.top_p, cfg.top_k = None, None, None
    tok = getattr(loaded.processor, "tokenizer", loaded.processor)
    if cfg.pad_token_id is None:
        cfg.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if cfg.eos_token_id is None:
        cfg.eos_token_id = tok.eos_token_id
    return cfg


def _eos_ids(cfg) -> set[int]:  # type: ignore[no-untyped-def]
    eos = cfg.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, list | tuple) else {int(eos)}


def _seed(gen: GenerationSettings) -> None:
    if gen.seed is None:
        return
    import torch

    torch.manual_seed(gen.seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(gen.seed)


def _decode_rate(times: list[float]) -> float | None:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


@functools.cache
def _timed_streamer_class():  # type: ignore[no-untyped-def]
    """Defined on first use: importing vmeta.models.generate does not import transformers."""
    from transformers import TextIteratorStreamer

    class TimedTextStreamer(TextIteratorStreamer):
        """TextIteratorStreamer that also notes when each generation step produced its token."""

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.times: list[float] = []

        def put(self, value) -> None:  # type: ignore[no-untyped-def]
            if self.next_tokens_are_prompt:  # the prompt, passed once before the first step
                super().put(value)
                return
            self.times.append(time.perf_counter())
            super().put(value)

    return TimedTextStreamer


class _StepClock:
    """A transformers streamer that only notes when each generation step produced its tokens."""

    def __init__(self) -> None:
        self.prompt_seen = False
        self.steps: list[float] = []

    def put(self, value) -> None:  # type: ignore[no-untyped-def]
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.steps.append(time.perf_counter())

    def end(self) -> None:
        pass


def _stop_criteria(stopped: Callable[[], bool]):  # type: ignore[no-untyped-def]
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # type: ignore[no-untyped-def]
            return torch.full((input_ids.shape[0],), stopped(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Cancel()])


class _Cancelled(Exception):
    """Raised inside the model's forward pass once generation is cancelled (see _layer_checks)."""


@contextlib.contextmanager
def _layer_checks(model, stopped: Callable[[], bool]):  # type: ignore[no-untyped-def]
    """Ask `stopped` before every layer (each module held in a ModuleList: decoder layers, vision blocks).

    A stopping criterion is only asked between tokens; the prompt's forward pass — a long video is thousands
    of tokens and seconds of compute — would run to its end first. A pre-hook per layer costs ~1 µs per layer
    call and lets a client that went away stop it within one layer."""
    import torch

    def check(module, args):  # type: ignore[no-untyped-def]
        if stopped():
            raise _Cancelled

    handles = [
        layer.register_forward_pre_hook(check)
        for module in model.modules()
        if isinstance(module, torch.nn.ModuleList)
        for layer in module
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _new_token_count(row, eos: set[int]) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Tokens up to and including the first end token; finish reason."""
    ids = row.tolist()
    for i, t in enumerate(ids):
        if t in eos:
            return i + 1, "stop"
    return len(ids), "length"


def _visual_tokens(loaded: LoadedModel, input_ids: Any) -> int:
    cfg = getattr(loaded.model, "config", None)
    ids = [getattr(cfg, k, None) for k in ("image_token_id", "video_token_id")]
    return int(sum(int((input_ids == i).sum()) for i in ids if isinstance(i, int)))


def generate_stream(
    loaded: LoadedModel,
    messages: Sequence[dict[str, Any]],
    gen: GenerationSettings | None = None,
    frames: FrameSettings | None = None,
    cancel: threading.Event | None = None,
    *,
    store: PromptCache | None = None,
    scope: Hashable = None,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> Iterator[Piece]:
    """Yield the answer as text pieces while it is generated, then one :class:`GenerationStats`.

    `cancel`: set from any thread to stop — within one layer, also while the prompt (video) is being read;
    the stream then ends, without stats if it stopped inside a forward pass, else with stats whose finish
    reason is "cancelled". Closing the stream does the same.

    `store` (Qwen2-VL / Qwen2.5-VL): continue from the model state of the longest prompt prefix already read in
    `scope` (a served variant + person) and keep this prompt's state there afterwards, so a follow-up question
    reads only its new tokens (:mod:`vmeta.models.prompt_cache`). `on_stage(name, facts)` is told what happens
    before the first token: "frames" (decoded), "encoding" (vision tower), "reading" (prompt chunks), "writing"."""
    import torch

    gen = gen or GenerationSettings()
    fs = frames or frame_settings_for(loaded.spec)
    t0 = time.perf_counter()
    prepared = _prepare(loaded, [messages], fs)
    inputs = _to_device(loaded, prepared.inputs)
    prompt_len = int(inputs["input_ids"].shape[1])
    visual = _visual_tokens(loaded, inputs["input_ids"])
    if on_stage is not None and prepared.frames[0]:
        n_frames = sum(int(v.get("nframes") or 0) for v in prepared.frames[0])
        on_stage("frames", {"videos": len(prepared.frames[0]), "frames": n_frames, "visual_tokens": visual})
    stateful = store is not None and loaded.family in QWEN_FAMILIES
    cfg = _generation_config(loaded, gen)
    tok = getattr(loaded.processor, "tokenizer", loaded.processor)
    streamer = _timed_streamer_class()(tok, skip_prompt=True, skip_special_tokens=True)
    closed = threading.Event()  # the consumer stopped reading (the caller's `cancel` is theirs to set)

    def stopped() -> bool:
        return closed.is_set() or (cancel is not None and cancel.is_set())

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with loaded.lock, torch.inference_mode(), _layer_checks(loaded.model, stopped):
                _seed(gen)
                kwargs: dict[str, Any] = inputs
                if stateful:
                    model = _unwrapped(loaded.model)
                    state = read_prompt(model, inputs, prompt_len - 1, store=store, scope=scope, on_stage=on_stage)
                    box["reused"] = state.reused
                    model.model.rope_deltas = state.rope_deltas  # positions of the tokens generate still feeds
                    kwargs = {k: inputs[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids") if k in inputs}
                    kwargs["cache"] = state.cache
                if on_stage is not None:
                    on_stage("writing", {})
                box["out"] = loaded.model.generate(
                    **kwargs, generation_config=cfg, streamer=streamer, stopping_criteria=_stop_criteria(stopped)
                )
                if stateful:
                    seq = box["out"].sequences if hasattr(box["out"], "sequences") else box["out"]
                    key = np.concatenate([state.key, seq[0, prompt_len:].cpu().numpy().astype(np.int64)])
                    store.put(scope, key, state.cache)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
            streamer.end()

    if stopped():  # cancelled while the video was decoded
        return
    t_gen = time.perf_counter()
    thread = threading.Thread(target=run, name="vmeta-generate", daemon=True)
    thread.start()
    ttft: float | None = None
    try:
        for text in streamer:
            if not text:
                continue
            if ttft is None:
                ttft = time.perf_counter() - t0
            yield text
        thread.join()
        if isinstance(box.get("error"), _Cancelled):
            return
        if "error" in box:
            raise box["error"]
        t_end = time.perf_counter()
        out = box["out"]
        seq = out.sequences if hasattr(out, "sequences") else out
        n_new, reason = _new_token_count(seq[0, prompt_len:], _eos_ids(cfg))
        if stopped():
            reason = "cancelled"
        gen_s = t_end - t_gen
        yield GenerationStats(
            ttft_s=ttft,
            total_s=t_end - t0,
            prep_s=prepared.prep_s,
            prompt_tokens=prompt_len,
            new_tokens=n_new,
            tokens_per_s=(n_new / gen_s) if gen_s > 0 else None,
            finish_reason=reason,
            frames=prepared.frames[0],
            frame_settings=fs.to_dict(),
            model=loaded.name,
            adapter=loaded.adapter,
            visual_tokens=visual,
            cached_tokens=int(box.get("reused", 0)),
            first_token_s=(streamer.times[0] - t0) if streamer.times else None,
            decode_tokens_per_s=_decode_rate(streamer.times),
        )
    finally:
        closed.set()  # a consumer that stopped early: end generation at the next layer
        thread.join()


def read_ahead(
    loaded: LoadedModel,
    messages: Sequence[dict[str, Any]],
    frames: FrameSettings | None = None,
    *,
    store: PromptCache,
    scope: Hashable,
    should_pause: Callable[[], bool] | None = None,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> tuple[int, int, list[bytes]]:
    """Read a conversation's prefix — up to the end of its last video or image — into `store` before the question
    comes, so the answer reads only the question. -> (tokens read, tokens to read, digests of its media).
    A read that `should_pause` stops is kept in `store` and continues at the next call (or the question).
    Qwen2-VL / Qwen2.5-VL; other families read nothing ahead."""
    import torch

    if loaded.family not in QWEN_FAMILIES:
        return 0, 0, []
    fs = frames or frame_settings_for(loaded.spec)
    inputs = _to_device(loaded, _prepare(loaded, [messages], fs).inputs)
    model = _unwrapped(loaded.model)
    with loaded.lock, torch.inference_mode():
        media = media_of(model, inputs)
        if not media:
            return 0, 0, []
        end = media[-1].end + 1  # through the <|vision_end|> after it: the question's prompt starts the same
        state = read_prompt(
            model,
            inputs,
            end,
            store=store,
            scope=scope,
            on_stage=on_stage,
            should_pause=should_pause,
            keep=True,
            media=media,
        )
    return state.done, end, [m.digest for m in state.media]


def _unwrapped(model: Any) -> Any:
    """The transformers model under a PeftModel (its LoRA layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def generate(
    loaded: LoadedModel,
    messages: Sequence[dict[str, Any]],
    gen: GenerationSettings | None = None,
    frames: FrameSettings | None = None,
) -> Result:
    """:func:`generate_stream`, collected."""
    pieces: list[str] = []
    stats: GenerationStats | None = None
    for piece in generate_stream(loaded, messages, gen, frames):
        if isinstance(piece, GenerationStats):
            stats = piece
        else:
            pieces.append(piece)
    assert stats is not None
    return Result(text="".join(pieces), stats=stats)


def generate_batch(
    loaded: LoadedModel,
    conversations: Sequence[Sequence[dict[str, Any]]],
    gen: GenerationSettings | None = None,
    frames: FrameSettings | None = None,
) -> list[Result]:
    """Generate for several conversations in one left-padded batch (no streaming); one Result each, in order.

    Per-sample timings: ``ttft_s`` is when the batch produced its first tokens, ``total_s`` when that sample
    produced its end token (or the last step), both from the call.
    """
    import torch

    if not conversations:
        return []
    gen = gen or GenerationSettings()
    fs = frames or frame_settings_for(loaded.spec)
    t0 = time.perf_counter()
    prepared = _prepare(loaded, conversations, fs)
    inputs = _to_device(loaded, prepared.inputs)
    prompt_len = int(inputs["input_ids"].shape[1])
    cfg = _generation_config(loaded, gen)
    eos = _eos_ids(cfg)
    clock = _StepClock()
    with loaded.lock, torch.inference_mode():
        _seed(gen)
        t_gen = time.perf_counter()
        out = loaded.model.generate(**inputs, generation_config=cfg, streamer=clock)
    t_end = time.perf_counter()
    seq = out.sequences if hasattr(out, "sequences") else out
    tok = getattr(loaded.processor, "tokenizer", loaded.processor)
    mask = inputs.get("attention_mask")
    results = []
    for i in range(seq.shape[0]):
        n_new, reason = _new_token_count(seq[i, prompt_len:], eos)
        text = tok.decode(seq[i, prompt_len : prompt_len + n_new], skip_special_tokens=True)
        done = clock.steps[n_new - 1] if 0 < n_new <= len(clock.steps) else t_end
        gen_s = done - t_gen
        results.append(
            Result(
                text=text,
                stats=GenerationStats(
                    ttft_s=(clock.steps[0] - t0) if clock.steps else None,
                    total_s=done - t0,
                    prep_s=prepared.prep_s,
                    prompt_tokens=int(mask[i].sum()) if mask is not None else prompt_len,
                    new_tokens=n_new,
                    tokens_per_s=(n_new / gen_s) if gen_s > 0 else None,
                    finish_reason=reason,
                    frames=prepared.frames[i],
                    frame_settings=fs.to_dict(),
                    visual_tokens=_visual_tokens(loaded, seq[i, :prompt_len]),
                    model=loaded.name,
                    adapter=loaded.adapter,
                ),
            )
        )
    return results


__all__ = [
    "GenerationSettings",
    "GenerationStats",
    "Piece",
    "Result",
    "frame_settings_for",
    "generate",
    "generate_batch",
    "generate_stream",
    "read_ahead",
]
