"""Portrait clips with burned-in Chinese captions, for the on-screen text tests and bench/screen_text.py.

Captions are rendered with a CJK font found on the machine (Debian's fonts-wqy-microhei, which
scripts/setup.sh installs); `require_cjk_font()` skips a test on a developer machine without one and fails it
in CI (env CI set), so CI can never go green by not reading any text.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vmeta.testing.needs import skip_or_fail

CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
CJK_FONT_PACKAGE = "fonts-wqy-microhei"


def find_cjk_font() -> Path | None:
    """A font file that draws Chinese: a known Debian path, else the first `fc-list :lang=zh` answer."""
    for p in CJK_FONT_CANDIDATES:
        if Path(p).is_file():
            return Path(p)
    if shutil.which("fc-list"):
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            p = Path(line.split(":")[0].strip())
            if p.is_file():
                return p
    return None


def require_cjk_font() -> Path:
    """The CJK font, or skip (developer machine) / fail (CI) the calling test."""
    font = find_cjk_font()
    if font is None:
        skip_or_fail(f"no CJK font found: install Debian's {CJK_FONT_PACKAGE} (apt-get install -y {CJK_FONT_PACKAGE})")
    return font


@dataclass(frozen=True)
class Caption:
    """A caption on screen from `start` to `end` seconds; `x`, `y` are its top-left as fractions of the frame,
    `dx`, `dy` its motion in frame fractions per second (0 = static)."""

    text: str
    start: float
    end: float
    size: int = 48
    color: tuple[int, int, int] = (255, 255, 255)
    outline: int = 3  # stroke width in pixels, 0 = none
    outline_color: tuple[int, int, int] = (0, 0, 0)
    x: float = 0.08
    y: float = 0.78
    dx: float = 0.0
    dy: float = 0.0


def _render(caption: Caption, font: Path) -> np.ndarray:
    """The caption as an RGBA array, drawn once and pasted into every frame that shows it."""
    from PIL import Image, ImageDraw, ImageFont

    f = ImageFont.truetype(str(font), caption.size)
    x0, y0, x1, y1 = f.getbbox(caption.text, stroke_width=caption.outline)
    img = Image.new("RGBA", (x1 - x0 + 4, y1 - y0 + 4), (0, 0, 0, 0))
    ImageDraw.Draw(img).text(
        (2 - x0, 2 - y0),
        caption.text,
        font=f,
        fill=(*caption.color, 255),
        stroke_width=caption.outline,
        stroke_fill=(*caption.outline_color, 255),
    )
    return np.asarray(img)


def _background(i: int, fps: float, width: int, height: int, moving: bool, seed: int) -> np.ndarray:
    """A colour ramp (and, when moving, a drifting ramp and a sweeping bar, like a filmed scene's motion)."""
    shift = int(i * 40 / fps) if moving else 0
    ys = np.linspace(0, 160, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 160, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = ((xs + shift + seed * 37) % 200 + 20).astype(np.uint8)
    img[..., 1] = ((ys + shift // 2 + seed * 59) % 200 + 20).astype(np.uint8)
    img[..., 2] = np.uint8((seed * 71) % 120 + 40)
    if moving:
        bar = width // 10
        x0 = int(i * width / (fps * 3)) % (width - bar)
        img[: height // 2, x0 : x0 + bar] = (230, 230, 230)
    return img


def make_caption_clip(
    path: str | Path,
    captions: list[Caption],
    seconds: float,
    *,
    width: int = 720,
    height: int = 1280,
    fps: float = 15,
    moving_background: bool = True,
    font: Path | None = None,
    seed: int = 0,
    gop: int | None = None,
) -> Path:
    """Write an H.264 MP4 of `seconds` with `captions` burned in over a (moving or still) background; `gop`:
    frames between keyframes (default: x264's, 250)."""
    import av

    font = font or find_cjk_font()
    if font is None:
        raise RuntimeError(f"no CJK font: install {CJK_FONT_PACKAGE}")
    sprites = [(c, _render(c, font)) for c in captions]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    n = max(1, round(seconds * float(rate)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        options = {"preset": "ultrafast", "crf": "23"}
        if gop:
            options |= {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        stream.options = options
        still = None if moving_background else _background(0, float(rate), width, height, False, seed)
        for i in range(n):
            t = i / float(rate)
            img = still.copy() if still is not None else _background(i, float(rate), width, height, True, seed)
            for c, rgba in sprites:
                if not c.start <= t < c.end:
                    continue
                x = int((c.x + c.dx * (t - c.start)) * width)
                y = int((c.y + c.dy * (t - c.start)) * height)
                h, w = rgba.shape[:2]
                xa, ya, xb, yb = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
                if xa >= xb or ya >= yb:
                    continue
                part = rgba[ya - y : yb - y, xa - x : xb - x]
                alpha = part[..., 3:4].astype(np.float32) / 255.0
                region = img[ya:yb, xa:xb].astype(np.float32)
                img[ya:yb, xa:xb] = (region * (1 - alpha) + part[..., :3] * alpha).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: Levenshtein distance / reference length (rapidfuzz)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(reference, hypothesis) / max(1, len(reference))


__all__ = ["CJK_FONT_PACKAGE", "Caption", "cer", "find_cjk_font", "make_caption_clip", "require_cjk_font"]
