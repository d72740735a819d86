"""Command: `vmeta predict` — one model (or a run) over a dataset split, or several models side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vmeta.cli.apps import app, console, err_console
from vmeta.errors import UserError


@app.command("predict")
def predict_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder (holds records.jsonl with a split).")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output .jsonl (one line per sample); with --models an output folder."),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Registered name, hub id or local folder (default: the configured default).",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="A training run folder (adapter + run config): its base model plus adapter, with the prompt and "
            "frame settings it was trained with unless --prompt / frame flags say otherwise.",
            show_default=False,
        ),
    ] = None,
    adapter: Annotated[
        Path | None,
        typer.Option("--adapter", help="A PEFT adapter folder applied on top of --model.", show_default=False),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help="Comma-separated models for a zero-shot comparison: OUT/<model>.jsonl each.",
            show_default=False,
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Which split to predict.")] = "test",
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt", help="Instruction text (default: the run's, else the thesis §4.2 prompt).", show_default=False
        ),
    ] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the instruction from a UTF-8 file.", show_default=False)
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Text put before the instruction: screen_text (on-screen text by OCR), speech (what is said, by "
            "offline ASR; VMETA_SPEECH_MODEL), both comma-separated, or none. Default: what the run was trained with.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per generate call (left padding).")] = 1,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = 512,
    min_new_tokens: Annotated[int, typer.Option("--min-new-tokens")] = 0,
    do_sample: Annotated[bool, typer.Option("--do-sample/--greedy", help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option("--temperature", help="Only with --do-sample.")] = 0.7,
    top_p: Annotated[float, typer.Option("--top-p", help="Only with --do-sample.")] = 0.9,
    top_k: Annotated[int, typer.Option("--top-k", help="Only with --do-sample.")] = 50,
    repetition_penalty: Annotated[float, typer.Option("--repetition-penalty")] = 1.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for sampling.", show_default=False)] = None,
    fps: Annotated[
        float | None,
        typer.Option(
            "--fps", help="Frames per second sampled (the run's, else the model default).", show_default=False
        ),
    ] = None,
    nframes: Annotated[
        int | None, typer.Option("--nframes", help="A fixed frame count instead of --fps.", show_default=False)
    ] = None,
    min_frames: Annotated[int | None, typer.Option("--min-frames", show_default=False)] = None,
    max_frames: Annotated[int | None, typer.Option("--max-frames", show_default=False)] = None,
    min_pixels: Annotated[int | None, typer.Option("--min-pixels", help="Per frame.", show_default=False)] = None,
    max_pixels: Annotated[int | None, typer.Option("--max-pixels", help="Per frame.", show_default=False)] = None,
    total_pixels: Annotated[int | None, typer.Option("--total-pixels", help="Per video.", show_default=False)] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the first N records of the split.", show_default=False)
    ] = None,
    force_new: Annotated[
        bool, typer.Option("--force-new", help="Start the output over (the old file is kept as FILE.N.bak).")
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="cuda | cpu (default: cuda when available).", show_default=False)
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="bfloat16 | float16 | float32 (default: bf16 on CUDA).", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Predict a dataset split with a model (zero-shot or fine-tuned); resumable; per-sample JSONL."""
    from vmeta.dataset.prompts import prompt_from_options
    from vmeta.models.generate import GenerationSettings
    from vmeta.predict import PredictConfig, compare_models, predict

    if models and (model or run or adapter):
        raise UserError("--models runs several base models; leave out --model, --run and --adapter with it.")
    if model and run:
        raise UserError("give --model or --run, not both (a run folder names its base model).")
    prompt = prompt_from_options(prompt, prompt_file)
    gen = GenerationSettings(
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    overrides = {
        k: v
        for k, v in {
            "fps": fps,
            "nframes": nframes,
            "min_frames": min_frames,
            "max_frames": max_frames,
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "total_pixels": total_pixels,
        }.items()
        if v is not None
    }
    cfg = PredictConfig(
        data=data,
        out=out if not models else out / "_.jsonl",
        model=model,
        run=run,
        adapter=adapter,
        split=split,
        prompt=prompt,
        batch_size=batch_size,
        generation=gen,
        frame_overrides=overrides,
        context=None if context is None else [k.strip() for k in context.split(",") if k.strip() not in ("", "none")],
        limit=limit,
        force_new=force_new,
        device=device,
        dtype=dtype,
    )
    progress_console = err_console
    if models:
        names = [m.strip() for m in models.split(",") if m.strip()]
        summaries = compare_models(names, out, cfg, show_progress=not no_progress, console=progress_console)
    else:
        summaries = [predict(cfg, show_progress=not no_progress, console=progress_console)]
    if as_json:
        console.print_json(json.dumps([s.to_dict() for s in summaries], ensure_ascii=False))
        return
    table = Table(title=f"predictions · split {split}", title_justify="left")
    for col in ("model", "file", "done", "new", "errors", "ttft s", "tok/s", "chars", "time s"):
        table.add_column(col, overflow="fold")
    for s in summaries:
        done = s.total - s.errors
        table.add_row(
            s.model + (f" + {Path(s.adapter).name}" if s.adapter else ""),
            str(s.out),
            f"{done}/{s.total}",
            str(s.written),
            f"[red]{s.errors}[/]" if s.errors else "0",
            _fmt(s.mean_ttft_s, 3),
            _fmt(s.mean_tokens_per_s, 1),
            _fmt(s.mean_output_chars, 0),
            _fmt(s.seconds, 1),
        )
    console.print(table)
    for s in summaries:
        if s.errors:
            shown = ", ".join(s.error_ids[:5]) + (" ..." if len(s.error_ids) > 5 else "")
            err_console.print(
                f"[yellow]{s.errors} record(s) of {s.model} could not be predicted[/] (their lines carry an 'error'): "
                f"{shown}. Check them with `vmeta data stats` / `vmeta video inspect`.",
                highlight=False,
            )


def _fmt(v: float | None, nd: int) -> str:
    return "-" if v is None else f"{v:.{nd}f}"
