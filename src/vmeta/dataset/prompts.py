"""The instruction a model is given with each video (thesis §4.2), and a short hash to name it.

`DEFAULT_PROMPT` is the zero-shot / fine-tuning instruction of the thesis, verbatim (including the
spaces around the bracketed slots). Export, predict and train all use it unless told otherwise, and
record `prompt_hash(prompt)` so results say exactly which instruction produced them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vmeta.errors import UserError

DEFAULT_PROMPT = (
    "理解视频的隐喻内容，由以下格式回答：本视频讲述了 [视频内容]。[核心概念] 出自 [出处]，"
    "其因为 [特征/新含义/事件]，表达出了 [情绪/态度]。将 [] 内的内容替换成视频理解的内容。"
)
# The placeholder LLaMA-Factory / ms-swift replace with the video's frames.
VIDEO_TOKEN = "<video>"


def prompt_hash(text: str) -> str:
    """First 12 hex digits of the SHA-256 of the prompt's UTF-8 bytes (exact text, no normalisation)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def user_turn(prompt: str = DEFAULT_PROMPT) -> str:
    """The user message of a training/inference sample: the video placeholder, then the instruction."""
    return prompt if prompt.startswith(VIDEO_TOKEN) else VIDEO_TOKEN + prompt


def prompt_from_options(prompt: str | None, prompt_file: Path | None) -> str | None:
    """The instruction given by `--prompt` or `--prompt-file` (None when neither: the caller's default applies)."""
    if prompt is not None and prompt_file is not None:
        raise UserError("give either --prompt or --prompt-file, not both.")
    if prompt_file is None:
        return prompt
    try:
        return prompt_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(f"--prompt-file {prompt_file}: cannot read it ({exc.strerror}).") from None
