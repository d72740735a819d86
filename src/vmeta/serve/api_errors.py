"""The error responses of `vmeta serve`, declared in one place and written into its OpenAPI schema.

- `ERRORS`: status -> what it means, for the web API (`/api/...`, body `ErrorOut`: `{"detail": sentence}`);
- `OPENAI_ERRORS`: the same for the OpenAI-compatible API (`/v1/...`, body `OpenAIErrorOut`:
  `{"error": {"message", "type", "param", "code"}}`);
- `OPERATION_ERRORS`: "METHOD /path" -> the error statuses that operation really answers with.

`install_openapi(app)` makes `app.openapi()` (served at /openapi.json) carry them: FastAPI's default 422
(`HTTPValidationError`, a list of validation errors — not what the app sends) is replaced by ours, and each
operation lists exactly its statuses of `OPERATION_ERRORS`. A new route needs a row here:
tests/serve/test_api_contract.py fails on an operation without one, and its Schemathesis run fails on a status
or a body the schema does not declare.

Besides these, any request can get 400 (a Host header that is not this server's, text/plain) and 413 (a body
over Settings.api_max_body_bytes); the schema lists 413 only where a body is expected.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every error of the web API (`vmeta.web.common.install_error_handlers`)."""

    detail: str = Field(description="One sentence for a person: what went wrong and what to do.")
    detail_i18n: dict[str, str] | None = Field(
        None,
        description="Only when the request sends X-Vmeta-Lang (the chat page): the sentence in every language.",
    )


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, not_found_error …")
    param: str | None = None
    code: str | None = Field(None, description="e.g. model_not_found, missing_api_key, upload_not_found")


class OpenAIErrorOut(BaseModel):
    """Every error under /v1, in OpenAI's shape (so the `openai` client raises its usual exceptions)."""

    error: OpenAIErrorDetail


ERRORS: dict[int, str] = {
    400: "Bad request: a body that cannot be parsed, or a request the server cannot act on (the sentence says why).",
    401: "Not authenticated: not logged in, session ended, guest session expired, or an invalid or revoked API token.",
    403: "Refused: cross-site request, missing or wrong X-CSRF-Token (cookie sessions), disabled account, "
    "guests cannot do this, or administrators only.",
    404: "Not found, or not yours (another user's ids answer the same as missing ones).",
    409: "Conflict: the e-mail or user name is already registered.",
    413: "Too large: the request body, the message text or the uploaded file is over its limit.",
    415: "Unsupported: not multipart/form-data, or the file is not a video (uploads) or not a picture (avatars).",
    416: "Range not satisfiable (no body; Content-Range says the file's size).",
    422: "Invalid request (a field or query parameter fails validation), or a file that is damaged or over the "
    "duration / resolution limits.",
    429: "Too many attempts: wait the seconds in Retry-After.",
    503: "No model is loaded on this server.",
}

OPENAI_ERRORS: dict[int, str] = {
    400: "invalid_request_error: an invalid body (validation errors are 400 here, as on OpenAI), an unsupported "
    "part or URL, n != 1, an empty or unusable file, or the engine refused the request.",
    401: "authentication_error: missing, invalid or revoked API token (code missing_api_key when none was sent).",
    403: "permission_error: the token's account is disabled.",
    404: "model_not_found (unknown model) or upload_not_found (not an upload of this token's account).",
    413: "The request body or a file (data: URL, fetched URL) is over its limit.",
    415: "A part's file is not a video or not a picture.",
    422: "A part's video is damaged or over the duration / resolution limits, or a picture has too many pixels.",
}

AUTH = (401, 403)  # every route that needs a caller: not authenticated / refused
BODY = (400, 413, 422)  # every route with a JSON body: unparseable, too large, invalid

