"""FastAPI dependencies: `Annotated[..., Depends()]` aliases for the DB session, the current user (session
cookie or bearer token), the optional user, the admin and the inference engine.

CSRF is enforced here: a state-changing request authenticated by the session cookie must carry the session's
CSRF token in `X-CSRF-Token` and come from our own origin, else 403. Bearer requests are exempt.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, HTTPException, Request
from pwdlib import PasswordHash
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vmeta.config import Settings
from vmeta.serve.db import session_scope
from vmeta.serve.engine_api import Engine
from vmeta.serve.security import (
    API_TOKEN_PREFIX,
    CSRF_HEADER,
    SESSION_COOKIE,
    aware,
    hash_token,
    tokens_equal,
)
from vmeta.serve.tables import ApiToken, AuthSession, User, utcnow
from vmeta.web.common import same_origin

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Worker threads that `in_db` uses at once. Measured with bench/serve_load.py (a), 50 clients, 2 cores: 4 threads
# ~950 req/s at ~0.97 ms server CPU per request; 40 (anyio's default pool) ~800 req/s at ~1.15 ms and twice the p99.
DB_THREADS = 4
# On SQLite `in_db` first runs the work on the event loop itself, read-only and within this budget (SQLite's
# progress handler interrupts a query past it). The hot reads take a fraction of a millisecond; the thread hop
# and 4 threads contending for the GIL cost more than the query (bench/serve_load.py (a), 1 process, 50 clients:
# 647 -> 1388 req/s, server CPU 1.72 -> 0.72 ms/request). A read that runs longer (a search over many messages)
# or must write (the token's last-used stamp) is rolled back and run in a worker thread, so the loop — and every
# streamed answer on it — is never held up for more than about this long.
INLINE_BUDGET_S = 0.005
INLINE_CHECK_EVERY = 2000  # SQLite VM instructions between budget checks (~tens of microseconds)
# Dependencies that do no I/O are `async def`: FastAPI runs plain `def` dependencies in the thread pool, and a
# thread hop per dependency is measurable under load. The ones that query the database stay `def`.


@dataclass
class ServeState:
    """Everything the routes share; stored on `app.state.vmeta`."""

    settings: Settings
    sessions: sessionmaker[Session]
    engine: Engine
    hasher: PasswordHash
    uploads_dir: Path
    avatars_dir: Path
    tmp_dir: Path
    background: list[Any]
    # In-memory (per process) limiter of new guest sessions per client IP: guests are cheap to create, and a
    # loop creating them would fill the database until the cleanup runs. Memory is enough here: the cost of a
    # few extra guests when several workers each count their own is small.
    guest_starts: dict[str, list[float]] = field(default_factory=dict)
    db_limiter: Any = None  # anyio.CapacityLimiter of `in_db`, made on first use (inside the event loop)
    inline_reads: bool = False  # `in_db` may answer on the event loop (SQLite: in-process, no network waits)


async def get_state(request: Request) -> ServeState:
    return request.app.state.vmeta


State = Annotated[ServeState, Depends(get_state)]


def get_db(state: State) -> Iterator[Session]:
    """The request's session: `db.session_scope` (commit on success, roll back on error)."""
    with session_scope(state.sessions) as db:
        yield db


# scope="function": commit before the response is sent. (With the default scope the commit would run after
# the response went out, and a client's next request could miss what this one wrote — e.g. a new session.)
DB = Annotated[Session, Depends(get_db, scope="function")]


async def get_settings_dep(state: State) -> Settings:
    return state.settings


AppSettings = Annotated[Settings, Depends(get_settings_dep)]


async def get_engine(state: State) -> Engine:
    return state.engine


InferenceEngine = Annotated[Engine, Depends(get_engine)]


@dataclass
class Principal:
    user: User
    via: str  # "cookie" | "bearer"
    session: AuthSession | None = None
    token: ApiToken | None = None


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _check_usable_fields(found: bool, disabled: bool | None, is_guest: bool | None, guest_expires_at) -> None:
    """The account checks of every authenticated request, on plain column values (ORM and Core paths)."""
    if not found:
        raise HTTPException(401, "your session has ended; log in again.")
    if disabled:
        raise HTTPException(403, "this account is disabled; ask an administrator.")
    if is_guest and guest_expires_at and aware(guest_expires_at) < utcnow():
        raise HTTPException(401, "your guest session has expired; start a new one or register.")


