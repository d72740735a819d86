"""A deterministic engine with no model: answers by describing the request.

For tests of the web layer and API, and for `vmeta serve --engine echo` demos on a machine without weights.
It honours the Engine contract fully (queue positions, streaming, timings) so the web layer is tested
against the same event sequence the real engine produces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Event, ModelInfo, Queued, Stage, Token

# With stage_delay_s: the stages a request with videos goes through, as the local engine reports them (made-up
# counts: 8 frames, 64 visual tokens), so the page's progress line can be shown and tested without a model.
_FAKE_FRAMES = 8
_FAKE_VISUAL = 64


class EchoEngine:
    def __init__(
        self,
        model_ids: tuple[str, ...] = ("echo", "echo:lora"),
        delay_s: float = 0.0,
        concurrency: int = 1,
        stage_delay_s: float | None = None,
    ):
        self._models = [
            ModelInfo(
                id=m,
                base=m.split(":")[0],
                adapter=m.split(":")[1] if ":" in m else None,
                kind="adapter" if ":" in m else "base",
            )
            for m in model_ids
        ]
        self.delay_s = delay_s
        self.stage_delay_s = stage_delay_s
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting: list[str] = []
        self.seen: list[ChatRequest] = []

    def models(self) -> list[ModelInfo]:
        return list(self._models)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        info = next((m for m in self._models if m.id == request.model), None)
        if info is None:
            raise EngineError(f"unknown model '{request.model}'; available: {', '.join(m.id for m in self._models)}")
        queued_at = time.perf_counter()
        self._waiting.append(request.request_id or str(id(request)))
        key = self._waiting[-1]
        try:
            if self._slots.locked():
                yield Queued(position=self._waiting.index(key) + 1)
            async with self._slots:
                self._waiting.remove(key)
                started = time.perf_counter()
                self.seen.append(request)
                words = _describe(request).split(" ")
                extra: dict = {}
                if self.stage_delay_s is not None and _videos(request):
                    async for stage in self._stages(request, started):
                        yield stage
                    extra = {"frames": [{"nframes": _FAKE_FRAMES}] * _videos(request), "visual_tokens": _FAKE_VISUAL}
                first = None
                for i, word in enumerate(words):
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    first = first or time.perf_counter()
                    yield Token(text=word if i == 0 else " " + word)
                end = time.perf_counter()
                yield Done(
                    model=info.base,
                    adapter=info.adapter,
                    ttft_s=(first or end) - started,
                    total_s=end - started,
                    queue_s=started - queued_at,
                    prompt_tokens=sum(len(str(m.get("content", ""))) for m in request.messages),
                    completion_tokens=len(words),
                    extra=extra,
                )
        finally:
            if key in self._waiting:
                self._waiting.remove(key)

    async def _stages(self, request: ChatRequest, started: float) -> AsyncIterator[Stage]:
        frames = _FAKE_FRAMES * _videos(request)
        steps = [
            ("frames", {"videos": _videos(request), "frames": frames, "visual_tokens": _FAKE_VISUAL}),
            *(("encoding", {"modality": "video", "frames": frames, "done": d}) for d in range(0, frames, 4)),
            ("reading", {"done": 0, "total": _FAKE_VISUAL + 20, "reused": 0}),
            ("writing", {}),
        ]
        for name, facts in steps:
            yield Stage(name, facts, time.perf_counter() - started)
            await asyncio.sleep(self.stage_delay_s or 0)

    async def aclose(self) -> None:
        return None


def _videos(request: ChatRequest) -> int:
    last = request.messages[-1] if request.messages else {}
    content = last.get("content")
    return sum(1 for p in content if p.get("type") == "video") if isinstance(content, list) else 0


def _describe(request: ChatRequest) -> str:
    last = request.messages[-1] if request.messages else {"content": ""}
    content = last.get("content", "")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    text = " ".join(p.get("text", "") for p in parts if p.get("type") == "text").strip()
    images = sum(1 for p in parts if p.get("type") == "image")
    turns = sum(1 for m in request.messages if m.get("role") == "user")
    return f"echo[{request.model}] turn={turns} videos={_videos(request)} images={images}: {text}"
