"""The four PNG plots of `vmeta data stats` (categories, label lengths, durations, display resolutions), drawn
from the statistics dict of dataset/stats.py with matplotlib Agg; the report embeds them."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from vmeta.dataset.categories import CATEGORIES
from vmeta.jsonio import atomic_write_bytes
from vmeta.plotting import find_cjk_font, pyplot

PLOTS = {
    "categories": "categories.png",
    "label_lengths": "label_lengths.png",
    "durations": "durations.png",
    "resolutions": "resolutions.png",
}


def _category_label(name: str, cjk: bool) -> str:
    if cjk or name.isascii():
        return name
    return CATEGORIES[name][0] if name in CATEGORIES else name.encode("ascii", "replace").decode()


def make_plots(stats: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Render the four PNG plots (matplotlib Agg). Chinese tick labels only when a CJK font is installed."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    font = find_cjk_font()
    rc = {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]}
    out: dict[str, Path] = {}
    with plt.rc_context(rc):
        # 1. Category bars.
        cats = stats["categories"]
        fig, ax = plt.subplots(figsize=(7, 4))
        names = [_category_label(c, bool(font)) for c in cats]
        counts = [v["count"] for v in cats.values()]
        bars = ax.bar(names, counts, color="#4c72b0")
        for b, c in zip(bars, counts, strict=True):
            ax.annotate(str(c), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom")
        ax.set_title("Videos per category")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("videos")
        out["categories"] = _save(fig, out_dir / PLOTS["categories"])

        # 2. Label length histogram.
        fig, ax = plt.subplots(figsize=(7, 4))
        lengths = stats.get("label_lengths") or []
        if lengths:
            ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color="#55a868")
        ax.set_title("Label length")
        ax.set_xlabel("characters")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("labels")
        out["label_lengths"] = _save(fig, out_dir / PLOTS["label_lengths"])

        # 3. Duration histogram.
        fig, ax = plt.subplots(figsize=(7, 4))
        durations = stats["videos"].get("durations") or []
        if durations:
            ax.hist(durations, bins=min(40, max(5, len(durations) // 5 or 1)), color="#c44e52")
        else:
            ax.text(0.5, 0.5, "no readable videos", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Video duration")
        ax.set_xlabel("seconds")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("videos")
        out["durations"] = _save(fig, out_dir / PLOTS["durations"])

        # 4. Resolution scatter (display size, after rotation).
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        pts = stats["videos"].get("display_sizes") or []
        if pts:
            size_counts = Counter((w, h) for w, h in pts)
            xs, ys, ss = zip(*((w, h, c) for (w, h), c in size_counts.items()), strict=True)
            ax.scatter(xs, ys, s=[20 + 10 * math.sqrt(c) for c in ss], alpha=0.6, color="#8172b2")
            if len(xs) <= 30:
                for x, y, c in zip(xs, ys, ss, strict=True):
                    ax.annotate(f"{x}x{y} ({c})", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
            top = max(max(xs), max(ys)) * 1.1
            ax.plot([0, top], [0, top], ls="--", color="grey", lw=0.8)
            ax.text(top * 0.05, top * 0.9, "portrait", color="grey")
            ax.text(top * 0.7, top * 0.05, "landscape", color="grey")
            ax.set_xlim(0, top)
            ax.set_ylim(0, top)
        else:
            ax.text(0.5, 0.5, "no readable videos", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Display resolution")
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        out["resolutions"] = _save(fig, out_dir / PLOTS["resolutions"])
    return out


def _save(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
