"""Web parts shared by the review page (`vmeta data review`) and the chat app (`vmeta serve`).

- `file_response(path, request)`: serves a file with HTTP Range support (206 Partial Content), so a
  `<video>` element can seek without downloading the whole file;
- `TokenGuard`: a per-process random token embedded in a page and required, with a same-origin check,
  on every state-changing request (a CSRF guard for pages that have no login);
- `same_origin(request)`: the Origin / Sec-Fetch-Site check on its own (cookie-session apps use it too);
- `mount_static(app)`: the shared CSS / ES modules / i18n messages under `/static`;
- `install_error_handlers(app)`: every error is JSON `{"detail": "<one human sentence>"}`;
- `pick_language(request)` / `messages(lang)`: the small i18n helper (Chinese default, English available);
  the same JSON message files are loaded by the page's `i18n.js` module.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
from collections.abc import AsyncIterator
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmeta.errors import UserError
from vmeta.web.error_text import error_body

STATIC_DIR = Path(__file__).with_name("static")
LANGUAGES: tuple[str, ...] = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
LANG_COOKIE = "vmeta_lang"
CHUNK = 256 * 1024

for _ext, _type in (
    (".mp4", "video/mp4"),
    (".m4v", "video/mp4"),
    (".mov", "video/quicktime"),
    (".webm", "video/webm"),
    (".mkv", "video/x-matroska"),
    (".js", "text/javascript"),
    (".mjs", "text/javascript"),
    (".css", "text/css"),
    (".json", "application/json"),
):
    mimetypes.add_type(_type, _ext)


# ------------------------------------------------------------------------------------ range responses
def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single `bytes=` range into an inclusive (start, end) within a file of `size` bytes.

    Returns None when the header should be ignored (not `bytes`, several ranges, malformed): the whole file
    is then sent with 200, which RFC 9110 allows. Raises ValueError when it is unsatisfiable (-> 416).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":  # suffix range: the last N bytes
        if last == "":
            return None
        n = int(last)
        if n == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size:
        raise ValueError("range starts past the end of the file")
    if end < start:
        return None
    return start, min(end, size - 1)


def _iter_file(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        with path.open("rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    return gen()


def file_response(path: str | Path, request: Request, media_type: str | None = None) -> Response:
    """The file at `path`, honouring a single-range `Range` header (206 + Content-Range; 416 when unsatisfiable).

    The caller decides which paths are allowed; this function only serves. HEAD requests get the headers only.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise HTTPException(404, f"file {path.name} is missing or unreadable.") from None
    size = st.st_size
    media_type = media_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    etag = f'"{st.st_mtime_ns:x}-{size:x}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": formatdate(st.st_mtime, usegmt=True),
        "Cache-Control": "no-cache",
    }
    start, end, status = 0, size - 1, 200
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header and size > 0 and (if_range is None or if_range in (etag, headers["Last-Modified"])):
        try:
            rng = parse_range(range_header, size)
        except ValueError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})
        if rng is not None:
            start, end = rng
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    elif range_header and size == 0:
        return Response(status_code=416, headers={"Content-Range": "bytes */0", "Accept-Ranges": "bytes"})
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        _iter_file(path, start, length), status_code=status, headers=headers, media_type=media_type
    )


