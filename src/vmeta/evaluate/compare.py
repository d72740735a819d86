"""`vmeta compare`: several eval results -> thesis-style tables (rows = runs; BERT-F1, BLEU-4, ROUGE-L),
95% CIs, best per column in bold (Markdown, CSV, HTML), plots, and paired tests between runs."""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vmeta.errors import UserError
from vmeta.evaluate import plots
from vmeta.evaluate.bootstrap import paired_test
from vmeta.evaluate.metrics import THESIS_COLUMNS, higher_is_better
from vmeta.evaluate.report import ALL_LABELS, RESULTS, SAMPLES, fmt_ci
from vmeta.jsonio import atomic_write_bytes, atomic_write_text, read_json, read_jsonl, write_json


@dataclass
class Run:
    name: str
    results_path: Path
    results: dict
    samples: list[dict] | None

    def scores(self, column: str) -> dict[str, float]:
        out = {}
        for s in self.samples or []:
            v = s.get("scores", {}).get(column)
            out[str(s["id"])] = np.nan if v is None else float(v)
        return out


@dataclass
class Comparison:
    runs: list[Run]
    columns: list[str]
    best: dict[str, str]  # column -> run name
    paired: list[dict] = field(default_factory=list)
    baseline: str | None = None
    warnings: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def resolve_results(path: str | Path) -> Path:
    """A results.json, an eval output folder, or a run folder holding eval/results.json."""
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (p / RESULTS, p / "eval" / RESULTS):
        if candidate.is_file():
            return candidate
    if p.is_dir():
        subs = sorted(p.glob(f"*/{RESULTS}"))
        if len(subs) == 1:
            return subs[0]
    raise UserError(
        f"{p}: no results found (looked for {p / RESULTS} and {p / 'eval' / RESULTS}); run `vmeta eval` first."
    )


def _default_name(results_path: Path, results: dict) -> str:
    folder = results_path.parent
    if folder.name == "eval":
        folder = folder.parent
    return folder.name or str(results.get("adapter") or results.get("model") or results_path)


def load_runs(paths: list[str | Path], names: list[str] | None = None) -> list[Run]:
    if not paths:
        raise UserError("give at least one results.json / eval folder / run folder to compare.")
    if names is not None and len(names) != len(paths):
        raise UserError(f"--names has {len(names)} name(s) for {len(paths)} input(s); give one name per input.")
    runs = []
    for k, p in enumerate(paths):
        rp = resolve_results(p)
        res = read_json(rp)
        if not isinstance(res, dict) or "metrics" not in res:
            raise UserError(f"{rp}: not a vmeta eval results.json (no 'metrics').")
        sp = rp.parent / SAMPLES
        samples = read_jsonl(sp) if sp.is_file() else None
        runs.append(Run(names[k] if names else _default_name(rp, res), rp, res, samples))
    seen: dict[str, int] = {}
    for r in runs:  # make names unique
        if r.name in seen:
            seen[r.name] += 1
            r.name = f"{r.name}-{seen[r.name]}"
        else:
            seen[r.name] = 1
    return runs


