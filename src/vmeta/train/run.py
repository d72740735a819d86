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
import logging
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.jsonio import append_jsonl, write_json
from vmeta.runs import RUN_FORMAT, RunManifest, now, read_run, update_run
from vmeta.train.config import TrainConfig, dump_config
from vmeta.train.methods import METHODS, trainable_summary

# Settings that may differ when a run is resumed (its length, how often it saves/evaluates).
RESUMABLE_CHANGES = re.compile(r"^training\.(epochs|max_steps|save_steps|save_total_limit|eval_.*|logging_steps)$")
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "galore-torch", "vmeta", "numpy", "av")


def _process_state():  # type: ignore[no-untyped-def]
    """accelerate's PartialState: which process this is of those `accelerate launch` / torchrun started.

    The first call joins the process group (a no-op for a single process), with the Trainer's own timeout
    (TrainingArguments.ddp_timeout), which the group keeps when the Trainer reuses it."""
    from datetime import timedelta

    from accelerate import PartialState
    from transformers import TrainingArguments

    return PartialState(timeout=timedelta(seconds=TrainingArguments.ddp_timeout))


def is_main_process() -> bool:
    """The process that writes the run folder (the only one with several DDP/DeepSpeed/FSDP processes)."""
    return _process_state().is_main_process


def _wait_for_everyone() -> None:
    """A barrier across the launched processes (a no-op for a single process)."""
    _process_state().wait_for_everyone()


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k != "frames":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ---------------------------------------------------------------------------------------------------------------
# The run folder


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def info(self) -> RunManifest | None:
        return read_run(self.path)

    def update(self, **fields: Any) -> RunManifest:
        return update_run(self.path, **fields)

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints.is_dir():
            return None
        cks = [
            (int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
        ]
        complete = [(s, p) for s, p in cks if (p / "trainer_state.json").is_file()]
        return max(complete)[1] if complete else None

    def prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> Path | None:
        """Check the folder against --resume / --overwrite; returns the checkpoint to resume from (or None).

        With several processes only the main one checks and changes the folder; the others wait until it is
        done (so none sees a folder half prepared, or the main process's fresh run.json) and then only look up
        the checkpoint to resume from. A refusal ends the main process, and the launcher ends the others."""
        if not is_main_process():
            _wait_for_everyone()
            return self.latest_checkpoint() if resume else None
        checkpoint = self._prepare(cfg, resume=resume, overwrite=overwrite)
        _wait_for_everyone()
        return checkpoint

    def _prepare(self, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> Path | None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise UserError(f"{p} is a file; choose another --out folder.")
        exists = p.is_dir() and any(p.iterdir())
        if not exists:
            if resume:
                raise UserError(f"--resume: {p} holds no run to resume; leave out --resume to start it.")
            return None
        info = self.info()
        if overwrite:
            if not info and not (p / "config.yaml").exists():
                raise UserError(
                    f"{p} is not empty and is not a vmeta run folder; --overwrite only replaces run folders. "
                    "Choose another --out."
                )
            shutil.rmtree(p)
            return None
        if not info:
            raise UserError(f"{p} is not empty and is not a vmeta run folder; choose another --out.")
        status = info.status
        if info.is_finished:
            raise UserError(f"{p} holds a finished run; pass --overwrite to replace it, or choose another --out.")
        if not resume:
            raise UserError(
                f"{p} holds an unfinished run (status {status}); pass --resume to continue it from its last "
                "checkpoint, or --overwrite to start over."
            )
        self._check_same_config(cfg)
        ck = self.latest_checkpoint()
        if ck is None:
            # Interrupted before the first checkpoint: start over in place.
            for child in p.iterdir():
                if child.name not in ("logs",):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        return ck

    def _check_same_config(self, cfg: TrainConfig) -> None:
        import yaml

        saved_path = self.path / "config.yaml"
        if not saved_path.is_file():
            return
        saved = _flatten(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
        new = _flatten(cfg.to_yaml_dict())
        diff = sorted(k for k in set(saved) | set(new) if saved.get(k) != new.get(k) and not RESUMABLE_CHANGES.match(k))
        if diff:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in diff[:6])
            raise UserError(
                f"--resume: the config differs from the one {self.path} was started with ({shown}); resume with "
                "the same settings (only the run length and save/eval intervals may change), or use --overwrite."
            )


# ---------------------------------------------------------------------------------------------------------------
# Model


def _load_base(cfg: TrainConfig, settings: Any):  # type: ignore[no-untyped-def]
    """-> (LoadedModel, precision name). Weights load in the training precision (bf16 on CUDA by default)."""
    import torch

    from vmeta.models.load import load_model, pick_device

    device = pick_device(cfg.model.device)
    precision = cfg.training.precision
    if precision == "auto":
        precision = "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and device == "cpu" and precision == "fp16":
        raise UserError("training.precision=fp16 needs a GPU; use bf16 or fp32 on CPU.")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    if cfg.model.quantization is not None:
        loaded = _load_quantized(cfg, settings, device, dtype)
    else:
        loaded = load_model(cfg.model.name, device=device, dtype=dtype, settings=settings, cache=False)
    return loaded, precision


def _load_quantized(cfg: TrainConfig, settings: Any, device: str, dtype: Any):  # type: ignore[no-untyped-def]
    """QLoRA: the base in 4/8 bit through bitsandbytes (CUDA only)."""
    import transformers
    from transformers import AutoProcessor, BitsAndBytesConfig

    from vmeta.models.load import LoadedModel
    from vmeta.models.registry import resolve

    if not device.startswith("cuda"):
        raise UserError("model.quantization (bitsandbytes 4/8 bit) needs a CUDA GPU.")
    resolved = resolve(cfg.model.name, settings)
    q = (
        BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
        )
        if cfg.model.quantization == "4bit"
        else BitsAndBytesConfig(load_in_8bit=True)
    )
    cls = getattr(transformers, resolved.spec.model_class, transformers.AutoModelForImageTextToText)
    model = cls.from_pretrained(resolved.pretrained_id, dtype=dtype, quantization_config=q, device_map={"": device})
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.training.gradient_checkpointing)
    processor = AutoProcessor.from_pretrained(resolved.pretrained_id)
    return LoadedModel(
        model=model,
        processor=processor,
        spec=resolved.spec,
        device=device,
        dtype=dtype,
        source=resolved.source,
        pretrained_id=resolved.pretrained_id,
        name=resolved.spec.name,
        resolved=resolved,
    )