# ---------------------------------------------------------------------------------- CSRF / same origin
def same_origin(request: Request) -> bool:
    """True unless the browser says the request comes from another site.

    Browsers send `Sec-Fetch-Site` and (on POST) `Origin`; a request without either is not from a browser
    page of another site (curl, tests), which the token check still covers.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    parts = urlsplit(origin)
    return parts.netloc == host and parts.scheme in ("http", "https")


class TokenGuard:
    """A random per-process token: embed `guard.token` in the page, send it back in `header` on every POST.

    Use as a FastAPI dependency: `dependencies=[Depends(guard)]`. Wrong/missing token or a cross-site request
    -> 403 with a sentence saying what to do.
    """

    def __init__(self, header: str = "X-Review-Token", token: str | None = None):
        self.header = header
        self.token = token or secrets.token_urlsafe(32)

    def check(self, request: Request) -> None:
        if not same_origin(request):
            raise HTTPException(403, "cross-site request refused; use the page served by this server.")
        sent = request.headers.get(self.header, "")
        if not sent or not secrets.compare_digest(sent.encode(), self.token.encode()):
            raise HTTPException(
                403, f"missing or wrong {self.header} header; reload the page (the server may have restarted)."
            )

    async def __call__(self, request: Request) -> None:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            self.check(request)


# ------------------------------------------------------------------------------------- static, errors
def mount_static(app: FastAPI, path: str = "/static", name: str = "static") -> None:
    """Serve the shared assets (css/, js/, i18n/ and page folders) at `path`."""
    app.mount(path, StaticFiles(directory=STATIC_DIR), name=name)


def _detail_of_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "invalid request — " + "; ".join(parts) + "."


def install_error_handlers(app: FastAPI, status_for: dict[type[Exception], int] | None = None) -> None:
    """JSON `{"detail": sentence}` for every error. `status_for` maps UserError subclasses to statuses
    (most specific first); other UserErrors are 400."""
    table = dict(status_for or {})

    def said(request: Request, detail: str) -> dict[str, Any]:
        return error_body(request, detail)

    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        status = next((code for cls, code in table.items() if isinstance(exc, cls)), 400)
        return JSONResponse(said(request, str(exc)), status_code=status)

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(said(request, _detail_of_validation(exc)), status_code=422)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail, ensure_ascii=False)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path}."
        headers = getattr(exc, "headers", None)
        return JSONResponse(said(request, detail), status_code=exc.status_code, headers=headers)

    app.add_exception_handler(UserError, user_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]


_CSP = (
    "default-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    """Pure ASGI middleware adding the headers of `security_headers` to every response start (headers the
    app already set win). Not a Starlette BaseHTTPMiddleware: that one costs a task, a memory stream and a
    response re-wrap per request, which showed up as a large share of a fast API request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                present = {k.lower() for k, _ in headers}
                for k, v in _SECURITY_HEADERS:
                    if k not in present:
                        headers.append((k, v))
                if b"content-security-policy" not in present:
                    ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                    if ctype.startswith(b"text/html"):
                        headers.append((b"content-security-policy", _CSP.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def security_headers(app: FastAPI) -> None:
    """Conservative headers for local pages: no framing, no sniffing, same-origin everything (and a CSP on
    HTML pages)."""
    app.add_middleware(SecurityHeaders)


# ---------------------------------------------------------------------------------------------- i18n
@lru_cache
def messages(lang: str = DEFAULT_LANGUAGE) -> dict[str, str]:
    """The message table of `lang` (static/i18n/LANG.json), falling back to Chinese for missing keys."""
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    base = json.loads((STATIC_DIR / "i18n" / f"{DEFAULT_LANGUAGE}.json").read_text(encoding="utf-8"))
    if lang == DEFAULT_LANGUAGE:
        return base
    return base | json.loads((STATIC_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def t(key: str, lang: str = DEFAULT_LANGUAGE, **params: Any) -> str:
    text = messages(lang).get(key, key)
    for k, v in params.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def pick_language(request: Request, *, accept_language: bool = False) -> str:
    """?lang=, then the `vmeta_lang` cookie (the page's own switch), then — only if `accept_language` — the
    browser's Accept-Language; otherwise Chinese, the default UI language."""
    for value in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if value and value.lower()[:2] in LANGUAGES:
            return value.lower()[:2]
    if accept_language:
        for part in request.headers.get("accept-language", "").split(","):
            code = part.split(";")[0].strip().lower()[:2]
            if code in LANGUAGES:
                return code
    return DEFAULT_LANGUAGE


def render_page(path: str | Path, **values: str) -> str:
    """A static HTML file with `{{name}}` placeholders replaced by HTML-escaped values (no template engine)."""
    import html

    text = Path(path).read_text(encoding="utf-8")
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", html.escape(str(v), quote=True))
    return text


LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1", "[::1]", "testserver")


def restrict_hosts(app: FastAPI, allowed_hosts: list[str] | tuple[str, ...] | None = None) -> None:
    """Refuse requests whose Host header is not ours (400): stops DNS-rebinding pages from reading a
    local page's token. Default: loopback names only; pass ["*"] when serving on a public address."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    hosts = list(allowed_hosts or LOOPBACK_HOSTS)
    if "*" not in hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


__all__ = [
    "LANGUAGES",
    "STATIC_DIR",
    "SecurityHeaders",
    "TokenGuard",
    "file_response",
    "install_error_handlers",
    "is_loopback",
    "messages",
    "mount_static",
    "parse_range",
    "pick_language",
    "render_page",
    "restrict_hosts",
    "same_origin",
    "security_headers",
    "t",
]
