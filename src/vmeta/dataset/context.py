"""Context given to the model beside the video: the text burned into the picture and what is said (issue #15).

One place decides what a context block looks like, so training, prediction, the ShareGPT export and the chat
server put exactly the same words in front of the instruction:

    block = context_block({"screen_text": "作者配文：阴阳两隔\\n上班第一天"})
    # -> "画面文字：作者配文：阴阳两隔 / 上班第一天"   (and "语音：..." on the next line for the speech kind)
    user_text = with_context(instruction, block)   # block, a newline, then the instruction

A run records which kinds it was trained with (`ContextSettings`, in run.json) and every later use of the run
(predict --run, serve, export) reads them from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vmeta.errors import UserError

# kind -> the label the block starts with. A new kind is one row here plus where its text comes from.
CONTEXT_LABELS: dict[str, str] = {"screen_text": "画面文字", "speech": "语音"}
CONTEXT_KINDS = tuple(CONTEXT_LABELS)
DEFAULT_MAX_CHARS = 200  # per kind: a few captions; long enough for a title and two subtitles
_LINE_SEPARATOR = " / "
_ELLIPSIS = "…"


@dataclass(frozen=True)
class ContextSettings:
    """Which contexts a run adds to the user turn, and how long each may be (characters)."""

    kinds: tuple[str, ...] = ()
    max_chars: int = DEFAULT_MAX_CHARS
    screen_text: dict[str, Any] = field(default_factory=dict)  # ScreenTextSettings overrides (fps, ...)
    speech: dict[str, Any] = field(default_factory=dict)  # SpeechSettings overrides (language, beam_size, ...)

    def __post_init__(self) -> None:
        check_kinds(self.kinds, "context")
        if not isinstance(self.max_chars, int) or self.max_chars < 10:
            raise UserError(f"context max_chars={self.max_chars!r}: give a whole number of characters, at least 10.")

    @property
    def enabled(self) -> bool:
        return bool(self.kinds)

    def screen_text_settings(self) -> Any:
        """The `ScreenTextSettings` this context reads videos with (defaults plus the run's overrides)."""
        from vmeta.video.screen_text import ScreenTextSettings

        try:
            return ScreenTextSettings.from_dict(self.screen_text)
        except ValueError as exc:
            raise UserError(f"context.screen_text: {exc}") from None

    def speech_settings(self) -> Any:
        """The `SpeechSettings` this context transcribes videos with (defaults plus the run's overrides)."""
        from vmeta.video.speech import SpeechSettings

        try:
            return SpeechSettings.from_dict(self.speech)
        except (ValueError, TypeError) as exc:
            raise UserError(f"context.speech: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kinds"] = list(self.kinds)
        if not self.speech:  # the dict of before speech existed: predict compares it with a resumed file's
            del out["speech"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | list[str] | tuple[str, ...] | None) -> ContextSettings:
        """From run.json / a config: a dict like `to_dict()`, or just the list of kinds."""
        if not data:
            return cls()
        if isinstance(data, list | tuple):
            return cls(kinds=tuple(data))
        known = {"kinds", "max_chars", "screen_text", "speech"}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"context: unknown key(s) {sorted(unknown)}; known: {sorted(known)}.")
        return cls(
            kinds=tuple(data.get("kinds") or ()),
            max_chars=data.get("max_chars", DEFAULT_MAX_CHARS),
            screen_text=dict(data.get("screen_text") or {}),
            speech=dict(data.get("speech") or {}),
        )


def check_kinds(kinds: Any, where: str) -> tuple[str, ...]:
    """The kinds as a tuple; a UserError naming `where` and the known kinds for anything else."""
    if isinstance(kinds, str):
        kinds = [kinds]
    bad = [k for k in kinds if k not in CONTEXT_LABELS]
    if bad:
        raise UserError(f"{where}: unknown context {bad[0]!r}; known: {', '.join(CONTEXT_KINDS)}.")
    return tuple(kinds)


def _one_line(text: str, max_chars: int) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    joined = _LINE_SEPARATOR.join(lines)
    if len(joined) > max_chars:
        joined = joined[: max_chars - len(_ELLIPSIS)].rstrip(" /") + _ELLIPSIS
    return joined


