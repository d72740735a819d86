"""Sending a message and streaming its answer: the user message stored, the engine asked, the answer stored.

POST /api/conversations/{id}/messages answers as Server-Sent Events:
  event: start   {conversation_id, user_message_id, model}
  event: queued  {position}                 (the engine is busy; 1 = next; sent again when it changes)
  event: stage   {name, elapsed_ms, ...}    (before the first token: frames, encoding, reading, writing)
  event: token   {text}
  event: done    {message_id, model, base_model, adapter, ttft_ms, total_ms, queue_ms, engine_ttft_ms,
                  engine_total_ms, server_overhead_ms, prompt_tokens, completion_tokens, finish_reason,
                  frames, visual_tokens, cached_tokens, context_text}
  event: error   {detail}
The assistant message is stored when the answer ends; if the client goes away mid-answer, what was generated
is stored with status "interrupted".
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from vmeta.serve import crud, schemas
from vmeta.serve.db import session_scope
from vmeta.serve.deps import DB, CurrentUser, InferenceEngine, ServeState, State
from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Queued, Stage, Token
from vmeta.serve.routes.conversations import owned_conversation
from vmeta.serve.sse import SSEResponse, sse
from vmeta.serve.tables import Message
from vmeta.web.error_text import error_body

router = APIRouter(tags=["conversations"])


def engine_messages(db: Session, state: ServeState, user_id: str, history: list[Message]) -> list[dict[str, Any]]:
    """OpenAI-style messages for the engine: previous turns with their videos as local file paths."""
    ids = {p["upload_id"] for m in history for p in (m.parts or []) if p.get("upload_id")}
    uploads = crud.uploads_by_id(db, user_id, ids)
    out: list[dict[str, Any]] = []
    for m in history:
        if m.role == "assistant" and (m.status == "error" or not m.content):
            continue
        parts: list[dict[str, Any]] = []
        for p in m.parts or []:
            up = uploads.get(p.get("upload_id", ""))
            if p.get("type") == "video" and up is not None:
                parts.append({"type": "video", "video": str(state.uploads_dir / user_id / up.stored_name)})
        if parts:
            parts.append({"type": "text", "text": m.content})
            out.append({"role": m.role, "content": parts})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def model_ids(engine) -> list[str]:
    return [m.id for m in engine.models()]


def pick_model(state: ServeState, requested: str | None) -> str:
    ids = model_ids(state.engine)
    if not ids:
        raise HTTPException(503, "no model is loaded on this server.")
    if requested is None:
        d = state.settings.default_chat_model
        return d if d in ids else ids[0]
    if requested not in ids:
        raise HTTPException(400, f"unknown model '{requested[:200]}'; choose one of: {', '.join(ids)}.")
    return requested


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000, 2)


@router.post(
    "/api/conversations/{conversation_id}/messages",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE: start, queued, token, done, error"}},
)
def post_message(
    conversation_id: str,
    body: schemas.MessageIn,
    db: DB,
    state: State,
    user: CurrentUser,
    engine: InferenceEngine,
    http: Request,
) -> Response:
    """Send a user message (text and/or uploaded videos) and stream the answer as Server-Sent Events."""
    t0 = time.perf_counter()
    settings = state.settings
    conv = owned_conversation(db, user.id, conversation_id)
    text = body.text
    if len(text) > settings.max_message_chars:
        raise HTTPException(
            413, f"the message is {len(text):,} characters; the limit is {settings.max_message_chars:,}."
        )
    if not text.strip() and not body.upload_ids:
        raise HTTPException(400, "the message is empty; type something or attach a video.")
    model = pick_model(state, body.model)
    parts: list[dict[str, Any]] = []
    for uid in dict.fromkeys(body.upload_ids):
        up = crud.owned_upload(db, user.id, uid)
        if up is None:
            raise HTTPException(404, f"no upload '{uid[:40]}'; upload the video again.")
        parts.append({"type": "video", "upload_id": up.id, "filename": up.filename})
    user_msg, history = crud.add_user_message(db, conv, user.id, text, parts, model)
    seq = user_msg.seq
    messages = engine_messages(db, state, user.id, [*history, user_msg])
    db.commit()
    request = ChatRequest(
        model=model,
        messages=messages,
        max_new_tokens=body.max_new_tokens or settings.max_new_tokens,
        temperature=body.temperature,
        request_id=user_msg.id,
        user=user.id,
    )
    user_id, conv_id, user_msg_id = user.id, conv.id, user_msg.id

    async def events():
        pieces: list[str] = []
        done: Done | None = None
        error: str | None = None
        first_at: float | None = None
        stored = False
        try:
            yield sse("start", {"conversation_id": conv_id, "user_message_id": user_msg_id, "model": model})
            try:
                async with contextlib.aclosing(engine.stream(request)) as stream:
                    async for ev in stream:
                        if isinstance(ev, Token):
                            if first_at is None:
                                first_at = time.perf_counter()
                            pieces.append(ev.text)
                            yield sse("token", {"text": ev.text})
                        elif isinstance(ev, Queued):
                            yield sse("queued", {"position": ev.position})
                        elif isinstance(ev, Stage):
                            yield sse("stage", {**ev.facts, "name": ev.name, "elapsed_ms": _ms(ev.elapsed_s)})
                        elif isinstance(ev, Done):
                            done = ev
            except EngineError as exc:
                error = str(exc)
            except Exception as exc:  # an engine bug must not leave the page hanging
                error = f"the model failed to answer ({type(exc).__name__}); try again or pick another model."
            end = time.perf_counter()
            status = "error" if error else "complete"
            msg_id = await run_in_threadpool(
                _store_answer, state, user_id, conv_id, seq + 1, model, pieces, done, error, status, t0, first_at, end
            )
            stored = True
            if error:
                # stored in English (above); sent in the page's language
                yield sse("error", {**error_body(http, error), "message_id": msg_id})
            else:
                yield sse("done", _done_payload(msg_id, model, done, t0, first_at, end))
        finally:
            if not stored:
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(
                        _store_answer,
                        state,
                        user_id,
                        conv_id,
                        seq + 1,
                        model,
                        pieces,
                        done,
                        None,
                        "interrupted",
                        t0,
                        first_at,
                        time.perf_counter(),
                    )

    return SSEResponse(events())


def _done_payload(msg_id: str, model: str, done: Done | None, t0: float, first_at: float | None, end: float) -> dict:
    ttft = (first_at or end) - t0
    engine_before_first = (done.queue_s + done.ttft_s) if done else 0.0
    return {
        "message_id": msg_id,
        "model": model,
        "base_model": done.model if done else None,
        "adapter": done.adapter if done else None,
        "ttft_ms": _ms(ttft),
        "total_ms": _ms(end - t0),
        "queue_ms": _ms(done.queue_s) if done else None,
        "engine_ttft_ms": _ms(done.ttft_s) if done else None,
        "engine_total_ms": _ms(done.total_s) if done else None,
        "server_overhead_ms": _ms(max(0.0, ttft - engine_before_first)) if done else None,
        "prompt_tokens": done.prompt_tokens if done else None,
        "completion_tokens": done.completion_tokens if done else None,
        "finish_reason": done.finish_reason if done else None,
        **_reading_facts(done),
    }


def _reading_facts(done: Done | None) -> dict[str, int | str | None]:
    """How much the model read: frames of the videos, their visual tokens, prompt tokens reused from earlier turns,
    and the video's own words (on-screen text, speech) put before the question, for a variant trained with them."""
    extra = done.extra if done else {}
    frames = extra.get("frames")
    context = extra.get("context")
    return {
        "frames": sum(int(f.get("nframes") or 0) for f in frames) if isinstance(frames, list) else None,
        "visual_tokens": extra.get("visual_tokens"),
        "cached_tokens": extra.get("cached_tokens"),
        "context_text": "\n".join(b for b in context.values() if b) or None if isinstance(context, dict) else None,
    }


