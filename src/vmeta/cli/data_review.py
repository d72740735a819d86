"""`vmeta data review`: stage 3 — a person accepts / edits / rejects each label (page or one-shot)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import console, data_app, err_console
from vmeta.errors import UserError


@data_app.command("review")
def review(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (holds records.jsonl).")],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; keep 127.0.0.1 unless you mean to share it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the review page.")] = 8010,
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="Name written to the audit log (default: VMETA_REVIEWER or $USER).")
    ] = None,
    filter: Annotated[
        str, typer.Option("--filter", help="Queue: pending, flagged, rejected, accepted, edited, reviewed, all.")
    ] = "pending",
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser tab.")] = False,
    record_id: Annotated[
        str | None, typer.Option("--id", help="Scriptable mode: decide on this record, no browser.")
    ] = None,
    accept: Annotated[bool, typer.Option("--accept", help="With --id: accept the current label.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="With --id: reject the label.")] = False,
    edit: Annotated[str | None, typer.Option("--edit", help="With --id: replace the label with TEXT.")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="With --id: put the record back to pending.")] = False,
    note: Annotated[str, typer.Option("--note", help="With --id: a note stored with the decision.")] = "",
) -> None:
    """Open the review page (video, raw label, rewritten label with its slots highlighted; A/E/R/J/K shortcuts).

    Every decision is appended to DATASET/review_log.jsonl (who, when, before, after).

    Without a browser: --id ID with one of --accept, --reject, --edit TEXT or --reset decides on one record and
    prints the label and status before and after.
    """
    from vmeta.config import get_settings
    from vmeta.dataset import review as rv
    from vmeta.dataset.records import Dataset

    ds = Dataset(dataset).require()
    who = rv.default_reviewer(reviewer or get_settings().reviewer)
    chosen = [
        name
        for name, on in (("accept", accept), ("reject", reject), ("edit", edit is not None), ("reset", reset))
        if on
    ]

    if record_id is not None or chosen:
        if record_id is None:
            raise UserError(f"--{chosen[0]} needs --id ID: the record to decide on.")
        if len(chosen) != 1:
            raise UserError("with --id give exactly one of --accept, --reject, --edit TEXT or --reset.")
        decision = rv.decide(ds, record_id, chosen[0], text=edit, note=note, reviewer=who)
        entry = decision.entry
        table = Table(title=f"{record_id}: {entry['action']} by {who}", show_lines=True)
        table.add_column("")
        table.add_column("status")
        table.add_column("label", overflow="fold")
        table.add_row("before", entry["before"]["status"], entry["before"]["label"])
        table.add_row("after", entry["after"]["status"], entry["after"]["label"])
        console.print(table)
        if note:
            console.print(f"note: {note}", highlight=False)
        if not decision.record.conforms:
            err_console.print("[yellow]warning:[/] the label does not fit the five-slot template.")
        console.print(f"logged to {ds.audit_path}", highlight=False, soft_wrap=True)
        return

    import uvicorn

    from vmeta.dataset.review_app import create_review_app
    from vmeta.web.common import is_loopback

    extra_hosts = None if is_loopback(host) else ["*"]
    app = create_review_app(ds.root, who, default_filter=filter, allowed_hosts=extra_hosts)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/?filter={rv.check_filter(filter)}"
    records = ds.load()
    counts = rv.counts(records)
    console.print(
        f"[bold]review page:[/] {url}\n"
        f"reviewer: {who} · queue '{filter}': {len(rv.queue(records, filter))} of {counts['total']} records · "
        f"audit log: {ds.audit_path}\nPress Ctrl+C to stop.",
        highlight=False,
        soft_wrap=True,
    )
    if not is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/] binding {host}: anyone who can reach this address can open the page and its videos."
        )
    if not no_open:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
