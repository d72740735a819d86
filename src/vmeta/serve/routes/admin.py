"""A basic admin role: list users, disable/enable (or promote) a user, see usage per user and model."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from vmeta.serve import crud, schemas
from vmeta.serve.deps import DB, AdminUser
from vmeta.serve.tables import User

router = APIRouter(tags=["admin"])


@router.get("/api/admin/users", response_model=list[schemas.UserOut])
def list_users(
    db: DB,
    admin: AdminUser,
    include_guests: bool = Query(False),
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=schemas.MAX_OFFSET),
) -> list[User]:
    return crud.list_users(db, include_guests=include_guests, limit=limit, offset=offset)


@router.patch("/api/admin/users/{user_id}", response_model=schemas.UserOut)
def update_user(user_id: str, body: schemas.AdminUserPatch, db: DB, admin: AdminUser) -> User:
    """Disable (logs the user out everywhere) or enable a user; grant or revoke admin."""
    user = crud.get_user(db, user_id)
    if user is None:
        raise HTTPException(404, "no such user.")
    if user.id == admin.id and (body.disabled or body.is_admin is False):
        raise HTTPException(400, "you cannot disable yourself or drop your own admin role.")
    return crud.update_user(db, user, disabled=body.disabled, is_admin=body.is_admin)


@router.get("/api/admin/usage", response_model=list[schemas.UsageRow])
def usage(db: DB, admin: AdminUser) -> list[schemas.UsageRow]:
    """Requests, tokens and mean timings per user, source (chat page / API) and model."""
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
        for r in crud.usage_summary(db)
    ]
