"""What `vmeta predict` is asked to run (`PredictConfig`, checked before any model loads) and what it reports
back (`PredictSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.models.generate import GenerationSettings
from vmeta.video.sampling import FrameSettings


@dataclass
class PredictConfig:
    """What `vmeta predict` runs (validated before any model loads)."""

    data: Path
    out: Path
    model: str | None = None
    run: Path | None = None
    adapter: Path | None = None
    split: str = "test"
    prompt: str | None = None  # None: the thesis prompt
    batch_size: int = 1
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    frames: FrameSettings | None = None  # None: the model family's defaults
    frame_overrides: dict[str, Any] = field(default_factory=dict)  # applied on top (e.g. {"fps": 1.0})
    context: list[str] | None = None  # None: what the run was trained with (else none); [] turns it off
    limit: int | None = None
    force_new: bool = False
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        self.data = Path(self.data).expanduser()
        self.out = Path(self.out).expanduser()
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size!r}: must be a whole number >= 1.")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit!r}: must be >= 1 (or left out for the whole split).")
        if self.frame_overrides:
            apply_frame_overrides(self.frames or FrameSettings(), self.frame_overrides)  # fail before loading a model
        if self.context is not None:
            from vmeta.dataset.context import check_kinds

            self.context = list(check_kinds(self.context, "--context"))
        if self.prompt is not None and not self.prompt.strip():
            raise UserError("the prompt is empty; leave --prompt out to use the thesis prompt.")

    @property
    def prompt_text(self) -> str:
        from vmeta.dataset.prompts import DEFAULT_PROMPT, VIDEO_TOKEN

        text = self.prompt if self.prompt is not None else DEFAULT_PROMPT
        # LLaMA-Factory's "<video>" placeholder marks where frames go; here the video is its own message part.
        return text[len(VIDEO_TOKEN) :] if text.startswith(VIDEO_TOKEN) else text


@dataclass
class PredictSummary:
    out: Path
    model: str
    adapter: str | None
    total: int  # records in the split (after --limit)
    skipped: int  # already in the file
    written: int  # lines appended now
    errors: int  # error lines in the file (all runs)
    error_ids: list[str]
    seconds: float
    mean_ttft_s: float | None
    mean_tokens_per_s: float | None
    mean_output_chars: float | None

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["out"] = str(self.out)
        return d


def apply_frame_overrides(fs: FrameSettings, overrides: dict[str, Any]) -> FrameSettings:
    from dataclasses import replace

    if not overrides:
        return fs
    try:
        return replace(fs, **overrides)
    except (TypeError, ValueError) as exc:
        raise UserError(f"frame settings: {exc}") from None
