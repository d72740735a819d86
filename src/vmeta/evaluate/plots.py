"""PNG plots (matplotlib, Agg): bars with CI whiskers, histograms, heat maps. Returns PNG bytes.

Category names are drawn as the reports' tables spell them (the dataset's Chinese names) when the machine has
a font that draws Chinese (`vmeta.plotting`); only without one do they fall back to English
(`vmeta.dataset.categories`), so a plot never shows boxes.
"""

from __future__ import annotations

import io

import numpy as np

from vmeta.dataset.categories import CATEGORIES
from vmeta.plotting import pyplot


def _plt():
    return pyplot()


def english(category: str) -> str:
    return CATEGORIES[category][0] if category in CATEGORIES else category


def category_label(category: str) -> str:
    """The category as the report's tables name it; its English name only where no CJK font is installed."""
    from vmeta.plotting import find_cjk_font

    return category if find_cjk_font() else english(category)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _err(mean: float | None, ci: list | None) -> tuple[float, float]:
    if mean is None or not ci or ci[0] is None or ci[1] is None:
        return 0.0, 0.0
    return max(0.0, mean - ci[0]), max(0.0, ci[1] - mean)


def category_bars(per_category: dict[str, dict], columns: list[str], labels: dict[str, str]) -> bytes:
    """One panel per metric: a bar per category (and overall) with its 95% CI whisker."""
    plt = _plt()
    cats = list(per_category)
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.6), squeeze=False)
    for ax, col in zip(axes[0], columns, strict=True):
        means = [per_category[c].get(col, {}).get("mean") or 0.0 for c in cats]
        errs = np.array(
            [_err(per_category[c].get(col, {}).get("mean"), per_category[c].get(col, {}).get("ci95")) for c in cats]
        ).T
        x = np.arange(len(cats))
        colors = ["#dd8452" if c == "overall" else "#4c72b0" for c in cats]
        ax.bar(x, means, yerr=errs, capsize=4, color=colors)
        ax.set_xticks(x, [category_label(c) for c in cats], rotation=30, ha="right")
        ax.set_title(labels.get(col, col))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def histograms(columns: dict[str, np.ndarray], labels: dict[str, str]) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.2), squeeze=False)
    for ax, (col, values) in zip(axes[0], columns.items(), strict=True):
        v = np.asarray(values, dtype=float)
        v = v[~np.isnan(v)]
        ax.hist(v, bins=20, range=(0, 100), color="#4c72b0", edgecolor="white")
        if len(v):
            ax.axvline(v.mean(), color="#c44e52", linestyle="--", label=f"mean {v.mean():.2f}")
            ax.legend(fontsize=8)
        ax.set_title(labels.get(col, col))
        ax.set_xlabel("score (0-100)")
    fig.tight_layout()
    return _png(fig)


def run_bars(
    runs: list[str], columns: list[str], table: dict[str, dict[str, dict]], labels: dict[str, str], title: str = ""
) -> bytes:
    """Grouped bars: metric groups on x, one bar per run, CI whiskers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(columns) * max(1, len(runs)) / 2), 3.8))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(columns))
    for k, run in enumerate(runs):
        means = [table[run].get(c, {}).get("mean") or 0.0 for c in columns]
        errs = np.array([_err(table[run].get(c, {}).get("mean"), table[run].get(c, {}).get("ci95")) for c in columns]).T
        ax.bar(x + (k - (len(runs) - 1) / 2) * width, means, width, yerr=errs, capsize=3, label=run)
    ax.set_xticks(x, [labels.get(c, c) for c in columns])
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(4, len(runs)))
    fig.tight_layout()
    return _png(fig)


def heatmap(runs: list[str], categories: list[str], values: np.ndarray, title: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.3 * len(categories) + 2.5, 0.5 * len(runs) + 1.8))
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(np.arange(len(categories)), [category_label(c) for c in categories], rotation=30, ha="right")
    ax.set_yticks(np.arange(len(runs)), runs)
    finite = values[np.isfinite(values)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(len(runs)):
        for j in range(len(categories)):
            v = values[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="white" if v < mid else "black", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return _png(fig)
