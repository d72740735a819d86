"""`vmeta train`: one run from a validated :class:`TrainConfig` to a self-describing run folder.

    runs/NAME/
      config.yaml      the resolved config (the exact command in its header)
      run.json         method, base model (name + what it resolved to), dataset path + hash, splits, prompt +
                       hash, frame settings, library versions, trainable parameters, peak memory, samples/s,
                       status (running / finished / interrupted / failed), final and best metrics, timestamps
      adapter/         PEFT adapter (LoRA methods; PiSSA converted to a plain LoRA delta on the original base)
      model/           full weights + processor (freeze / galore / full)
      processor files  in the run root for adapter runs (tokenizer, chat template, preprocessor config)
      best/            the best adapter/model by training.best_metric (when evaluating on val)
      checkpoints/     Trainer checkpoints (optimizer, scheduler, RNG): what --resume continues from
      metrics.jsonl    every logged step and evaluation;  loss.csv, loss.png
      logs/train.log

Training uses transformers' Trainer (gradient accumulation, resume, DDP through accelerate, DeepSpeed/FSDP
hooks) with vmeta's collator and callbacks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.jsonio import append_jsonl
from vmeta.runs import RUN_FORMAT, RunManifest, now
from vmeta.train.base_model import frame_settings, load_base, prompt_text
from vmeta.train.config import TrainConfig, dump_config
from vmeta.train.methods import METHODS, trainable_summary
from vmeta.train.processes import is_main_process
from vmeta.train.run_folder import RunFolder, library_versions
from vmeta.train.save import save_final, sharded_state_dict
from vmeta.train.val_eval import ValEvaluator

_LOGGERS = ("transformers", "vmeta", "peft")


@dataclass
class _Splits:
    root: Path
    train: list[Any]
    val: list[Any]


@dataclass
class _Inputs:
    """What each sample shows the model, fixed before the first step and recorded in run.json."""

    frames: Any  # FrameSettings
    prompt: str
    preflight: dict[str, Any]
    context: Any  # vmeta.dataset.context.ContextSettings
    blocks: dict[str, str]  # record id -> its context block (train and val; empty without context)


def run_training(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
    progress: bool = True,
    settings: Any = None,
) -> Path:
    """Train ``cfg`` into ``cfg.out`` and return the run folder. ``callbacks``: extra Trainer callbacks."""
    from transformers import set_seed

    from vmeta.config import get_settings

    settings = settings or get_settings()
    run = _run_folder(cfg)
    checkpoint = run.prepare(cfg, resume=resume, overwrite=overwrite)
    splits = _read_splits(cfg)
    set_seed(cfg.training.seed)
    loaded, precision = load_base(cfg, settings)
    inputs = _plan_inputs(cfg, loaded, splits, settings, progress)
    with _train_log(run.path) as log:
        model, pissa_init, counts = _prepare_model(cfg, loaded, precision, run)
        train_ds, cache = _training_data(cfg, loaded, splits, inputs, settings)
        if is_main_process():
            _write_manifest(cfg, run, checkpoint, loaded, precision, splits, inputs, counts, log)
        trainer, progress_cb = _make_trainer(
            cfg, run, model, loaded, precision, splits, inputs, train_ds, pissa_init, progress, callbacks
        )
        result, wall = _train(trainer, run, checkpoint, progress_cb)
        _save_and_finish(cfg, run, trainer, loaded, result, wall, train_ds, cache, pissa_init)
    return run.path


# ---------------------------------------------------------------------------------------------------------------
# The steps, in order


def _run_folder(cfg: TrainConfig) -> RunFolder:
    if cfg.out is None:
        raise UserError("no run folder given: pass --out runs/NAME (or set out: in the config).")
    if cfg.data.path is None:
        raise UserError("no dataset given: pass --data DATASET_DIR (or set data.path in the config).")
    return RunFolder(Path(cfg.out).expanduser())


def _read_splits(cfg: TrainConfig) -> _Splits:
    from vmeta.train.data import split_records

    root = Path(cfg.data.path).expanduser()  # type: ignore[arg-type]
    train = split_records(root, cfg.data.train_split, limit=cfg.data.limit)
    val = split_records(root, cfg.data.val_split) if cfg.training.evaluates else []
    return _Splits(root, train, val)


def _plan_inputs(cfg: TrainConfig, loaded: Any, splits: _Splits, settings: Any, progress: bool) -> _Inputs:
    """Frame settings, instruction and each sample's context block (on-screen text the dataset does not store is
    read now, once, through the OCR cache); refuses, before any step, a sample whose tokens cannot fit."""
    from vmeta.train.data import preflight

    fs = frame_settings(cfg, loaded.spec)
    prompt = prompt_text(cfg)
    ctx = cfg.data.context_settings()
    blocks = _context_blocks(ctx, splits, settings, progress)
    longest = max(blocks.values(), key=len, default="")
    p_tokens = len(loaded.processor.tokenizer(f"{longest}\n{prompt}", add_special_tokens=False)["input_ids"]) + 24
    vision_cfg = getattr(loaded.model.config, "vision_config", None)
    pre = preflight(
        splits.train,
        fs,
        p_tokens,
        cfg.data.cutoff_len,
        patch=getattr(vision_cfg, "patch_size", 14),
        merge=getattr(vision_cfg, "spatial_merge_size", 2),
    )
    return _Inputs(fs, prompt, pre, ctx, blocks)


def _context_blocks(ctx: Any, splits: _Splits, settings: Any, progress: bool) -> dict[str, str]:
    from vmeta.dataset.context import record_blocks
    from vmeta.progress import progress_bar

    records = splits.train + splits.val
    read = functools.partial(record_blocks, ctx, records, splits.root, cache_dir=settings.resolved_cache_dir)
    if not ctx.enabled or not progress:
        return read()
    with progress_bar(transient=True) as bar:
        task = bar.add_task(f"reading {', '.join(ctx.kinds)}", total=len(records))
        return read(on_read=lambda done, _total: bar.update(task, completed=done))


@contextlib.contextmanager
def _train_log(folder: Path) -> Iterator[logging.Logger]:
    """logs/train.log receives transformers', peft's and vmeta's log records while the run trains."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "logs" / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(handler)
    log = logging.getLogger("vmeta.train")
    log.setLevel(logging.INFO)
    try:
        yield log
    finally:
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()


