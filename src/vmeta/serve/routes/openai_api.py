"""The OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (stream and non-stream).

Auth: `Authorization: Bearer vmt_…` (POST /api/tokens). With VMETA_API_ALLOW_ANONYMOUS=true requests without a
token are served too (for local single-user use). Cookies are not accepted here.

Content parts: `text`; `image_url` and `video_url` whose url is
  - a `data:<type>;base64,<data>` URL (decoded to a temporary file, size-limited like uploads, probed),
  - `vmeta-upload://<id>` or the bare `<id>` of a video uploaded with POST /api/uploads (the caller's own),
  - an http(s) URL: refused with 400 unless VMETA_ALLOW_REMOTE_URLS=true (then fetched, size-limited).
Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}`, so the `openai` client raises
the usual exceptions (unknown model -> 404 `model_not_found` -> openai.NotFoundError).
Every request is recorded in the usage table (not as a conversation).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vmeta.serve import crud
from vmeta.serve.db import session_scope
from vmeta.serve.deps import Principal, ServeState, State, bearer_token, resolve_principal
from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Token
from vmeta.serve.security import API_TOKEN_PREFIX
from vmeta.serve.sse import SSEResponse
from vmeta.serve.uploads import check_video, decode_data_url, reencode_image

router = APIRouter(tags=["openai"])
UPLOAD_SCHEME = "vmeta-upload://"
_ID = re.compile(r"^[0-9a-f]{32}$")


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def openai_error_response(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def error_type_for(status: int) -> str:
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = 1


def api_principal(request: Request, state: State) -> Principal | None:
    token = bearer_token(request)
    # With anonymous access on, a key that is not a vmeta token (OpenAI clients must send one: "EMPTY", "sk-…",
    # what vLLM's users send) means anonymous, as on vLLM; a vmeta token is still checked (revoked = refused).
    if token is None or (state.settings.api_allow_anonymous and not token.startswith(API_TOKEN_PREFIX)):
        if state.settings.api_allow_anonymous:
            return None
        raise OpenAIError(
            401,
            "missing API token: send 'Authorization: Bearer vmt_…' (create one with POST /api/tokens "
            "after logging in, or `vmeta serve token create`).",
            "authentication_error",
            "missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with state.sessions() as db:
        p = resolve_principal(request, db)
        db.commit()
        if p is not None:
            db.expunge_all()
        return p


ApiPrincipal = Annotated[Principal | None, Depends(api_principal)]


@router.get("/v1/models")
def list_models(state: State, principal: ApiPrincipal) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": "vmeta",
                "root": m.base,
                "parent": m.base if m.adapter else None,
                "vmeta": {
                    "kind": m.kind,
                    "adapter": m.adapter,
                    "description": m.description,
                    "frames": m.frames,
                    "context": list(m.context),
                },
            }
            for m in state.engine.models()
        ],
    }


# ------------------------------------------------------------------------------------- content parts
class _Resolver:
    """Turns OpenAI content parts into engine parts with local paths; remembers temp files to delete."""

    def __init__(self, state: ServeState, user_id: str | None):
        self.state, self.user_id = state, user_id
        self.temp: list[Path] = []

    def cleanup(self) -> None:
        for p in self.temp:
            p.unlink(missing_ok=True)

    def _upload_path(self, upload_id: str, where: str) -> str:
        if self.user_id is None:
            raise OpenAIError(400, f"{where}: uploaded files need an API token (anonymous requests cannot use them).")
        with self.state.sessions() as db:
            up = crud.owned_upload(db, self.user_id, upload_id)
        if up is None:
            raise OpenAIError(
                404,
                f"{where}: no uploaded file '{upload_id}' for this token's account; upload it with "
                "POST /api/uploads first.",
                "not_found_error",
                "upload_not_found",
            )
        return str(self.state.uploads_dir / self.user_id / up.stored_name)

    def _fetch(self, url: str, what: str, where: str) -> Path:
        import httpx

        limit = self.state.settings.upload_max_bytes
        path = self.state.tmp_dir / f"remote-{uuid.uuid4().hex}"
        self.temp.append(path)
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=30) as r:
                r.raise_for_status()
                size = 0
                with path.open("wb") as fh:
                    for chunk in r.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise OpenAIError(413, f"{where}: the {what} at the URL is larger than {limit} bytes.")
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise OpenAIError(400, f"{where}: could not fetch the {what} URL ({type(exc).__name__}).") from None
        return path

    def resolve(self, kind: str, url: str, where: str) -> str:
        from fastapi import HTTPException

        what = "video" if kind == "video" else "image"
        url = (url or "").strip()
        try:
            if url.startswith(UPLOAD_SCHEME) or _ID.match(url):
                if kind != "video":
                    raise OpenAIError(400, f"{where}: uploaded files are videos; send images as data: URLs.")
                return self._upload_path(url.removeprefix(UPLOAD_SCHEME), where)
            if url.startswith("data:"):
                path, _ = decode_data_url(url, self.state.tmp_dir, self.state.settings.upload_max_bytes, what)
                self.temp.append(path)
            elif url.startswith(("http://", "https://")):
                if not self.state.settings.allow_remote_urls:
                    raise OpenAIError(
                        400,
                        f"{where}: this server does not fetch remote URLs "
                        "(VMETA_ALLOW_REMOTE_URLS is off); send the file as a data: URL or upload it "
                        f"with POST /api/uploads and pass '{UPLOAD_SCHEME}<id>'.",
                        code="remote_url_refused",
                    )
                path = self._fetch(url, what, where)
            else:
                raise OpenAIError(400, f"{where}: unsupported {what} URL; use a data: URL or '{UPLOAD_SCHEME}<id>'.")
            if kind == "video":
                check_video(path, None, self.state.settings)  # "{where}: the video is …" (below)
                return str(path)
            out = path.with_suffix(".png")
            self.temp.append(out)
            reencode_image(path, out, 4096, "image")
            return str(out)
        except HTTPException as exc:
            raise OpenAIError(exc.status_code, f"{where}: {exc.detail}") from None

    def messages(self, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for i, m in enumerate(raw):
            role = m.get("role")
            if role == "developer":
                role = "system"
            if role not in ("system", "user", "assistant"):
                raise OpenAIError(
                    400,
                    f"messages[{i}].role '{role}' is not supported (system, user, assistant).",
                    param=f"messages[{i}].role",
                )
            content = m.get("content")
            if content is None:
                content = ""
            if isinstance(content, str):
                out.append({"role": role, "content": content})
                continue
            if not isinstance(content, list):
                raise OpenAIError(400, f"messages[{i}].content must be a string or a list of parts.")
            parts = []
            for j, p in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                t = p.get("type") if isinstance(p, dict) else None
                if t == "text":
                    parts.append({"type": "text", "text": str(p.get("text", ""))})
                elif t in ("image_url", "video_url", "video"):
                    ref = p.get(t) if t != "video" else p.get("video")
                    url = ref.get("url") if isinstance(ref, dict) else ref
                    if not isinstance(url, str):
                        raise OpenAIError(400, f"{where}.{t}.url is missing.", param=where)
                    kind = "image" if t == "image_url" else "video"
                    parts.append({"type": kind, kind: self.resolve(kind, url, where)})
                else:
                    raise OpenAIError(
                        400, f"{where}: part type '{t}' is not supported (text, image_url, video_url).", param=where
                    )
            out.append({"role": role, "content": parts})
        return out


def _record_usage(
    state: ServeState,
    principal: Principal | None,
    model: str,
    done: Done | None,
    status: str,
    ttft_ms: float | None,
    total_ms: float,
    completion_tokens: int,
) -> None:
    with session_scope(state.sessions) as db:
        crud.record_usage(
            db,
            user_id=principal.user.id if principal else None,
            token_id=principal.token.id if principal and principal.token else None,
            source="api",
            model=model,
            adapter=done.adapter if done else None,
            status=status,
            prompt_tokens=done.prompt_tokens if done else 0,
            completion_tokens=done.completion_tokens if done else completion_tokens,
            ttft_ms=ttft_ms,
            total_ms=total_ms,
        )


def _usage(done: Done | None) -> dict[str, Any]:
    p = done.prompt_tokens if done else 0
    c = done.completion_tokens if done else 0
    usage: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
    if done is not None and "cached_tokens" in done.extra:  # OpenAI's field: prompt tokens not read again
        usage["prompt_tokens_details"] = {"cached_tokens": int(done.extra["cached_tokens"])}
    return usage


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionIn, state: State, principal: ApiPrincipal) -> Any:
    t0 = time.perf_counter()
    ids = [m.id for m in state.engine.models()]
    if body.model not in ids:
        raise OpenAIError(
            404,
            f"The model '{body.model}' does not exist on this server; available: {', '.join(ids)} (GET /v1/models).",
            "invalid_request_error",
            "model_not_found",
            "model",
        )
    if body.n != 1:
        raise OpenAIError(400, "only n=1 is supported.", param="n")
    resolver = _Resolver(state, principal.user.id if principal else None)
    try:
        messages = await run_in_threadpool(resolver.messages, body.messages)
    except BaseException:
        resolver.cleanup()
        raise
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    request = ChatRequest(
        model=body.model,
        messages=messages,
        max_new_tokens=body.max_completion_tokens or body.max_tokens or state.settings.max_new_tokens,
        temperature=body.temperature if body.temperature is not None else 0.0,
        top_p=body.top_p if body.top_p is not None else 1.0,
        seed=body.seed,
        request_id=completion_id,
        user=principal.user.id if principal else None,
    )

    if not body.stream:
        pieces: list[str] = []
        done: Done | None = None
        first: float | None = None
        try:
            async for ev in state.engine.stream(request):
                if isinstance(ev, Token):
                    first = first or time.perf_counter()
                    pieces.append(ev.text)
                elif isinstance(ev, Done):
                    done = ev
        except EngineError as exc:
            raise OpenAIError(400, str(exc), code="engine_error") from None
        finally:
            resolver.cleanup()
        end = time.perf_counter()
        ttft_ms = round(((first or end) - t0) * 1000, 2)
        await run_in_threadpool(
            _record_usage,
            state,
            principal,
            body.model,
            done,
            "complete",
            ttft_ms,
            round((end - t0) * 1000, 2),
            len(pieces),
        )
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces)},
                    "finish_reason": done.finish_reason if done else "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(done),
            "system_fingerprint": None,
            "vmeta": {
                "base_model": done.model if done else None,
                "adapter": done.adapter if done else None,
                "ttft_ms": ttft_ms,
                "total_ms": round((end - t0) * 1000, 2),
            },
        }

    include_usage = bool((body.stream_options or {}).get("include_usage"))

    def chunk(
        delta: dict[str, Any] | None, finish: str | None = None, usage: dict | None = None, choices: bool = True
    ) -> bytes:
        obj: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish, "logprobs": None}]
            if choices
            else [],
        }
        if include_usage:
            obj["usage"] = usage
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()

    async def events():
        done: Done | None = None
        first: float | None = None
        n = 0
        status = "interrupted"
        try:
            yield chunk({"role": "assistant", "content": ""})
            try:
                async for ev in state.engine.stream(request):
                    if isinstance(ev, Token):
                        first = first or time.perf_counter()
                        n += 1
                        yield chunk({"content": ev.text})
                    elif isinstance(ev, Done):
                        done = ev
            except EngineError as exc:
                status = "error"
                err = OpenAIError(400, str(exc), code="engine_error")
                yield f"data: {json.dumps(err.body(), ensure_ascii=False)}\n\n".encode()
                return
            status = "complete"
            yield chunk({}, done.finish_reason if done else "stop")
            if include_usage:
                yield chunk(None, usage=_usage(done), choices=False)
            yield b"data: [DONE]\n\n"
        finally:
            end = time.perf_counter()
            resolver.cleanup()
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(
                    _record_usage,
                    state,
                    principal,
                    body.model,
                    done,
                    status,
                    round(((first or end) - t0) * 1000, 2) if first else None,
                    round((end - t0) * 1000, 2),
                    n,
                )

    return SSEResponse(events())
