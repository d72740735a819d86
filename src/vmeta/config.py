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

    # Serving.
    database_url: str | None = None
    secret_key: SecretStr | None = None
    reviewer: str | None = Field(None, description="Name recorded in the review audit log; defaults to $USER.")

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