def _prepare_model(
    cfg: TrainConfig, loaded: Any, precision: str, run: RunFolder
) -> tuple[Any, Path | None, dict[str, Any]]:
    """The method's preparation (adapters, frozen layers); -> (model, PiSSA's initial adapter or None, the
    trainable parameter counts)."""
    import torch

    spec = METHODS[cfg.method]
    model = loaded.model
    model.train()
    model.config.use_cache = False
    model = spec.prepare(model, cfg)
    pissa_init: Path | None = None
    if cfg.lora_options["init"] == "pissa" and spec.kind == "lora":
        pissa_init = run.checkpoints / "pissa_init"
        if is_main_process() and not (pissa_init / "adapter_config.json").is_file():
            model.peft_config["default"].init_lora_weights = True
            model.save_pretrained(str(pissa_init))
            model.peft_config["default"].init_lora_weights = cfg.lora_options["init"]
    if precision != "fp32":  # mixed precision: trainable weights (LoRA, unfrozen layers) in fp32, as LLaMA-Factory
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    if cfg.training.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    counts = trainable_summary(model)
    if counts["trainable_parameters"] == 0:
        raise UserError(f"method {cfg.method}: no parameter is trainable with these settings.")
    return model, pissa_init, counts


def _training_data(cfg: TrainConfig, loaded: Any, splits: _Splits, inputs: _Inputs, settings: Any) -> tuple[Any, Any]:
    from vmeta.train.data import FrameCache, SupervisedDataset

    cache = FrameCache(cfg.data.frame_cache, settings.resolved_cache_dir / "frames")
    ds = SupervisedDataset(
        splits.train,
        splits.root,
        loaded.processor,
        inputs.frames,
        inputs.prompt,
        cfg.data.cutoff_len,
        cache,
        blocks=inputs.blocks,
    )
    return ds, cache


