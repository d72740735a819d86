"""A real, scriptable OpenAI-compatible HTTP server for tests and offline demos.

It speaks `POST /v1/chat/completions` (JSON, and `stream=True` server-sent events with `data: {...}`
chunks, a usage chunk when `stream_options.include_usage` is set, and `data: [DONE]`) and `GET /v1/models`.
Clients under test — the official `openai` client included — talk to it over a socket exactly as they would
talk to DeepSeek, vLLM or the vmeta chat API.

    from vmeta.testing.fake_openai import FakeOpenAI, Rule

    script = [
        Rule(match="搬沙发", times=1, text="好的，这不是模板"),    # first request mentioning it: a bad answer
        Rule(calls={2}, status=429, retry_after=0.1),            # the 2nd request overall: rate limited
        Rule(delay=0.2),                                          # everything else: slow, default answer
    ]
    with FakeOpenAI(script=script) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="x")
        ...
        assert fake.requests[0].user_text ...

Rules are tried in order; the first whose conditions hold (and that has uses left) answers. A rule that only
sets `delay` (no text/status/handler/body) delays and then falls through to the next matching rule, so a
global delay can be combined with scripted answers. When no rule answers, the default handler does:
`template_answer`, the deterministic "template mode" that turns a raw metaphor label (found after "原始标签："
in the user messages, else the last user message) into a five-slot template label without any model.

This is a stand-in for demos and tests, not a language model.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any]], str]

__all__ = ["FakeOpenAI", "RecordedRequest", "Rule", "build_app", "serve", "template_answer"]


# ---------------------------------------------------------------------------------------------- template mode

_EMOTION_BY_CATEGORY = {
    "讽刺类": "对这一现象的讽刺与批判态度",
    "诙谐类": "轻松诙谐的幽默情绪",
    "生活态度类": "积极从容的生活态度",
    "硬核类": "对硬核实力的赞叹与敬佩",
    "自嘲幽默类": "自我调侃的豁达心态",
}
_SOURCE_BY_CATEGORY = {
    "讽刺类": "网络热点事件",
    "诙谐类": "网络流行梗",
    "生活态度类": "网络流行语",
    "硬核类": "网络短视频文化",
    "自嘲幽默类": "网络自嘲文化",
}
_QUOTED = re.compile(r"[“\"「『]([^“”\"「」『』]{1,16})[”\"」』]")
_SENT_END = re.compile(r"[。！？!?；;\n]")


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def user_text(body: dict[str, Any]) -> str:
    """All user messages' text, joined by newlines (what `Rule.match` looks in)."""
    return "\n".join(_message_text(m) for m in body.get("messages") or [] if m.get("role") == "user")


def template_answer(body: dict[str, Any]) -> str:
    """Deterministic five-slot answer built from the request's raw label (no model involved)."""
    users = [_message_text(m) for m in body.get("messages") or [] if m.get("role") == "user"]
    raw, category = "", ""
    for text in users:
        labels = re.findall(r"原始标签[:：]\s*(.+?)\s*(?:\n\s*\n|$)", text, re.S)
        if labels:
            raw = labels[-1].strip()
            cats = re.findall(r"类别[:：]\s*(\S+)", text)
            category = cats[-1] if cats else ""
            break
    if not raw:
        raw = (users[-1] if users else "").strip() or "一段短视频"
    raw = re.sub(r"\s+", " ", raw)
    # The template's own words inside a slot would confuse a parser: swap them for synonyms.
    for word, synonym in (
        ("本视频讲述了", ""),
        ("出自", "来自"),
        ("因为", "由于"),
        ("表达出了", "传达了"),
        ("表达了", "传达了"),
    ):
        raw = raw.replace(word, synonym)
    m = _QUOTED.search(raw)
    first = _SENT_END.split(raw, maxsplit=1)[0].strip(" ，,") or raw
    concept = m.group(1) if m else first[:8]
    content = _clip(first, 60)
    feature = _clip(raw.replace("\n", " ").strip().rstrip("。.!！?？"), 80)
    source = _SOURCE_BY_CATEGORY.get(category, "网络短视频")
    emotion = _EMOTION_BY_CATEGORY.get(category, "创作者的态度")
    return f"本视频讲述了{content}。“{concept}”出自{source}，其因为{feature}，表达出了{emotion}。"


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut after a clause rather than inside a word when one ends late enough."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(ch, 0, limit) for ch in "，,；;。！？")
    return text[:cut] if cut >= limit // 2 else text[:limit]


# ---------------------------------------------------------------------------------------------------- script


@dataclass
class Rule:
    """One scripted behaviour. Conditions: `match` (substring of the user messages) and/or `calls`
    (1-based numbers of chat requests in arrival order); `times` caps how often the rule fires.
    Effects: `delay` seconds first, then one of `status` (an HTTP error with an OpenAI-style error body and
    optional `retry_after` header), `body` (a raw 200 response body, e.g. malformed JSON), `text` (the answer)
    or `handler(request_json) -> text`. A rule with only `delay` delays and falls through."""

    match: str | None = None
    calls: Container[int] | None = None
    times: int | None = None
    text: str | None = None
    handler: Handler | None = None
    status: int | None = None
    retry_after: float | None = None
    error_message: str | None = None
    body: str | None = None
    delay: float = 0.0
    used: int = 0

    def matches(self, body: dict[str, Any], call: int) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.calls is not None and call not in self.calls:
            return False
        return not (self.match is not None and self.match not in user_text(body))

    @property
    def answers(self) -> bool:
        return any(x is not None for x in (self.text, self.handler, self.status, self.body))


