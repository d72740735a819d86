"""Commands: `vmeta rate new | report | import | export` — human-evaluation studies (the page is `vmeta rate serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vmeta.cli.apps import console, err_console, rate_app


@rate_app.command("new")
def new_cmd(
    predictions: Annotated[
        list[Path], typer.Argument(help="Two or more predictions JSONL files of the same test set.")
    ],
    out: Annotated[Path, typer.Option("--out", help="The study folder to create (or resume).")],
    name: Annotated[
        list[str] | None,
        typer.Option("--name", help="A model's name in the study, once per file in order (default: the file stems)."),
    ] = None,
    design: Annotated[
        str, typer.Option("--design", help="all-pairs (every id x every pair) or balanced (--per-pair ids per pair).")
    ] = "all-pairs",
    per_pair: Annotated[
        int | None, typer.Option("--per-pair", help="balanced design: test ids rated per model pair.")
    ] = None,
    raters_per_item: Annotated[
        int, typer.Option("--raters-per-item", help="Ratings wanted per item (2+ gives inter-rater agreement).")
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the design and of the A/B order shown.")] = 0,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset folder, so the page can show each test video.")
    ] = None,
    reference: Annotated[
        bool, typer.Option("--reference/--no-reference", help="Show raters the reference label.")
    ] = True,
) -> None:
    """Create a blind side-by-side rating study; run it again with the same inputs to resume (ratings are kept)."""
    from vmeta.rating.create import create_study

    study = create_study(
        list(predictions),
        out,
        names=name or None,
        design=design,
        per_pair=per_pair,
        raters_per_item=raters_per_item,
        seed=seed,
        data=data,
        show_reference=reference,
    )
    for model, ids in study.left_out.items():
        shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
        err_console.print(
            f"[yellow]warning:[/] {len(ids)} id(s) are missing from '{escape(model)}' or carry a prediction error, "
            f"so no model is rated on them: {escape(shown)}",
            highlight=False,
            soft_wrap=True,
        )
    if not study.created:
        console.print(
            f"{out} already holds this study (same inputs); its {len(study.ratings())} rating(s) are kept.",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"created {out}: {len(study.models)} models ({', '.join(study.models)}), {len(study.ids)} test ids, "
            f"{len(study.items)} items, {study.raters_per_item} rater(s) per item.",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"next: vmeta rate serve {out}", highlight=False, soft_wrap=True)


@rate_app.command("report")
def report_cmd(
    study_dir: Annotated[Path, typer.Argument(help="The study folder.", metavar="STUDY")],
    lang: Annotated[str, typer.Option("--lang", help="Report language: zh or en.")] = "zh",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default STUDY/report).")] = None,
    bertscore_model: Annotated[
        str | None,
        typer.Option("--bertscore-model", help="Also compare BERTScore with people: encoder Hub id or local folder."),
    ] = None,
    bert_layer: Annotated[int, typer.Option("--bert-layer", help="Encoder layer BERTScore uses.")] = 8,
    judge_cache: Annotated[
        Path | None,
        typer.Option("--judge-cache", help="The LLM judge's judge.jsonl cache: compare its loose score with people."),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option("--judge-model", help="Which judge model's verdicts, if the cache holds several.")
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates for the 95% CIs.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
) -> None:
    """Win rates, Bradley–Terry ranking, inter-rater agreement, breakdowns, and metric–human agreement."""
    from vmeta.rating.report import write_report
    from vmeta.rating.study import Study

    bert = None
    if bertscore_model:
        from vmeta.config import get_settings
        from vmeta.evaluate.bertscore import BertScoreConfig

        bert = BertScoreConfig.from_settings(get_settings(), model=bertscore_model, num_layers=bert_layer)
    study = Study.open(study_dir)
    report, files = write_report(
        study,
        lang=lang,
        out_dir=out,
        bert=bert,
        judge_cache=judge_cache,
        judge_model=judge_model,
        n_boot=bootstrap,
        seed=seed,
    )
    if not report["study"]["ratings"]:
        console.print(
            f"{study_dir} has no ratings yet: collect some with `vmeta rate serve {study_dir}` or "
            f"`vmeta rate import {study_dir} FILE`. (An empty report was written.)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        table = Table(title=f"Bradley–Terry ranking — {report['study']['ratings']} ratings")
        for col in ("rank", "model", "score [95% CI]", "pair win rates"):
            table.add_column(col, justify="right" if col != "model" else "left")
        for b in report["bradley_terry"]:
            ci = b["ci"]
            score = f"{b['score']:.0f}" + (f" [{ci[0]:.0f}, {ci[1]:.0f}]" if ci[0] is not None else "")
            wins = [
                f"vs {w['b'] if w['a'] == b['model'] else w['a']}: "
                f"{100 * (w['a_win_rate'] if w['a'] == b['model'] else 1 - w['a_win_rate']):.0f}%"
                for w in report["win_rates"]
                if b["model"] in (w["a"], w["b"])
            ]
            table.add_row(str(b["rank"]), escape(b["model"]), score, escape(", ".join(wins)))
        console.print(table)
        ag = report["agreement"]

        def f(x):
            return "–" if x is None else f"{x:.3f}"

        console.print(
            f"agreement on {ag['items_multi_rated']} multi-rated item(s): Cohen's kappa {f(ag['cohen_kappa'])}, "
            f"Fleiss' kappa {f(ag['fleiss_kappa'])}, Krippendorff's alpha {f(ag['krippendorff_alpha'])}",
            highlight=False,
        )
        for m, e in ag["metrics"].items():
            if e["agree_rate"] is not None:
                console.print(
                    f"  {m}: agrees with people on {100 * e['agree_rate']:.0f}% of {e['n']} decided ratings, "
                    f"Kendall tau {f(e['kendall_tau'])}",
                    highlight=False,
                )
        for note in report["notes"]:
            err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    console.print("wrote " + ", ".join(str(p) for p in files.values()), highlight=False, soft_wrap=True)


@rate_app.command("import")
def import_cmd(
    study_dir: Annotated[Path, typer.Argument(help="The study folder.", metavar="STUDY")],
    file: Annotated[Path, typer.Argument(help="Ratings as CSV or JSONL (id, rater, model_a, model_b, winner, ...).")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: from the file's extension).")
    ] = None,
) -> None:
    """Bring in ratings made elsewhere (a spreadsheet): bad rows are named by line and field, good rows come in."""
    from vmeta.rating.study import Study
    from vmeta.rating.transfer import import_ratings

    study = Study.open(study_dir)
    res = import_ratings(study, file, fmt)
    for e in res.errors[:50]:
        err_console.print(f"[red]skipped:[/] {escape(e)}", highlight=False, soft_wrap=True)
    if len(res.errors) > 50:
        err_console.print(f"... and {len(res.errors) - 50} more bad row(s).", highlight=False)
    console.print(
        f"imported {res.imported} rating(s) from {file}; {res.duplicates} duplicate(s) skipped (same rater, id and "
        f"pair already stored); {len(res.errors)} bad row(s).",
        highlight=False,
        soft_wrap=True,
    )
    if res.errors and not res.imported:
        raise typer.Exit(1)


@rate_app.command("export")
def export_cmd(
    study_dir: Annotated[Path, typer.Argument(help="The study folder.", metavar="STUDY")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv (default) or jsonl.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default STUDY/export/ratings.csv or .jsonl).")
    ] = None,
) -> None:
    """Write every stored rating as CSV (one column per slot judgement) or JSONL (as stored)."""
    from vmeta.rating.study import Study
    from vmeta.rating.transfer import export_ratings

    path, n = export_ratings(Study.open(study_dir), out, fmt)
    console.print(f"wrote {n} rating(s) to {path}", highlight=False)
