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

Messages are OpenAI/Qwen style (text, video and image parts; see :mod:`vmeta.models.chat_inputs`, which turns
them into the processor's tensors). Video files are decoded with :mod:`vmeta.video` using the frame settings
given, else the model family's defaults (:func:`frame_settings_for`). What transformers' ``generate`` is handed
(config, timing streamers, cancellation hooks) is in :mod:`vmeta.models.generate_hooks`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from vmeta.errors import UserError
from vmeta.models.chat_inputs import prepare_inputs, to_device
from vmeta.models.generate_hooks import (
    Cancelled,
    StepClock,
    decode_rate,
    eos_ids,
    generation_config,
    layer_checks,
    new_token_count,
    seed_torch,
    sequences_of,
    stop_criteria,
    timed_streamer_class,
    tokenizer_of,
)
from vmeta.models.load import LoadedModel
from vmeta.models.prompt_cache import PromptCache, media_of, read_prompt
from vmeta.models.registry import QWEN_FAMILIES, ModelSpec
from vmeta.video.sampling import FrameSettings

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
# Generation


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
    prepared = prepare_inputs(loaded, [messages], fs)
    inputs = to_device(loaded, prepared.inputs)
    prompt_len = int(inputs["input_ids"].shape[1])
    visual = _visual_tokens(loaded, inputs["input_ids"])
    if on_stage is not None and prepared.frames[0]:
        n_frames = sum(int(v.get("nframes") or 0) for v in prepared.frames[0])
        on_stage("frames", {"videos": len(prepared.frames[0]), "frames": n_frames, "visual_tokens": visual})
    stateful = store is not None and loaded.family in QWEN_FAMILIES
    cfg = generation_config(loaded, gen)
    tok = tokenizer_of(loaded.processor)
    streamer = timed_streamer_class()(tok, skip_prompt=True, skip_special_tokens=True)
    closed = threading.Event()  # the consumer stopped reading (the caller's `cancel` is theirs to set)

    def stopped() -> bool:
        return closed.is_set() or (cancel is not None and cancel.is_set())

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with loaded.lock, torch.inference_mode(), layer_checks(loaded.model, stopped):
                seed_torch(gen)
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
                    **kwargs, generation_config=cfg, streamer=streamer, stopping_criteria=stop_criteria(stopped)
                )
                if stateful:
                    seq = sequences_of(box["out"])
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
        if isinstance(box.get("error"), Cancelled):
            return
        if "error" in box:
            raise box["error"]
        t_end = time.perf_counter()
        out = box["out"]
        seq = sequences_of(out)
        n_new, reason = new_token_count(seq[0, prompt_len:], eos_ids(cfg))
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
            decode_tokens_per_s=decode_rate(streamer.times),
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
    inputs = to_device(loaded, prepare_inputs(loaded, [messages], fs).inputs)
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
    prepared = prepare_inputs(loaded, conversations, fs)
    inputs = to_device(loaded, prepared.inputs)
    prompt_len = int(inputs["input_ids"].shape[1])
    cfg = generation_config(loaded, gen)
    eos = eos_ids(cfg)
    clock = StepClock()
    with loaded.lock, torch.inference_mode():
        seed_torch(gen)
        t_gen = time.perf_counter()
        out = loaded.model.generate(**inputs, generation_config=cfg, streamer=clock)
    t_end = time.perf_counter()
    seq = sequences_of(out)
    tok = tokenizer_of(loaded.processor)
    mask = inputs.get("attention_mask")
    results = []
    for i in range(seq.shape[0]):
        n_new, reason = new_token_count(seq[i, prompt_len:], eos)
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
