"""Video uploads: POST (streamed, size-limited, probed), list, info, the file itself (Range), DELETE.
Everything is filtered by owner; another user's id is 404."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from vmeta.serve import crud, schemas
from vmeta.serve.db import session_scope
from vmeta.serve.deps import DB, CurrentUser, ServeState, State
from vmeta.serve.routes.answer_stream import engine_messages
from vmeta.serve.routes.conversations import forget_read_ahead
from vmeta.serve.tables import Upload
from vmeta.serve.uploads import check_video, random_name, receive_file, video_extension, video_media_type
from vmeta.web.common import file_response

router = APIRouter(tags=["uploads"])


def upload_out(row: Upload) -> schemas.UploadOut:
    out = schemas.UploadOut.model_validate(row)
    out.url = f"/api/uploads/{row.id}"
    return out


def owned_upload(db, user_id: str, upload_id: str) -> Upload:
    """The caller's upload, else 404."""
    row = crud.owned_upload(db, user_id, upload_id)
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
    with session_scope(state.sessions) as db:
        row = crud.add_upload(
            db,
            user_id,
            filename=filename,
            stored_name=name,
            media_type=video_media_type(ext),
            size_bytes=meta.size_bytes or dest.stat().st_size,
            duration_s=meta.duration_s,
            width=meta.display_width or meta.width,
            height=meta.display_height or meta.height,
            meta=meta.model_dump(mode="json", exclude={"mtime"}),
        )
    return row


@router.post("/api/uploads", response_model=schemas.UploadOut, status_code=201)
async def create_upload(
    request: Request,
    state: State,
    user: CurrentUser,
    model: str | None = Query(None, description="Start reading the video for this model now (GET /api/models)."),
    conversation_id: str | None = Query(
        None, description="The conversation it will be asked about (its history is read with it)."
    ),
) -> schemas.UploadOut:
    """Multipart field `file`: a video (MP4/MOV/MKV/WebM). Limits: Settings.upload_max_bytes (checked while
    receiving: 413), upload_max_duration_s and upload_max_pixels (422); not a video: 415; damaged: 422.

    With `model`, the server starts reading the video (and the conversation so far) for that model while the
    person types the question, below every waiting answer; the question then reads only its own words.
    `reading` in the answer says whether it started."""
    received = await receive_file(request, state.uploads_dir / user.id, state.settings.upload_max_bytes)
    row = await run_in_threadpool(store_video_file, state, user.id, received.path, received.filename)
    out = upload_out(row)
    if model:
        out.reading = await run_in_threadpool(_read_ahead, state, user.id, row, model, conversation_id)
    return out


def _read_ahead(state: ServeState, user_id: str, row: Upload, model: str, conversation_id: str | None) -> bool:
    """Queue the read of [history..., user: the video] — the prefix the question's prompt will start with."""
    start = getattr(state.engine, "read_ahead", None)
    if start is None:  # engines without local model state (echo, remote)
        return False
    with state.sessions() as db:
        conv = None
        if conversation_id:
            conv = crud.owned_conversation(db, user_id, conversation_id)
        messages = engine_messages(db, state, user_id, list(conv.messages) if conv is not None else [])
    video = str(state.uploads_dir / user_id / row.stored_name)
    messages.append({"role": "user", "content": [{"type": "video", "video": video}]})
    return bool(start(model, messages, user=user_id, tags=(row.id, conv.id if conv is not None else "")))


@router.get("/api/uploads", response_model=list[schemas.UploadOut])
def list_uploads(db: DB, user: CurrentUser) -> list[schemas.UploadOut]:
    return [upload_out(r) for r in crud.list_uploads(db, user.id)]


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
    forget_read_ahead(state, row.id)
    (state.uploads_dir / user.id / row.stored_name).unlink(missing_ok=True)
    db.delete(row)
    return Response(status_code=204)
