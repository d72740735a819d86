"""`vmeta eval`: predictions JSONL -> results.json + samples.jsonl + report.html (self-contained)."""

from __future__ import annotations

import base64
import html
import math
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import vmeta
from vmeta.dataset.categories import CATEGORIES
from vmeta.errors import UserError
from vmeta.evaluate import plots
from vmeta.evaluate.bertscore import BertScoreConfig
from vmeta.evaluate.bootstrap import corpus_ci, resample_counts, summarize
from vmeta.evaluate.metrics import (
    METRICS,
    THESIS_COLUMNS,
    EvalContext,
    column_labels,
    default_metrics,
    pkg_version,
    sacrebleu_from_stats,
    score,
)
from vmeta.evaluate.predictions import ALL, Prediction, file_sha256, load_predictions
from vmeta.evaluate.slots import SLOT_LABELS  # noqa: F401  (registers the slot metric and its columns)
from vmeta.jsonio import atomic_write_text, read_json, write_json, write_jsonl

ALL_LABELS = column_labels()  # every registered metric's columns
RESULTS = "results.json"
SAMPLES = "samples.jsonl"
REPORT = "report.html"
JUDGE_SAMPLES = "judge.jsonl"


@dataclass
class EvalConfig:
    metrics: list[str] | None = None  # None: the defaults
    bert: BertScoreConfig | None = field(default_factory=BertScoreConfig)  # None: --no-bertscore
    n_boot: int = 1000
    seed: int = 0
    show_progress: bool = False

    def __post_init__(self) -> None:
        names = self.resolved_metrics()
        unknown = [m for m in names if m not in METRICS]
        if unknown:
            raise UserError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}.")
        if self.bert is None:
            needing = [m for m in names if METRICS[m].needs_bertscore]
            if needing and self.metrics is not None:
                raise UserError(f"--no-bertscore conflicts with --metrics {','.join(needing)}; drop one of them.")
        if self.n_boot < 0:
            raise UserError(f"--bootstrap must be >= 0, got {self.n_boot}.")

    def resolved_metrics(self) -> list[str]:
        if self.metrics is None:
            return default_metrics(bertscore=self.bert is not None)
        if self.bert is None:
            return [m for m in self.metrics if not METRICS.get(m) or not METRICS[m].needs_bertscore]
        return list(self.metrics)


def _category_order(cats: set[str]) -> list[str]:
    known = [c for c in CATEGORIES if c in cats]
    return known + sorted(c for c in cats if c not in CATEGORIES)


