"""Conversations and messages: list (paginated, searchable), create, read, rename, delete, export, and the
streamed answer.

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
import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from vmeta.serve import crud, schemas
from vmeta.serve.db import session_scope
from vmeta.serve.deps import DB, Caller, CurrentUser, InferenceEngine, ServeState, State, in_db
from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Queued, Stage, Token
from vmeta.serve.tables import Conversation, Message, utcnow
from vmeta.web.error_text import LANG_HEADER, error_body, localize_for, translations

router = APIRouter(tags=["conversations"])


class SSEResponse(StreamingResponse):
    """A StreamingResponse that always closes its generator, so a client leaving mid-answer runs the
    generator's cleanup (store the partial answer, free the engine slot) at once rather than at GC time."""

    def __init__(self, content: Any, **kw: Any):
        super().__init__(content, media_type="text/event-stream", **kw)
        self.headers["Cache-Control"] = "no-cache"
        self.headers["X-Accel-Buffering"] = "no"

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[union-attr]


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def owned_conversation(db: Session, user_id: str, conversation_id: str) -> Conversation:
    """The caller's conversation, else 404."""
    conv = crud.owned_conversation(db, user_id, conversation_id)
    if conv is None:
        raise HTTPException(404, "no such conversation.")
    return conv


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@router.get("/api/conversations", response_model=schemas.ConversationPage)
async def list_conversations(
    request: Request,
    q: str | None = Query(None, max_length=200, description="Search titles and message text (case-insensitive)."),
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=schemas.MAX_OFFSET),
) -> Response:
    """The caller's conversations, most recently active first."""
    return _json(await in_db(request, conversation_page, q, limit, offset))


def _json(data: Any) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, separators=(",", ":")), media_type="application/json")


def _utc_text(dt: datetime) -> str:
    """A datetime as the response models write it (schemas.UTCDateTime: UTC, ISO 8601, "Z")."""
    if dt.tzinfo is not None:  # PostgreSQL; SQLite gives naive UTC (40 of these per history page: kept lean)
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.isoformat() + "Z"


# The hot read endpoints (list, search, get) select plain columns and build the JSON of their response models
# (schemas.ConversationPage / ConversationDetail) directly: ORM objects and per-row pydantic validation were
# most of their cost. tests/serve/test_history_fast.py checks that the output equals the models' own.
_CONV_COLS = (Conversation.id, Conversation.title, Conversation.created_at, Conversation.updated_at)
_MSG_COLS = (
    Message.id,
    Message.role,
    Message.content,
    Message.parts,
    Message.model,
    Message.base_model,
    Message.adapter,
    Message.status,
    Message.ttft_ms,
    Message.total_ms,
    Message.prompt_tokens,
    Message.completion_tokens,
    Message.timings,
    Message.created_at,
)
_MSG_KEYS = tuple(c.key for c in _MSG_COLS)


def _conv_out(row: Any) -> dict[str, Any]:
    return {"id": row[0], "title": row[1], "created_at": _utc_text(row[2]), "updated_at": _utc_text(row[3])}


