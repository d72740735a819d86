"""Server-Sent Events: the response that streams them and one event's bytes; the chat page's answer
(routes/answer_stream.py) and /v1's streamed completions (routes/openai_api.py) both send them."""

from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi.responses import StreamingResponse


class SSEResponse(StreamingResponse):
    """A StreamingResponse that always closes its generator, so a client leaving mid-answer runs the
    generator's cleanup (store the partial answer, free the engine slot) at once rather than at GC time."""

    def __init__(self, content: Any, **kw: Any):
        super().__init__(content, media_type="text/event-stream", **kw)
        self.headers["Cache-Control"] = "no-cache"
        self.headers["X-Accel-Buffering"] = "no"

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[union-attr]


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One event as sent on the wire: its name and its data as one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
