"""The prediction loop of `vmeta predict`: one model over a split, one JSONL line per sample, resumably.

- The user turn is the video followed by the prompt (thesis §4.2 instruction by default), generated through
  :mod:`vmeta.models.generate` (the one generation function).
- **Resumable**: the output file is read first; ids already written are skipped, new lines are appended with
  an fsync each (:func:`vmeta.jsonio.append_jsonl`); the file's meta is checked in `predict/output_file.py`.
- **A run folder** (``run``) predicts with the prompt and frame settings its run.json recorded
  (`predict/run_inputs.py`), so the model sees what it saw in training; an explicit prompt or frame setting
  still overrides them.
- **Context** (issue #15): a run trained with `data.context` (on-screen text) gets the same block before the
  instruction — the record's stored text, else read now through the OCR cache; `context` overrides it.
- **Per-sample lines**: id, category, prompt, context, prompt_hash, reference, output, model, adapter, frame settings,
  frame indices, timings (ttft, total, tokens/s), generation settings. A video that cannot be read gives a
  line with ``"output": ""`` and ``"error"`` (the run goes on; the summary counts them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmeta.config import Settings, get_settings
from vmeta.errors import UserError
from vmeta.jsonio import append_jsonl, write_json
from vmeta.models.generate import GenerationSettings, Result, frame_settings_for, generate_batch
from vmeta.predict.config import PredictConfig, PredictSummary, apply_frame_overrides
from vmeta.predict.output_file import FORMAT, check_meta, meta_path, read_done, start_new, versions
from vmeta.predict.records import select_records, split_hash, whole_split
from vmeta.predict.run_inputs import run_inputs
from vmeta.video.sampling import FrameSettings


def _record_line(
    record,
    prompt: str,
    block: str,
    p_hash: str,
    loaded,
    res: Result | None,
    error: str | None,
    fs: FrameSettings,
    gen: GenerationSettings,
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    stats = res.stats if res is not None else None
    frames = stats.frames[0] if stats and stats.frames else {}
    return {
        "id": record.id,
        "category": record.category,
        "prompt": prompt,
        "context": block,
        "prompt_hash": p_hash,
        "reference": record.label,
        "output": res.text if res is not None else "",
        "error": error,
        "model": loaded.name,
        "adapter": loaded.adapter,
        "video": record.video,
        "frames": fs.to_dict(),
        "frame_indices": frames.get("indices"),
        "frame_size": [frames["height"], frames["width"]] if "height" in frames else None,
        "sample_fps": frames.get("sample_fps"),
        "timings": {
            "ttft_s": _r(stats.ttft_s) if stats else None,
            "total_s": _r(stats.total_s) if stats else None,
            "tokens_per_s": _r(stats.tokens_per_s) if stats else None,
            "prompt_tokens": stats.prompt_tokens if stats else None,
            "new_tokens": stats.new_tokens if stats else None,
            "finish_reason": stats.finish_reason if stats else None,
        },
        "generation": gen.to_dict(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def predict(
    cfg: PredictConfig,
    *,
    settings: Settings | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    show_progress: bool = False,
    console: Any = None,
) -> PredictSummary:
    """Run the prediction described by ``cfg`` (see the module docstring). ``on_progress(done, total)`` is called
    after each batch; ``show_progress`` draws a rich progress bar with ETA on ``console``."""
    from vmeta.dataset.context import ContextSettings, context_block, context_values, record_context, with_context
    from vmeta.dataset.prompts import prompt_hash
    from vmeta.models.load import load_model, plan_load
    from vmeta.video.decode import load_video

    settings = settings or get_settings()
    t_start = time.perf_counter()
    if cfg.out.is_dir() or cfg.out.suffix != ".jsonl":
        raise UserError(f"--out {cfg.out}: give a .jsonl file name (one prediction per line).")
    ds, records = select_records(cfg.data, cfg.split, cfg.limit)
    if cfg.force_new:
        start_new(cfg.out)
    done, old_rows = read_done(cfg.out)
    todo = [r for r in records if r.id not in done]

    # Check the file's settings before loading anything (a refusal should not cost a model load).
    resolved, adapter_dir = plan_load(cfg.model, run_dir=cfg.run, adapter=cfg.adapter, settings=settings)
    model_name, adapter_name = resolved.spec.name, (str(adapter_dir) if adapter_dir is not None else None)
    trained = run_inputs(cfg.run)
    # What the model sees: what was given, else what the run was trained with, else the defaults.
    if cfg.frames is not None:
        base_fs, fs_source = cfg.frames, "given"
    elif "frames" in trained:
        base_fs, fs_source = trained["frames"], "run"
    else:
        base_fs, fs_source = frame_settings_for(resolved.spec), "model"
    fs = apply_frame_overrides(base_fs, cfg.frame_overrides)
    if cfg.prompt is None and "prompt" in trained:
        prompt, prompt_source = trained["prompt"], "run"
    else:
        prompt, prompt_source = cfg.prompt_text, "given" if cfg.prompt is not None else "default"
    if cfg.context is not None:
        ctx, ctx_source = ContextSettings(kinds=tuple(cfg.context)), "given"
    else:
        ctx, ctx_source = trained.get("context", ContextSettings()), "run" if "context" in trained else "default"
    gen = cfg.generation
    p_hash = prompt_hash(prompt)
    meta = {
        "format": FORMAT,
        "model": model_name,
        "adapter": adapter_name,
        "run": str(Path(cfg.run).resolve()) if cfg.run else None,
        "dataset": str(cfg.data.resolve()),
        "dataset_hash": ds.content_hash(),
        "dataset_split_hash": split_hash(records if cfg.limit is None else whole_split(ds, cfg.split)),
        "split": cfg.split,
        "limit": cfg.limit,
        "prompt": prompt,
        "prompt_hash": p_hash,
        "generation": gen.to_dict(),
        "frames": fs.to_dict(),
        "context": ctx.to_dict() if ctx.enabled else None,
        # given (flags / the caller), run (its run.json), default (the thesis prompt), model (the family's frames)
        "sources": {
            "prompt": prompt_source,
            "frames": fs_source,
            "frame_overrides": sorted(cfg.frame_overrides),
            "context": ctx_source,
        },
        "batch_size": cfg.batch_size,
        "versions": versions(),
    }
    mp = meta_path(cfg.out)
    if mp.exists():
        check_meta(mp, meta, cfg.out)
    elif old_rows:
        raise UserError(
            f"{cfg.out} already holds {len(old_rows)} lines but no {mp.name} says how they were made; "
            "choose another --out, or pass --force-new to start over (the old file is kept as .bak)."
        )
    loaded = load_model(
        cfg.model, run_dir=cfg.run, adapter=cfg.adapter, device=cfg.device, dtype=cfg.dtype, settings=settings
    )
    if not mp.exists():
        created = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(mp, meta | {"model_info": loaded.describe(), "created": created})

    progress = None
    task = None
    if show_progress:
        from vmeta.progress import progress_bar

        progress = progress_bar(console=console)
        progress.start()
        task = progress.add_task(f"predict {loaded.name}", total=len(records), completed=len(records) - len(todo))

    written = 0
    new_rows: list[dict] = []
    try:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            convs, ok = [], []
            for rec in batch:
                path = ds.video_path(rec)
                block = ""
                try:
                    video = load_video(path, fs)
                    values = context_values(
                        ctx, path, stored=record_context(rec), cache_dir=settings.resolved_cache_dir
                    )
                    block = context_block(values, max_chars=ctx.max_chars)
                except UserError as exc:
                    row = _record_line(rec, prompt, block, p_hash, loaded, None, str(exc), fs, gen)
                    append_jsonl(cfg.out, row)
                    new_rows.append(row)
                    written += 1
                    continue
                text = with_context(prompt, block)
                convs.append(
                    [{"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": text}]}]
                )
                ok.append((rec, path, block))
            if convs:
                results = generate_batch(loaded, convs, gen, fs)
                for (rec, path, block), res in zip(ok, results, strict=True):
                    res.stats.frames[0]["source"] = str(path)
                    row = _record_line(rec, prompt, block, p_hash, loaded, res, None, fs, gen)
                    append_jsonl(cfg.out, row)
                    new_rows.append(row)
                    written += 1
            if progress is not None:
                progress.update(task, advance=len(batch))
            if on_progress is not None:
                on_progress(len(records) - len(todo) + start + len(batch), len(records))
    finally:
        if progress is not None:
            progress.stop()

    rows = old_rows + new_rows
    in_split = {r.id for r in records}
    rows = [r for r in rows if str(r.get("id")) in in_split]
    errors = [str(r["id"]) for r in rows if r.get("error")]
    good = [r for r in rows if not r.get("error")]
    return PredictSummary(
        out=cfg.out,
        model=loaded.name,
        adapter=loaded.adapter,
        total=len(records),
        skipped=len(records) - len(todo),
        written=written,
        errors=len(errors),
        error_ids=errors,
        seconds=time.perf_counter() - t_start,
        mean_ttft_s=_mean(r["timings"].get("ttft_s") for r in good),
        mean_tokens_per_s=_mean(r["timings"].get("tokens_per_s") for r in good),
        mean_output_chars=_mean(len(r.get("output") or "") for r in good),
    )


def _mean(values) -> float | None:  # type: ignore[no-untyped-def]
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None