def context_block(values: dict[str, str], *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """`label：text` per kind that has text, in CONTEXT_KINDS order; "" when no kind has any text.

    A video with no on-screen text adds nothing to the prompt (not an empty "画面文字：" line): the model is
    then asked exactly what a run without context would ask."""
    rows = []
    for kind in CONTEXT_KINDS:
        text = _one_line(values.get(kind) or "", max_chars)
        if text:
            rows.append(f"{CONTEXT_LABELS[kind]}：{text}")
    return "\n".join(rows)


def context_values(
    ctx: ContextSettings,
    video: str | Path,
    *,
    stored: dict[str, str | None] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, str]:
    """The text of each of `ctx.kinds` for one video: what the record stored (`stored`, e.g.
    `{"screen_text": record.screen_text.text}`) or else read now (on-screen text through the OCR cache under
    `cache_dir/screen_text`, speech through the ASR cache under `cache_dir/speech`, so a video is read once)."""
    out: dict[str, str] = {}
    stored = stored or {}
    for kind in ctx.kinds:
        value = stored.get(kind)
        if value is None and kind == "screen_text":
            from vmeta.video.screen_text_cache import ScreenTextCache
            from vmeta.video.screen_text_reader import read_screen_text

            cache = ScreenTextCache(cache_dir / "screen_text") if cache_dir is not None else None
            value = read_screen_text(video, ctx.screen_text_settings(), cache=cache).text
        elif value is None and kind == "speech":
            from vmeta.video.speech import SpeechCache, transcribe

            cache = SpeechCache(cache_dir / "speech") if cache_dir is not None else None
            value = transcribe(video, ctx.speech_settings(), cache=cache).text
        out[kind] = value or ""
    return out


# What a dataset record can hold (vmeta data screen-text); the other kinds are read from the video.
STORED_KINDS = ("screen_text",)


def record_context(record: Any) -> dict[str, str | None]:
    """What a dataset record already holds for each kind (None where it was never read). Records do not store
    speech: a kind missing here is transcribed from the video (through its cache)."""
    stored = {kind: getattr(record, kind, None) for kind in STORED_KINDS}
    return {kind: info.text if info is not None else None for kind, info in stored.items()}


def record_blocks(
    ctx: ContextSettings,
    records: list[Any],
    root: Path,
    *,
    cache_dir: Path | None = None,
    on_read: Any = None,
) -> dict[str, str]:
    """Record id -> its context block ("" for none), reading now what a record does not store. A video that
    cannot be read is a UserError naming the sample (training must not silently drop its context).
    `on_read(done, total)` is called after each record (a progress bar)."""
    if not ctx.enabled:
        return {}
    out: dict[str, str] = {}
    for i, r in enumerate(records):
        video = Path(r.video) if Path(r.video).is_absolute() else root / r.video
        try:
            values = context_values(ctx, video, stored=record_context(r), cache_dir=cache_dir)
        except UserError as exc:
            raise UserError(f"sample {r.id}: reading its {', '.join(ctx.kinds)} context failed: {exc}") from None
        out[r.id] = context_block(values, max_chars=ctx.max_chars)
        if on_read is not None:
            on_read(i + 1, len(records))
    return out


def messages_with_context(
    messages: list[dict[str, Any]], ctx: ContextSettings, *, cache_dir: Path | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A chat's messages with each user turn that carries a local video given that video's context block before
    its text (as in training). -> (new messages, video path -> the block added). The messages are not changed
    in place; videos given as frames or URLs are left as they are."""
    if not ctx.enabled:
        return messages, {}
    added: dict[str, str] = {}
    out = []
    for msg in messages:
        content = msg.get("content")
        if msg.get("role") != "user" or not isinstance(content, list):
            out.append(msg)
            continue
        paths = [v for v in map(_local_video, content) if v is not None]
        if not paths:
            out.append(msg)
            continue
        blocks = {
            v: context_block(context_values(ctx, Path(v), cache_dir=cache_dir), max_chars=ctx.max_chars) for v in paths
        }
        added |= blocks
        block = "\n".join(b for b in blocks.values() if b)
        parts = [dict(p) if isinstance(p, dict) else p for p in content]
        texts = [p for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        if block and texts:
            texts[0]["text"] = with_context(str(texts[0].get("text") or ""), block)
        elif block:
            parts.append({"type": "text", "text": block})
        out.append({**msg, "content": parts})
    return out, added


def _local_video(part: Any) -> str | None:
    """The local file of a message part that is a video ({"type": "video"} or an OpenAI-style "video_url")."""
    if not isinstance(part, dict):
        return None
    if part.get("type") == "video":
        value = part.get("video")
    elif part.get("type") == "video_url":
        value = (part.get("video_url") or {}).get("url")
    else:
        return None
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str) or value.startswith(("http:", "https:", "data:")):
        return None  # frames, URLs: nothing to read here
    return value.removeprefix("file://")


def with_context(instruction: str, block: str) -> str:
    """The user turn's text: the context block (if any), a newline, then the instruction."""
    return f"{block}\n{instruction}" if block else instruction


__all__ = [
    "CONTEXT_KINDS",
    "CONTEXT_LABELS",
    "DEFAULT_MAX_CHARS",
    "STORED_KINDS",
    "ContextSettings",
    "check_kinds",
    "context_block",
    "context_values",
    "messages_with_context",
    "record_blocks",
    "record_context",
    "with_context",
]
