"""`vmeta rate report STUDY`: report/report.md, report.html (plots embedded), report.json, the plots as PNG, and
STUDY/human_ratings/<model>.jsonl in the shape `vmeta eval --judge-model ... --human FILE` reads.

How the numbers are computed is in `rating/stats.py` (conventions) and repeated in report.json["conventions"].
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import vmeta
from vmeta.dataset.categories import CATEGORIES
from vmeta.errors import UserError
from vmeta.evaluate.bertscore import BertScoreConfig
from vmeta.evaluate.report import ALL_LABELS
from vmeta.jsonio import atomic_write_bytes, atomic_write_text, write_json, write_jsonl
from vmeta.rating import stats
from vmeta.rating.scores import JUDGE_KEY, sample_scores
from vmeta.rating.study import SLOTS, Study

REPORT_DIR = "report"
HUMAN_DIR = "human_ratings"
LANGS = ("zh", "en")

TEXT = {
    "zh": {
        "title": "人工评测报告",
        "summary": "研究概况",
        "models": "模型",
        "model": "模型",
        "ids": "测试样本",
        "items": "评测条目",
        "ratings": "评分",
        "raters": "评分人",
        "design": "设计",
        "no_ratings": "这个研究还没有任何评分。请先用 `vmeta rate serve {root}` 收集评分，或用 `vmeta rate import {root} FILE` 导入，然后再生成报告。",
        "win_rates": "两两胜率",
        "win_rates_note": "A 胜率 = (A 胜 + 0.5 × (平局 + 都错)) / 评分数；[95% 置信区间] 由按测试样本重抽样的自助法得到。",
        "pair": "模型对 (A vs B)",
        "a_wins": "A 胜",
        "b_wins": "B 胜",
        "ties": "平局",
        "both_wrong": "都错",
        "a_rate": "A 胜率 [95% CI]",
        "bt": "Bradley–Terry 排名",
        "bt_note": "分数为类 Elo 刻度：1000 + 400 × log10(强度)，各模型平均为 1000；相差 400 分 = 10:1 的胜算（Chatbot Arena 的方法）。",
        "bt_prior": "注意：最大似然估计不存在（某个模型对一组模型全胜或全负），已为每对模型加入一场虚拟平局。",
        "rank": "名次",
        "score": "分数 [95% CI]",
        "log_strength": "对数强度",
        "agreement": "评分人一致性",
        "agreement_note": "基于至少两人评过的条目（{n} 个），四选一结果（按名称排序的模型对中前者胜 / 后者胜 / 平局 / 都错，与展示顺序无关）。",
        "no_multi": "没有被两人或以上评过的条目，无法计算一致性。",
        "cohen": "Cohen's kappa（评分人两两平均）",
        "fleiss": "Fleiss' kappa",
        "alpha": "Krippendorff's alpha（名义）",
        "raw": "原始一致率",
        "metrics": "自动指标与人工偏好的一致性",
        "metrics_note": "只统计有胜者的评分（平局、都错除外）：指标给胜者的分数更高记 1，相等记 0.5（机会水平 0.5），否则 0。Kendall tau-b：指标分差与人工结果（+1/−1/0）之间的秩相关。",
        "metric": "指标",
        "agree": "一致率 [95% CI]",
        "tau": "Kendall tau-b",
        "by_category": "分类别胜率",
        "category": "类别",
        "by_slot": "分槽位判断（判为正确的比例）",
        "slot_names": {"core_concept": "核心概念", "source": "出处", "emotion": "情绪/态度"},
        "no_slots": "评分人没有勾选任何槽位判断。",
        "notes": "说明",
        "plot_matrix": "胜率矩阵：行模型对列模型的胜率（平局计一半）",
        "plot_bt": "Bradley–Terry 分数及 95% 置信区间",
        "plot_metrics": "各自动指标与人工偏好的一致率（虚线 = 机会水平 50%）",
        "measure": "一致性指标",
        "value": "值",
        "row_vs_col": "行 vs 列",
        "agree_rate": "一致率",
        "human_ratings": "人工评分文件（供 LLM 评审一致性使用）",
    },
    "en": {
        "title": "Human evaluation report",
        "summary": "Study",
        "models": "models",
        "model": "model",
        "ids": "test ids",
        "items": "items",
        "ratings": "ratings",
        "raters": "raters",
        "design": "design",
        "no_ratings": "This study has no ratings yet. Collect some with `vmeta rate serve {root}` or bring them in with `vmeta rate import {root} FILE`, then run the report again.",
        "win_rates": "Win rates per pair",
        "win_rates_note": "A win rate = (A wins + 0.5 × (ties + both wrong)) / ratings; [95% CI] from a bootstrap that resamples test ids.",
        "pair": "pair (A vs B)",
        "a_wins": "A wins",
        "b_wins": "B wins",
        "ties": "ties",
        "both_wrong": "both wrong",
        "a_rate": "A win rate [95% CI]",
        "bt": "Bradley–Terry ranking",
        "bt_note": "Scores on the Elo-like scale 1000 + 400 × log10(strength), mean 1000; a 400-point gap = 10:1 odds (the Chatbot Arena method).",
        "bt_prior": "Note: the maximum-likelihood estimate does not exist (a model won or lost every comparison with a group of models); one virtual tie per pair of models was added.",
        "rank": "rank",
        "score": "score [95% CI]",
        "log_strength": "log-strength",
        "agreement": "Inter-rater agreement",
        "agreement_note": "On the items rated by two or more people ({n}), 4-way outcome (the pair's first model by name wins / the second wins / tie / both wrong, whatever order was shown).",
        "no_multi": "No item was rated by two or more people, so agreement cannot be computed.",
        "cohen": "Cohen's kappa (mean over rater pairs)",
        "fleiss": "Fleiss' kappa",
        "alpha": "Krippendorff's alpha (nominal)",
        "raw": "raw agreement",
        "metrics": "Agreement of automatic metrics with human preference",
        "metrics_note": "Over ratings with a winner (ties and both-wrong left out): 1 when the metric scores the winner higher, 0.5 when it scores both the same (chance level 0.5), else 0. Kendall tau-b: rank correlation of the metric difference with the human outcome (+1/−1/0).",
        "metric": "metric",
        "agree": "agree rate [95% CI]",
        "tau": "Kendall tau-b",
        "by_category": "Win rate by category",
        "category": "category",
        "by_slot": "Per-slot judgements (share judged right)",
        "slot_names": {"core_concept": "core concept", "source": "source", "emotion": "emotion"},
        "no_slots": "The raters ticked no per-slot judgement.",
        "notes": "Notes",
        "plot_matrix": "Win-rate matrix: row model's win rate against column model (ties half)",
        "plot_bt": "Bradley–Terry scores with 95% CIs",
        "plot_metrics": "Agreement of each automatic metric with human preference (dashed = chance, 50%)",
        "measure": "measure",
        "value": "value",
        "row_vs_col": "row vs column",
        "agree_rate": "agree rate",
        "human_ratings": "Human-rated files (for the LLM judge's agreement)",
    },
}

CONVENTIONS = {
    "outcome": "each rating becomes an outcome of the item's pair (names sorted): first wins, second wins, tie, both_wrong",
    "win_rate": "a_win_rate = (a_wins + 0.5 * (ties + both_wrong)) / n; tie and both_wrong both count as a tie",
    "ci": "95% percentile bootstrap resampling test ids (all ratings of a drawn id come with it), seeded",
    "bradley_terry": "maximum likelihood, P(i beats j) = sigmoid(b_i - b_j), ties as half a win each; 'score' = "
    "1000 + 400 * b / ln(10) (Elo-like, mean 1000), 'log_strength' = b (natural log, mean 0); 'prior' = 1 means "
    "the MLE did not exist and one virtual tie per pair was added",
    "agreement": "4-way outcome on items rated by >= 2 raters; Cohen's kappa per rater pair on shared items (mean "
    "over pairs; pairs where both used one and the same category are undefined and left out); Fleiss' kappa "
    "generalised to a varying number of raters per item; Krippendorff's alpha, nominal",
    "metric_agreement": "ratings with a winner only (ties and both_wrong excluded): agree = 1 when the metric scores "
    "the winner higher, 0.5 on a metric tie, else 0; kendall_tau = scipy.stats.kendalltau (tau-b) between "
    "s(first) - s(second) and the human outcome +1/-1/0 over all ratings with both scores",
    "human_ratings": "human_ratings/<model>.jsonl: per id, each criterion is the majority of the raters' per-slot "
    "judgements of that model (an even split is left out); 'mapping' is not in the rating rubric and 'loose' "
    "cannot be derived from a pairwise choice, so both are absent (judge.py then reports no value for them)",
}


def _t(lang: str) -> dict:
    if lang not in LANGS:
        raise UserError(f"--lang '{lang}' is not available; choose {' or '.join(LANGS)}.")
    return TEXT[lang]


def _cat_label(cat: str, lang: str) -> str:
    if lang == "en" and cat in CATEGORIES:
        return f"{CATEGORIES[cat][0]} ({cat})"
    return cat


def _metric_label(metric: str, lang: str) -> str:
    if metric == JUDGE_KEY:
        return "LLM 评审 loose 分" if lang == "zh" else "LLM judge loose score"
    return ALL_LABELS.get(metric, metric)


# --------------------------------------------------------------------------------------------------------------
# Building the numbers


def build_report(
    study: Study,
    *,
    bert: BertScoreConfig | None = None,
    judge_cache: Path | None = None,
    judge_model: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Everything report.json holds."""
    if n_boot < 0:
        raise UserError(f"--bootstrap must be >= 0, got {n_boot}.")
    ratings = study.ratings()
    categories = {i: study.category(i) for i in study.ids}
    res = stats.outcomes(ratings, categories)
    ids = [i for i in study.ids if any(o.id == i for o in res)]
    boot = stats.Resampler(ids, n_boot, seed)
    raters = Counter(r["rater"] for r in ratings)
    out: dict = {
        "vmeta_version": getattr(vmeta, "__version__", None),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "study": {
            "root": str(study.root),
            "models": study.models,
            "ids": len(study.ids),
            "items": len(study.items),
            "design": study.meta.get("design"),
            "ratings": len(ratings),
            "ids_rated": len(ids),
            "raters": dict(sorted(raters.items())),
            "sources": dict(Counter(r.get("source", "page").split(":")[0] for r in ratings)),
        },
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "resampled": "test ids"},
        "conventions": CONVENTIONS,
        "notes": [],
    }
    if not ratings:
        out.update(
            win_rates=[],
            bradley_terry=[],
            bradley_terry_fit={"prior": None, "n": 0},
            agreement={
                "items_multi_rated": 0,
                "cohen_kappa": None,
                "cohen_pairs": [],
                "fleiss_kappa": None,
                "krippendorff_alpha": None,
                "raw_agreement": None,
                "metrics": {},
            },
            by_category={},
            by_slot={},
        )
        out["notes"].append("no ratings yet")
        return out
    bt, fit = stats.bradley_terry(res, study.models, boot)
    agreement = stats.agreement(res)
    scores, notes = sample_scores(study, ids, bert=bert, judge_cache=judge_cache, judge_model=judge_model)
    agreement["metrics"] = stats.metric_agreement(res, scores, boot)
    out.update(
        win_rates=stats.win_rates(res, study.models, boot),
        bradley_terry=bt,
        bradley_terry_fit=fit,
        agreement=agreement,
        by_category=stats.by_category(res, study.models, boot),
        by_slot=stats.by_slot(res, study.models, list(SLOTS), boot),
    )
    if bert is not None and "bertscore" in scores:
        from vmeta.evaluate.metrics import EvalContext

        out["bertscore"] = EvalContext(bert=bert).scorer().describe()
    out["notes"] += notes
    return out


