"""The rating report's figures as PNG: the win-rate matrix, the Bradley–Terry scores with their CIs, and how
often each automatic metric agrees with the raters. Drawn with the evaluation report's helpers
(:mod:`vmeta.evaluate.plots`), so both reports look alike.
"""

from __future__ import annotations

import numpy as np

from vmeta.rating.report_i18n import TEXT, metric_label


def plot_lang(lang: str) -> str:
    """Plot text in the report's language, unless the machine has no font that draws Chinese."""
    from vmeta.plotting import find_cjk_font

    return lang if lang != "zh" or find_cjk_font() else "en"


def make_plots(report: dict, lang: str) -> dict[str, tuple[str, bytes]]:
    """file name -> (title, PNG)."""
    from vmeta.evaluate import plots
    from vmeta.plotting import pyplot

    if not report["win_rates"]:
        return {}
    t = TEXT[plot_lang(lang)]
    models = report["study"]["models"]
    k = {m: n for n, m in enumerate(models)}
    mat = np.full((len(models), len(models)), np.nan)
    for w in report["win_rates"]:
        mat[k[w["a"]], k[w["b"]]] = 100 * w["a_win_rate"]
        mat[k[w["b"]], k[w["a"]]] = 100 * (1 - w["a_win_rate"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(models) + 2.8, 0.8 * len(models) + 1.8))
    im = ax.imshow(mat, cmap="RdBu", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
    ax.set_yticks(np.arange(len(models)), models)
    for i in range(len(models)):
        for j in range(len(models)):
            if np.isfinite(mat[i, j]):
                ax.text(j, i, f"{mat[i, j]:.0f}%", ha="center", va="center", fontsize=9)
    ax.set_xlabel(t["row_vs_col"])
    ax.set_title(t["plot_matrix"], fontsize=10)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    images = {"win_rates.png": (t["plot_matrix"], plots._png(fig))}

    bt = report["bradley_terry"]
    fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(bt) + 1.5))
    y = np.arange(len(bt))[::-1]
    scores = [b["score"] for b in bt]
    lo = [b["score"] - b["ci"][0] if b["ci"][0] is not None else 0 for b in bt]
    hi = [b["ci"][1] - b["score"] if b["ci"][1] is not None else 0 for b in bt]
    ax.errorbar(scores, y, xerr=[lo, hi], fmt="o", capsize=4, color="#4c72b0")
    ax.axvline(1000, color="#999", linestyle=":")
    ax.set_yticks(y, [b["model"] for b in bt])
    ax.set_xlabel("Elo-like score" if t is TEXT["en"] else "类 Elo 分数")
    ax.set_title(t["plot_bt"], fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    images["bradley_terry.png"] = (t["plot_bt"], plots._png(fig))

    metrics = {m: e for m, e in report["agreement"]["metrics"].items() if e["agree_rate"] is not None}
    if metrics:
        lang_p = plot_lang(lang)
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(metrics) + 2), 3.8))
        x = np.arange(len(metrics))
        rates = [100 * e["agree_rate"] for e in metrics.values()]
        err = np.array([plots._err(100 * e["agree_rate"], [_pct(v) for v in e["ci"]]) for e in metrics.values()]).T
        ax.bar(x, rates, yerr=err, capsize=4, color="#55a868")
        ax.axhline(50, color="#c44e52", linestyle="--")
        ax.set_xticks(x, [metric_label(m, lang_p) for m in metrics], rotation=30, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"{t['agree_rate']} (%)")
        ax.set_title(t["plot_metrics"], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        images["metric_agreement.png"] = (t["plot_metrics"], plots._png(fig))
    return images


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


__all__ = ["make_plots", "plot_lang"]