def compare(
    paths: list[str | Path],
    *,
    names: list[str] | None = None,
    extra: list[str] | None = None,
    paired: bool | None = None,
    baseline: str = "best",
    n_boot: int = 1000,
    n_perm: int = 10000,
    seed: int = 0,
) -> Comparison:
    runs = load_runs(paths, names)
    available = set.intersection(*(set(r.results["metrics"]) for r in runs))
    columns = [c for c in THESIS_COLUMNS if c in available]
    for c in extra or []:
        if c not in available:
            raise UserError(f"metric '{c}' is not in every result; available in all: {', '.join(sorted(available))}.")
        if c not in columns:
            columns.append(c)
    if not columns:
        raise UserError("the results share no metric to compare.")
    best = {}
    for c in columns:
        means = [(r.results["metrics"][c]["mean"], r.name) for r in runs if r.results["metrics"][c]["mean"] is not None]
        if means:
            best[c] = (max if higher_is_better(c) else min)(means)[1]
    cmp = Comparison(runs, columns, best)

    have_samples = all(r.samples for r in runs)
    if paired is None:
        paired = have_samples and len(runs) > 1
    if paired:
        if not have_samples:
            missing = [str(r.results_path.parent / SAMPLES) for r in runs if not r.samples]
            raise UserError(f"--paired needs samples.jsonl beside each results.json; missing: {', '.join(missing)}.")
        if baseline == "best":
            base = runs[[r.name for r in runs].index(best[columns[0]])] if columns[0] in best else runs[0]
        elif baseline == "first":
            base = runs[0]
        else:
            match = [r for r in runs if r.name == baseline]
            if not match:
                raise UserError(f"--baseline '{baseline}' is not one of the runs ({', '.join(r.name for r in runs)}).")
            base = match[0]
        cmp.baseline = base.name
        for r in runs:
            if r is base:
                continue
            cmp.paired.extend(_paired(r, base, columns, cmp.warnings, n_boot=n_boot, n_perm=n_perm, seed=seed))
    return cmp


def _paired(a: Run, b: Run, columns: list[str], warnings: list[str], **kw) -> list[dict]:
    ids_a = {str(s["id"]) for s in a.samples or []}
    ids_b = {str(s["id"]) for s in b.samples or []}
    common = sorted(ids_a & ids_b)
    if not common:
        raise UserError(
            f"runs '{a.name}' and '{b.name}' share no sample id, so they cannot be compared pairwise; "
            "evaluate both on the same split (or pass --no-paired)."
        )
    if len(common) < max(len(ids_a), len(ids_b)):
        warnings.append(
            f"'{a.name}' ({len(ids_a)} samples) and '{b.name}' ({len(ids_b)}) share only {len(common)} ids; "
            "the paired test uses those."
        )
    out = []
    for c in columns:
        sa, sb = a.scores(c), b.scores(c)
        try:
            res = paired_test(
                np.array([sa[i] for i in common]),
                np.array([sb[i] for i in common]),
                metric=ALL_LABELS.get(c, c),
                name_a=a.name,
                name_b=b.name,
                **kw,
            )
        except ValueError as exc:
            warnings.append(f"{a.name} vs {b.name} on {c}: {exc}")
            continue
        out.append({"column": c, **res.to_dict()})
    return out


# --------------------------------------------------------------------------------------------------------------
# Rendering


def _cell(entry: dict, bold: bool, style: str) -> str:
    text = fmt_ci(entry)
    if not bold or text == "–":
        return text
    mean, _, rest = text.partition(" ")
    if style == "md":
        return f"**{mean}** {rest}".strip()
    return f"<b>{html.escape(mean)}</b> {html.escape(rest)}".strip()


def to_markdown(cmp: Comparison) -> str:
    head = ["run", *[ALL_LABELS.get(c, c) for c in cmp.columns]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(cmp.columns)) + "|"]
    for r in cmp.runs:
        cells = [_cell(r.results["metrics"][c], cmp.best.get(c) == r.name, "md") for c in cmp.columns]
        lines.append("| " + " | ".join([r.name, *cells]) + " |")
    lines.append("")
    lines.append("Values: mean over the test samples [95% bootstrap CI]; best per column in bold.")
    if cmp.paired:
        lines += ["", f"Paired tests vs **{cmp.baseline}**:", ""]
        lines += [f"- {p['verdict']}" for p in cmp.paired]
    for w in cmp.warnings:
        lines.append(f"\n> warning: {w}")
    return "\n".join(lines) + "\n"


