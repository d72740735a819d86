"""Command: `vmeta sweep GRID.yaml` — a grid of training runs and one comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import app, console, err_console

_STATUS_STYLE = {"new": "cyan", "finished": "green", "resume": "yellow", "restart": "yellow"}
_STATUS_TEXT = {"new": "will run", "finished": "finished: skip", "resume": "unfinished: resume",
                "restart": "empty folder: start over"}  # fmt: skip


@app.command("sweep")
def sweep_cmd(
    grid: Annotated[Path, typer.Argument(help="Grid file (see configs/sweeps/thesis_lora.yaml).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs (and what is done) without running.")
    ] = False,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus", help="Comma-separated GPU ids, e.g. 0,1,2,3: one run per GPU in parallel.", show_default=False
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Where the runs go (overrides out_dir: in the grid).", show_default=False),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Extra fixed override for every run, key=value (e.g. --set training.max_steps=10).",
            show_default=False,
        ),
    ] = None,
    evaluate: Annotated[
        bool | None,
        typer.Option(
            "--eval/--no-eval",
            help="Predict + score each run on the test split (default: the grid's eval:).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train every combination of a grid of config values (epochs, lr, LoRA rank/alpha, freeze layers, GaLore
    rank/interval, ...), one after another or one per GPU, then write ONE comparison table (thesis tables
    4.4–4.10: rows = the varied values; BERTScore F1 / BLEU-4 / ROUGE-L, best in bold) to OUT_DIR/sweep.md.
    Run it again to continue: finished runs are skipped, unfinished ones resumed."""
    from vmeta.errors import UserError
    from vmeta.recipes.sweep import run_sweep
    from vmeta.recipes.sweep_names import format_value, short_names
    from vmeta.recipes.sweep_plan import load_grid
    from vmeta.train.config import parse_set_values

    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    if gpus is not None and not gpu_list:
        raise UserError("--gpus: give GPU ids like 0,1,2,3.")
    if gpu_list and len(set(gpu_list)) != len(gpu_list):
        raise UserError(f"--gpus {gpus}: a GPU is listed twice.")
    spec = load_grid(grid, out_dir=out_dir, fixed=parse_set_values(set_), eval_override=evaluate)

    keys = spec.varied_keys
    shorts = short_names(keys)
    table = Table(title=f"{len(spec.runs)} run(s) → {spec.out_dir}", title_justify="left")
    table.add_column("run")
    for k in keys:
        table.add_column(shorts[k], justify="right")
    table.add_column("status")
    for r in spec.runs:
        style = _STATUS_STYLE.get(r.status, "white")
        table.add_row(r.name, *(format_value(r.varied[k]) for k in keys), f"[{style}]{_STATUS_TEXT[r.status]}[/]")
    console.print(table)
    if spec.eval:
        console.print(f"each run is then evaluated on the {spec.eval.split} split (predict + eval → RUN/eval/).")
    if dry_run:
        return

    result = run_sweep(
        spec, gpus=gpu_list, log=lambda m: console.print(m, highlight=False, markup=False), progress=True
    )
    done = sum(o.status == "finished" for o in result.outcomes)
    skipped = sum(o.status == "skipped" for o in result.outcomes)
    console.print(f"[green]{done} trained[/], {skipped} already finished, [red]{len(result.failed)} failed[/].")
    console.print(f"table: {result.table_md}" + (f" and {result.table_csv}" if result.table_csv else ""))
    if result.table_md:
        console.print(result.table_md.read_text(encoding="utf-8"), highlight=False, markup=False)
    if result.failed:
        for o in result.failed:
            err_console.print(f"[red]failed[/] {o.name}: {o.error}", highlight=False)
        raise typer.Exit(1)
