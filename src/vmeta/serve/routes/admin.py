"""A basic admin role: list users, disable/enable (or promote) a user, see usage per user and model."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import func, select

from vmeta.serve import schemas
from vmeta.serve.deps import DB, AdminUser
from vmeta.serve.tables import AuthSession, Usage, User

router = APIRouter(tags=["admin"])


@router.get("/api/admin/users", response_model=list[schemas.UserOut])
def list_users(
    db: DB,
    admin: AdminUser,
    include_guests: bool = Query(False),
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[User]:
    q = select(User).order_by(User.created_at)
    if not include_guests:
        q = q.where(User.is_guest.is_(False))
    return list(db.scalars(q.limit(limit).offset(offset)))


@router.patch("/api/admin/users/{user_id}", response_model=schemas.UserOut)
def update_user(user_id: str, body: schemas.AdminUserPatch, db: DB, admin: AdminUser) -> User:
    """Disable (logs the user out everywhere) or enable a user; grant or revoke admin."""
    user = db.get(User, user_id)
    if user is None:
        raise HTTPException(404, "no such user.")
    if user.id == admin.id and (body.disabled or body.is_admin is False):
        raise HTTPException(400, "you cannot disable yourself or drop your own admin role.")
    if body.disabled is not None:
        user.disabled = body.disabled
        if body.disabled:
            db.query(AuthSession).filter(AuthSession.user_id == user.id).delete()
    if body.is_admin is not None:
        user.is_admin = body.is_admin
    return user


@router.get("/api/admin/usage", response_model=list[schemas.UsageRow])
def usage(db: DB, admin: AdminUser) -> list[schemas.UsageRow]:
    """Requests, tokens and mean timings per user, source (chat page / API) and model."""
    rows = db.execute(
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
    return [
        schemas.UsageRow(
            user_id=r[0],
            email=r[1],
            source=r[2],
            model=r[3],
            requests=r[4],
            prompt_tokens=r[5] or 0,
            completion_tokens=r[6] or 0,
            avg_ttft_ms=float(r[7]) if r[7] is not None else None,
            avg_total_ms=float(r[8]) if r[8] is not None else None,
        )
        for r in rows
    ]
