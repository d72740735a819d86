"""The contract between the web layer and the inference engine.

The web app (accounts, conversations, page) and the OpenAI-compatible API both talk to an `Engine`
through this protocol only, so the local engine (one base model + adapters switched per request),
the forwarding engine (any OpenAI-compatible server: vLLM, SGLang, LMDeploy) and the test engine are
interchangeable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ModelInfo:
    id: str  # what clients send as `model` ("qwen2-vl-2b-instruct", "qwen2-vl-2b-instruct:lora-r16", ...)
    base: str  # the base model it runs on
    adapter: str | None = None  # adapter name when it is a fine-tuned variant served beside the base
    kind: Literal["base", "adapter", "merged", "remote"] = "base"
    description: str = ""
    # The frames it reads from a video (frame settings + where they come from: its run, the model's defaults,
    # the CPU budget); None when the engine does not know (remote).
    frames: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    # What it reads beside the video because it was trained with it (["screen_text"]); empty for most.
    context: tuple[str, ...] = field(default=(), compare=False, hash=False)


@dataclass
class ChatRequest:
    model: str
    # OpenAI-style messages; content is a string or a list of parts:
    # {"type": "text", "text"}, {"type": "video", "video": "/abs/path.mp4"}, {"type": "image", "image": "/abs/path"}.
    # The web layer resolves uploads / data: URLs to local file paths before calling the engine.
    messages: list[dict[str, Any]]
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    request_id: str = ""
    # Who asks (an account or guest id): model state kept from one request (a read video, a conversation's
    # prompt) is reused only for later requests of the same person and variant.
    user: str | None = None


@dataclass
class Queued:
    """The request waits; `position` 1 means it runs next. Sent again whenever the position changes."""

    position: int


@dataclass
class Stage:
    """What the engine is doing before the first token, so a person sees progress instead of a silent wait:
    "frames" (video decoded: facts frames, visual_tokens), "encoding" (the vision tower), "reading" (the prompt:
    done / total tokens, reused from earlier turns), "writing" (the answer starts)."""

    name: str
    facts: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0  # since the request started running


@dataclass
class Token:
    text: str


@dataclass
class Done:
    model: str
    adapter: str | None
    ttft_s: float  # engine time to first token, measured from when the request started running
    total_s: float
    queue_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)


Event = Queued | Stage | Token | Done


class EngineError(Exception):
    """A request the engine cannot serve (unknown model, bad video): the message is for the user."""


class Engine(Protocol):
    def models(self) -> list[ModelInfo]: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """Yield Queued* then Stage* then Token* then exactly one Done; raise EngineError for user mistakes."""
        ...

    async def aclose(self) -> None: ...