def evaluate_rows(rows: list[Prediction], config: EvalConfig) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    """Score rows: (results dict, per-sample records, per-sample score columns)."""
    preds = [r.output for r in rows]
    refs = [r.reference for r in rows]
    ctx = EvalContext(bert=config.bert, show_progress=config.show_progress)
    scored = score(config.resolved_metrics(), preds, refs, ctx)
    columns, computation, corpus, sample_extra = scored.columns, scored.spec, scored.corpus, scored.sample_extra

    n = len(rows)
    names = list(columns)
    matrix = np.column_stack([columns[c] for c in names]) if names else np.zeros((n, 0))
    counts = resample_counts(n, config.n_boot, config.seed)
    overall = dict(zip(names, summarize(matrix, counts), strict=True)) if names else {}
    for c in names:
        overall[c]["label"] = ALL_LABELS.get(c, c)

    cats = _category_order({r.category for r in rows})
    per_category: dict[str, dict] = {}
    for k, cat in enumerate(cats):
        idx = np.array([i for i, r in enumerate(rows) if r.category == cat])
        sub_counts = resample_counts(len(idx), config.n_boot, config.seed + 1 + k)
        per_category[cat] = dict(zip(names, summarize(matrix[idx], sub_counts), strict=True)) if names else {}
        per_category[cat]["n_samples"] = len(idx)

    corpus_out: dict[str, dict] = {}
    for key, val in corpus.items():
        entry = {k: v for k, v in val.items() if k != "stats"}
        if "stats" in val and config.n_boot:
            stats = np.array(val["stats"], dtype=float)
            entry["ci95"] = corpus_ci(stats, counts, sacrebleu_from_stats)
            entry["per_category"] = {}
            for cat in cats:
                idx = [i for i, r in enumerate(rows) if r.category == cat]
                entry["per_category"][cat] = {"score": sacrebleu_from_stats(stats[idx].sum(axis=0))}
        corpus_out[key] = entry

    models = sorted({r.model for r in rows if r.model})
    adapters = sorted({r.adapter for r in rows if r.adapter})
    results = {
        "vmeta_version": getattr(vmeta, "__version__", None),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "n": n,
        "model": models[0] if len(models) == 1 else (models or None),
        "adapter": adapters[0] if len(adapters) == 1 else (adapters or None),
        "metrics_run": config.resolved_metrics(),
        "headline": {c: overall[c]["mean"] for c in THESIS_COLUMNS if c in overall},
        "metrics": overall,
        "per_category": per_category,
        "corpus": corpus_out,
        "computation": computation,
        "bootstrap": {
            "n_boot": config.n_boot,
            "seed": config.seed,
            "method": "percentile",
            "level": 0.95,
            "per_category": "resampled within each category",
        },
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            **{
                p: pkg_version(p)
                for p in (
                    "nltk",
                    "rouge-chinese",
                    "jieba",
                    "sacrebleu",
                    "bert-score",
                    "transformers",
                    "torch",
                    "rapidfuzz",
                )
            },
        },
    }

    samples = []
    for i, r in enumerate(rows):
        rec = {
            "id": r.id,
            "category": r.category,
            "prompt_hash": r.prompt_hash,
            "model": r.model,
            "adapter": r.adapter,
            "reference": r.reference,
            "output": r.output,
            "scores": {c: _num(columns[c][i]) for c in names},
        }
        for key, vals in sample_extra.items():
            rec[key] = vals[i]
        samples.append(rec)
    return results, samples, columns


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def run_eval(predictions: str | Path, out_dir: str | Path, config: EvalConfig, *, judge=None) -> dict:
    """Evaluate a predictions file and write DIR/results.json, DIR/samples.jsonl, DIR/report.html."""
    all_rows, fmt = load_predictions(predictions)
    rows = [r for r in all_rows if not r.error]
    if not rows:
        raise UserError(f"{predictions}: every row carries an 'error' from `vmeta predict`; nothing to score.")
    results, samples, columns = evaluate_rows(rows, config)
    results["input"] = {"path": str(Path(predictions).resolve()), "sha256": file_sha256(predictions), "format": fmt}
    # rows `vmeta predict` could not produce (unreadable video...) are left out and listed, not scored as empty
    results["skipped"] = [{"id": r.id, "error": r.error} for r in all_rows if r.error]
    meta = Path(str(predictions) + ".meta.json")
    if meta.is_file():  # what `vmeta predict` recorded: model, adapter, prompt, generation and frame settings
        results["predictions_meta"] = read_json(meta)
    results["config"] = {
        "metrics": config.resolved_metrics(),
        "bert": asdict(config.bert) if config.bert else None,
        "n_boot": config.n_boot,
        "seed": config.seed,
    }
    judge_samples = None
    if judge is not None:  # reported apart from the reference metrics, per-sample verdicts in judge.jsonl
        results["judge"] = judge(rows)
        judge_samples = results["judge"].pop("samples", None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if judge_samples is not None:
        write_jsonl(out / JUDGE_SAMPLES, judge_samples)
    write_jsonl(out / SAMPLES, samples)
    write_json(out / RESULTS, results)
    atomic_write_text(out / REPORT, render_html(results, columns))
    return results


# --------------------------------------------------------------------------------------------------------------
# HTML report


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def fmt_ci(entry: dict | None, digits: int = 2) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    lo, hi = entry.get("ci95") or [None, None]
    if lo is None or hi is None:
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def main_columns(metrics: dict) -> list[str]:
    return [c for c in THESIS_COLUMNS if c in metrics]


def render_html(results: dict, columns: dict[str, np.ndarray]) -> str:
    metrics = results["metrics"]
    main = main_columns(metrics) or list(metrics)[:3]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>vmeta eval report</title>",
        "<style>body{font-family:system-ui,'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}img{max-width:100%}code,pre{background:#f5f5f5}"
        "details pre{white-space:pre-wrap;font-size:12px}</style></head><body>",
        f"<h1>Evaluation report</h1><p>{results['n']} samples · model <b>{esc(str(results.get('model')))}</b>"
        f" · adapter {esc(str(results.get('adapter')))} · input <code>{esc(results.get('input', {}).get('path', ''))}</code>"
        f" · {esc(results['created'])}</p>",
        (
            f"<p><b>{len(results['skipped'])} row(s) left out</b> (error from <code>vmeta predict</code>): "
            + esc(", ".join(f"{s['id']}: {s['error']}" for s in results["skipped"][:20]))
            + "</p>"
        )
        if results.get("skipped")
        else "",
        "<h2>Metrics (mean, 95% bootstrap CI)</h2><table><tr><th>metric</th><th>mean [95% CI]</th><th>n</th></tr>",
    ]
    for c, e in metrics.items():
        parts.append(f"<tr><td>{esc(e.get('label', c))}</td><td>{fmt_ci(e)}</td><td>{e['n']}</td></tr>")
    parts.append("</table>")
    for key, entry in results.get("corpus", {}).items():
        if "score" in entry:
            ci = entry.get("ci95") or [None, None]
            ci_s = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None else ""
            parts.append(
                f"<p>{esc(ALL_LABELS.get(key, key))}: <b>{entry['score']:.2f}</b>{ci_s} "
                f"<code>{esc(results['computation'].get(key, {}).get('signature', ''))}</code></p>"
            )
        if key == "template":
            parts.append(
                f"<p>Template conformance: outputs {entry['output_conformance']:.1f}%, references "
                f"{entry['reference_conformance']:.1f}%; both parse in {entry['both_parse']} of {entry['n']} samples.</p>"
            )
    if "bleu4_stripped" in metrics and "bleu4" in metrics and metrics["bleu4_stripped"]["mean"]:
        ratio = (
            metrics["bleu4"]["mean"] / metrics["bleu4_stripped"]["mean"]
            if metrics["bleu4_stripped"]["mean"]
            else float("nan")
        )
        parts.append(
            f"<p>Template words inflate BLEU-4 by ×{ratio:.2f} (with {metrics['bleu4']['mean']:.2f} vs "
            f"without {metrics['bleu4_stripped']['mean']:.2f}).</p>"
        )

    cats = [c for c in results["per_category"]]
    if main:
        parts.append(
            "<h2>Per category</h2><table><tr><th>category</th><th>n</th>"
            + "".join(f"<th>{esc(ALL_LABELS.get(c, c))}</th>" for c in main)
            + "</tr>"
        )
        for cat in cats:
            row = results["per_category"][cat]
            parts.append(
                f"<tr><td>{esc(cat)}</td><td>{row['n_samples']}</td>"
                + "".join(f"<td>{fmt_ci(row.get(c))}</td>" for c in main)
                + "</tr>"
            )
        parts.append("</table>")
        bars_input = {cat: results["per_category"][cat] for cat in cats}
        if cats != [ALL]:
            bars_input["overall"] = metrics
        parts.append(_img(plots.category_bars(bars_input, main, ALL_LABELS), "per-category bars"))
        parts.append("<h2>Score distributions</h2>")
        parts.append(_img(plots.histograms({c: columns[c] for c in main}, ALL_LABELS), "histograms"))
    if "judge" in results:
        parts.append(
            "<h2>LLM judge (separate from the reference metrics)</h2><pre>"
            + esc(_short_json(results["judge"]))
            + "</pre>"
        )
    parts.append(
        "<h2>How each number was computed</h2><details><summary>computation</summary><pre>"
        + esc(_short_json(results["computation"]))
        + "</pre></details>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _short_json(obj) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False, indent=2, default=str)


__all__ = ["EvalConfig", "evaluate_rows", "fmt_ci", "render_html", "run_eval"]
