"""`vmeta data build`: sheets + videos -> DATASET/records.jsonl (+ rejects.jsonl)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import console, data_app, err_console
from vmeta.errors import UserError
from vmeta.progress import progress_bar

if TYPE_CHECKING:
    from vmeta.dataset.screen_text import ScreenTextFailure
    from vmeta.video.screen_text import ScreenTextSettings

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
    screen_text: Annotated[
        bool,
        typer.Option(
            "--screen-text",
            help="Then read each video's on-screen text (OCR, [ocr] extra) into its record, as `vmeta data screen-text` does.",
        ),
    ] = False,
    screen_text_fps: Annotated[
        float | None,
        typer.Option(
            "--screen-text-fps", help="With --screen-text: frames read per second (default 1).", show_default=False
        ),
    ] = None,
) -> None:
    """Read annotators' sheets, match and probe the videos, and write/merge DATASET/records.jsonl.

    Bad rows go to DATASET/rejects.jsonl with the sheet, row and what to do; valid rows always come through.
    """
    from vmeta.dataset.build import build_dataset
    from vmeta.dataset.sheets import parse_column_map

    column_map = parse_column_map(column)
    text_settings = None
    if screen_text_fps is not None and not screen_text:
        raise UserError("--screen-text-fps only applies with --screen-text; add --screen-text or leave it out.")
    if screen_text:
        from vmeta.dataset.screen_text import check_ocr, screen_text_settings

        text_settings = screen_text_settings(screen_text_fps, option="--screen-text-fps")
        check_ocr(text_settings)  # a missing [ocr] extra says so before the build, not after it
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
    if text_settings is not None:
        run_screen_text(out, text_settings)
    if strict and report.rejects:
        raise typer.Exit(1)


@data_app.command("screen-text")
def screen_text_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (holds records.jsonl).", show_default=False)],
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps",
            help="Frames read per second; a caption shown at least 1/fps s is seen (default 1).",
            show_default=False,
        ),
    ] = None,
    redo: Annotated[
        bool,
        typer.Option("--redo", help="Read every video again, also those whose text is stored with these settings."),
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run OCR even where the cache holds a result for the file and settings.")
    ] = False,
) -> None:
    """Store each record's on-screen text (burned-in captions, titles; OCR, [ocr] extra): resumable, saved as it goes.

    Records already read with the same settings are skipped; a video that cannot be read keeps its record, is
    named in a warning and is tried again next run. Labels edited meanwhile (review page) are never overwritten.
    """
    from vmeta.dataset.screen_text import screen_text_settings

    run_screen_text(dataset, screen_text_settings(fps), redo=redo, cache=not no_cache)


def run_screen_text(dataset: Path, settings: ScreenTextSettings, *, redo: bool = False, cache: bool = True) -> None:
    """Run `add_screen_text` with a progress bar (lines every 10% when the output is not a terminal), warnings
    as videos fail, and a summary table."""
    from vmeta.dataset.records import Dataset
    from vmeta.dataset.screen_text import add_screen_text

    def warn(failure: ScreenTextFailure) -> None:
        err_console.print(
            f"[yellow]warning:[/] on-screen text of record {failure.line()} — the record is kept without it; "
            "run again to retry.",
            highlight=False,
            soft_wrap=True,
        )

    with _Progress("reading on-screen text") as progress:
        report = add_screen_text(
            Dataset(dataset), settings, redo=redo, progress=progress.update, warn=warn, cache=cache
        )

    table = Table(title=f"on-screen text → {dataset} (fps {report.settings['fps']:g})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    ocr_run = report.read - report.from_cache
    table.add_row("videos read", str(report.read))
    table.add_row("  of which from the OCR cache", str(report.from_cache))
    table.add_row("  with text", str(report.with_text))
    table.add_row("[yellow]failed (record kept, no text)" if report.failed else "failed", str(report.failed))
    if report.stale:
        table.add_row("not stored: record changed or removed meanwhile", str(report.stale))
    table.add_row("skipped: already read with these settings", str(report.skipped_done))
    if ocr_run:
        table.add_row("OCR time per video (decode + OCR)", f"{report.ocr_seconds / ocr_run:.1f} s")
    table.add_row("time", f"{report.seconds:.1f} s")
    console.print(table)
    if report.failed:
        console.print(
            f"{report.failed} video(s) could not be read (listed above); run `vmeta data screen-text {dataset}` "
            "again to retry them.",
            highlight=False,
            soft_wrap=True,
        )


class _Progress:
    """The shared progress bar on a terminal; elsewhere (a log, `| tee`) one line per 10% done, which a bar
    redrawn in place cannot give."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar = progress_bar(console=console) if console.is_terminal else None
        self.task = None
        self.next_line = 0
        self.started = 0.0

    def __enter__(self) -> _Progress:
        import time

        self.started = time.monotonic()
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=None)
        return self

    def update(self, done: int, total: int) -> None:
        import time

        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)
            return
        if total and done >= self.next_line:
            elapsed = time.monotonic() - self.started
            console.print(f"{self.description}: {done}/{total} ({elapsed:.0f} s)", highlight=False)
            self.next_line = done + max(1, -(-total // 10))

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