OPERATION_ERRORS: dict[str, tuple[int, ...]] = {
    # conversations
    "GET /api/conversations": (*AUTH, 422),
    "POST /api/conversations": (*AUTH, *BODY),
    "GET /api/conversations/{conversation_id}": (*AUTH, 404),
    "PATCH /api/conversations/{conversation_id}": (*AUTH, *BODY, 404),
    "DELETE /api/conversations/{conversation_id}": (*AUTH, 404),
    "GET /api/messages/{message_id}": (*AUTH, 404),
    "GET /api/conversations/{conversation_id}/export": (*AUTH, 404, 422),
    # 400 empty message / unknown model; 413 text over max_message_chars; 404 conversation or upload
    "POST /api/conversations/{conversation_id}/messages": (*AUTH, *BODY, 404, 503),
    # accounts (register / guest: an invalid bearer token is 401 even there; 403 closed or cross-site)
    "POST /api/auth/register": (*AUTH, *BODY, 409),
    "POST /api/auth/login": (*AUTH, *BODY, 429),
    "POST /api/auth/logout": AUTH,
    "GET /api/auth/me": AUTH,
    "POST /api/auth/password": (*AUTH, *BODY),
    "POST /api/guest": (*AUTH, 429),
    "GET /api/tokens": AUTH,
    "POST /api/tokens": (*AUTH, *BODY),
    "DELETE /api/tokens/{token_id}": (*AUTH, 404),
    "PATCH /api/users/me": (*AUTH, *BODY),
    "POST /api/users/me/avatar": (*AUTH, *BODY, 415),
    "DELETE /api/users/me/avatar": AUTH,
    "GET /api/avatars/{avatar_id}": (*AUTH, 404, 416),
    # uploads
    "POST /api/uploads": (*AUTH, *BODY, 415),
    "GET /api/uploads": AUTH,
    "GET /api/uploads/{upload_id}/info": (*AUTH, 404),
    "GET /api/uploads/{upload_id}": (*AUTH, 404, 416),
    "DELETE /api/uploads/{upload_id}": (*AUTH, 404),
    # models (public)
    "GET /api/models": (),
    # admin
    "GET /api/admin/users": (*AUTH, 422),
    "PATCH /api/admin/users/{user_id}": (*AUTH, *BODY, 404),
    "GET /api/admin/usage": AUTH,
    # OpenAI-compatible
    "GET /v1/models": AUTH,
    "POST /v1/chat/completions": (*AUTH, 400, 404, 413, 415, 422),
}

_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
_MULTIPART_FILE = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        }
    },
}
# Operations whose body or answer FastAPI cannot see (streamed multipart in, files out): what they really take
# and give.
_REQUEST_BODIES = {"POST /api/uploads": _MULTIPART_FILE, "POST /api/users/me/avatar": _MULTIPART_FILE}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_FILE_ANSWERS = {
    "GET /api/uploads/{upload_id}": {"video/*": _BINARY},
    "GET /api/avatars/{avatar_id}": {"image/png": _BINARY},
}


def _error_response(status: int, openai: bool) -> dict[str, Any]:
    description = (OPENAI_ERRORS if openai else ERRORS)[status]
    if status == 416:
        return {"description": description, "headers": {"Content-Range": {"schema": {"type": "string"}}}}
    model = "OpenAIErrorOut" if openai else "ErrorOut"
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }
    if status == 429:
        out["headers"] = _RETRY_AFTER
    return out


def _component_schemas() -> dict[str, Any]:
    """ErrorOut, OpenAIErrorOut and what they refer to, as OpenAPI components."""
    out: dict[str, Any] = {}
    for model in (ErrorOut, OpenAIErrorOut):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Write the error responses of `OPERATION_ERRORS` into an OpenAPI document made by FastAPI (in place).
    An operation without a row keeps only its success answers (the contract test names it)."""
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            key = f"{method.upper()} {path}"
            responses = op.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's list-shaped HTTPValidationError: not what the app sends
            openai = path.startswith("/v1/")
            for status in OPERATION_ERRORS.get(key, ()):
                responses[str(status)] = _error_response(status, openai)
            if key in _REQUEST_BODIES:
                op["requestBody"] = _REQUEST_BODIES[key]
            if key in _FILE_ANSWERS:
                ok = {"content": _FILE_ANSWERS[key], "headers": {"Accept-Ranges": {"schema": {"type": "string"}}}}
                responses["200"] = {"description": "The file.", **ok}
                responses["206"] = {"description": "The part of the file the Range header asked for.", **ok}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update(_component_schemas())
    return schema


def install_openapi(app: FastAPI) -> None:
    """`app.openapi()` (and /openapi.json, /docs) with the error responses of this module."""
    base = app.openapi
    done: dict[str, int] = {}

    def openapi() -> dict[str, Any]:
        schema = base()
        if done.get("id") != id(schema):  # FastAPI rebuilds it when the routes change
            document_errors(schema)
            done["id"] = id(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "ERRORS",
    "OPENAI_ERRORS",
    "OPERATION_ERRORS",
    "ErrorOut",
    "OpenAIErrorOut",
    "document_errors",
    "install_openapi",
]
