"""Command: `vmeta data stats`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import console, data_app


@data_app.command("stats")
def stats_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (holds records.jsonl).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON instead of tables.")] = False,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write DATASET/report/ (stats.md, stats.html, plots).")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default DATASET/report).")] = None,
) -> None:
    """Category distribution, label lengths, template conformance, near duplicates, videos, review, splits."""
    from vmeta.dataset.records import Dataset
    from vmeta.dataset.stats import compute_stats
    from vmeta.dataset.stats_report import default_report_dir, report_sections, write_report

    ds = Dataset(dataset)
    stats = compute_stats(ds)
    paths = None
    if not no_report:
        paths = write_report(stats, out or default_report_dir(ds))
    if as_json:
        typer.echo(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    for name, header, rows, _plot in report_sections(stats):
        if not header:
            continue
        if not rows:
            console.print(f"[bold]{name}[/]: none")
            continue
        table = Table(title=name, title_justify="left")
        for h in header:
            table.add_column(h)
        limit = 20
        for r in rows[:limit]:
            table.add_row(*r)
        if len(rows) > limit:
            table.add_row(f"… {len(rows) - limit} more (see the report)", *[""] * (len(header) - 1))
        console.print(table)
    if paths:
        console.print(f"report: {paths['html']} (also {paths['md'].name}, {paths['json'].name})")