def _write_manifest(
    cfg: TrainConfig,
    run: RunFolder,
    checkpoint: Path | None,
    loaded: Any,
    precision: str,
    splits: _Splits,
    inputs: _Inputs,
    counts: dict[str, Any],
    log: logging.Logger,
) -> None:
    """config.yaml and run.json ("running") before the first step."""
    from vmeta.dataset.prompts import prompt_hash
    from vmeta.dataset.records import Dataset

    spec = METHODS[cfg.method]
    dump_config(cfg, run.path / "config.yaml", header=_command_line() or None)
    prev = run.info() or RunManifest()
    run.update(
        format=RUN_FORMAT,
        name=run.path.name,
        method=cfg.method,
        method_help=spec.help,
        saves=spec.saves,
        base_model=cfg.model.name,
        model={
            "name": cfg.model.name,
            "resolved": loaded.pretrained_id,
            "hub_id": loaded.spec.hub_id,
            "family": loaded.spec.family,
            "source": loaded.source,
            "model_class": type(loaded.model).__name__,
        },
        dataset={
            "path": str(splits.root.resolve()),
            "content_hash": Dataset(splits.root).content_hash(),
            "train_split": cfg.data.train_split,
            "val_split": cfg.data.val_split,
            "train_samples": len(splits.train),
            "val_samples": len(splits.val),
            "train_ids_hash": prompt_hash("\n".join(r.id for r in splits.train)),
        },
        prompt=inputs.prompt,
        prompt_hash=prompt_hash(inputs.prompt),
        context=inputs.context.to_dict(),
        # training samples that carried a context block (a video without on-screen text carries none)
        context_samples=sum(bool(inputs.blocks.get(r.id)) for r in splits.train) if inputs.context.enabled else None,
        frames=inputs.frames.to_dict(),
        cutoff_len=cfg.data.cutoff_len,
        preflight=inputs.preflight,
        precision=precision,
        device=loaded.device,
        libraries=library_versions(),
        **counts,
        status="running",
        started=prev.started or now(),
        resumed_from=str(checkpoint) if checkpoint else prev.get("resumed_from"),
        adapter="adapter" if spec.saves == "adapter" else None,
        weights="model" if spec.saves == "model" else None,
    )
    log.info(
        "run %s: method %s, %s trainable parameters (%.4f%%)",
        run.path,
        cfg.method,
        f"{counts['trainable_parameters']:,}",
        100 * counts["trainable_share"],
    )