def human_rating_rows(study: Study) -> dict[str, list[dict]]:
    """Per model: one row per id in judge.py's human-rated shape ({"id", criterion: 0/1, ...}), from the raters'
    per-slot judgements (majority; an even split leaves the criterion out)."""
    votes: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in study.ratings():
        for model, judged in (r.get("slots") or {}).items():
            for slot, v in judged.items():
                votes[model][str(r["id"])][slot].append(int(v))
    out: dict[str, list[dict]] = {}
    for model in study.models:
        rows = []
        for i in study.ids:
            per = votes.get(model, {}).get(i)
            if not per:
                continue
            row: dict = {"id": i, "model": model}
            for slot in SLOTS:
                v = per.get(slot)
                if v and 2 * sum(v) != len(v):
                    row[slot] = int(2 * sum(v) > len(v))
            row["n_raters"] = max(len(v) for v in per.values())
            if any(s in row for s in SLOTS):
                rows.append(row)
        out[model] = rows
    return out


# --------------------------------------------------------------------------------------------------------------
# Plots


def _plot_lang(lang: str) -> str:
    """Plot text in the report's language, unless the machine has no font that draws Chinese."""
    from vmeta.plotting import find_cjk_font

    return lang if lang != "zh" or find_cjk_font() else "en"


def make_plots(report: dict, lang: str) -> dict[str, tuple[str, bytes]]:
    """file name -> (title, PNG)."""
    from vmeta.evaluate import plots
    from vmeta.plotting import pyplot

    if not report["win_rates"]:
        return {}
    t = TEXT[_plot_lang(lang)]
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
        lang_p = _plot_lang(lang)
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(metrics) + 2), 3.8))
        x = np.arange(len(metrics))
        rates = [100 * e["agree_rate"] for e in metrics.values()]
        err = np.array([plots._err(100 * e["agree_rate"], [_pct(v) for v in e["ci"]]) for e in metrics.values()]).T
        ax.bar(x, rates, yerr=err, capsize=4, color="#55a868")
        ax.axhline(50, color="#c44e52", linestyle="--")
        ax.set_xticks(x, [_metric_label(m, lang_p) for m in metrics], rotation=30, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel(f"{t['agree_rate']} (%)")
        ax.set_title(t["plot_metrics"], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        images["metric_agreement.png"] = (t["plot_metrics"], plots._png(fig))
    return images


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


# --------------------------------------------------------------------------------------------------------------
# Rendering


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _rate_ci(rate: float | None, ci: list | None) -> str:
    if rate is None:
        return "–"
    text = f"{100 * rate:.1f}%"
    if ci and ci[0] is not None:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def _tables(report: dict, lang: str) -> list[tuple[str, str | None, list[str], list[list[str]]]]:
    """(heading, note, header, rows) for every table of the report, shared by Markdown and HTML."""
    t = TEXT[lang]
    models = report["study"]["models"]
    out = []
    rows = [
        [
            f"{w['a']} vs {w['b']}",
            *(str(w[k]) for k in ("a_wins", "b_wins", "ties", "both_wrong", "n")),
            _rate_ci(w["a_win_rate"], w["ci"]),
        ]
        for w in report["win_rates"]
    ]
    out.append(
        (
            t["win_rates"],
            t["win_rates_note"],
            [t["pair"], t["a_wins"], t["b_wins"], t["ties"], t["both_wrong"], "n", t["a_rate"]],
            rows,
        )
    )
    bt_note = t["bt_note"] + (" " + t["bt_prior"] if report["bradley_terry_fit"].get("prior") else "")
    rows = [
        [
            str(b["rank"]),
            b["model"],
            f"{b['score']:.0f}" + (f" [{b['ci'][0]:.0f}, {b['ci'][1]:.0f}]" if b["ci"][0] is not None else ""),
            _num(b["log_strength"]),
        ]
        for b in report["bradley_terry"]
    ]
    out.append((t["bt"], bt_note, [t["rank"], t["model"], t["score"], t["log_strength"]], rows))
    ag = report["agreement"]
    if ag["items_multi_rated"]:
        rows = [
            [t["cohen"], _num(ag["cohen_kappa"])],
            [t["fleiss"], _num(ag["fleiss_kappa"])],
            [t["alpha"], _num(ag["krippendorff_alpha"])],
            [t["raw"], _rate_ci(ag["raw_agreement"], None)],
        ]
        note = t["agreement_note"].format(n=ag["items_multi_rated"])
        out.append((t["agreement"], note, [t["measure"], t["value"]], rows))
    else:
        out.append((t["agreement"], t["no_multi"], [], []))
    rows = [
        [
            _metric_label(m, lang),
            _rate_ci(e["agree_rate"], e["ci"]),
            str(e["n"]),
            _num(e["kendall_tau"]),
            _p(e["kendall_p"]),
        ]
        for m, e in ag["metrics"].items()
    ]
    out.append((t["metrics"], t["metrics_note"], [t["metric"], t["agree"], "n", t["tau"], "p"], rows))
    rows = []
    cats = report["by_category"]
    for cat in [c for c in CATEGORIES if c in cats] + sorted(c for c in cats if c not in CATEGORIES):
        entry = cats[cat]
        cells = [_cat_label(cat, lang), str(entry["n_ratings"])]
        for m in models:
            e = entry["models"].get(m)
            cells.append(_rate_ci(e["win_rate"], e["ci"]) if e else "–")
        rows.append(cells)
    out.append((t["by_category"], None, [t["category"], "n", *models], rows))
    slot_names = t["slot_names"]
    if any(e["n"] for per in report["by_slot"].values() for e in per.values()):
        rows = [
            [m, *[f"{_rate_ci(e['rate'], e['ci'])} (n={e['n']})" for e in report["by_slot"][m].values()]]
            for m in models
        ]
        out.append((t["by_slot"], None, [t["model"], *[slot_names[s] for s in SLOTS]], rows))
    else:
        out.append((t["by_slot"], t["no_slots"], [], []))
    return out


def _summary_lines(report: dict, lang: str) -> list[tuple[str, str]]:
    t = TEXT[lang]
    s = report["study"]
    d = s.get("design") or {}
    design = d.get("kind", "?") + (f", per_pair={d['per_pair']}" if d.get("per_pair") else "")
    design += f", raters_per_item={d.get('raters_per_item')}"
    raters = ", ".join(f"{r} ({n})" for r, n in s["raters"].items()) or "–"
    return [
        (t["models"], ", ".join(s["models"])),
        (t["ids"], f"{s['ids']} ({s['ids_rated']})"),
        (t["items"], str(s["items"])),
        (t["ratings"], str(s["ratings"])),
        (t["raters"], raters),
        (t["design"], design),
    ]


def to_markdown(report: dict, lang: str, images: dict[str, tuple[str, bytes]], human_files: list[str]) -> str:
    t = TEXT[lang]
    lines = [f"# {t['title']}", "", f"## {t['summary']}", ""]
    lines += [f"- {k}: {v}" for k, v in _summary_lines(report, lang)]
    if not report["study"]["ratings"]:
        lines += ["", t["no_ratings"].format(root=report["study"]["root"]), ""]
        return "\n".join(lines)
    for heading, note, head, rows in _tables(report, lang):
        lines += ["", f"## {heading}", ""]
        if note:
            lines += [note, ""]
        if head:
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
            lines += ["| " + " | ".join(r) + " |" for r in rows]
    for name, (title, _) in images.items():
        lines += ["", f"![{title}]({name})"]
    if human_files:
        lines += ["", f"## {t['human_ratings']}", ""] + [f"- `{f}`" for f in human_files]
    if report["notes"]:
        lines += ["", f"## {t['notes']}", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def to_html(report: dict, lang: str, images: dict[str, tuple[str, bytes]], human_files: list[str]) -> str:
    esc = html.escape
    t = TEXT[lang]
    out = [
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{esc(t['title'])}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "p.note{color:#555;font-size:.9em}img{max-width:100%}figure{margin:1em 0}</style></head><body>",
        f"<h1>{esc(t['title'])}</h1><h2>{esc(t['summary'])}</h2><ul>",
    ]
    out += [f"<li>{esc(k)}: {esc(v)}</li>" for k, v in _summary_lines(report, lang)]
    out.append("</ul>")
    if not report["study"]["ratings"]:
        out.append(f"<p>{esc(t['no_ratings'].format(root=report['study']['root']))}</p></body></html>")
        return "\n".join(out)
    for heading, note, head, rows in _tables(report, lang):
        out.append(f"<h2>{esc(heading)}</h2>")
        if note:
            out.append(f"<p class='note'>{esc(note)}</p>")
        if head:
            out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
    for name, (title, png) in images.items():
        out.append(
            f"<figure><figcaption><b>{esc(title)}</b></figcaption><img alt='{esc(title)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}' data-file='{esc(name)}'></figure>"
        )
    if human_files:
        out.append(f"<h2>{esc(t['human_ratings'])}</h2><ul>")
        out += [f"<li><code>{esc(f)}</code></li>" for f in human_files]
        out.append("</ul>")
    if report["notes"]:
        out.append(f"<h2>{esc(t['notes'])}</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in report["notes"]) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    study: Study,
    *,
    lang: str = "zh",
    out_dir: Path | None = None,
    bert: BertScoreConfig | None = None,
    judge_cache: Path | None = None,
    judge_model: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict, dict[str, Path]]:
    """Compute and write the report; returns (report.json content, written files)."""
    _t(lang)
    out = Path(out_dir) if out_dir is not None else study.root / REPORT_DIR
    report = build_report(study, bert=bert, judge_cache=judge_cache, judge_model=judge_model, n_boot=n_boot, seed=seed)
    files: dict[str, Path] = {}
    human_files: list[str] = []
    if report["study"]["ratings"]:
        for model, rows in human_rating_rows(study).items():
            if rows:
                p = study.root / HUMAN_DIR / f"{model}.jsonl"
                write_jsonl(p, rows)
                files[f"human_ratings/{model}"] = p
                human_files.append(str(p))
    images = make_plots(report, lang)
    out.mkdir(parents=True, exist_ok=True)
    for name, (_, png) in images.items():
        atomic_write_bytes(out / name, png)
        files[name] = out / name
    report["plots"] = {name: title for name, (title, _) in images.items()}
    report["human_ratings"] = human_files
    atomic_write_text(out / "report.md", to_markdown(report, lang, images, human_files))
    atomic_write_text(out / "report.html", to_html(report, lang, images, human_files))
    write_json(out / "report.json", report)
    for name in ("report.md", "report.html", "report.json"):
        files[name] = out / name
    return report, files