def _check_usable(user: User | None) -> User:
    if user is None:
        _check_usable_fields(False, None, None, None)
    _check_usable_fields(True, user.disabled, user.is_guest, user.guest_expires_at)
    return user


def _invalid_token(token: str) -> HTTPException:
    hint = "" if token.startswith(API_TOKEN_PREFIX) else f" (vmeta tokens start with '{API_TOKEN_PREFIX}')"
    return HTTPException(
        401,
        f"invalid or revoked API token{hint}; create one with POST /api/tokens.",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _check_csrf(request: Request, csrf_token: str) -> None:
    """Cookie-authenticated state-changing requests: same origin and the session's CSRF token, else 403."""
    if request.method not in SAFE_METHODS:
        if not same_origin(request):
            raise HTTPException(403, "cross-site request refused; use the page served by this server.")
        if not tokens_equal(request.headers.get(CSRF_HEADER, ""), csrf_token):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header; reload the page and try again.")


def _token_used_now(last_used_at) -> datetime | None:
    """The new `last_used_at` of an API token, or None when the stored one is recent enough (< 60 s): the
    stamp is written at most once a minute, so most bearer requests stay read-only."""
    now = utcnow()
    if last_used_at is None or (now - aware(last_used_at)).total_seconds() > 60:
        return now
    return None


def resolve_principal(request: Request, db: Session) -> Principal | None:
    """The caller: bearer token first, then the session cookie (with the CSRF check). None when neither.
    One query each way (token or session joined with its user)."""
    token = bearer_token(request)
    if token is not None:
        found = db.execute(
            select(ApiToken, User)
            .outerjoin(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(token))
        ).first()
        if found is None:
            raise _invalid_token(token)
        row, user = found
        user = _check_usable(user)
        now = _token_used_now(row.last_used_at)
        if now is not None:
            row.last_used_at = now
        return Principal(user=user, via="bearer", token=row)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found = db.execute(
        select(AuthSession, User)
        .outerjoin(User, User.id == AuthSession.user_id)
        .where(AuthSession.token_hash == hash_token(cookie))
    ).first()
    if found is None or aware(found[0].expires_at) < utcnow():
        return None
    sess, user = found
    _check_csrf(request, sess.csrf_token)
    return Principal(user=_check_usable(user), via="cookie", session=sess)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller as plain values (no ORM objects): what the hot read endpoints need."""

    id: str
    is_guest: bool
    is_admin: bool
    via: str  # "cookie" | "bearer"


_USER_COLS = (User.id, User.disabled, User.is_guest, User.guest_expires_at, User.is_admin)
# Built once, run with bound parameters on the session's connection: building and compiling a statement per
# request (and the ORM execution layer) cost several times the query itself.
_TOKEN_CALLER = (
    select(ApiToken.id, ApiToken.last_used_at, *_USER_COLS)
    .outerjoin(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)
_SESSION_CALLER = (
    select(AuthSession.expires_at, AuthSession.csrf_token, *_USER_COLS)
    .outerjoin(User, User.id == AuthSession.user_id)
    .where(AuthSession.token_hash == bindparam("token_hash"))
)
_TOKEN_USED = update(ApiToken).where(ApiToken.id == bindparam("token_id")).values(last_used_at=bindparam("now"))


class NotInline(Exception):
    """The work cannot finish on the event loop (over its time budget, or it would write): run it in a thread."""


def resolve_caller(request: Request, db: Session, read_only: bool = False) -> Caller | None:
    """`resolve_principal` without the ORM: the same checks, in the same order, with the same answers (one
    query; the token's `last_used_at` stamp as one UPDATE when due — `NotInline` instead when `read_only`).
    None when not authenticated."""
    token = bearer_token(request)
    conn = db.connection()
    if token is not None:
        row = conn.execute(_TOKEN_CALLER, {"token_hash": hash_token(token)}).first()
        if row is None:
            raise _invalid_token(token)
        token_id, last_used_at, user_id, disabled, is_guest, expires, is_admin = row
        _check_usable_fields(user_id is not None, disabled, is_guest, expires)
        now = _token_used_now(last_used_at)
        if now is not None:
            if read_only:
                raise NotInline("the token's last-used stamp is due")
            conn.execute(_TOKEN_USED, {"token_id": token_id, "now": now})
        return Caller(user_id, bool(is_guest), bool(is_admin), "bearer")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    row = conn.execute(_SESSION_CALLER, {"token_hash": hash_token(cookie)}).first()
    if row is None or aware(row[0]) < utcnow():
        return None
    _, csrf_token, user_id, disabled, is_guest, expires, is_admin = row
    _check_csrf(request, csrf_token)
    _check_usable_fields(user_id is not None, disabled, is_guest, expires)
    return Caller(user_id, bool(is_guest), bool(is_admin), "cookie")


def optional_principal(request: Request, db: DB) -> Principal | None:
    return resolve_principal(request, db)


def current_principal(request: Request, db: DB) -> Principal:
    p = resolve_principal(request, db)
    if p is None:
        raise HTTPException(
            401, "log in first (or start a guest session), or send an API token as 'Authorization: Bearer …'."
        )
    return p


async def current_user(principal: Annotated[Principal, Depends(current_principal)]) -> User:
    return principal.user


async def registered_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.is_guest:
        raise HTTPException(403, "guests cannot do this; register to keep your conversations and use it.")
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise HTTPException(403, "administrators only.")
    return user


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUser = Annotated[User, Depends(current_user)]
RegisteredUser = Annotated[User, Depends(registered_user)]
AdminUser = Annotated[User, Depends(admin_user)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def in_db(request: Request, fn: Any, *args: Any) -> Any:
    """Run `fn(db, caller, *args)` for the current caller (a `Caller`) in one go (session, auth with the CSRF
    check, the query, commit) and return its result. For the hot read endpoints (history): the usual `DB` +
    `CurrentUser` dependencies cost a thread hop each and ORM objects, which dominate a fast query under load.
    On SQLite it first runs on the event loop (see INLINE_BUDGET_S); otherwise, or when that gives up, in a
    worker thread — at most `DB_THREADS` at once: more threads only fight over the GIL (and over the
    connection pool), so queueing for a thread here is faster than queueing for the GIL."""
    state: ServeState = request.app.state.vmeta

    def work(inline: bool) -> Any:
        with state.sessions() as db, _time_budget(db) if inline else contextlib.nullcontext():
            caller = resolve_caller(request, db, read_only=inline)
            if caller is None:
                raise HTTPException(
                    401, "log in first (or start a guest session), or send an API token as 'Authorization: Bearer …'."
                )
            out = fn(db, caller, *args)
            db.commit()
            return out

    if state.inline_reads:
        try:
            return work(True)
        except NotInline:
            pass  # rolled back (the session closed without a commit); run it where it may take its time
    limiter = state.db_limiter
    if limiter is None:
        limiter = state.db_limiter = anyio.CapacityLimiter(DB_THREADS)
    return await anyio.to_thread.run_sync(work, False, limiter=limiter)


@contextlib.contextmanager
def _time_budget(db: Session) -> Iterator[None]:
    """SQLite statements of this session stop once INLINE_BUDGET_S has passed (`NotInline` out of the block)."""
    raw = db.connection().connection.driver_connection
    deadline = time.perf_counter() + INLINE_BUDGET_S
    spent = False

    def check() -> bool:
        nonlocal spent
        spent = time.perf_counter() > deadline
        return spent  # true: SQLite interrupts the statement

    raw.set_progress_handler(check, INLINE_CHECK_EVERY)
    try:
        yield
    except OperationalError as exc:
        if spent:
            raise NotInline("over the time budget") from exc
        raise
    finally:
        raw.set_progress_handler(None, 0)