def _make_trainer(
    cfg: TrainConfig,
    run: RunFolder,
    model: Any,
    loaded: Any,
    precision: str,
    splits: _Splits,
    inputs: _Inputs,
    train_ds: Any,
    pissa_init: Path | None,
    progress: bool,
    callbacks: list[Any] | None,
) -> tuple[Any, Any]:
    """transformers' Trainer with vmeta's collator, metrics file, progress bar and evaluation on val."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from vmeta.train.callbacks import GenerationEvalCallback, MetricsFileCallback, RichProgressCallback
    from vmeta.train.collate import SupervisedCollator
    from vmeta.train.optim import make_trainer, training_arguments

    progress_cb = RichProgressCallback(f"{cfg.method} → {run.path.name}", enabled=progress)
    cbs: list[Any] = [MetricsFileCallback(run.path), progress_cb]
    trainer: Any = None
    if cfg.training.evaluates:
        evaluator = ValEvaluator(cfg, loaded, splits.val, splits.root, inputs.frames, inputs.prompt, inputs.blocks)
        on_eval = _best_keeper(cfg, run, lambda: trainer.model, loaded.processor, pissa_init)
        cbs.append(GenerationEvalCallback(evaluator, cfg.training.eval_steps, cfg.training.eval_each_epoch, on_eval))
    cbs += list(callbacks or [])
    tok = loaded.processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainer = make_trainer(
        cfg,
        model=model,
        args=training_arguments(cfg, str(run.checkpoints), loaded.device, precision),
        train_dataset=train_ds,
        data_collator=SupervisedCollator(pad_id),
        callbacks=cbs,
    )
    for cb in (PrinterCallback, ProgressCallback):
        with contextlib.suppress(ValueError):
            trainer.remove_callback(cb)
    return trainer, progress_cb


def _best_keeper(cfg: TrainConfig, run: RunFolder, model: Any, processor: Any, pissa_init: Path | None) -> Any:
    """The evaluation callback's sink: each evaluation goes to metrics.jsonl; a new best by
    training.best_metric is saved to best/ and recorded in run.json (kept across --resume)."""
    best: dict[str, Any] = dict((run.info() or RunManifest()).best or {})
    metric = cfg.training.best_metric

    def on_eval(state: Any, scores: dict[str, float], _cb: Any) -> None:
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row |= {f"eval_{k}": v for k, v in scores.items()}
        append_jsonl(run.path / "metrics.jsonl", row)
        value = scores.get(metric)
        if value is None:
            return
        if not best or value > best.get("value", float("-inf")):
            target = save_final(model(), processor, run.path, cfg, "best", pissa_init=pissa_init)
            best.update(metric=metric, value=value, step=state.global_step, path=target.name, scores=scores)
            run.update(best=dict(best))
        run.update(last_eval=row)

    return on_eval


def _train(trainer: Any, run: RunFolder, checkpoint: Path | None, progress_cb: Any) -> tuple[Any, float]:
    """trainer.train(); a failure or Ctrl-C is recorded in run.json (status, error, step) before it propagates."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BaseException as exc:
        progress_cb.close()
        if is_main_process():
            run.update(
                status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                error=f"{type(exc).__name__}: {exc}"[:500],
                global_step=trainer.state.global_step,
                memory=_peak_memory(),
                last_checkpoint=str(run.latest_checkpoint() or ""),
            )
        raise
    return result, time.perf_counter() - t0


def _save_and_finish(
    cfg: TrainConfig,
    run: RunFolder,
    trainer: Any,
    loaded: Any,
    result: Any,
    wall: float,
    train_ds: Any,
    cache: Any,
    pissa_init: Path | None,
) -> None:
    """The final adapter/model, then run.json's "finished" (or "interrupted" when max_steps was not reached)."""
    gathered = sharded_state_dict(trainer)  # every process: a collective under ZeRO-3 / FSDP
    if not is_main_process():
        return
    final = save_final(
        trainer.accelerator.unwrap_model(trainer.model),
        loaded.processor,
        run.path,
        cfg,
        "final",
        pissa_init=pissa_init,
        state_dict=gathered,
    )
    m = result.metrics
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    t = cfg.training
    stopped_early = bool(t.max_steps) and trainer.state.global_step < t.max_steps
    run.update(
        status="interrupted" if stopped_early else "finished",
        finished=now(),
        global_step=trainer.state.global_step,
        epochs_done=round(trainer.state.epoch or 0.0, 4),
        train_runtime_s=round(wall, 3),
        samples_per_s=m.get("train_samples_per_second"),
        steps_per_s=m.get("train_steps_per_second"),
        final={
            "train_loss": m.get("train_loss"),
            "last_loss": losses[-1] if losses else None,
            "first_loss": losses[0] if losses else None,
        },
        memory=_peak_memory(),
        truncated_answers=sorted(train_ds.truncated),
        frame_cache={"mode": cache.mode, "hits": cache.hits, "misses": cache.misses},
        output=final.name,
        last_checkpoint=str(run.latest_checkpoint() or ""),
    )


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def _peak_memory() -> dict[str, Any]:
    import resource

    import torch

    out: dict[str, Any] = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["peak_cuda_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return out


def _command_line() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["vmeta", *sys.argv[1:]]) if sys.argv and "vmeta" in sys.argv[0] else ""


__all__ = ["run_training"]