def to_csv(cmp: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run", *[f"{c}_{k}" for c in cmp.columns for k in ("mean", "ci_low", "ci_high", "n")], "results"])
    for r in cmp.runs:
        row: list = [r.name]
        for c in cmp.columns:
            e = r.results["metrics"][c]
            lo, hi = e.get("ci95") or [None, None]
            row += [_r(e.get("mean")), _r(lo), _r(hi), e.get("n")]
        w.writerow([*row, str(r.results_path)])
    return buf.getvalue()


def _r(x):
    return "" if x is None else f"{x:.4f}"


def to_html(cmp: Comparison, images: dict[str, bytes]) -> str:
    esc = html.escape
    out = [
        "<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>vmeta compare</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}</style></head><body><h1>Comparison</h1><table><tr><th>run</th>"
    ]
    out += [f"<th>{esc(ALL_LABELS.get(c, c))}</th>" for c in cmp.columns]
    out.append("</tr>")
    for r in cmp.runs:
        cells = "".join(
            f"<td>{_cell(r.results['metrics'][c], cmp.best.get(c) == r.name, 'html')}</td>" for c in cmp.columns
        )
        out.append(f"<tr><td>{esc(r.name)}</td>{cells}</tr>")
    out.append("</table><p>Mean [95% bootstrap CI]; best per column in bold.</p>")
    if cmp.paired:
        out.append(f"<h2>Paired tests vs {esc(cmp.baseline or '')}</h2><ul>")
        out += [f"<li>{esc(p['verdict'])}</li>" for p in cmp.paired]
        out.append("</ul>")
    for w in cmp.warnings:
        out.append(f"<p><b>warning:</b> {esc(w)}</p>")
    for name, png in images.items():
        title = plot_title(name, cmp.columns)
        out.append(
            f"<h3>{esc(title)}</h3><img alt='{esc(title)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        )
    out.append("</body></html>")
    return "\n".join(out)


def plot_title(file_name: str, columns: list[str]) -> str:
    """What the plot in `file_name` shows, as its heading in compare.html (the file name says nothing)."""
    if file_name == "bars.png":
        shown = ", ".join(ALL_LABELS.get(c, c) for c in columns)
        return f"Mean score of each run with its 95% CI ({shown})"
    if file_name.startswith("heatmap_") and file_name.endswith(".png"):
        column = file_name[len("heatmap_") : -len(".png")]
        return f"{ALL_LABELS.get(column, column)} by category: mean per run and category"
    return file_name


def make_plots(cmp: Comparison) -> dict[str, bytes]:
    names = [r.name for r in cmp.runs]
    table = {r.name: r.results["metrics"] for r in cmp.runs}
    images = {"bars.png": plots.run_bars(names, cmp.columns, table, ALL_LABELS, plot_title("bars.png", cmp.columns))}
    cats: list[str] = []
    for r in cmp.runs:
        for c in r.results.get("per_category", {}):
            if c not in cats:
                cats.append(c)
    if cats:
        for c in cmp.columns:
            values = np.array(
                [
                    [
                        (r.results.get("per_category", {}).get(cat, {}).get(c) or {}).get("mean") or np.nan
                        for cat in cats
                    ]
                    for r in cmp.runs
                ],
                dtype=float,
            )
            images[f"heatmap_{c}.png"] = plots.heatmap(names, cats, values, plot_title(f"heatmap_{c}.png", [c]))
    return images


def write_comparison(cmp: Comparison, out_dir: str | Path) -> dict[str, str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = make_plots(cmp)
    for name, png in images.items():
        atomic_write_bytes(out / name, png)
    atomic_write_text(out / "compare.md", to_markdown(cmp))
    atomic_write_text(out / "compare.csv", to_csv(cmp))
    atomic_write_text(out / "compare.html", to_html(cmp, images))
    write_json(
        out / "compare.json",
        {
            "runs": [{"name": r.name, "results": str(r.results_path)} for r in cmp.runs],
            "columns": cmp.columns,
            "table": {r.name: {c: r.results["metrics"][c] for c in cmp.columns} for r in cmp.runs},
            "best": cmp.best,
            "baseline": cmp.baseline,
            "paired": cmp.paired,
            "warnings": cmp.warnings,
        },
    )
    files = {k: str(out / k) for k in ["compare.md", "compare.csv", "compare.html", "compare.json", *images]}
    cmp.files = files
    return files


__all__ = [
    "Comparison",
    "Run",
    "compare",
    "load_runs",
    "plot_title",
    "resolve_results",
    "to_csv",
    "to_html",
    "to_markdown",
    "write_comparison",
]
