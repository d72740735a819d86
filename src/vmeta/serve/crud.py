"""The serve database's rows as the routes and the CLI use them: users, browser sessions, API tokens,
conversations, messages, uploads and usage — created, looked up and changed here only.

Functions take an open session and plain values, and know nothing of HTTP: a lookup returns None when the row
is missing or belongs to someone else (every user-owned lookup filters by `user_id`), and the route chooses the
status and sentence. Transactions stay with the caller (`db.session_scope`, or the request's `DB`); functions
flush where the caller needs a new row's id or a unique-constraint error at once.

Not here: the authentication lookups of every request (`deps.resolve_principal` / `resolve_caller`) and the
history's hot reads (`routes/conversations.conversation_page` / `conversation_detail`): both run as prebuilt
Core statements on plain columns for speed (bench/serve_load.py) and are measured there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from vmeta.serve.security import API_TOKEN_PREFIX, hash_token, new_token
from vmeta.serve.tables import ApiToken, AuthSession, Conversation, Message, Upload, Usage, User, utcnow

# ------------------------------------------------------------------------------------------------ users


def get_user(db: Session, user_id: str) -> User | None:
    return db.get(User, user_id)


def user_by_email(db: Session, email: str, *, registered: bool = False) -> User | None:
    """The account with this login name; `registered`: never a guest (guests have no e-mail anyway)."""
    q = select(User).where(User.email == email)
    if registered:
        q = q.where(User.is_guest.is_(False))
    return db.scalar(q)


def email_taken(db: Session, email: str) -> bool:
    return db.scalar(select(User.id).where(User.email == email)) is not None


def has_admin(db: Session) -> bool:
    return db.scalar(select(func.count()).select_from(User).where(User.is_admin.is_(True))) > 0


def create_user(db: Session, *, email: str, password_hash: str, name: str = "", is_admin: bool = False) -> User:
    """A registered account. Not flushed: a taken e-mail raises IntegrityError at the caller's flush/commit."""
    user = User(email=email, password_hash=password_hash, name=name, is_admin=is_admin)
    db.add(user)
    return user


def upgrade_guest(user: User, *, email: str, password_hash: str, name: str, is_admin: bool) -> User:
    """A guest becomes a registered account in place: its conversations and uploads stay, expiry is dropped."""
    user.email, user.password_hash, user.name = email, password_hash, name or user.name
    user.is_guest, user.guest_expires_at = False, None
    user.is_admin = user.is_admin or is_admin
    return user


def create_guest(db: Session, ttl_s: float) -> User:
    """A guest (no account) whose data the cleanup deletes after `ttl_s` seconds. Flushed (its id is needed)."""
    user = User(is_guest=True, name="", guest_expires_at=utcnow() + timedelta(seconds=ttl_s))
    db.add(user)
    db.flush()
    return user


def make_admin(user: User, password_hash: str | None = None) -> User:
    """Promote (and enable) an account; its password is replaced when a new hash is given."""
    user.is_admin, user.disabled = True, False
    if password_hash is not None:
        user.password_hash = password_hash
    return user


def set_password(db: Session, user: User, password_hash: str, keep_session_id: str | None) -> None:
    """A new password; every browser session of the account but `keep_session_id` is logged out."""
    user.password_hash = password_hash
    db.query(AuthSession).filter(AuthSession.user_id == user.id, AuthSession.id != keep_session_id).delete()


def update_user(db: Session, user: User, *, disabled: bool | None = None, is_admin: bool | None = None) -> User:
    """Disable (which logs the user out everywhere) or enable an account; grant or revoke admin. None: unchanged."""
    if disabled is not None:
        user.disabled = disabled
        if disabled:
            db.query(AuthSession).filter(AuthSession.user_id == user.id).delete()
    if is_admin is not None:
        user.is_admin = is_admin
    return user


def list_users(db: Session, *, include_guests: bool, limit: int, offset: int) -> list[User]:
    q = select(User).order_by(User.created_at)
    if not include_guests:
        q = q.where(User.is_guest.is_(False))
    return list(db.scalars(q.limit(limit).offset(offset)))


def usage_summary(db: Session) -> Sequence[Row[Any]]:
    """Per user, source and model: (user_id, email, source, model, requests, prompt tokens, completion tokens,
    mean ttft_ms, mean total_ms), busiest first."""
    return db.execute(
        select(
            Usage.user_id,
            User.email,
            Usage.source,
            Usage.model,
            func.count(),
            func.sum(Usage.prompt_tokens),
            func.sum(Usage.completion_tokens),
            func.avg(Usage.ttft_ms),
            func.avg(Usage.total_ms),
        )
        .outerjoin(User, User.id == Usage.user_id)
        .group_by(Usage.user_id, User.email, Usage.source, Usage.model)
        .order_by(func.count().desc())
    ).all()


# ------------------------------------------------------------------------------- sessions and API tokens