@dataclass
class RecordedRequest:
    path: str
    method: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    call: int  # 1-based chat-completion number (0 for other endpoints)
    at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    @property
    def user_text(self) -> str:
        return user_text(self.body or {})

    @property
    def last_user_text(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return _message_text(users[-1]) if users else ""


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


def _count_tokens(text: str) -> int:
    """A cheap stand-in for a tokenizer: one token per CJK character, one per 4 other characters."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return cjk + max(0, (len(text) - cjk + 3) // 4)


# ------------------------------------------------------------------------------------------------------ app


def build_app(
    script: list[Rule] | None = None,
    *,
    default: Handler = template_answer,
    models: tuple[str, ...] = ("fake-model",),
    api_key: str | None = None,
    strict_models: bool = False,
    state: FakeOpenAI | None = None,
):
    """The Starlette app. `api_key` set: other keys get 401. `strict_models`: unknown models get 404."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    rec = state if state is not None else FakeOpenAI(script=script, default=default, models=models)
    rules = list(script or [])

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        payload = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "code": status}}
        if status == 404:
            payload["error"]["code"] = "model_not_found" if "model" in message else "not_found"
        return JSONResponse(payload, status_code=status, headers=headers)

    def check_key(request: Request) -> JSONResponse | None:
        if api_key is None:
            return None
        if request.headers.get("authorization", "") != f"Bearer {api_key}":
            return error(401, "Incorrect API key provided.")
        return None

    async def list_models(request: Request) -> Response:
        rec._record(request, None, 0)
        if (denied := check_key(request)) is not None:
            return denied
        now = int(time.time())
        data = [{"id": m, "object": "model", "created": now, "owned_by": "vmeta-fake"} for m in models]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError:
            return error(400, "The request body is not valid JSON.")
        with rec._lock:
            rec._calls += 1
            call = rec._calls
            rec.in_flight += 1
            rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
        try:
            rec._record(request, body, call)
            if (denied := check_key(request)) is not None:
                return denied
            model = body.get("model") or ""
            if strict_models and model not in models:
                return error(404, f"The model `{model}` does not exist or you do not have access to it.")
            answer: str | None = None
            for rule in rules:
                if not rule.matches(body, call):
                    continue
                rule.used += 1
                if rule.delay:
                    await asyncio.sleep(rule.delay)
                if not rule.answers:
                    continue
                if rule.status is not None:
                    headers = {"retry-after": f"{rule.retry_after:g}"} if rule.retry_after is not None else None
                    return error(rule.status, rule.error_message or f"scripted error {rule.status}", headers)
                if rule.body is not None:
                    return Response(rule.body, media_type="application/json")
                answer = rule.text if rule.text is not None else rule.handler(body)  # type: ignore[misc]
                break
            if answer is None:
                answer = default(body)
            return _completion(body, model, answer, StreamingResponse, JSONResponse)
        finally:
            with rec._lock:
                rec.in_flight -= 1

    app = Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/models", list_models, methods=["GET"]),
            Route("/chat/completions", chat, methods=["POST"]),
        ]
    )
    app.state.fake = rec
    return app


def _completion(body: dict[str, Any], model: str, answer: str, streaming_cls, json_cls):
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prompt_tokens = sum(_count_tokens(_message_text(m)) + 4 for m in body.get("messages") or [])
    completion_tokens = _count_tokens(answer)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if not body.get("stream"):
        return json_cls(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": usage,
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        obj = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    async def events():
        yield chunk({"role": "assistant", "content": ""}, None)
        for i in range(0, len(answer), 8):
            yield chunk({"content": answer[i : i + 8]}, None)
            await asyncio.sleep(0)
        yield chunk({}, "stop")
        if include_usage:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            yield f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return streaming_cls(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


# --------------------------------------------------------------------------------------------------- server


class FakeOpenAI:
    """Run the fake on 127.0.0.1 (ephemeral port) in a background thread. `with FakeOpenAI(...) as fake:`
    gives the running server: `fake.base_url` ("http://127.0.0.1:PORT/v1"), `fake.requests` (every request
    received, in order), `fake.chat_requests`, `fake.max_in_flight`."""

    def __init__(
        self,
        script: list[Rule] | None = None,
        *,
        default: Handler = template_answer,
        models: tuple[str, ...] = ("fake-model",),
        api_key: str | None = None,
        strict_models: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.script = script or []
        self.default = default
        self.models = models
        self.api_key = api_key
        self.strict_models = strict_models
        self.host, self.port = host, port
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._calls = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None

    # recording
    def _record(self, request, body: dict[str, Any] | None, call: int) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(request.url.path, request.method, dict(request.headers), body, call))

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path.endswith("/chat/completions")]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # lifecycle
    def start(self) -> FakeOpenAI:
        import uvicorn

        app = build_app(
            self.script,
            default=self.default,
            models=self.models,
            api_key=self.api_key,
            strict_models=self.strict_models,
            state=self,
        )
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-openai", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __str__(self) -> str:
        return self.base_url


def serve(
    host: str = "127.0.0.1", port: int = 8765, *, models: tuple[str, ...] = ("fake-model", "deepseek-chat")
) -> None:
    """Serve template mode in the foreground (what `vmeta data mock-llm` runs). Blocks until Ctrl-C."""
    import uvicorn

    app = build_app(models=models)
    uvicorn.run(app, host=host, port=port, log_level="warning")
