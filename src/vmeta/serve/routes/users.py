"""Profile and avatar. Avatars are re-encoded to PNG (metadata dropped, at most Settings.avatar_size a side)
and served only to their owner: GET /api/avatars/{id} is 404 for everyone else."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from vmeta.serve import crud, schemas
from vmeta.serve.db import session_scope
from vmeta.serve.deps import DB, CurrentUser, State
from vmeta.serve.routes.auth import me_out
from vmeta.serve.tables import Avatar
from vmeta.serve.uploads import random_name, receive_file, reencode_image
from vmeta.web.common import file_response

router = APIRouter(tags=["users"])


class ProfilePatch(BaseModel):
    name: str = Field(max_length=100)


@router.patch("/api/users/me", response_model=schemas.MeOut)
def update_profile(body: ProfilePatch, user: CurrentUser) -> schemas.MeOut:
    user.name = body.name.strip()
    return me_out(user, None)


@router.post("/api/users/me/avatar", response_model=schemas.AvatarOut, status_code=201)
async def upload_avatar(request: Request, state: State, user: CurrentUser) -> schemas.AvatarOut:
    """Multipart field `file`: a PNG/JPEG/GIF/WebP picture up to Settings.avatar_max_bytes."""
    from starlette.concurrency import run_in_threadpool

    user_dir = state.avatars_dir / user.id
    received = await receive_file(request, user_dir, state.settings.avatar_max_bytes, what="avatar")
    name = random_name(".png")
    try:
        await run_in_threadpool(reencode_image, received.path, user_dir / name, state.settings.avatar_size, "avatar")
    finally:
        received.path.unlink(missing_ok=True)

    def save() -> str:
        with session_scope(state.sessions) as db:
            old = list(db.scalars(select(Avatar).where(Avatar.user_id == user.id)))
            av = Avatar(user_id=user.id, stored_name=name, media_type="image/png")
            db.add(av)
            db.flush()
            for o in old:
                (user_dir / o.stored_name).unlink(missing_ok=True)
                db.delete(o)
            crud.get_user(db, user.id).avatar_id = av.id
            return av.id

    avatar_id = await run_in_threadpool(save)
    return schemas.AvatarOut(id=avatar_id, url=f"/api/avatars/{avatar_id}")


@router.delete("/api/users/me/avatar", status_code=204)
def delete_avatar(db: DB, state: State, user: CurrentUser) -> Response:
    for o in db.scalars(select(Avatar).where(Avatar.user_id == user.id)):
        (state.avatars_dir / user.id / o.stored_name).unlink(missing_ok=True)
        db.delete(o)
    user.avatar_id = None
    return Response(status_code=204)


@router.get("/api/avatars/{avatar_id}", response_model=None)
@router.head("/api/avatars/{avatar_id}", include_in_schema=False, response_model=None)
def get_avatar(avatar_id: str, request: Request, db: DB, state: State, user: CurrentUser) -> Response:
    av = db.scalar(select(Avatar).where(Avatar.id == avatar_id, Avatar.user_id == user.id))
    if av is None:
        raise HTTPException(404, "no such avatar.")
    resp = file_response(state.avatars_dir / user.id / av.stored_name, request, media_type=av.media_type)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp
