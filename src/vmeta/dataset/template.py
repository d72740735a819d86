"""The five-slot label template (thesis §3.3): render, parse, check conformance.

本视频讲述了[视频内容]。[核心概念]出自[出处]，其因为[特征/新含义/事件]，表达出了[情绪/态度]。

The parser is tolerant of what annotators and LLMs actually write: half-width punctuation, spaces,
quotes around the concept, "因为" without "其", "表达了" for "表达出了", a trailing explanation
sentence, and the "（说明：…）" notes LLMs append (thesis Fig. 3.4), which are flagged and strippable.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

SLOT_NAMES: tuple[str, ...] = ("content", "concept", "source", "feature", "emotion")
SLOT_LABELS_ZH = {
    "content": "视频内容",
    "concept": "核心概念",
    "source": "出处",
    "feature": "特征/新含义/事件",
    "emotion": "情绪/态度",
}
TEMPLATE = "本视频讲述了[视频内容]。[核心概念]出自[出处]，其因为[特征/新含义/事件]，表达出了[情绪/态度]。"
# The fixed words of the template: evaluation strips them for "template-free" n-gram scores.
FIXED_PHRASES: tuple[str, ...] = ("本视频讲述了", "出自", "其因为", "表达出了")

_OPEN = "本视频讲述了"
_QUOTES = "\"'“”‘’「」『』"
_END = "。.！!？?"
_COMMA = "，,、;；"
# A note an LLM appends after the label: "（说明：…）", "(注: …)", "说明：…" on a new line, "备注：…".
_NOTE = re.compile(
    r"\s*(?:[（(]\s*(?:说明|注|注释|备注|解释|note|explanation)\s*[:：].*"
    r"|\n\s*(?:说明|注|注释|备注|解释|note|explanation)\s*[:：].*"
    r"|\n\s*[-—*#]{2,}.*)$",
    re.S | re.I,
)
_PLACEHOLDER = re.compile(r"\[[^\[\]]{0,12}\]|［[^［］]{0,12}］")
_WS = re.compile(r"[ \t\u3000]+")


@dataclass
class ParsedLabel:
    """A label split into slots. `ok` means all five slots were found and filled in."""

    text: str
    slots: dict[str, str] | None = None
    note: str = ""  # an appended LLM note such as "（说明：…）"
    extra: str = ""  # a further sentence after the emotion slot (kept by reviewers in Fig. 3.4 b)
    placeholders: list[str] = field(default_factory=list)  # unfilled "[出处]"-style slots
    missing: list[str] = field(default_factory=list)  # slot names that could not be found

    @property
    def ok(self) -> bool:
        return self.slots is not None and not self.missing and not self.placeholders

    @property
    def strict(self) -> bool:
        """Exactly the template: nothing before, nothing after, no note."""
        return self.ok and not self.note and not self.extra

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("text")
        d["ok"] = self.ok
        d["strict"] = self.strict
        return d


def render(slots: dict[str, str]) -> str:
    missing = [s for s in SLOT_NAMES if not (slots.get(s) or "").strip()]
    if missing:
        raise ValueError(f"cannot render a label with empty slot(s): {', '.join(missing)}")
    c = {k: _clean_slot(slots[k]) for k in SLOT_NAMES}
    return (
        f"本视频讲述了{c['content']}。{c['concept']}出自{c['source']}，其因为{c['feature']}，表达出了{c['emotion']}。"
    )


def split_note(text: str) -> tuple[str, str]:
    """Return (label without the appended note, the note)."""
    text = (text or "").strip()
    m = _NOTE.search(text)
    if not m or m.start() == 0:
        return text, ""
    return text[: m.start()].rstrip(), m.group(0).strip()


def strip_note(text: str) -> str:
    return split_note(text)[0]


def normalize(text: str) -> str:
    """Fold whitespace and unify the template's own punctuation to full width; content is untouched."""
    text = (text or "").replace("\r\n", "\n").strip()
    text = _WS.sub(" ", text)
    text = re.sub(r"\s*本视频讲述了\s*", "本视频讲述了", text)
    text = re.sub(r"\s*出自\s*", "出自", text)
    text = re.sub(r"\s*[,，]\s*(其?因为)\s*", r"，\1", text)
    text = re.sub(r"\s*[,，]\s*(表达出?了)\s*", r"，\1", text)
    return text


