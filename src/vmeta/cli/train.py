"""Command: `vmeta train` — fine-tune with one of the methods into a self-describing run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vmeta.cli.apps import app, console
from vmeta.train.methods import METHODS


@app.command("train")
def train_cmd(
    method: Annotated[
        str | None,
        typer.Option("--method", help=" | ".join(METHODS) + ".", show_default=False),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Registered name, hub id or local folder.", show_default=False)
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset folder (records.jsonl with splits).", show_default=False)
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder, e.g. runs/NAME.", show_default=False)] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML config (e.g. configs/qwen2-vl-2b/lora.yaml); flags override it.", show_default=False
        ),
    ] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Training epochs.", show_default=False)] = None,
    max_steps: Annotated[
        int | None,
        typer.Option("--max-steps", help="Stop after N optimizer steps (overrides --epochs).", show_default=False),
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate.", show_default=False)] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any config field as key=value, e.g. --set lora.r=16 --set training.grad_accum=4.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an unfinished run from its last checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar (logs only).")] = False,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the resolved config and exit (nothing is loaded).")
    ] = False,
) -> None:
    """Fine-tune a video LLM (thesis §4.3) with LoRA and its variants, freeze, GaLore or full fine-tuning.

    Writes runs/NAME/: config.yaml, run.json, adapter/ or model/, checkpoints/, metrics.jsonl, loss.csv/png.
    """
    import yaml

    from vmeta.errors import UserError
    from vmeta.train.config import load_config, parse_set_values

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them.")
    overrides: dict[str, Any] = {
        "method": method,
        "model.name": model,
        "data.path": str(data) if data else None,
        "out": str(out) if out else None,
        "training.epochs": epochs,
        "training.max_steps": max_steps,
        "training.lr": lr,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}  # flags not given
    overrides.update(parse_set_values(set_))
    cfg = load_config(config, overrides)
    if print_config:
        console.print(yaml.safe_dump(cfg.to_yaml_dict(), sort_keys=False, allow_unicode=True), highlight=False)
        return
    from vmeta.train.processes import is_main_process
    from vmeta.train.run import run_training

    path = run_training(cfg, resume=resume, overwrite=overwrite, progress=not no_progress)
    if not is_main_process():  # the other processes of a multi-process launch: the main one reports
        return
    from vmeta.jsonio import read_json

    info = read_json(path / "run.json")
    console.print(
        f"[green]{info.get('status')}[/] {info.get('method')} run → {path}  "
        f"(step {info.get('global_step')}, {info.get('trainable_parameters', 0):,} trainable parameters, "
        f"{info.get('samples_per_s')} samples/s, output {info.get('output')}/)",
        highlight=False,
    )
