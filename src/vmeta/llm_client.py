"""One client for OpenAI-compatible chat-completions endpoints (DeepSeek, vLLM, any `/v1` server), shared by the
label rewrite (`vmeta.dataset.rewrite`) and the evaluation's LLM judge (`vmeta.evaluate.judge`).

- `LLMClient.complete(messages)`: one chat completion, at most `concurrency` requests in flight (a slot is held
  through a request's retries, so a rate-limited endpoint is not pressed harder while it asks to wait);
- transport failures (408/409/429/5xx, timeouts, refused connections, an unreadable 200 body) are retried with
  exponential backoff and jitter, honouring Retry-After / retry-after-ms (at most 10 minutes);
- a wrong key, model or URL, or an endpoint that keeps failing, raises `LLMStop` with one sentence naming the
  setting to fix, and the client sends nothing more (every other request of the job stops too); a request the
  endpoint refuses for its content raises `LLMRefused` and the others go on;
- `ResponseCache`: an append-only JSONL file of finished answers keyed by `cache_key(model, prompt…)`, fsynced
  per answer, so a re-run (or a run after `kill -9`) sends nothing twice. What a row holds is the caller's (the
  rewrite stores the cleaned label, the judge its verdict); the key parts and their order are the caller's too,
  which keeps the caches written before this module hitting.

Why the retry is written here instead of the `openai` client's own (`max_retries`, which is set to 0 here):
that one gives up when Retry-After asks for more than two minutes (providers' per-minute/day quotas do), does not
retry a 200 whose body cannot be parsed (seen behind busy gateways), keeps its retries invisible (a long job
reports them), and cannot stop a job's other requests when the key is wrong. The `openai` package still does the
HTTP, timeouts and error classes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.jsonio import append_jsonl

RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx
MAX_RETRY_AFTER_S = 600.0


class LLMError(Exception):
    """A request that did not give an answer; the message is one sentence for people."""


class LLMStop(LLMError):
    """Nothing more can be sent (wrong key, model or URL; the endpoint kept failing): the job stops."""


class LLMRefused(LLMError):
    """The endpoint refused this request (e.g. its content); other requests may go on."""


@dataclass(frozen=True)
class SettingNames:
    """How the caller's user sets each endpoint setting, named in error sentences."""

    api_key: str = "VMETA_LLM_API_KEY (or --api-key)"
    model: str = "VMETA_LLM_MODEL (or --model)"
    base_url: str = "VMETA_LLM_BASE_URL (or --base-url)"


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class LLMStats:
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class LLMClient:
    """Chat completions from one endpoint and model. Use inside a running event loop; `aclose()` when done."""

    base_url: str | None
    api_key: str | None
    model: str
    concurrency: int = 4
    max_retries: int = 5
    timeout: float = 120.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    settings: SettingNames = field(default_factory=SettingNames)
    client: Any = None  # an `openai.AsyncOpenAI` (made on first use when None)
    stats: LLMStats = field(default_factory=LLMStats)
    stopped: str | None = None  # the sentence of the first LLMStop: later requests raise it without sending
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)

    async def complete(self, messages: list[dict[str, Any]], **params: Any) -> Completion:
        """One answer to `messages` (`params`: temperature, max_tokens …). Raises LLMStop or LLMRefused."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(max(1, self.concurrency))
        async with self._slots:
            try:
                return await self._send(messages, params)
            except LLMStop as exc:
                self.stopped = self.stopped or str(exc)
                raise LLMStop(self.stopped) from None

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()

    def _openai(self) -> Any:
        if self.client is None:
            require_openai()
            import openai

            self.client = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key or "none", max_retries=0, timeout=self.timeout
            )
        return self.client

    async def _send(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Completion:
        import openai

        client = self._openai()
        failures = 0
        while True:
            if self.stopped is not None:
                raise LLMStop(self.stopped)
            self.stats.requests += 1
            try:
                resp = await client.chat.completions.create(model=self.model, messages=messages, **params)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise LLMStop(
                    f"The LLM endpoint {self.base_url} refused the API key (HTTP {exc.status_code}): "
                    f"set {self.settings.api_key} to a valid key."
                ) from None
            except openai.NotFoundError as exc:
                raise LLMStop(self._not_found(exc)) from None
            except openai.APIStatusError as exc:
                if exc.status_code == 400 and _mentions_model(exc):
                    raise LLMStop(self._not_found(exc)) from None
                if exc.status_code not in RETRYABLE_STATUS and exc.status_code < 500:
                    raise LLMRefused(
                        f"the endpoint rejected the request (HTTP {exc.status_code}): {_message(exc)}"
                    ) from None
                failures = await self._backoff(failures, f"HTTP {exc.status_code}", exc.response.headers)
                continue
            except (
                openai.APITimeoutError,
                openai.APIConnectionError,
                openai.APIResponseValidationError,
                ValueError,  # a 200 whose body is not JSON
            ) as exc:
                failures = await self._backoff(failures, _describe(exc), None)
                continue
            usage = getattr(resp, "usage", None)
            prompt = (usage.prompt_tokens or 0) if usage is not None else 0
            completion = (usage.completion_tokens or 0) if usage is not None else 0
            self.stats.prompt_tokens += prompt
            self.stats.completion_tokens += completion
            text = (resp.choices[0].message.content or "") if resp.choices else ""
            return Completion(text, prompt, completion)

    async def _backoff(self, failures: int, what: str, headers: Any) -> int:
        if failures >= self.max_retries:
            raise LLMStop(
                f"The LLM endpoint {self.base_url} kept failing ({what}) after {self.max_retries} retries; "
                f"check {self.settings.base_url} and the provider's status, then run again."
            )
        delay = retry_after(headers)  # the server's word wins (within reason: MAX_RETRY_AFTER_S)
        if delay is None:
            delay = min(self.backoff_cap, self.backoff_base * 2**failures) * random.uniform(0.5, 1.0)
        self.stats.retries += 1
        await asyncio.sleep(min(delay, MAX_RETRY_AFTER_S))
        return failures + 1

    def _not_found(self, exc: Exception) -> str:
        if _mentions_model(exc):
            return (
                f"The LLM endpoint {self.base_url} does not know the model {self.model!r}: "
                f"set {self.settings.model} to a model it serves."
            )
        return (
            f"The LLM endpoint answered 404 at {self.base_url}: set {self.settings.base_url} to the "
            "API root that serves /chat/completions (usually ending in /v1)."
        )


def require_openai() -> None:
    """A UserError saying how to install the `openai` package when it is missing (call before long work)."""
    if importlib.util.find_spec("openai") is None:
        raise UserError("talking to an LLM endpoint needs the `openai` package: pip install 'vmeta[data]'.")


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(getattr(exc, "message", exc))


def _mentions_model(exc: Any) -> bool:
    body = getattr(exc, "body", None)
    code = body.get("code") if isinstance(body, dict) else None
    text = f"{_message(exc)} {code or ''}".lower()
    return "model" in text and any(
        w in text for w in ("not exist", "not found", "does not exist", "unknown", "model_not_found", "invalid model")
    )


def _describe(exc: Exception) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect"
    return f"unreadable response: {type(exc).__name__}"


def retry_after(headers: Any) -> float | None:
    """Seconds the server asks to wait: retry-after-ms, or Retry-After as seconds or an HTTP date. None: unsaid."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ the cache


def cache_key(*parts: str) -> str:
    """sha256 of the JSON list of `parts`: the model and every text of the prompt (and a prompt version), in the
    caller's fixed order — any change to one of them is a different key."""
    return hashlib.sha256(json.dumps(list(parts), ensure_ascii=False).encode("utf-8")).hexdigest()


class ResponseCache:
    """Finished answers by key, from and to an append-only JSONL file (None: memory only). A line torn by a kill,
    or any unreadable line, is skipped: it is only a cache. `usable(row)` keeps rows the caller can use."""

    def __init__(
        self, path: Path | None, usable: Callable[[dict[str, Any]], bool] = lambda row: True, *, read: bool = True
    ):
        """`read=False`: start empty (answer everything afresh) but still append new answers to `path`."""
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        if not read or path is None or not path.exists():
            return
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and row.get("key") and usable(row):
                    self.rows[row["key"]] = row

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put(self, row: dict[str, Any]) -> None:
        """Remember `row` (it carries its "key") and append it to the file, fsynced."""
        self.rows[row["key"]] = row
        if self.path is not None:
            append_jsonl(self.path, row)

    def __len__(self) -> int:
        return len(self.rows)
