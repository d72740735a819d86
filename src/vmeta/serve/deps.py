"""FastAPI dependencies: `Annotated[..., Depends()]` aliases for the DB session, the current user (session
cookie or bearer token), the optional user, the admin and the inference engine.

CSRF is enforced here: a state-changing request authenticated by the session cookie must carry the session's
CSRF token in `X-CSRF-Token` and come from our own origin, else 403. Bearer requests are exempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from pwdlib import PasswordHash
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vmeta.config import Settings
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


async def get_state(request: Request) -> ServeState:
    return request.app.state.vmeta


State = Annotated[ServeState, Depends(get_state)]


def get_db(state: State) -> Iterator[Session]:
    with state.sessions() as db:
        try:
            yield db
            db.commit()
        except BaseException:
            db.rollback()
            raise


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


def _check_usable(user: User | None) -> User:
    if user is None:
        raise HTTPException(401, "your session has ended; log in again.")
    if user.disabled:
        raise HTTPException(403, "this account is disabled; ask an administrator.")
    if user.is_guest and user.guest_expires_at and aware(user.guest_expires_at) < utcnow():
        raise HTTPException(401, "your guest session has expired; start a new one or register.")
    return user


def resolve_principal(request: Request, db: Session) -> Principal | None:
    """The caller: bearer token first, then the session cookie (with the CSRF check). None when neither."""
    token = bearer_token(request)
    if token is not None:
        row = db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
        if row is None:
            hint = "" if token.startswith(API_TOKEN_PREFIX) else f" (vmeta tokens start with '{API_TOKEN_PREFIX}')"
            raise HTTPException(
                401,
                f"invalid or revoked API token{hint}; create one with POST /api/tokens.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        user = _check_usable(db.get(User, row.user_id))
        now = utcnow()
        if row.last_used_at is None or (now - aware(row.last_used_at)).total_seconds() > 60:
            row.last_used_at = now
        return Principal(user=user, via="bearer", token=row)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    sess = db.scalar(select(AuthSession).where(AuthSession.token_hash == hash_token(cookie)))
    if sess is None or aware(sess.expires_at) < utcnow():
        return None
    if request.method not in SAFE_METHODS:
        if not same_origin(request):
            raise HTTPException(403, "cross-site request refused; use the page served by this server.")
        if not tokens_equal(request.headers.get(CSRF_HEADER, ""), sess.csrf_token):
            raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header; reload the page and try again.")
    user = _check_usable(db.get(User, sess.user_id))
    return Principal(user=user, via="cookie", session=sess)


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
    """Run `fn(db, user, *args)` for the current user in ONE worker-thread hop (session, auth with the CSRF
    check, the query, commit) and return its result. For the hot read endpoints (history): the usual
    `DB` + `CurrentUser` dependencies cost a thread hop each, which dominates a fast query under load."""
    from starlette.concurrency import run_in_threadpool

    state: ServeState = request.app.state.vmeta

    def work() -> Any:
        with state.sessions() as db:
            p = resolve_principal(request, db)
            if p is None:
                raise HTTPException(
                    401, "log in first (or start a guest session), or send an API token as 'Authorization: Bearer …'."
                )
            out = fn(db, p.user, *args)
            db.commit()
            return out

    return await run_in_threadpool(work)