def parse(text: str) -> ParsedLabel:
    raw = text or ""
    body, note = split_note(normalize(raw))
    result = ParsedLabel(text=raw, note=note)
    result.placeholders = _PLACEHOLDER.findall(body)

    start = body.find(_OPEN)
    if start < 0:
        result.missing = list(SLOT_NAMES)
        return result
    rest = body[start + len(_OPEN) :]

    src_at = _source_marker(rest)
    if src_at < 0:
        result.missing = [s for s in SLOT_NAMES if s != "content"]
        return result
    head = rest[:src_at]
    # Content ends at the last sentence end before "出自"; what follows it is the concept.
    cut = max(head.rfind(ch) for ch in _END)
    if cut < 0:
        content, concept = "", head
    else:
        content, concept = head[:cut], head[cut + 1 :]
    after = rest[src_at + 2 :]

    m_feat = re.search(r"[，,]?\s*其?因为", after)
    m_emo = re.search(r"[，,]?\s*表达出?了", after[m_feat.end() :] if m_feat else after)
    if m_feat:
        source = after[: m_feat.start()]
        tail = after[m_feat.end() :]
        if m_emo:
            feature, emo_tail = tail[: m_emo.start()], tail[m_emo.end() :]
        else:
            feature, emo_tail = tail, ""
    else:
        if m_emo:
            source, feature, emo_tail = after[: m_emo.start()], "", after[m_emo.end() :]
        else:
            source, feature, emo_tail = after, "", ""

    end = _first_sentence_end(emo_tail)
    emotion, extra = (emo_tail[:end], emo_tail[end + 1 :]) if end >= 0 else (emo_tail, "")
    slots = {
        "content": _clean_slot(content),
        "concept": _clean_slot(concept),
        "source": _clean_slot(source),
        "feature": _clean_slot(feature),
        "emotion": _clean_slot(emotion),
    }
    result.slots = slots
    result.extra = extra.strip()
    result.missing = [k for k, v in slots.items() if not v]
    if not m_emo and "emotion" not in result.missing:
        result.missing.append("emotion")
    return result


def conforms(text: str) -> bool:
    return parse(text).ok


def _source_marker(rest: str) -> int:
    """Position of the "出自" that starts the source slot.

    "出自" also occurs inside words ("晒出自己"); the template's one follows the concept, which follows the
    content sentence, so prefer the first "出自" with a sentence end before it.
    """
    positions = [m.start() for m in re.finditer("出自", rest)]
    for at in positions:
        if any(ch in rest[:at] for ch in _END):
            return at
    return positions[0] if positions else -1


def _first_sentence_end(s: str) -> int:
    """Index of the sentence end, ignoring ones inside quotes/brackets and decimal points."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in "（(《“「『[":
            depth += 1
        elif ch in "）)》”」』]":
            depth = max(0, depth - 1)
        elif ch in _END and depth == 0:
            if ch == "." and i + 1 < len(s) and s[i + 1].isdigit():
                continue
            return i
    return -1


def _clean_slot(s: str) -> str:
    s = (s or "").strip().strip(_COMMA).strip()
    s = s.rstrip(_END).strip()
    # Quotes around the whole slot ("沙发舞", “避雷”, ”避雷” as typed in the thesis) are decoration.
    while len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES and _no_inner_quotes(s[1:-1]):
        s = s[1:-1].strip()
    return s


def _no_inner_quotes(inner: str) -> bool:
    return not any(q in inner for q in '“”"')


def strip_template_words(text: str) -> str:
    """The label with the template's fixed words removed (for template-free n-gram scores)."""
    out = normalize(text)
    for phrase in FIXED_PHRASES:
        out = out.replace(phrase, "")
    return out
