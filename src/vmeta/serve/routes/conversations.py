"""Conversations and messages: list (paginated, searchable), create, read, rename, delete, export. Sending a
message and streaming its answer is routes/answer_stream.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session

from vmeta.serve import crud, schemas
from vmeta.serve.deps import DB, Caller, CurrentUser, ServeState, State, in_db
from vmeta.serve.tables import Conversation, Message, utcnow
from vmeta.web.error_text import LANG_HEADER, localize_for, translations

router = APIRouter(tags=["conversations"])


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


__all__ = ["forget_read_ahead", "owned_conversation", "router"]
