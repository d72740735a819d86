"""Command: `vmeta export runs/NAME --out exports/NAME` — merge the adapter, shard, write a model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import app, console, err_console


@app.command("export")
def export_cmd(
    run: Annotated[Path, typer.Argument(help="A finished run folder written by `vmeta train` (runs/NAME).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to create, e.g. exports/NAME.")],
    shard_size: Annotated[
        str, typer.Option("--shard-size", help="Largest safetensors file, e.g. 2GB, 500MB, 5MiB (header included).")
    ] = "2GB",
    dtype: Annotated[
        str, typer.Option("--dtype", help="auto (the base model's own dtype: bf16 for Qwen2-VL) | bf16 | fp16 | fp32.")
    ] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export at --out.")] = False,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base model folder, when the one recorded in run.json is not on this machine.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Where to merge: auto (CUDA when available) | cpu | cuda:N.", show_default=False),
    ] = None,
) -> None:
    """Merge a run's adapter (LoRA, LoRA+, DoRA, rsLoRA, PiSSA) into its base model — or re-shard a full-weight
    run (freeze, GaLore, full) — into one transformers folder: safetensors shards no larger than --shard-size,
    processor, chat template, generation config and a model card. Loads with transformers, `vmeta serve`, vLLM."""
    from vmeta.export.merge import ExportConfig, export_run
    from vmeta.export.shard import human_size

    cfg = ExportConfig(run=run, out=out, shard_size=shard_size, dtype=dtype, overwrite=overwrite, base=base,
                       device=device)  # fmt: skip
    with console.status("exporting…") as status:
        summary = export_run(cfg, log=lambda msg: status.update(msg))
    table = Table(title=f"exported {summary.method} run → {summary.out}", title_justify="left")
    table.add_column("file")
    table.add_column("size", justify="right")
    for name, size in summary.shards.files:
        table.add_row(name, human_size(size))
    console.print(table)
    console.print(
        f"{summary.shards.tensors} tensors, {human_size(summary.shards.total_tensor_bytes)} in {summary.dtype}, "
        f"every file ≤ {shard_size}; base {summary.base}; {summary.seconds:.1f} s.\n"
        f"Load it: [bold]vmeta serve --model {summary.out}[/] · model card: {summary.out / 'README.md'}"
    )
    for w in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
