"""Request and response bodies of the web API (/api/...). The OpenAI-compatible API has its own in
routes/openai_api.py. Field descriptions end up in the OpenAPI schema at /openapi.json."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# SQLite hands datetimes back without a zone (they are stored as UTC): always answer in UTC with a zone.
UTCDateTime = Annotated[datetime, AfterValidator(_utc)]


# The largest `offset` of a paginated list: a larger one is a 422, not a database overflow (SQLite's integers
# are 64-bit; an offset past 2**63 was a 500).
MAX_OFFSET = 1_000_000_000


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ------------------------------------------------------------------------------------------- accounts
class RegisterIn(BaseModel):
    email: str = Field(min_length=3, max_length=320, description="Login name; an e-mail address or a user name.")
    password: str = Field(min_length=8, max_length=1024)
    name: str = Field("", max_length=100)

    @field_validator("email")
    @classmethod
    def _norm(cls, v: str) -> str:
        v = v.strip().lower()
        if any(c.isspace() for c in v):
            raise ValueError("must not contain spaces")
        return v


class LoginIn(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    @field_validator("email")
    @classmethod
    def _norm(cls, v: str) -> str:
        return v.strip().lower()


class PasswordIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class UserOut(_Out):
    id: str
    email: str | None
    name: str
    is_admin: bool
    is_guest: bool
    disabled: bool
    guest_expires_at: UTCDateTime | None = None
    avatar_id: str | None = None
    created_at: UTCDateTime


class MeOut(BaseModel):
    user: UserOut
    csrf_token: str | None = Field(None, description="Send back as X-CSRF-Token on every POST/PATCH/DELETE.")
    avatar_url: str | None = None


class TokenIn(BaseModel):
    name: str = Field("", max_length=100)


class TokenOut(_Out):
    id: str
    name: str
    prefix: str
    created_at: UTCDateTime
    last_used_at: UTCDateTime | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer token; shown once, only its hash is stored.")


# ------------------------------------------------------------------------------------------ uploads
class UploadOut(_Out):
    id: str
    filename: str
    media_type: str
    size_bytes: int
    duration_s: float | None
    width: int | None
    height: int | None
    created_at: UTCDateTime
    url: str = ""
    reading: bool = False  # the server started reading it for the model named on upload


class AvatarOut(BaseModel):
    id: str
    url: str


# ------------------------------------------------------------------------------------- conversations
class ConversationIn(BaseModel):
    title: str = Field("", max_length=200)


class ConversationPatch(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class MessageOut(_Out):
    id: str
    role: str
    content: str
    parts: list[dict[str, Any]]
    model: str | None
    base_model: str | None
    adapter: str | None
    status: str
    ttft_ms: float | None
    total_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    timings: dict[str, Any] = {}
    created_at: UTCDateTime


class ConversationOut(_Out):
    id: str
    title: str
    created_at: UTCDateTime
    updated_at: UTCDateTime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class MessageIn(BaseModel):
    text: str = Field("", description="The user's text (long input is fine, up to Settings.max_message_chars).")
    upload_ids: list[str] = Field(
        default_factory=list, max_length=8, description="Videos uploaded with POST /api/uploads."
    )
    model: str | None = Field(None, description="Model id from GET /api/models; default: the server's default.")
    max_new_tokens: int | None = Field(None, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)


# ------------------------------------------------------------------------------------------- models
class ModelOut(BaseModel):
    id: str
    base: str
    adapter: str | None
    kind: str
    description: str = ""
    default: bool = False
    available: bool = True
    reason: str | None = None  # why it cannot be used, when available is false
    frames: dict[str, Any] | None = None  # the frames it reads from a video, and where those settings come from
    context: list[str] = []  # what it reads beside the video because it was trained with it (screen_text)


# -------------------------------------------------------------------------------------------- admin
class UsageRow(BaseModel):
    user_id: str | None
    email: str | None
    source: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    avg_ttft_ms: float | None
    avg_total_ms: float | None


class AdminUserPatch(BaseModel):
    disabled: bool | None = None
    is_admin: bool | None = None


ExportFormat = Literal["json", "md"]
