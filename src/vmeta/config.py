"""The one settings object. Only this module reads the environment (VMETA_* variables and .env)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VMETA_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    data_dir: Path = Field(Path.home() / ".vmeta", description="Where caches, uploads and the SQLite DB live.")
    cache_dir: Path | None = Field(None, description="Defaults to DATA_DIR/cache.")

    # Stage-2 label rewriting (any OpenAI-compatible endpoint; DeepSeek-V3 as in the thesis).
    llm_base_url: str = "https://api.deepseek.com/v1"
    llm_model: str = "deepseek-chat"
    llm_api_key: SecretStr | None = None
    llm_concurrency: int = 4
    llm_max_retries: int = 5
    llm_timeout_s: float = 120.0

    # Models.
    default_model: str = "qwen2-vl-2b-instruct"
    models_dir: Path | None = Field(None, description="Local folder searched for model weights before the Hub.")
    hf_offline: bool = False
    speech_model: Path | None = Field(
        None,
        description="Folder of the faster-whisper model that transcribes speech (the `speech` context, vmeta video "
        "speech), e.g. Systran/faster-whisper-small downloaded on a machine with internet and copied here.",
    )

    # Serving.
    database_url: str | None = None
    secret_key: SecretStr | None = None
    reviewer: str | None = Field(None, description="Name recorded in the review audit log; defaults to $USER.")

    # ---------------------------------------------------------------- Serving (vmeta serve: web app + API)
    upload_max_bytes: int = Field(200 * 1024 * 1024, description="Largest video upload; enforced while streaming.")
    upload_max_duration_s: float = Field(600.0, description="Longest video accepted (seconds).")
    upload_max_pixels: int = Field(3840 * 2160, description="Largest frame (width x height) accepted.")
    avatar_max_bytes: int = Field(5 * 1024 * 1024, description="Largest avatar image upload.")
    avatar_size: int = Field(256, description="Avatars are re-encoded to at most this many pixels a side.")
    max_message_chars: int = Field(100_000, description="Longest text of one chat message (long text input works).")
    api_max_body_bytes: int = Field(
        300 * 1024 * 1024, description="Largest JSON body (e.g. /v1/chat/completions with data: URLs)."
    )
    guest_ttl_s: int = Field(24 * 3600, description="How long a guest's data is kept before cleanup.")
    guest_cleanup_interval_s: int = Field(600, description="How often the guest cleanup task runs.")
    guest_per_ip_per_hour: int = Field(30, description="New guest sessions one client IP may start per hour.")
    session_ttl_s: int = Field(30 * 24 * 3600, description="Lifetime of a browser session.")
    cookie_secure: bool = Field(False, description="Mark cookies Secure (set when served over HTTPS).")
    login_max_failures: int = Field(5, description="Wrong passwords per account per window before 429.")
    login_ip_max_failures: int = Field(20, description="Wrong passwords per client IP per window before 429.")
    login_window_s: int = Field(60, description="Window of the login rate limit.")
    registration_open: bool = Field(True, description="Allow anyone to register (admins can always create users).")
    admin_emails: list[str] = Field(default_factory=list, description="Accounts registered with these are admins.")
    api_allow_anonymous: bool = Field(
        False, description="Allow /v1 requests without a bearer token (local single-user use only)."
    )
    allow_remote_urls: bool = Field(False, description="Fetch http(s) image/video URLs in API requests.")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names served; empty = loopback only.")
    cors_origins: list[str] = Field(default_factory=list, description="CORS origins for /v1; empty = CORS off.")
    default_chat_model: str | None = Field(None, description="Model preselected in the page; default: first listed.")
    max_new_tokens: int = Field(512, description="Default answer length limit.")
    cpu_video_max_pixels: int = Field(
        256 * 256,
        description="Pixels per frame the base model reads on a CPU (the training budget of configs/qwen2-vl-2b); "
        "fine-tuned variants always read the frames they were trained on, and GPUs the model's defaults.",
    )
    cpu_runtime: str = Field(
        "auto",
        description="How `vmeta serve` runs a model on a CPU: int8 (linear layers with int8 weights through "
        "PyTorch's int8 operators: faster prompts, ~1.4x faster writing), openvino (the same in OpenVINO), torch "
        "(full weights), or auto (int8).",
    )
    cpu_compile: bool = Field(
        True,
        description="With the int8 runtime, compile its matmuls with torch.compile (a C++ compiler is needed; "
        "about 5 s at start): reading a video is ~25% faster; off = eager PyTorch.",
    )
    prompt_cache_mb: int = Field(
        2048,
        description="Memory for the model state of prompts already read (a follow-up question reads only its own "
        "words); 0 turns the cache off.",
    )
    # Argon2id cost. Lower ONLY in tests (tests/serve/conftest.py); production keeps pwdlib's recommended values.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
