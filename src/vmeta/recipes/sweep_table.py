"""A sweep's results as tables: ``out_dir/sweep.md`` (one metrics table per grid, the training summary, the
failed runs) and ``out_dir/sweep.csv`` (every evaluated run, its varied values as columns).

The metrics columns (BERTScore F1 / BLEU-4 / ROUGE-L with 95% CIs, best per column in bold) are rendered by
:mod:`vmeta.evaluate.compare`, so a sweep's table reads like `vmeta compare`'s.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from vmeta.errors import UserError
from vmeta.jsonio import atomic_write_text
from vmeta.recipes.sweep_names import format_value, short_names
from vmeta.recipes.sweep_plan import PlannedRun, SweepSpec, run_info
from vmeta.runs import RunManifest

if TYPE_CHECKING:
    from vmeta.recipes.sweep import RunOutcome

SWEEP_MD = "sweep.md"
SWEEP_CSV = "sweep.csv"


def _row_label(run: PlannedRun, keys: list[str], shorts: dict[str, str]) -> str:
    return ", ".join(f"{shorts[k]}={format_value(run.varied[k])}" for k in keys)


def _training_table(spec: SweepSpec, runs: list[PlannedRun], keys: list[str], outcomes: dict[str, RunOutcome]) -> str:
    shorts = short_names(keys)
    head = [*(shorts[k] for k in keys), "status", "steps", "train loss", "samples/s", "peak memory (MB)", "run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in runs:
        info = run_info(r.path) or RunManifest()
        o = outcomes.get(r.name)
        status = info.status or (o.status if o else "not run")
        if o and o.status == "failed":
            status = "failed"
        final = info.final or {}
        mem = info.get("memory") or {}
        peak = mem.get("peak_cuda_allocated_mb") or mem.get("peak_rss_mb")
        loss = final.get("train_loss")
        cells = [
            *(format_value(r.varied[k]) for k in keys),
            str(status),
            str(info.global_step if info.global_step is not None else "–"),
            f"{loss:.4f}" if isinstance(loss, int | float) else "–",
            f"{info.samples_per_s:.3g}" if info.samples_per_s is not None else "–",
            f"{peak:,.0f}" if isinstance(peak, int | float) else "–",
            f"`{r.path}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _metrics_table(runs: list[PlannedRun], keys: list[str]) -> tuple[str, str] | None:
    """(markdown, csv) from vmeta.evaluate.compare for the runs with eval/results.json; None when there are none."""
    have = [r for r in runs if (r.path / "eval" / "results.json").is_file()]
    if not have:
        return None
    from vmeta.evaluate.compare import compare, to_csv, to_markdown

    shorts = short_names(keys)
    labels = [_row_label(r, keys, shorts) for r in have]
    try:
        cmp = compare([r.path for r in have], names=labels, paired=False)
    except UserError as exc:  # e.g. results that share no metric: say so in the table file instead of failing
        return f"The evaluated runs cannot be put in one table: {exc}\n", ""
    md = to_markdown(cmp)
    first_col = ", ".join(shorts[k] for k in keys)
    md = md.replace("| run |", f"| {first_col} |", 1)
    # CSV: the varied values as their own columns in front of compare's columns.
    rows = list(csv.reader(io.StringIO(to_csv(cmp))))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*keys, *rows[0]])
    by_label = dict(zip(labels, have, strict=True))
    for row in rows[1:]:
        r = by_label[row[0]]
        w.writerow([*(r.varied[k] for k in keys), *row])
    return md, buf.getvalue()


def write_tables(spec: SweepSpec, outcomes: list[RunOutcome]) -> tuple[Path, Path | None]:
    """out_dir/sweep.md: one table per grid (rows = varied values; BERTScore F1 / BLEU-4 / ROUGE-L, best in bold)
    and the training summary; out_dir/sweep.csv: every evaluated run with its varied values as columns."""
    by_name = {o.name: o for o in outcomes}
    lines = [f"# Sweep `{spec.source.name}`", ""]
    lines.append(f"Base config: `{spec.base or 'defaults'}`; fixed: `{json.dumps(spec.fixed, ensure_ascii=False)}`; "
                 f"runs in `{spec.out_dir}`.")  # fmt: skip
    lines.append("")
    csv_text = None
    all_keys = spec.varied_keys
    for gi, grid in enumerate(spec.grids):
        runs = [r for r in spec.runs if gi in r.grids]
        if len(spec.grids) > 1:
            lines += [f"## {grid.title}", ""]
        metrics = _metrics_table(runs, grid.table_keys)
        if metrics is not None:
            lines += [metrics[0].rstrip(), ""]
            missing = [r.name for r in runs if not (r.path / "eval" / "results.json").is_file()]
            if missing:
                lines += [f"Not evaluated (yet): {', '.join(missing)}.", ""]
        elif spec.eval is None:
            lines += [
                "No evaluation configured (add `eval:` to the grid file to predict + score each run on the test split).",
                "",
            ]
        else:
            lines += ["No run has been evaluated yet.", ""]
    all_metrics = _metrics_table(spec.runs, all_keys)
    if all_metrics is not None and all_metrics[1]:
        csv_text = all_metrics[1]
    lines += ["## Training", "", _training_table(spec, spec.runs, all_keys, by_name).rstrip(), ""]
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{o.name}`: {o.error}" for o in failed] + [""]
    md_path = spec.out_dir / SWEEP_MD
    atomic_write_text(md_path, "\n".join(lines))
    csv_path = None
    if csv_text is not None:
        csv_path = spec.out_dir / SWEEP_CSV
        atomic_write_text(csv_path, csv_text)
    return md_path, csv_path


__all__ = ["SWEEP_CSV", "SWEEP_MD", "write_tables"]