def frame_settings(cfg: TrainConfig, spec: Any):  # type: ignore[no-untyped-def]
    from vmeta.models.generate import frame_settings_for
    from vmeta.video.sampling import FrameSettings

    base = frame_settings_for(spec).to_dict()
    try:
        return FrameSettings.from_dict({**base, **cfg.data.frames})
    except ValueError as exc:
        raise UserError(f"data.frames: {exc}") from None


def prompt_text(cfg: TrainConfig) -> str:
    """The user instruction (the video part comes first in the chat template, so the '<video>' tag is dropped)."""
    from vmeta.dataset.prompts import DEFAULT_PROMPT, VIDEO_TOKEN

    text = cfg.data.prompt if cfg.data.prompt is not None else DEFAULT_PROMPT
    return text.replace(VIDEO_TOKEN, "", 1) if text.startswith(VIDEO_TOKEN) else text


def sharded_state_dict(trainer: Any) -> dict[str, Any] | None:
    """The whole state dict of a model sharded across processes (DeepSpeed ZeRO-3, FSDP), gathered the way
    transformers' ``Trainer.save_model`` does; None where every process holds the whole model (one process,
    DDP, ZeRO-1/2). A collective under sharding: every process must call it (the main one gets the tensors)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return trainer.accelerator.get_state_dict(trainer.model)
    if getattr(trainer, "is_deepspeed_enabled", False):
        zero = trainer.accelerator.deepspeed_config.get("zero_optimization", {})
        if zero.get("stage") == 3:
            return trainer.accelerator.get_state_dict(trainer.deepspeed)
    return None


def save_final(
    model: Any,
    processor: Any,
    run: Path,
    cfg: TrainConfig,
    dest: str,
    *,
    pissa_init: Path | None,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Write the trained adapter (adapter/) or full weights (model/) — ``dest`` may also be "best".

    ``state_dict``: the gathered weights of a sharded model (:func:`sharded_state_dict`); the model's own
    tensors are only shards there."""
    import torch

    spec = METHODS[cfg.method]
    target = run / dest if dest != "final" else run / ("adapter" if spec.saves == "adapter" else "model")
    tmp = target.with_name(f".{target.name}.saving")
    shutil.rmtree(tmp, ignore_errors=True)
    if spec.saves == "adapter":
        kwargs: dict[str, Any] = {}
        if pissa_init is not None:
            kwargs["path_initial_model_for_weight_conversion"] = str(pissa_init)
        if state_dict is not None:
            kwargs["state_dict"] = state_dict  # peft picks the adapter's tensors out of it
        model.save_pretrained(str(tmp), **kwargs)
        if pissa_init is not None:
            _restore_pissa_config(tmp)
        if dest == "final":
            processor.save_pretrained(str(run))
    else:
        base = getattr(model, "module", model)
        dtype = getattr(base.config, "dtype", None) or torch.float32
        dtype = getattr(torch, str(dtype).replace("torch.", "")) if not isinstance(dtype, torch.dtype) else dtype
        state = base.state_dict() if state_dict is None else state_dict
        if any(v.is_floating_point() and v.dtype != dtype for v in state.values()):  # fp32 master copies -> load dtype
            base.save_pretrained(
                str(tmp), state_dict={k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
            )
        else:
            base.save_pretrained(str(tmp), state_dict=state_dict)
        processor.save_pretrained(str(tmp))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def _restore_pissa_config(folder: Path) -> None:
    """peft writes the converted PiSSA adapter as a plain LoRA (init_lora_weights True, rank 2r) — say so."""
    from vmeta.jsonio import read_json as _rj

    cfg_file = folder / "adapter_config.json"
    data = _rj(cfg_file)
    data["init_lora_weights"] = True
    write_json(cfg_file, data)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation during training


class ValEvaluator:
    """Generate on (up to eval_limit) val samples with the model being trained and score them."""

    def __init__(self, cfg: TrainConfig, loaded: Any, records: list[Any], dataset_root: Path, fs: Any, prompt: str):
        self.cfg = cfg
        self.loaded = loaded
        self.records = records[: cfg.training.eval_limit] if cfg.training.eval_limit else records
        self.root = dataset_root
        self.fs = fs
        self.prompt = prompt
        self._ctx = None

    def __call__(self, model: Any) -> dict[str, float]:
        import dataclasses

        import numpy as np

        import vmeta.evaluate  # noqa: F401  (registers every metric)
        from vmeta.evaluate.metrics import EvalContext, score
        from vmeta.models.generate import GenerationSettings, generate_batch

        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        loaded = dataclasses.replace(self.loaded, model=model)
        gen = GenerationSettings(max_new_tokens=self.cfg.training.eval_max_new_tokens)
        preds: list[str] = []
        bs = self.cfg.training.eval_batch_size
        import torch

        # mixed precision: fp32 trainable weights next to bf16/fp16 frozen ones, as inside the training step
        half = self.loaded.dtype != torch.float32
        device_type = "cuda" if str(self.loaded.device).startswith("cuda") else "cpu"
        try:
            for i in range(0, len(self.records), bs):
                chunk = self.records[i : i + bs]
                convs = [
                    [
                        {
                            "role": "user",
                            "content": [
                                {"type": "video", "video": str(self._path(r))},
                                {"type": "text", "text": self.prompt},
                            ],
                        }
                    ]
                    for r in chunk
                ]
                with torch.autocast(device_type=device_type, dtype=self.loaded.dtype, enabled=half):
                    preds += [res.text for res in generate_batch(loaded, convs, gen, self.fs)]
        finally:
            if was_training:
                model.train()
        refs = [r.label for r in self.records]
        if self._ctx is None:
            bert = None
            if self.cfg.training.bertscore_model:
                from vmeta.evaluate.bertscore import BertScoreConfig

                bert = BertScoreConfig(model=self.cfg.training.bertscore_model)
            self._ctx = EvalContext(bert=bert)
        names = list(self.cfg.training.eval_metrics) + (["bertscore"] if self.cfg.training.bertscore_model else [])
        scores: dict[str, float] = {}
        for col, vals in score(names, preds, refs, self._ctx).columns.items():  # the scoring `vmeta eval` does
            arr = np.asarray(vals, dtype=float)
            scores[col] = float(np.nanmean(arr)) if arr.size else float("nan")
        scores["samples"] = float(len(preds))
        scores["runtime"] = time.perf_counter() - t0
        return scores

    def _path(self, r: Any) -> Path:
        p = Path(r.video)
        return p if p.is_absolute() else self.root / p


# ---------------------------------------------------------------------------------------------------------------
# The run


def _peak_memory() -> dict[str, Any]:
    import resource

    import torch

    out: dict[str, Any] = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["peak_cuda_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return out


def _checkpointing_args(on: bool) -> dict[str, Any]:
    """Gradient (activation) checkpointing under the name this transformers version uses."""
    if not on:
        return {}
    import inspect

    from transformers import TrainingArguments

    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
        else "gradient_checkpointing"
    )
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def _command_line() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["vmeta", *sys.argv[1:]]) if sys.argv and "vmeta" in sys.argv[0] else ""


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
    import torch
    from transformers import set_seed

    from vmeta.config import get_settings
    from vmeta.dataset.prompts import prompt_hash
    from vmeta.dataset.records import Dataset
    from vmeta.train.callbacks import GenerationEvalCallback, MetricsFileCallback, RichProgressCallback
    from vmeta.train.collate import SupervisedCollator
    from vmeta.train.data import FrameCache, SupervisedDataset, preflight, split_records
    from vmeta.train.optim import make_trainer, training_arguments

    settings = settings or get_settings()
    if cfg.out is None:
        raise UserError("no run folder given: pass --out runs/NAME (or set out: in the config).")
    if cfg.data.path is None:
        raise UserError("no dataset given: pass --data DATASET_DIR (or set data.path in the config).")
    run = RunFolder(Path(cfg.out).expanduser())
    checkpoint = run.prepare(cfg, resume=resume, overwrite=overwrite)
    data_root = Path(cfg.data.path).expanduser()
    train_records = split_records(data_root, cfg.data.train_split, limit=cfg.data.limit)
    val_records = split_records(data_root, cfg.data.val_split) if cfg.training.evaluates else []
    spec = METHODS[cfg.method]

    set_seed(cfg.training.seed)
    loaded, precision = _load_base(cfg, settings)
    fs = frame_settings(cfg, loaded.spec)
    prompt = prompt_text(cfg)
    processor = loaded.processor
    p_tokens = len(processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 24
    vision_cfg = getattr(loaded.model.config, "vision_config", None)
    pre = preflight(
        train_records,
        fs,
        p_tokens,
        cfg.data.cutoff_len,
        patch=getattr(vision_cfg, "patch_size", 14),
        merge=getattr(vision_cfg, "spatial_merge_size", 2),
    )

    run.path.mkdir(parents=True, exist_ok=True)
    (run.path / "logs").mkdir(exist_ok=True)
    log_handler = logging.FileHandler(run.path / "logs" / "train.log", encoding="utf-8")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("transformers", "vmeta", "peft"):
        logging.getLogger(name).addHandler(log_handler)
    log = logging.getLogger("vmeta.train")
    log.setLevel(logging.INFO)

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

    cache_dir = settings.resolved_cache_dir / "frames"
    cache = FrameCache(cfg.data.frame_cache, cache_dir)
    train_ds = SupervisedDataset(train_records, data_root, processor, fs, prompt, cfg.data.cutoff_len, cache)
    pad_id = processor.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = processor.tokenizer.eos_token_id

    # run.json + config.yaml before the first step
    dataset = Dataset(data_root)
    started = now()
    if is_main_process():
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
                "path": str(data_root.resolve()),
                "content_hash": dataset.content_hash(),
                "train_split": cfg.data.train_split,
                "val_split": cfg.data.val_split,
                "train_samples": len(train_records),
                "val_samples": len(val_records),
                "train_ids_hash": prompt_hash("\n".join(r.id for r in train_records)),
            },
            prompt=prompt,
            prompt_hash=prompt_hash(prompt),
            frames=fs.to_dict(),
            cutoff_len=cfg.data.cutoff_len,
            preflight=pre,
            precision=precision,
            device=loaded.device,
            libraries=library_versions(),
            **counts,
            status="running",
            started=prev.started or started,
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

    t = cfg.training
    on_cuda = loaded.device.startswith("cuda")
    args = training_arguments(
        cfg,
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps if t.max_steps else -1,
        learning_rate=t.lr,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_cuda and loaded.device == "cpu",
        **_checkpointing_args(t.gradient_checkpointing),
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy=("steps" if t.save_steps else "epoch") if t.save_checkpoints else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        eval_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=cfg.data.num_workers,
        dataloader_pin_memory=on_cuda,
        disable_tqdm=True,
        deepspeed=t.deepspeed,
        fsdp=t.fsdp or "",
        ddp_find_unused_parameters=False if spec.kind == "lora" else None,
    )

    progress_cb = RichProgressCallback(f"{cfg.method} → {run.path.name}", enabled=progress)
    cbs: list[Any] = [MetricsFileCallback(run.path), progress_cb]
    best_state: dict[str, Any] = dict((run.info() or RunManifest()).best or {})
    if t.evaluates:
        evaluator = ValEvaluator(cfg, loaded, val_records, data_root, fs, prompt)

        def on_eval(state: Any, scores: dict[str, float], _cb: Any) -> None:
            row = {
                "step": state.global_step,
                "epoch": round(state.epoch or 0.0, 4),
                **{f"eval_{k}": v for k, v in scores.items()},
            }
            append_jsonl(run.path / "metrics.jsonl", row)
            value = scores.get(t.best_metric)
            if value is None:
                return
            if not best_state or value > best_state.get("value", float("-inf")):
                target = save_final(trainer.model, processor, run.path, cfg, "best", pissa_init=pissa_init)
                best_state.update(
                    metric=t.best_metric, value=value, step=state.global_step, path=target.name, scores=scores
                )
                run.update(best=dict(best_state))
            run.update(last_eval=row)

        cbs.append(GenerationEvalCallback(evaluator, t.eval_steps, t.eval_each_epoch, on_eval))
    cbs += list(callbacks or [])

    trainer = make_trainer(
        cfg,
        model=model,
        args=args,
        train_dataset=train_ds,
        data_collator=SupervisedCollator(pad_id),
        callbacks=cbs,
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        with contextlib.suppress(ValueError):
            trainer.remove_callback(cb)

    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BaseException as exc:
        progress_cb.close()
        if is_main_process():
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            run.update(
                status=status,
                error=f"{type(exc).__name__}: {exc}"[:500],
                global_step=trainer.state.global_step,
                memory=_peak_memory(),
                last_checkpoint=str(run.latest_checkpoint() or ""),
            )
        for name in ("transformers", "vmeta", "peft"):
            logging.getLogger(name).removeHandler(log_handler)
        log_handler.close()
        raise
    wall = time.perf_counter() - t0

    gathered = sharded_state_dict(trainer)  # every process: a collective under ZeRO-3 / FSDP
    if is_main_process():
        final = save_final(
            trainer.accelerator.unwrap_model(trainer.model),
            processor,
            run.path,
            cfg,
            "final",
            pissa_init=pissa_init,
            state_dict=gathered,
        )
        m = result.metrics
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
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
    for name in ("transformers", "vmeta", "peft"):
        logging.getLogger(name).removeHandler(log_handler)
    log_handler.close()
    return run.path


__all__ = [
    "RunFolder",
    "ValEvaluator",
    "frame_settings",
    "is_main_process",
    "library_versions",
    "prompt_text",
    "run_training",
    "save_final",
    "sharded_state_dict",
]
