"""Accounts: register (also upgrades a guest in place), log in/out, who am I, change password, guest sessions,
API tokens. Browser sessions live in an HttpOnly SameSite=Lax cookie; the CSRF token comes back in the body
of /api/auth/me, /api/auth/login, /api/auth/register and /api/guest and in the readable `vmeta_csrf` cookie."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vmeta.serve import crud, schemas
from vmeta.serve.deps import (
    DB,
    CurrentPrincipal,
    OptionalPrincipal,
    Principal,
    RegisteredUser,
    ServeState,
    State,
    client_ip,
)
from vmeta.serve.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    LoginThrottled,
    check_login_allowed,
    dummy_hash,
    record_login,
)
from vmeta.serve.tables import ApiToken, AuthSession, User
from vmeta.web.common import same_origin

router = APIRouter(tags=["accounts"])


async def require_same_origin(request: Request) -> None:
    """For state-changing requests made before a session exists (login, register, guest)."""
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused; use the page served by this server.")


SameOrigin = Annotated[None, Depends(require_same_origin)]


def me_out(user: User, csrf: str | None) -> schemas.MeOut:
    return schemas.MeOut(
        user=schemas.UserOut.model_validate(user),
        csrf_token=csrf,
        avatar_url=f"/api/avatars/{user.avatar_id}" if user.avatar_id else None,
    )


def start_session(db: Session, state: ServeState, user: User, response: Response) -> AuthSession:
    ttl = state.settings.session_ttl_s
    if user.is_guest and user.guest_expires_at:
        ttl = min(ttl, state.settings.guest_ttl_s)
    sess, token = crud.create_session(db, user, ttl)
    secure = state.settings.cookie_secure
    response.set_cookie(SESSION_COOKIE, token, max_age=ttl, httponly=True, samesite="lax", secure=secure, path="/")
    response.set_cookie(
        CSRF_COOKIE, sess.csrf_token, max_age=ttl, httponly=False, samesite="lax", secure=secure, path="/"
    )
    return sess


def end_session(db: Session, principal: Principal | None, response: Response) -> None:
    if principal is not None and principal.session is not None:
        db.delete(principal.session)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.post("/api/auth/register", response_model=schemas.MeOut, status_code=201)
def register(
    body: schemas.RegisterIn, response: Response, db: DB, state: State, principal: OptionalPrincipal, _: SameOrigin
) -> schemas.MeOut:
    """Create an account and log in. Called by a guest, it upgrades the guest in place: the guest's
    conversations and uploads stay. The first account (or one listed in VMETA_ADMIN_EMAILS) is an admin."""
    settings = state.settings
    caller = principal.user if principal else None
    if not settings.registration_open and not (caller and caller.is_admin):
        raise HTTPException(403, "registration is closed on this server; ask an administrator for an account.")
    if crud.email_taken(db, body.email):
        raise HTTPException(409, f"'{body.email}' is already registered; log in instead.")
    make_admin = not crud.has_admin(db) or body.email in {e.strip().lower() for e in settings.admin_emails}
    pw_hash = state.hasher.hash(body.password)
    if caller is not None and caller.is_guest:
        user = crud.upgrade_guest(caller, email=body.email, password_hash=pw_hash, name=body.name, is_admin=make_admin)
        end_session(db, principal, response)  # rotate the session on privilege change
    else:
        user = crud.create_user(db, email=body.email, password_hash=pw_hash, name=body.name, is_admin=make_admin)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise HTTPException(409, f"'{body.email}' is already registered; log in instead.") from None
    sess = start_session(db, state, user, response)
    return me_out(user, sess.csrf_token)


@router.post("/api/auth/login", response_model=schemas.MeOut)
def login(
    body: schemas.LoginIn, request: Request, response: Response, db: DB, state: State, _: SameOrigin
) -> schemas.MeOut:
    """Log in with e-mail (or user name) and password. Too many wrong passwords for the account or from the
    client's address within the window -> 429 with Retry-After."""
    ip = client_ip(request)
    try:
        check_login_allowed(db, state.settings, body.email, ip)
    except LoginThrottled as exc:
        who = "this account" if exc.scope == "account" else "your address"
        raise HTTPException(
            429,
            f"too many wrong passwords for {who}; wait {exc.retry_after} s and try again.",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    user = crud.user_by_email(db, body.email, registered=True)
    if user is None or not user.password_hash:
        state.hasher.verify(body.password, dummy_hash(state.hasher))
        ok, new_hash = False, None
    else:
        ok, new_hash = state.hasher.verify_and_update(body.password, user.password_hash)
    if not ok:
        record_login(db, body.email, ip, success=False)
        db.commit()
        raise HTTPException(401, "wrong e-mail or password.")
    if user.disabled:
        raise HTTPException(403, "this account is disabled; ask an administrator.")
    if new_hash:
        user.password_hash = new_hash
    record_login(db, body.email, ip, success=True)
    sess = start_session(db, state, user, response)
    return me_out(user, sess.csrf_token)


@router.post("/api/auth/logout", status_code=204)
def logout(response: Response, db: DB, principal: CurrentPrincipal) -> Response:
    end_session(db, principal, response)
    response.status_code = 204
    return response


@router.get("/api/auth/me", response_model=schemas.MeOut)
def me(principal: CurrentPrincipal) -> schemas.MeOut:
    return me_out(principal.user, principal.session.csrf_token if principal.session else None)


@router.post("/api/auth/password", status_code=204)
def change_password(
    body: schemas.PasswordIn,
    response: Response,
    db: DB,
    state: State,
    principal: CurrentPrincipal,
    user: RegisteredUser,
) -> Response:
    """Change the password; every other session of the account is logged out."""
    if not user.password_hash or not state.hasher.verify(body.current_password, user.password_hash):
        raise HTTPException(400, "the current password is wrong.")
    keep = principal.session.id if principal.session else None
    crud.set_password(db, user, state.hasher.hash(body.new_password), keep)
    response.status_code = 204
    return response


@router.post("/api/guest", response_model=schemas.MeOut, status_code=201)
def start_guest(
    request: Request, response: Response, db: DB, state: State, principal: OptionalPrincipal, _: SameOrigin
) -> schemas.MeOut:
    """Start a guest session (no account). Its data is kept for VMETA_GUEST_TTL_S seconds, then deleted —
    unless the guest registers (POST /api/auth/register), which keeps everything."""
    if principal is not None and principal.via == "cookie":
        return me_out(principal.user, principal.session.csrf_token)
    now, ip = time.monotonic(), client_ip(request)
    hits = [t for t in state.guest_starts.get(ip, []) if now - t < 3600]
    if len(hits) >= state.settings.guest_per_ip_per_hour:
        retry = int(3600 - (now - hits[0])) + 1
        raise HTTPException(
            429,
            f"too many guest sessions from your address; register, or wait {retry} s.",
            headers={"Retry-After": str(retry)},
        )
    state.guest_starts[ip] = [*hits, now]
    user = crud.create_guest(db, state.settings.guest_ttl_s)
    sess = start_session(db, state, user, response)
    return me_out(user, sess.csrf_token)


# --------------------------------------------------------------------------------------- API tokens
@router.post("/api/tokens", response_model=schemas.TokenCreated, status_code=201, tags=["tokens"])
def create_token(body: schemas.TokenIn, db: DB, user: RegisteredUser) -> schemas.TokenCreated:
    """Create a bearer token for API clients (`Authorization: Bearer vmt_…`). Shown once; stored hashed."""
    row, token = crud.create_api_token(db, user.id, body.name)
    return schemas.TokenCreated(**schemas.TokenOut.model_validate(row).model_dump(), token=token)


@router.get("/api/tokens", response_model=list[schemas.TokenOut], tags=["tokens"])
def list_tokens(db: DB, user: RegisteredUser) -> list[ApiToken]:
    return crud.list_api_tokens(db, user.id)


@router.delete("/api/tokens/{token_id}", status_code=204, tags=["tokens"])
def delete_token(token_id: str, db: DB, user: RegisteredUser) -> Response:
    row = crud.owned_api_token(db, user.id, token_id)
    if row is None:
        raise HTTPException(404, "no such token.")
    db.delete(row)
    return Response(status_code=204)
