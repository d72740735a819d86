"""Commands: `vmeta data rewrite` (stage 2: an LLM unifies labels into the template) and `vmeta data mock-llm`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from vmeta.cli.apps import console, data_app


@data_app.command("rewrite")
def rewrite(
    dataset: Path = typer.Argument(..., help="Dataset folder (holds records.jsonl)."),
    model: str | None = typer.Option(
        None, "--model", help="Model name at the endpoint (default: VMETA_LLM_MODEL, deepseek-chat)."
    ),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="OpenAI-compatible API root (default: VMETA_LLM_BASE_URL, https://api.deepseek.com/v1).",
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="API key (default: VMETA_LLM_API_KEY); any value (e.g. 'none') for a local server that needs none.",
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Requests in flight at once (default: VMETA_LLM_CONCURRENCY, 4)."
    ),
    max_attempts: int = typer.Option(
        3,
        "--max-attempts",
        help="Tries per record (the model is told what was wrong) before it is flagged rewrite_failed.",
    ),
    limit: int | None = typer.Option(None, "--limit", help="Rewrite at most this many records this run."),
    ids: list[str] | None = typer.Option(None, "--id", help="Only this record id (repeatable)."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Ask again for records already rewritten, ignoring cached answers (reviewed labels are still never touched).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Send nothing: show how many records would be sent, cache hits and a token estimate."
    ),
) -> None:
    """Stage 2: an LLM rewrites each raw label into the five-slot template (cached, resumable, never touches reviewed labels)."""
    from vmeta.config import get_settings
    from vmeta.dataset.rewrite import rewrite_dataset

    s = get_settings()
    key = api_key if api_key is not None else (s.llm_api_key.get_secret_value() if s.llm_api_key else None)
    kwargs = dict(
        base_url=base_url or s.llm_base_url,
        api_key=key,
        model=model or s.llm_model,
        concurrency=concurrency or s.llm_concurrency,
        max_attempts=max_attempts,
        limit=limit,
        ids=ids or None,
        force=force,
        max_retries=s.llm_max_retries,
        timeout=s.llm_timeout_s,
    )
    if dry_run:
        report = rewrite_dataset(dataset, dry_run=True, **kwargs)
        _print_dry_run(report)
        return
    # Started on the first callback, so an error raised before any work (no API key, unknown id) prints alone.
    from vmeta.progress import progress_bar

    bar = progress_bar(console=console)
    task = bar.add_task("rewrite", total=None, start=False)

    def progress(done: int, total: int) -> None:
        if not bar.live.is_started:
            bar.start()
            bar.start_task(task)
        bar.update(task, completed=done, total=total)

    try:
        report = rewrite_dataset(dataset, progress=progress, **kwargs)
    finally:
        bar.stop()
    _print_summary(report)


def _print_dry_run(r) -> None:
    table = Table(title=f"dry run — nothing sent ({r.model} at {r.base_url})", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("records in dataset", str(r.total))
    table.add_row("would be sent", str(r.would_send))
    table.add_row("answered from cache", str(r.cache_hits))
    table.add_row("skipped: reviewed by a person", str(r.skipped_reviewed))
    table.add_row("skipped: already rewritten", str(r.skipped_done))
    table.add_row("estimated prompt tokens", f"{r.estimated_prompt_tokens:,}")
    table.add_row("estimated completion tokens", f"{r.estimated_completion_tokens:,}")
    console.print(table)
    console.print(f"tokens counted with: {r.token_counter}; retries and feedback turns are not included.")


def _print_summary(r) -> None:
    table = Table(title=f"rewrite — {r.model} at {r.base_url}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("rewritten", str(r.rewritten))
    table.add_row("from cache", str(r.from_cache))
    table.add_row("failed (flagged rewrite_failed)", str(r.failed))
    table.add_row("notes stripped (flagged rewrite_note_stripped)", str(r.note_stripped))
    table.add_row("skipped: reviewed by a person", str(r.skipped_reviewed))
    table.add_row("skipped: already rewritten", str(r.skipped_done))
    if r.stale:
        table.add_row("not applied: record changed meanwhile", str(r.stale))
    table.add_row("requests made", str(r.requests))
    table.add_row("retries (429/5xx/timeouts)", str(r.retries))
    table.add_row("tokens used (prompt + completion)", f"{r.prompt_tokens:,} + {r.completion_tokens:,}")
    table.add_row("time", f"{r.seconds:.1f} s")
    console.print(table)
    for rid, error in r.failures[:10]:
        console.print(f"[yellow]failed[/] {rid}: {error}", highlight=False)
    if len(r.failures) > 10:
        console.print(f"… and {len(r.failures) - 10} more; they carry the flag rewrite_failed in records.jsonl.")
    if r.failed:
        console.print(
            "Failed records keep their label; run again (maybe with --max-attempts 5) or fix them in `vmeta data review`."
        )


@data_app.command("mock-llm")
def mock_llm(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
) -> None:
    """A stand-in LLM for demos and tests: a local OpenAI-compatible server whose answers are built from the
    raw label by fixed rules (no model, no network), so the rewrite stage runs offline. Not for real data."""
    from vmeta.testing.fake_openai import serve

    url = f"http://{host}:{port}/v1"
    console.print(f"[bold]mock LLM[/] (a stand-in for demos and tests, not a language model) at {url}")
    console.print(f"use it with: vmeta data rewrite DATASET --base-url {url} --api-key none --model fake-model")
    console.print("Ctrl-C stops it.")
    serve(host, port)
