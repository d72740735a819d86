"""An engine that forwards to any OpenAI-compatible server (vLLM, SGLang, LMDeploy): how one deployment
scales past one GPU.

``ForwardingEngine(base_url, api_key, models=None)`` streams answers with the official ``openai`` client
(``AsyncOpenAI``). Video and image parts, which reach engines as local file paths, are sent as ``video_url`` /
``image_url`` parts with ``data:`` URLs (base64), or as ``file://`` paths when the model server reads the same
disk (``share_files=True``; vLLM needs ``--allowed-local-media-path`` for that). Models are listed from the
server's ``/v1/models`` (cached for ``models_ttl_s``) unless a fixed list is given.

A client that goes away closes the HTTP stream, which vLLM and SGLang take as an abort.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Event, ModelInfo, Queued, Token


class ForwardingEngine:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        models: list[str] | tuple[str, ...] | None = None,
        *,
        share_files: bool = False,
        max_concurrency: int | None = None,
        timeout_s: float = 600.0,
        models_ttl_s: float = 30.0,
        max_retries: int = 2,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        from openai import AsyncOpenAI

        self.base_url = base_url.rstrip("/")
        self.share_files = share_files
        self.models_ttl_s = models_ttl_s
        self.extra_body = dict(extra_body or {})
        self._api_key = api_key or "EMPTY"
        self._timeout_s = timeout_s
        self._client = AsyncOpenAI(
            base_url=self.base_url, api_key=self._api_key, timeout=timeout_s, max_retries=max_retries
        )
        self._fixed = list(models) if models else None
        self._listed: list[str] | None = None
        self._listed_at = 0.0
        self._list_error: str | None = None
        self._refreshing: asyncio.Task | None = None
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._waiting: list[object] = []

    # ------------------------------------------------------------------------------------------------ models

    def _info(self, model_id: str) -> ModelInfo:
        return ModelInfo(
            id=model_id, base=model_id, adapter=None, kind="remote", description=f"served by {self.base_url}"
        )

    async def refresh_models(self) -> list[str]:
        """Ask the server for its models now (``GET /v1/models``)."""
        from openai import OpenAIError

        try:
            page = await self._client.models.list()
            ids = [m.id for m in page.data]
        except OpenAIError as exc:
            self._list_error = _explain(exc, self.base_url)
            self._listed_at = time.monotonic()
            raise EngineError(self._list_error) from None
        self._listed, self._listed_at, self._list_error = ids, time.monotonic(), None
        return ids

    def _list_sync(self) -> None:
        """First listing from synchronous code (no event loop running): a short blocking request."""
        from openai import OpenAI, OpenAIError

        try:
            with OpenAI(base_url=self.base_url, api_key=self._api_key, timeout=5.0, max_retries=0) as client:
                self._listed = [m.id for m in client.models.list().data]
                self._list_error = None
        except OpenAIError as exc:
            self._list_error = _explain(exc, self.base_url)
        self._listed_at = time.monotonic()

    def models(self) -> list[ModelInfo]:
        if self._fixed is not None:
            return [self._info(m) for m in self._fixed]
        stale = time.monotonic() - self._listed_at > self.models_ttl_s
        if stale:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is None or self._listed is None:
                self._list_sync()  # nothing known yet: ask now (a short blocking request, once)
            elif self._refreshing is None or self._refreshing.done():
                # Inside the event loop: refresh in the background, answer with what is known now.
                self._refreshing = loop.create_task(self._refresh_quietly())
        return [self._info(m) for m in self._listed or []]

    async def _refresh_quietly(self) -> None:
        with contextlib.suppress(EngineError):
            await self.refresh_models()

    async def _known_models(self) -> list[str] | None:
        if self._fixed is not None:
            return self._fixed
        if self._listed is None or time.monotonic() - self._listed_at > self.models_ttl_s:
            try:
                await self.refresh_models()
            except EngineError:
                return self._listed  # unknown: let the server decide
        return self._listed

    # ---------------------------------------------------------------------------------------------- messages

    def _media_url(self, path: str, kind: str) -> str:
        p = Path(path)
        if not p.is_file():
            raise EngineError(f"the {kind} {p.name} cannot be found; upload it again.")
        if self.share_files:
            return p.resolve().as_uri()
        mime = mimetypes.guess_type(p.name)[0] or ("video/mp4" if kind == "video" else "image/png")
        return f"data:{mime};base64,{base64.b64encode(p.read_bytes()).decode('ascii')}"

    def _convert(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for msg in messages:
            content = msg.get("content")
            if not isinstance(content, list):
                out.append({"role": msg.get("role", "user"), "content": content if content is not None else ""})
                continue
            parts = []
            for part in content:
                if isinstance(part, str):
                    parts.append({"type": "text", "text": part})
                    continue
                kind = part.get("type")
                if kind == "text":
                    parts.append({"type": "text", "text": part.get("text", "")})
                elif kind in ("video", "image"):
                    value = part.get(kind)
                    if not isinstance(value, str | Path):
                        raise EngineError(f"a {kind} must be sent to a remote model server as a file.")
                    value = str(value)
                    if value.startswith(("data:", "http://", "https://")):
                        url = value
                    else:
                        url = self._media_url(value[7:] if value.startswith("file://") else value, kind)
                    parts.append({"type": f"{kind}_url", f"{kind}_url": {"url": url}})
                elif kind in ("video_url", "image_url"):
                    parts.append(part)
                else:
                    raise EngineError(f"unknown content part type {kind!r}; use text, video or image.")
            out.append({"role": msg.get("role", "user"), "content": parts})
        return out

    # ---------------------------------------------------------------------------------------------- requests

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        from openai import OpenAIError

        known = await self._known_models()
        if known is not None and request.model not in known:
            raise EngineError(
                f"unknown model '{request.model}'; the model server offers: {', '.join(known) or '(none)'}."
            )
        messages = await asyncio.to_thread(self._convert, request.messages)
        queued_at = time.perf_counter()
        key = object()
        self._waiting.append(key)
        try:
            if self._slots is not None and self._slots.locked():
                yield Queued(position=self._waiting.index(key) + 1)
            async with self._slots if self._slots is not None else _nothing():
                self._waiting.remove(key)
                started = time.perf_counter()
                kwargs: dict[str, Any] = {
                    "model": request.model,
                    "messages": messages,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "max_tokens": request.max_new_tokens,
                    "temperature": request.temperature,
                    "top_p": request.top_p,
                }
                if request.seed is not None:
                    kwargs["seed"] = request.seed
                if self.extra_body:
                    kwargs["extra_body"] = self.extra_body
                first: float | None = None
                finish = "stop"
                prompt_tokens = completion_tokens = 0
                pieces = 0
                try:
                    response = await self._client.chat.completions.create(**kwargs)
                except OpenAIError as exc:
                    raise EngineError(_explain(exc, self.base_url, request.model)) from None
                try:
                    async for chunk in response:
                        if chunk.usage is not None:
                            prompt_tokens = chunk.usage.prompt_tokens or 0
                            completion_tokens = chunk.usage.completion_tokens or 0
                        for choice in chunk.choices or []:
                            text = choice.delta.content if choice.delta is not None else None
                            if text:
                                first = first or time.perf_counter()
                                pieces += 1
                                yield Token(text=text)
                            if choice.finish_reason:
                                finish = choice.finish_reason
                except OpenAIError as exc:
                    raise EngineError(_explain(exc, self.base_url, request.model)) from None
                finally:
                    await response.close()  # a consumer that left: drop the connection (the server aborts)
                end = time.perf_counter()
                yield Done(
                    model=request.model,
                    adapter=None,
                    ttft_s=(first or end) - started,
                    total_s=end - started,
                    queue_s=started - queued_at,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens or pieces,
                    finish_reason=finish,
                    extra={"backend": self.base_url, "model_id": request.model, "kind": "remote"},
                )
        finally:
            if key in self._waiting:
                self._waiting.remove(key)

    async def aclose(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
        with contextlib.suppress(RuntimeError):  # its connections belonged to an event loop already closed
            await self._client.close()


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _explain(exc: Exception, base_url: str, model: str | None = None) -> str:
    """An OpenAI client error as one sentence for the user."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"the model server at {base_url} did not answer in time; try again."
    if isinstance(exc, openai.APIConnectionError):
        return f"the model server at {base_url} cannot be reached; check that it is running."
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return f"the model server at {base_url} refused the API key."
    if isinstance(exc, openai.NotFoundError):
        return f"the model server at {base_url} does not serve the model '{model}'." if model else str(exc)
    if isinstance(exc, openai.RateLimitError):
        return f"the model server at {base_url} is busy (rate limited); try again shortly."
    if isinstance(exc, openai.APIStatusError):
        message = exc.message if isinstance(exc.message, str) else str(exc)
        return f"the model server at {base_url} rejected the request ({exc.status_code}): {message}"
    return f"the model server at {base_url} failed: {exc}"


__all__ = ["ForwardingEngine"]