def create_session(db: Session, user: User, ttl_s: float) -> tuple[AuthSession, str]:
    """A browser session for `user`: (row, the cookie's token). Only the token's hash is stored."""
    token = new_token()
    sess = AuthSession(
        user_id=user.id,
        token_hash=hash_token(token),
        csrf_token=new_token(),
        expires_at=utcnow() + timedelta(seconds=ttl_s),
    )
    db.add(sess)
    return sess, token


def create_api_token(db: Session, user_id: str, name: str) -> tuple[ApiToken, str]:
    """A bearer token for API clients: (row, the token — shown once; only its hash is stored). Flushed."""
    token = new_token(API_TOKEN_PREFIX)
    row = ApiToken(user_id=user_id, name=name, prefix=token[:10], token_hash=hash_token(token))
    db.add(row)
    db.flush()
    return row, token


def list_api_tokens(db: Session, user_id: str) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at)))


def owned_api_token(db: Session, user_id: str, token_id: str) -> ApiToken | None:
    return db.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id))


# ------------------------------------------------------------------------- conversations, messages, uploads


def create_conversation(db: Session, user_id: str, title: str = "") -> Conversation:
    """Flushed (the route answers with its id)."""
    conv = Conversation(user_id=user_id, title=title.strip())
    db.add(conv)
    db.flush()
    return conv


def owned_conversation(db: Session, user_id: str, conversation_id: str) -> Conversation | None:
    return db.scalar(select(Conversation).where(Conversation.id == conversation_id, Conversation.user_id == user_id))


def owned_message(db: Session, user_id: str, message_id: str) -> Message | None:
    return db.scalar(select(Message).where(Message.id == message_id, Message.user_id == user_id))


def owned_upload(db: Session, user_id: str, upload_id: str) -> Upload | None:
    return db.scalar(select(Upload).where(Upload.id == upload_id, Upload.user_id == user_id))


def list_uploads(db: Session, user_id: str) -> list[Upload]:
    """Newest first."""
    return list(db.scalars(select(Upload).where(Upload.user_id == user_id).order_by(Upload.created_at.desc())))


def uploads_by_id(db: Session, user_id: str, ids: set[str]) -> dict[str, Upload]:
    """The user's uploads among `ids` (others' ids are left out), by id."""
    if not ids:
        return {}
    return {u.id: u for u in db.scalars(select(Upload).where(Upload.user_id == user_id, Upload.id.in_(ids)))}


def add_upload(db: Session, user_id: str, **fields: Any) -> Upload:
    """Record a stored video (`fields`: Upload's columns: filename, stored_name, media_type, size_bytes, …)."""
    row = Upload(user_id=user_id, **fields)
    db.add(row)
    return row


def add_user_message(
    db: Session, conv: Conversation, user_id: str, text: str, parts: list[dict[str, Any]], model: str
) -> tuple[Message, list[Message]]:
    """Append the user's turn: (the message, the turns before it). An untitled conversation takes its title
    from the text's first line (or the first video's name); `updated_at` moves to now. Flushed."""
    history = list(conv.messages)
    seq = (max(m.seq for m in history) if history else 0) + 1
    msg = Message(
        conversation_id=conv.id, user_id=user_id, seq=seq, role="user", content=text, parts=parts, model=model
    )
    conv.messages.append(msg)  # (the cascade adds it to the session) a second turn in this session sees it
    if not conv.title:
        conv.title = (text.strip().splitlines()[0][:60] if text.strip() else (parts[0]["filename"] or "video"))[:200]
    conv.updated_at = utcnow()
    db.flush()
    return msg, history


def record_usage(
    db: Session,
    *,
    user_id: str | None,
    source: str,
    model: str,
    adapter: str | None,
    status: str,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_ms: float | None,
    total_ms: float | None,
    token_id: str | None = None,
) -> Usage:
    """One generation for the admin's usage table: `source` "chat" (the page) or "api" (/v1)."""
    row = Usage(
        user_id=user_id,
        token_id=token_id,
        source=source,
        model=model,
        adapter=adapter,
        status=status,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        ttft_ms=ttft_ms,
        total_ms=total_ms,
    )
    db.add(row)
    return row


def add_answer(db: Session, conversation_id: str, user_id: str, seq: int, **fields: Any) -> Message | None:
    """Store an assistant turn (`fields`: Message's columns: content, model, adapter, status, timings, …) and
    its usage row (source "chat"); the conversation moves to the top. None when the conversation was deleted
    meanwhile. Flushed."""
    conv = db.get(Conversation, conversation_id)
    if conv is None:
        return None
    msg = Message(conversation_id=conversation_id, user_id=user_id, seq=seq, role="assistant", parts=[], **fields)
    db.add(msg)
    conv.updated_at = utcnow()
    record_usage(
        db,
        user_id=user_id,
        source="chat",
        model=msg.model or "",
        adapter=msg.adapter,
        status=msg.status,
        prompt_tokens=msg.prompt_tokens or 0,
        completion_tokens=msg.completion_tokens or 0,
        ttft_ms=msg.ttft_ms,
        total_ms=msg.total_ms,
    )
    db.flush()
    return msg
