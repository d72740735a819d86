"""Video uploads: POST (streamed, size-limited, probed), list, info, the file itself (Range), DELETE.
Everything is filtered by owner; another user's id is 404."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from vmeta.serve import schemas
from vmeta.serve.deps import DB, CurrentUser, State
from vmeta.serve.tables import Upload
from vmeta.serve.uploads import check_video, random_name, receive_file, video_extension, video_media_type
from vmeta.web.common import file_response

router = APIRouter(tags=["uploads"])


def upload_out(row: Upload) -> schemas.UploadOut:
    out = schemas.UploadOut.model_validate(row)
    out.url = f"/api/uploads/{row.id}"
    return out


def owned_upload(db, user_id: str, upload_id: str) -> Upload:
    row = db.scalar(select(Upload).where(Upload.id == upload_id, Upload.user_id == user_id))
    if row is None:
        raise HTTPException(404, f"no upload '{upload_id[:40]}'; upload the video again.")
    return row


def store_video_file(state, user_id: str, path, filename: str):
    """Probe a received temp file, rename it to a random name, record it. Deletes the file on rejection."""
    try:
        meta = check_video(path, filename, state.settings)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    ext = video_extension(meta, filename)
    name = random_name(ext)
    dest = state.uploads_dir / user_id / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    path.replace(dest)
    with state.sessions.begin() as db:
        row = Upload(
            user_id=user_id,
            filename=filename,
            stored_name=name,
            media_type=video_media_type(ext),
            size_bytes=meta.size_bytes or dest.stat().st_size,
            duration_s=meta.duration_s,
            width=meta.display_width or meta.width,
            height=meta.display_height or meta.height,
            meta=meta.model_dump(mode="json", exclude={"mtime"}),
        )
        db.add(row)
    return row


@router.post("/api/uploads", response_model=schemas.UploadOut, status_code=201)
async def create_upload(request: Request, state: State, user: CurrentUser) -> schemas.UploadOut:
    """Multipart field `file`: a video (MP4/MOV/MKV/WebM). Limits: Settings.upload_max_bytes (checked while
    receiving: 413), upload_max_duration_s and upload_max_pixels (422); not a video: 415; damaged: 422."""
    received = await receive_file(request, state.uploads_dir / user.id, state.settings.upload_max_bytes)
    row = await run_in_threadpool(store_video_file, state, user.id, received.path, received.filename)
    return upload_out(row)


@router.get("/api/uploads", response_model=list[schemas.UploadOut])
def list_uploads(db: DB, user: CurrentUser) -> list[schemas.UploadOut]:
    rows = db.scalars(select(Upload).where(Upload.user_id == user.id).order_by(Upload.created_at.desc()))
    return [upload_out(r) for r in rows]


@router.get("/api/uploads/{upload_id}/info", response_model=schemas.UploadOut)
def upload_info(upload_id: str, db: DB, user: CurrentUser) -> schemas.UploadOut:
    return upload_out(owned_upload(db, user.id, upload_id))


@router.get("/api/uploads/{upload_id}", response_model=None)
@router.head("/api/uploads/{upload_id}", include_in_schema=False, response_model=None)
def get_upload(upload_id: str, request: Request, db: DB, state: State, user: CurrentUser) -> Response:
    """The video itself, with HTTP Range (206) so the page's player can seek."""
    row = owned_upload(db, user.id, upload_id)
    resp = file_response(state.uploads_dir / user.id / row.stored_name, request, media_type=row.media_type)
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


@router.delete("/api/uploads/{upload_id}", status_code=204)
def delete_upload(upload_id: str, db: DB, state: State, user: CurrentUser) -> Response:
    row = owned_upload(db, user.id, upload_id)
    (state.uploads_dir / user.id / row.stored_name).unlink(missing_ok=True)
    db.delete(row)
    return Response(status_code=204)