def _store_answer(
    state: ServeState,
    user_id: str,
    conv_id: str,
    seq: int,
    model: str,
    pieces: list[str],
    done: Done | None,
    error: str | None,
    status: str,
    t0: float,
    first_at: float | None,
    end: float,
) -> str:
    payload = _done_payload("", model, done, t0, first_at, end)
    timings = {k: payload[k] for k in ("queue_ms", "engine_ttft_ms", "engine_total_ms", "server_overhead_ms")}
    read = ("frames", "visual_tokens", "cached_tokens", "context_text")
    timings.update({k: payload[k] for k in read if payload[k] is not None})
    if error:
        timings["error"] = error
    with session_scope(state.sessions) as db:
        msg = crud.add_answer(
            db,
            conv_id,
            user_id,
            seq,
            content="".join(pieces),
            model=model,
            base_model=done.model if done else None,
            adapter=done.adapter if done else None,
            status=status,
            ttft_ms=payload["ttft_ms"] if first_at else None,
            total_ms=payload["total_ms"],
            prompt_tokens=done.prompt_tokens if done else None,
            completion_tokens=done.completion_tokens if done else len(pieces),
            timings=timings,
        )
        return msg.id if msg is not None else ""  # "": the conversation was deleted meanwhile


__all__ = ["engine_messages", "model_ids", "router"]
