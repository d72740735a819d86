"""What the label-rewriting LLM is asked (thesis §3.3: the five-slot template, its rules and one worked
example) and how its answer is judged: cleaned of reasoning, fences, chatter and notes, checked against the
template, and the feedback sent when it misses. Pure text; the job that sends it is dataset/rewrite.py.
`PROMPT_VERSION` is part of every cached answer's key: change it when the prompt's meaning changes.
"""

from __future__ import annotations

import re
from pathlib import Path

from vmeta.dataset.records import Record
from vmeta.dataset.template import SLOT_LABELS_ZH, TEMPLATE, parse, split_note

PROMPT_VERSION = "rewrite-v1"

SYSTEM_PROMPT = f"""你是短视频隐喻数据集的标注编辑。标注者为每个短视频写了一段隐喻解释，表达风格各不相同。请把它改写成下面这个统一模板，只输出改写后的这一段标签：

{TEMPLATE}

要求：
1. 核心概念必须沿用标注者原话中的完整说法，不要压缩、缩写或另造新词。例如原标签说的是“搬沙发跳舞”，核心概念就写“搬沙发跳舞”，不能写成“沙发舞”。
2. [视频内容] 保留原标签里的情节细节，不要概括成一句笼统的话。
3. 只依据原标签、类别和文件名，不编造原标签中没有的事实；出处没有明说时，写出最合理的来源（如网络流行语、影视作品、社会新闻、日常生活）。
4. 模板中的固定词语“本视频讲述了”“出自”“，其因为”“，表达出了”原样保留，所有方括号都换成具体内容，方括号本身不要出现。
5. 只输出这一段标签：不要前言（如“好的，以下是……”）、标题、Markdown、引号包裹全文，也不要任何说明、注释或思考过程。

示例
输入：
类别：诙谐类
视频文件：诙谐类_08.mp4
原始标签：男生坐在桌前玩手机，情绪低落，女生搬起家里的沙发跳起舞来，像在拉手风琴，男生也搬起另一个沙发和她一起跳，心情变好了。搬沙发跳舞把沙发当成手风琴，是在安慰对方“别不开心了，让我为你唱首歌”。
输出：
本视频讲述了一对情侣男生情绪低落，女生通过即兴搬沙发跳舞化解他的负面情绪，随后两人一起跳舞心情逐渐明媚的故事。“搬沙发跳舞”出自日常生活物品的非常规使用，其因为被赋予“手风琴”的象征意义，通过动作与音乐的配合实现情感宣泄，表达出了从压抑到欢快的情绪转变。"""

USER_TEMPLATE = "类别：{category}\n视频文件：{video}\n原始标签：{raw_label}"

# The answer's known wrappers.
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[\w-]*[ \t]*\n?(.*?)```", re.S)
_CHATTER = re.compile(
    r"^\s*(?:好的|当然|以下是|下面是|改写后|改写结果|改写|标签|输出|结果|answer|label)[^\n]{0,30}?[:：]\s*", re.I
)
_QUOTES_OPEN = "\"'“‘「『"
_QUOTES_CLOSE = "\"'”’」』"


def clean_answer(raw: str) -> tuple[str, str]:
    """(label, removed note): drop reasoning, fences, leading chatter, wrapping quotes and trailing notes."""
    text = raw or ""
    text = _THINK.sub("", text)
    if "</think>" in text.lower():  # reasoning whose opening tag was dropped by the server
        text = re.split(r"</think>", text, flags=re.I)[-1]
    m = _FENCE.search(text)
    if m:
        text = m.group(1)
    text = text.replace("**", "").replace("__", "").strip()
    start = text.find("本视频讲述了")
    quoted = start > 0 and text[start - 1] in _QUOTES_OPEN
    if start > 0:
        text = text[start:]
    elif start < 0:
        text = _CHATTER.sub("", text, count=1).strip()
    body, note = split_note(text)
    # A further paragraph after a complete label is commentary, whatever its heading.
    parts = re.split(r"\n\s*\n", body, maxsplit=1)
    if len(parts) == 2 and parse(parts[0]).ok:
        body, note = parts[0].strip(), "\n".join(x for x in (parts[1].strip(), note) if x)
    body = body.strip()
    if quoted:  # “本视频讲述了……。” — the closing quote of the wrapper
        body = body.rstrip(_QUOTES_CLOSE).rstrip()
    return body, note.strip()


def problems(text: str) -> list[str]:
    """What keeps a cleaned answer from being exactly one template label (empty = acceptable)."""
    if not text.strip():
        return ["回答是空的"]
    parsed = parse(text)
    out: list[str] = []
    if parsed.slots is None and "本视频讲述了" not in text:
        out.append("没有以“本视频讲述了”开头，不是模板格式")
    if parsed.missing:
        names = "、".join(SLOT_LABELS_ZH[s] for s in parsed.missing)
        out.append(f"缺少这些部分：{names}（固定词语“出自”“，其因为”“，表达出了”要原样保留）")
    if parsed.placeholders:
        out.append(f"还有未替换的占位符：{'、'.join(parsed.placeholders)}")
    if parsed.ok and parsed.extra:
        out.append(f"模板之后多了文字：“{parsed.extra[:40]}”")
    return out


def feedback(issues: list[str]) -> str:
    return (
        "上面的回答不符合要求：" + "；".join(issues) + "。请重新改写，只输出一段严格符合模板的标签："
        f"{TEMPLATE} 不要任何说明或注释。"
    )


def user_message(record: Record) -> str:
    return USER_TEMPLATE.format(category=record.category, video=Path(record.video).name, raw_label=record.raw_label)
