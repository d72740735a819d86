"""On-screen text of a video (burned-in captions, meme text, title cards): what is read and what comes back.

    result = read_screen_text("clip.mp4", ScreenTextSettings(fps=1.0), cache=ScreenTextCache(cache_dir))
    for line in result.lines:            # ordered by first appearance
        print(line.start, line.end, line.text)

Why: short-video metaphors often live in the caption, and a 2B video model at 256x256 per frame cannot read it
(issue #15). The dataset, prompt context and train/serve parts build on `ScreenText` and `ScreenTextSettings`,
so this module holds only those (no numpy, no OCR): reading is `vmeta.video.screen_text_reader`, the OCR engine
`vmeta.video.ocr_engine`, the results' disk cache `vmeta.video.screen_text_cache`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vmeta.video.settings_dict import settings_from_dict


@dataclass(frozen=True)
class ScreenTextSettings:
    """How on-screen text is read; every field is part of the cache key."""

    fps: float = 1.0  # frames read per second; a caption shown >= 1/fps s is seen
    max_frames: int = 180  # longer videos are sampled more sparsely (bounds the time)
    det_side: int = 640  # long side of the picture text detection sees (smaller = faster, misses tiny text)
    min_score: float = 0.85  # recognitions scoring lower are dropped
    min_box_height: float = 0.02  # boxes lower than this fraction of the frame width are dropped
    change_level: float = 10.0  # block-mean grey-level change that counts as "changed"
    change_blocks: int = 3  # a frame is read when at least this many 8x8 blocks changed since the last read
    merge_ratio: float = 80.0  # rapidfuzz ratio from which texts in consecutive frames are one line

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"screen text settings: {name}={getattr(self, name)!r} {why}")

        if not (isinstance(self.fps, int | float) and 0 < self.fps <= 30):
            bad("fps", "must be a number of frames per second in (0, 30]")
        if not isinstance(self.max_frames, int) or self.max_frames < 1:
            bad("max_frames", "must be a positive whole number")
        if not isinstance(self.det_side, int) or not 160 <= self.det_side <= 4096:
            bad("det_side", "must be a whole number of pixels in [160, 4096]")
        if not 0 <= self.min_score <= 1:
            bad("min_score", "must be in [0, 1]")
        if not 0 <= self.min_box_height < 1:
            bad("min_box_height", "must be a fraction of the frame width in [0, 1)")
        if self.change_level < 0 or self.change_blocks < 1:
            bad("change_blocks", "and change_level must be positive")
        if not 0 < self.merge_ratio <= 100:
            bad("merge_ratio", "must be in (0, 100]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScreenTextSettings:
        return settings_from_dict(cls, data, "screen text settings")


@dataclass
class ScreenTextLine:
    """One piece of text as long as it stayed on screen: first and last sampled time it was seen (seconds)."""

    text: str
    start: float
    end: float
    score: float  # mean recognition score of the chosen text
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the decoded frame's pixels, where it was best read

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end, "score": self.score, "box": list(self.box)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScreenTextLine:
        return cls(
            text=str(data["text"]),
            start=float(data["start"]),
            end=float(data["end"]),
            score=float(data["score"]),
            box=tuple(int(v) for v in data["box"]),  # type: ignore[arg-type]
        )


@dataclass
class ScreenTextStats:
    """What reading cost: frames sampled, frames OCR'd (detection ran), boxes recognised, seconds."""

    frames_sampled: int = 0
    frames_read: int = 0
    boxes_recognized: int = 0
    boxes_reused: int = 0
    decode_s: float = 0.0
    ocr_s: float = 0.0
    cached: bool = False


@dataclass
class ScreenText:
    """The on-screen text of one video, lines ordered by time; empty `lines` when it shows no text."""

    video: str
    lines: list[ScreenTextLine]
    frame_size: tuple[int, int]  # (height, width) the boxes refer to
    sample_times: list[float]
    settings: ScreenTextSettings
    stats: ScreenTextStats = field(default_factory=ScreenTextStats)

    @property
    def text(self) -> str:
        """The distinct lines in order, one per line — what a prompt block would show."""
        seen: list[str] = []
        for line in self.lines:
            if line.text not in seen:
                seen.append(line.text)
        return "\n".join(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "lines": [line.to_dict() for line in self.lines],
            "frame_size": list(self.frame_size),
            "sample_times": [round(t, 4) for t in self.sample_times],
            "settings": self.settings.to_dict(),
            "stats": asdict(self.stats),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScreenText:
        return cls(
            video=str(data["video"]),
            lines=[ScreenTextLine.from_dict(d) for d in data["lines"]],
            frame_size=tuple(int(v) for v in data["frame_size"]),  # type: ignore[arg-type]
            sample_times=[float(t) for t in data["sample_times"]],
            settings=ScreenTextSettings.from_dict(data["settings"]),
            stats=ScreenTextStats(**data.get("stats", {})),
        )


def format_time(seconds: float) -> str:
    """mm:ss.s — how `vmeta video text` prints times."""
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m):02d}:{s:04.1f}"


__all__ = ["ScreenText", "ScreenTextLine", "ScreenTextSettings", "ScreenTextStats", "format_time"]
