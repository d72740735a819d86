"""Commands: `vmeta eval` (predictions -> results.json, samples.jsonl, report.html) and `vmeta compare`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vmeta.cli.apps import app, console, err_console
from vmeta.errors import UserError


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


# the case gallery's video folder, for vmeta eval and vmeta compare alike
GalleryData = Annotated[
    Path | None,
    typer.Option(
        "--data", help="Dataset folder of the videos, for the gallery's frames (default: the one predicted on)."
    ),
]


@app.command("eval")
def eval_cmd(
    predictions: Annotated[
        Path | None,
        typer.Argument(help="predictions.jsonl from `vmeta predict`, or LLaMA-Factory's generated_predictions.jsonl."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder: results.json, samples.jsonl, report.html.")
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="Comma-separated metric names (default: all defaults). See --list-metrics."),
    ] = None,
    bert_model: Annotated[
        str, typer.Option("--bert-model", help="BERTScore encoder: Hub id or local folder.")
    ] = "bert-base-chinese",
    bert_layer: Annotated[int, typer.Option("--bert-layer", help="Encoder layer whose output BERTScore uses.")] = 8,
    bert_batch_size: Annotated[int, typer.Option("--bert-batch-size", help="Texts per encoder forward pass.")] = 64,
    idf: Annotated[bool, typer.Option("--idf/--no-idf", help="IDF-weight BERTScore tokens (thesis: off).")] = False,
    bert_device: Annotated[
        str, typer.Option("--bert-device", help="auto (CUDA when available), cpu, cuda, cuda:1 ... for the encoder.")
    ] = "auto",
    no_bertscore: Annotated[bool, typer.Option("--no-bertscore", help="Skip BERTScore (no encoder needed).")] = False,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="Bootstrap replicates for the 95% CIs (0 = none).")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="Also score with an LLM judge (reported separately).")
    ] = None,
    judge_base_url: Annotated[
        str | None, typer.Option("--judge-base-url", help="OpenAI-compatible endpoint of the judge.")
    ] = None,
    human: Annotated[
        Path | None, typer.Option("--human", help="Human-rated JSONL: judge agreement (kappa/Spearman) is reported.")
    ] = None,
    list_metrics: Annotated[bool, typer.Option("--list-metrics", help="List the metric names and exit.")] = False,
    gallery: Annotated[
        int | None, typer.Option("--gallery", help="Also write OUT/gallery.html with N test videos per category.")
    ] = None,
    data: GalleryData = None,
) -> None:
    """Score predictions against references: BLEU-4, ROUGE-L, BERTScore (thesis-comparable) + alternates,
    slot-level scores, per-category tables and bootstrap 95% CIs."""
    from vmeta.config import get_settings
    from vmeta.evaluate.bertscore import BertScoreConfig
    from vmeta.evaluate.metrics import METRICS, column_labels
    from vmeta.evaluate.report import REPORT, RESULTS, SAMPLES, EvalConfig, fmt_ci, run_eval

    if list_metrics:
        for m in METRICS.values():
            console.print(f"[bold]{m.name}[/]{' (default)' if m.default else ''}: {m.help}", highlight=False)
        raise typer.Exit()
    if predictions is None or out is None:
        raise UserError("give the predictions file and --out DIR: vmeta eval PREDICTIONS.jsonl --out DIR.")
    settings = get_settings()
    bert = None
    if not no_bertscore:
        bert = BertScoreConfig.from_settings(
            settings, model=bert_model, num_layers=bert_layer, idf=idf, batch_size=bert_batch_size, device=bert_device
        )
    config = EvalConfig(metrics=_split(metrics), bert=bert, n_boot=bootstrap, seed=seed, show_progress=True)
    judge = None
    if judge_model:
        from vmeta.evaluate.judge import JudgeConfig, make_judge

        judge = make_judge(
            JudgeConfig(
                model=judge_model,
                base_url=judge_base_url or settings.llm_base_url,
                cache_dir=settings.resolved_cache_dir / "judge",
                api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            ),
            human=human,
        )
    elif human:
        raise UserError("--human needs --judge-model: agreement is between the judge and the human ratings.")
    err_console.print(f"scoring {predictions} with: {', '.join(config.resolved_metrics())}", highlight=False)
    results = run_eval(predictions, out, config, judge=judge)

    if results.get("skipped"):
        ids = ", ".join(s["id"] for s in results["skipped"][:10])
        err_console.print(
            f"[yellow]warning:[/] {len(results['skipped'])} row(s) carry an error from `vmeta predict` and were left "
            f"out (listed in results.json 'skipped'): {ids}",
            highlight=False,
            soft_wrap=True,
        )
    table = Table(title=f"vmeta eval — {results['n']} samples — {results.get('model') or predictions.name}")
    table.add_column("metric")
    table.add_column("mean [95% CI]", justify="right")
    table.add_column("n", justify="right")
    for c, e in results["metrics"].items():
        style = "bold" if c in results["headline"] else ""
        label = escape(e["label"])
        table.add_row(f"[{style}]{label}[/]" if style else label, fmt_ci(e), str(e["n"]))
    for key, entry in results.get("corpus", {}).items():
        if "score" in entry:
            ci = entry.get("ci95") or [None, None]
            table.add_row(
                escape(column_labels().get(key, key)),
                f"{entry['score']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None else ""),
                str(results["n"]),
            )
    console.print(table)
    cats = list(results["per_category"])
    if len(cats) > 1:
        heads = [c for c in ("bertscore", "bleu4", "rougeL") if c in results["metrics"]]
        ct = Table(title="per category")
        ct.add_column("category")
        ct.add_column("n", justify="right")
        for h in heads:
            ct.add_column(results["metrics"][h]["label"], justify="right")
        for cat in cats:
            row = results["per_category"][cat]
            ct.add_row(cat, str(row["n_samples"]), *[fmt_ci(row.get(h)) for h in heads])
        console.print(ct)
    if "judge" in results:
        console.print(
            f"LLM judge ({results['judge'].get('model')}): {results['judge'].get('summary')}", highlight=False
        )
    wrote = f"{out / RESULTS}, {out / SAMPLES}, {out / REPORT}"
    if gallery is not None:
        from vmeta.evaluate.compare import load_runs
        from vmeta.evaluate.gallery import write_gallery

        wrote += f", {write_gallery(load_runs([out]), out, gallery, data=data, seed=seed)}"
    console.print(f"wrote {wrote}", highlight=False)


@app.command("compare")
def compare_cmd(
    inputs: Annotated[
        list[Path], typer.Argument(help="results.json files, eval folders, or run folders with eval/results.json.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write compare.md/.csv/.html/.json and PNG plots here.")
    ] = None,
    names: Annotated[str | None, typer.Option("--names", help="Comma-separated row names, one per input.")] = None,
    extra: Annotated[str | None, typer.Option("--extra", help="More columns, e.g. rougeL_char,concept_exact.")] = None,
    paired: Annotated[
        bool | None,
        typer.Option(
            "--paired/--no-paired", help="Paired tests vs the baseline (default: when all samples.jsonl exist)."
        ),
    ] = None,
    baseline: Annotated[
        str, typer.Option("--baseline", help="'best' (by the first column), 'first', or a run name.")
    ] = "best",
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates of the paired test.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    gallery: Annotated[
        int | None,
        typer.Option("--gallery", help="Also write OUT/gallery.html: N test videos per category, every run's answer."),
    ] = None,
    data: GalleryData = None,
) -> None:
    """Thesis-style comparison table (tables 4.2–4.11): runs as rows, 95% CIs, best per column in bold.

    --gallery N adds the case-analysis page: N seeded test videos per category with a frame (and the video),
    the reference and each run's answer, slots highlighted, with its per-sample scores."""
    from vmeta.evaluate.compare import compare, write_comparison
    from vmeta.evaluate.report import ALL_LABELS

    if gallery is not None and out is None:
        raise UserError("--gallery writes OUT/gallery.html; give --out DIR too.")
    cmp = compare(
        list(inputs),
        names=_split(names),
        extra=_split(extra),
        paired=paired,
        baseline=baseline,
        n_boot=bootstrap,
        seed=seed,
    )
    table = Table(title="vmeta compare — mean [95% CI], best in bold")
    table.add_column("run")
    for c in cmp.columns:
        table.add_column(escape(ALL_LABELS.get(c, c)), justify="right")
    from vmeta.evaluate.report import fmt_ci

    for r in cmp.runs:
        cells = []
        for c in cmp.columns:
            text = fmt_ci(r.results["metrics"][c])
            cells.append(f"[bold green]{text}[/]" if cmp.best.get(c) == r.name else text)
        table.add_row(escape(r.name), *cells)
    console.print(table)
    if cmp.paired:
        console.print(
            f"[bold]Paired tests vs {cmp.baseline}[/] (paired bootstrap CI, sign-flip permutation p):", highlight=False
        )
        for p in cmp.paired:
            console.print(f"  {p['verdict']}", highlight=False, soft_wrap=True)
    for w in cmp.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    if out is not None:
        files = write_comparison(cmp, out)
        if gallery is not None:
            from vmeta.evaluate.gallery import write_gallery

            files["gallery.html"] = str(
                write_gallery(cmp.runs, out, gallery, columns=cmp.columns, data=data, seed=seed)
            )
        console.print("wrote " + ", ".join(files.values()), highlight=False, soft_wrap=True)
