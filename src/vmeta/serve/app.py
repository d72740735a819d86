"""`create_app(settings, engine)` -> the FastAPI app of `vmeta serve`: accounts, conversations, uploads,
admin, the OpenAI-compatible API, and (when present) the chat page.

On start it upgrades the database to the newest Alembic revision and starts the guest cleanup task; on
shutdown it stops the task and closes the engine. HTTP API reference: docs/serve-api.md and /docs (OpenAPI).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmeta.config import Settings
from vmeta.serve import db as dbmod
from vmeta.serve.api_errors import install_openapi
from vmeta.serve.deps import ServeState
from vmeta.serve.engine_api import Engine
from vmeta.serve.guests import cleanup_loop
from vmeta.serve.routes import admin, answer_stream, auth, conversations, models, openai_api, uploads, users
from vmeta.serve.routes.openai_api import OpenAIError, error_type_for, openai_error_response
from vmeta.serve.security import password_hasher
from vmeta.web.common import (
    STATIC_DIR,
    _detail_of_validation,
    install_error_handlers,
    mount_static,
    restrict_hosts,
    security_headers,
)

CHAT_PAGE = STATIC_DIR / "chat" / "index.html"


class BodyLimit:
    """ASGI middleware: refuse request bodies above `limit` bytes (413), counting while they stream in.
    Upload routes enforce their own (smaller) limits while parsing and are let through here."""

    def __init__(self, app, limit: int, skip: tuple[str, ...] = ("/api/uploads", "/api/users/me/avatar")):
        self.app, self.limit, self.skip = app, limit, skip

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.skip):
            return await self.app(scope, receive, send)
        declared = chunked = None
        for k, v in scope.get("headers") or ():
            if k == b"content-length":
                declared = v
            elif k == b"transfer-encoding":
                chunked = v
        if declared is None and chunked is None and scope.get("http_version", "1.1") in ("1.0", "1.1"):
            # HTTP/1.x framing: without Content-Length or Transfer-Encoding the request has no body (most GETs).
            return await self.app(scope, receive, send)
        sentence = f"the request body is larger than the limit of {self.limit} bytes."
        if scope["path"].startswith("/v1/"):  # the OpenAI-compatible API answers in OpenAI's error shape
            too_big: Response = openai_error_response(OpenAIError(413, sentence))
        else:
            too_big = JSONResponse({"detail": sentence}, status_code=413)
        if declared and declared.isdigit() and int(declared) > self.limit:
            return await too_big(scope, receive, send)
        seen = 0
        over = False
        answered = False

        async def limited_receive():
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise _TooBig()
            return msg

        async def guarded_send(msg) -> None:
            # The app may turn the receive error into its own answer (e.g. 400 "error parsing the body"):
            # once the limit is passed, whatever it sends is replaced by the 413.
            nonlocal answered
            if not over:
                await send(msg)
            elif not answered:
                answered = True
                await too_big(scope, receive, send)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooBig:
            if not answered:
                answered = True
                await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    migrate: bool = True,
    background_tasks: bool = True,
) -> FastAPI:
    """The web app. `engine` defaults to the EchoEngine (no model). `migrate=False` skips the Alembic
    upgrade (the caller did it); `background_tasks=False` skips the guest cleanup loop (tests call it)."""
    settings = settings or Settings()
    if engine is None:
        from vmeta.serve.echo_engine import EchoEngine

        engine = EchoEngine()
    data_dir = Path(settings.data_dir)
    url = dbmod.database_url(data_dir, settings.database_url)
    sa_engine = dbmod.make_engine(url)
    if migrate:
        dbmod.upgrade(sa_engine)
    for sub in ("uploads", "avatars", "tmp"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    state = ServeState(
        settings=settings,
        sessions=dbmod.make_sessionmaker(sa_engine),
        engine=engine,
        hasher=password_hasher(settings),
        uploads_dir=data_dir / "uploads",
        avatars_dir=data_dir / "avatars",
        tmp_dir=data_dir / "tmp",
        background=[],
        inline_reads=sa_engine.dialect.name == "sqlite",
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(cleanup_loop(state)) if background_tasks else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await engine.aclose()
            sa_engine.dispose()

    app = FastAPI(
        title="vmeta serve",
        version="1",
        lifespan=lifespan,
        description="Short-video metaphor chat assistant: web API (/api) and OpenAI-compatible API (/v1). "
        "See docs/serve-api.md.",
    )
    app.state.vmeta = state
    app.state.db_engine = sa_engine
    install_error_handlers(app)
    _install_openai_error_handlers(app)
    security_headers(app)
    restrict_hosts(app, settings.allowed_hosts or None)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
        )
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    # Routes are matched in order: the history endpoints, the busiest, first (11x fewer route checks per request).
    for r in (conversations, answer_stream, auth, users, uploads, models, admin, openai_api):
        app.include_router(r.router)
    install_openapi(app)  # the error responses each route gives (serve/api_errors.py) in /openapi.json
    mount_static(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True, "models": [m.id for m in state.engine.models()]}

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        if CHAT_PAGE.exists():
            from vmeta.web.common import render_page

            return HTMLResponse(render_page(CHAT_PAGE))
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>vmeta</title><p>vmeta serve is running. "
            "The API is documented at <a href=/docs>/docs</a>.</p>"
        )

    return app


def _install_openai_error_handlers(app: FastAPI) -> None:
    """Errors under /v1 in OpenAI's shape; elsewhere the shared `{"detail"}` shape."""
    plain_http = app.exception_handlers[StarletteHTTPException]
    plain_validation = app.exception_handlers[RequestValidationError]

    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return openai_error_response(exc)

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/v1/"):
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            return openai_error_response(
                OpenAIError(
                    exc.status_code, detail, error_type_for(exc.status_code), headers=getattr(exc, "headers", None)
                )
            )
        return await plain_http(request, exc)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/v1/"):
            return openai_error_response(OpenAIError(400, _detail_of_validation(exc)))
        return await plain_validation(request, exc)

    app.add_exception_handler(OpenAIError, openai_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