def _page_query(search: bool) -> tuple[Any, Any]:
    """(page, count) statements of the caller's conversations; with `search`, those whose title or a message
    matches the LIKE pattern :pattern. Built once, run with bound parameters (see deps._TOKEN_CALLER)."""
    where = [Conversation.user_id == bindparam("user_id")]
    if search:
        pattern = bindparam("pattern")
        in_messages = select(Message.conversation_id).where(
            Message.user_id == bindparam("user_id"), Message.content.ilike(pattern, escape="\\")
        )
        where.append(or_(Conversation.title.ilike(pattern, escape="\\"), Conversation.id.in_(in_messages)))
    # The page and, beside each row, the total (a window count over all matches): one query.
    page = (
        select(*_CONV_COLS, func.count().over())
        .where(*where)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return page, select(func.count()).select_from(Conversation).where(*where)


_PAGE = {search: _page_query(search) for search in (False, True)}
_CONV_OWNED = select(*_CONV_COLS).where(
    Conversation.id == bindparam("conversation_id"), Conversation.user_id == bindparam("user_id")
)
_CONV_MESSAGES = select(*_MSG_COLS).where(Message.conversation_id == bindparam("conversation_id")).order_by(Message.seq)


def conversation_page(db: Session, user: Caller, q: str | None, limit: int, offset: int) -> dict[str, Any]:
    """schemas.ConversationPage of the caller's conversations (search: title or message text) as JSON data."""
    search = bool(q and q.strip())
    params: dict[str, Any] = {"user_id": user.id, "limit": limit, "offset": offset}
    if search:
        params["pattern"] = _like(q.strip())  # type: ignore[union-attr]
    page, count = _PAGE[search]
    conn = db.connection()
    rows = conn.execute(page, params).all()
    if rows:
        total = rows[0][4]
    elif offset:  # past the end: the window saw no row, count separately
        total = conn.execute(count, params).scalar() or 0
    else:
        total = 0
    nxt = offset + len(rows) if offset + len(rows) < total else None
    return {
        "items": [_conv_out(r) for r in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": nxt,
    }


def conversation_detail(db: Session, user: Caller, conversation_id: str) -> dict[str, Any]:
    """schemas.ConversationDetail of the caller's conversation as JSON data (404 when it is not theirs)."""
    conn = db.connection()
    conv = conn.execute(_CONV_OWNED, {"conversation_id": conversation_id, "user_id": user.id}).first()
    if conv is None:
        raise HTTPException(404, "no such conversation.")
    out = _conv_out(conv)
    messages = []
    for row in conn.execute(_CONV_MESSAGES, {"conversation_id": conversation_id}):
        m = dict(zip(_MSG_KEYS, row, strict=True))
        m["created_at"] = _utc_text(m["created_at"])
        if m["timings"] is None:
            m["timings"] = {}
        messages.append(m)
    out["messages"] = messages
    return out


@router.post("/api/conversations", response_model=schemas.ConversationOut, status_code=201)
def create_conversation(body: schemas.ConversationIn, db: DB, user: CurrentUser) -> Conversation:
    return crud.create_conversation(db, user.id, body.title)


@router.get("/api/conversations/{conversation_id}", response_model=schemas.ConversationDetail)
async def get_conversation(conversation_id: str, request: Request) -> Response:
    """The conversation with all its messages (assistant messages carry model, adapter and timings)."""
    out = await in_db(request, conversation_detail, conversation_id)
    for m in out["messages"]:  # a failed answer's stored (English) error, in the page's language
        if m["timings"].get("error"):
            english = m["timings"]["error"]
            m["timings"]["error"] = localize_for(request, english)
            if request.headers.get(LANG_HEADER):  # the page: every language, to follow a later switch
                m["timings"]["error_i18n"] = translations(english)
    return _json(out)


@router.patch("/api/conversations/{conversation_id}", response_model=schemas.ConversationOut)
def rename_conversation(
    conversation_id: str, body: schemas.ConversationPatch, db: DB, user: CurrentUser
) -> Conversation:
    conv = owned_conversation(db, user.id, conversation_id)
    conv.title = body.title.strip()
    return conv


@router.delete("/api/conversations/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, db: DB, state: State, user: CurrentUser) -> Response:
    db.delete(owned_conversation(db, user.id, conversation_id))
    forget_read_ahead(state, conversation_id)
    return Response(status_code=204)


def forget_read_ahead(state: ServeState, tag: str) -> None:
    """Drop the model state read ahead for a deleted upload or conversation (engines that read ahead)."""
    forget = getattr(state.engine, "forget", None)
    if forget is not None:
        forget(tag)


@router.get("/api/messages/{message_id}", response_model=schemas.MessageOut)
def get_message(message_id: str, db: DB, user: CurrentUser) -> Message:
    msg = crud.owned_message(db, user.id, message_id)
    if msg is None:
        raise HTTPException(404, "no such message.")
    return msg


# -------------------------------------------------------------------------------------------- export
def _md_escape_title(s: str) -> str:
    return s.replace("\n", " ").strip() or "(untitled)"


def conversation_markdown(conv: Conversation) -> str:
    lines = [f"# {_md_escape_title(conv.title)}", "", f"_exported {utcnow():%Y-%m-%d %H:%M} UTC_", ""]
    for m in conv.messages:
        if m.role == "user":
            lines.append(f"## User · {m.created_at:%Y-%m-%d %H:%M}")
            for p in m.parts or []:
                if p.get("type") == "video":
                    lines.append(f"[video: {p.get('filename') or p.get('upload_id')}]")
        else:
            bits = [m.model or "?"]
            if m.adapter:
                bits.append(f"adapter {m.adapter}")
            if m.ttft_ms is not None:
                bits.append(f"first token {m.ttft_ms:.0f} ms")
            if m.total_ms is not None:
                bits.append(f"total {m.total_ms / 1000:.2f} s")
            if m.status != "complete":
                bits.append(m.status)
            lines.append(f"## Assistant · {' · '.join(bits)}")
        lines += ["", m.content, ""]
    return "\n".join(lines)


@router.get("/api/conversations/{conversation_id}/export")
def export_conversation(
    conversation_id: str, db: DB, user: CurrentUser, format: Literal["json", "md"] = Query("json")
) -> Response:
    """Download the conversation as JSON (`format=json`) or Markdown (`format=md`)."""
    conv = owned_conversation(db, user.id, conversation_id)
    stem = "conversation-" + conv.id[:8]
    if format == "md":
        body = conversation_markdown(conv)
        return Response(
            body,
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{stem}.md"'},
        )
    data = schemas.ConversationDetail.model_validate(conv).model_dump(mode="json")
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{stem}.json"'},
    )


# ------------------------------------------------------------------------------------------- answer
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


__all__ = ["SSEResponse", "model_ids", "router", "sse"]
