"""Matplotlib set up once for every report: the Agg backend and, when the machine has one, a font that draws
Chinese (Debian's fonts-wqy-microhei, Noto CJK, ...), so category names and labels never turn into boxes."""

from __future__ import annotations

from pathlib import Path

_CJK_FAMILIES = (
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "AR PL UMing CN",
)
_CJK_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
)


def find_cjk_font() -> str | None:
    """A font family that can draw Chinese, registered with matplotlib; None if the machine has none."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    for fam in _CJK_FAMILIES:
        if fam in names:
            return fam
    for path in _CJK_FILES:  # installed after matplotlib built its font cache
        if Path(path).exists():
            try:
                font_manager.fontManager.addfont(path)
            except Exception:  # pragma: no cover - unreadable font file
                continue
            names = {f.name for f in font_manager.fontManager.ttflist}
            for fam in _CJK_FAMILIES:
                if fam in names:
                    return fam
    return None


def pyplot():  # type: ignore[no-untyped-def]
    """matplotlib.pyplot on Agg, with a CJK-capable sans-serif font first when one is installed."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    font = find_cjk_font()
    if font:
        plt.rcParams["font.family"] = "sans-serif"
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
    return plt
