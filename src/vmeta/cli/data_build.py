"""`vmeta data build`: sheets + videos -> DATASET/records.jsonl (+ rejects.jsonl)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import console, data_app
from vmeta.progress import progress_bar

MAX_REJECT_LINES = 20


@data_app.command("build")
def build(
    sheets: Annotated[list[Path], typer.Argument(help="Annotators' sheets (.xlsx/.csv/.tsv), one or more.")],
    videos: Annotated[Path, typer.Option("--videos", help="Folder holding the videos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder; an existing one is merged into.")],
    column: Annotated[
        list[str] | None,
        typer.Option("--column", help="Map a field to a header: video=短视频文件名, category=类别, label=隐喻解释."),
    ] = None,
    sheet: Annotated[str | None, typer.Option("--sheet", help="Read only this sheet of each workbook.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any row was rejected.")] = False,
) -> None:
    """Read annotators' sheets, match and probe the videos, and write/merge DATASET/records.jsonl.

    Bad rows go to DATASET/rejects.jsonl with the sheet, row and what to do; valid rows always come through.
    """
    from vmeta.dataset.build import build_dataset
    from vmeta.dataset.sheets import parse_column_map

    column_map = parse_column_map(column)
    with progress_bar(console=console, transient=True) as progress:
        task = progress.add_task("probing videos", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = build_dataset(sheets, videos, out, column_map=column_map, sheet_name=sheet, on_progress=on_progress)

    table = Table(title=f"vmeta data build → {out}", show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("count", justify="right")
    for name, n in report.rows_per_sheet.items():
        table.add_row(f"rows read: {name}", str(n))
    table.add_row("[green]new records", str(report.new))
    table.add_row("updated", str(report.updated))
    table.add_row("unchanged", str(report.unchanged))
    table.add_row("[yellow]flagged (reviewed/rewritten label kept)", str(report.flagged))
    if report.duplicates:
        table.add_row("duplicate rows merged (same video, same label)", str(len(report.duplicates)))
    for reason, n in sorted(report.rejected_by_reason().items()):
        table.add_row(f"[red]rejected: {reason}[/]", str(n))
    table.add_row("[bold]records in dataset", str(report.total_records))
    table.add_row("videos probed / probe cache hits", f"{report.probes_run} / {report.cache_hits}")
    console.print(table)

    for d in report.duplicates[:MAX_REJECT_LINES]:
        console.print(
            f"[dim]note:[/] {d['video']} appears in {d['kept']} and {', '.join(d['also'])} with the same label; kept one record.",
            highlight=False,
        )
    if report.rejects:
        console.print(f"[bold red]{len(report.rejects)} row(s) rejected[/] (sheet:row — video — reason — what to do):")
        shown = report.rejects if not report.kept else report.rejects[:MAX_REJECT_LINES]  # no rejects.jsonl: all
        for r in shown:
            console.print("  " + r.line(), highlight=False, soft_wrap=True)
        if len(report.rejects) > len(shown):
            console.print(f"  … and {len(report.rejects) - len(shown)} more.")
        if report.kept:
            console.print(f"All rejects: {report.rejects_path}", highlight=False, soft_wrap=True)
    if report.kept:
        console.print(f"Records: {out / 'records.jsonl'}  ({report.seconds:.1f} s)", highlight=False, soft_wrap=True)

    if report.valid == 0:
        done = "nothing was added" if report.kept else f"nothing was written ({out} not created)"
        console.print(f"[bold red]no valid rows[/]: {done}; fix the rows listed above and run again.", highlight=False)
        raise typer.Exit(1)
    if strict and report.rejects:
        raise typer.Exit(1)
