"""One answer on the engine's worker thread: the variant selected (its adapter switched on, or its merged model),
its context added, tokens streamed to the waiting client, and the facts of the answer (timings, what was read)."""

from __future__ import annotations

import logging
import time
from typing import Any

from vmeta.errors import UserError
from vmeta.models.prompt_cache import PromptCache
from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Stage, Token
from vmeta.serve.model_slots import ModelSlots, error_text
from vmeta.serve.variants import Variants

log = logging.getLogger("vmeta.serve.engine")


def answer(
    job: Any, variants: Variants, slots: ModelSlots, prompt_cache: PromptCache, recent: Any
) -> Done | EngineError | None:
    """Run one job, streaming its tokens; returns the final event (Done or an error) to send."""
    if job.cancel.is_set():
        record(recent, job, None, "cancelled", 0.0, 0)
        return None
    from vmeta.models.generate import GenerationStats, generate_stream

    req = job.request
    started = time.perf_counter()
    queue_s = started - job.queued_at
    try:
        gen = _generation_settings(req)
        loaded, ctx, facts = slots.select(job.entry)
        fs, fs_source = variants.frames_for(job.entry, loaded.spec) or (None, "model defaults")
    except EngineError as exc:
        return exc
    except UserError as exc:
        return EngineError(str(exc))

    def stage(name: str, facts: dict[str, Any]) -> None:
        job.post(Stage(name, facts, time.perf_counter() - started))

    messages, context_facts = variants.with_context(job.entry, req.messages, stage)
    first: float | None = None
    pieces = 0
    stats: GenerationStats | None = None
    cancelled = False
    try:
        with ctx:
            called = time.perf_counter()
            it = generate_stream(
                loaded,
                messages,
                gen,
                frames=fs,
                cancel=job.cancel,
                store=prompt_cache,
                scope=(job.entry.id, req.user or ""),
                on_stage=stage,
            )
            try:
                for piece in it:
                    if isinstance(piece, GenerationStats):
                        stats = piece
                        continue
                    if job.cancel.is_set():
                        cancelled = True
                        break
                    if first is None:
                        first = time.perf_counter()
                    pieces += 1
                    if not job.post(Token(text=piece)):
                        cancelled = True
                        break
            finally:
                it.close()  # stops the generation thread before the adapter context ends
    except UserError as exc:
        record(recent, job, None, "error", queue_s, 0)
        return EngineError(str(exc))
    except Exception as exc:
        log.exception("engine: generation failed for %s", job.entry.id)
        record(recent, job, None, "error", queue_s, 0)
        return EngineError(f"the model failed on this request ({error_text(exc)}).")
    end = time.perf_counter()
    if cancelled or job.cancel.is_set():
        record(recent, job, stats, "cancelled", queue_s, pieces, total_s=end - started)
        return None
    info = job.entry.info
    extra: dict[str, Any] = {"model_id": info.id, "kind": info.kind, **facts, **context_facts}
    if stats is not None:
        extra.update(
            prep_s=stats.prep_s,
            tokens_per_s=stats.tokens_per_s,
            frames=stats.frames,
            frame_settings_source=fs_source,
            visual_tokens=stats.visual_tokens,
            cached_tokens=stats.cached_tokens,
            generate_ttft_s=stats.ttft_s,
            # token-level clock from the job's start (text can lag a token behind)
            first_token_s=None if stats.first_token_s is None else called - started + stats.first_token_s,
            decode_tokens_per_s=stats.decode_tokens_per_s,
        )
    done = Done(
        model=info.base if info.kind in ("base", "adapter") else info.id,
        adapter=info.adapter,
        ttft_s=(first or end) - started,
        total_s=end - started,
        queue_s=queue_s,
        prompt_tokens=stats.prompt_tokens if stats else 0,
        completion_tokens=stats.new_tokens if stats else pieces,
        finish_reason=stats.finish_reason if stats else "stop",
        extra=extra,
    )
    record(recent, job, stats, done.finish_reason, queue_s, pieces, total_s=done.total_s)
    return done


def record(recent: Any, job: Any, stats: Any, reason: str, queue_s: float, pieces: int, total_s: float = 0.0) -> None:
    """What the engine keeps of a finished (or cancelled) job, for /api/stats and tests."""
    recent.append(
        {
            "request_id": job.request.request_id,
            "model": job.entry.id,
            "finish_reason": reason,
            "pieces": pieces,
            "new_tokens": getattr(stats, "new_tokens", None),
            "queue_s": queue_s,
            "total_s": total_s,
        }
    )


def _generation_settings(req: ChatRequest):  # type: ignore[no-untyped-def]
    from vmeta.models.generate import GenerationSettings

    temperature = float(req.temperature or 0.0)
    sample = temperature > 0
    return GenerationSettings(
        max_new_tokens=int(req.max_new_tokens),
        do_sample=sample,
        temperature=temperature if sample else GenerationSettings.temperature,
        top_p=float(req.top_p) if req.top_p else 1.0,
        seed=req.seed,
    )


__all__ = ["answer", "record"]
