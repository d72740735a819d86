"""`vmeta export runs/NAME --out exports/NAME`: one self-contained transformers folder from a training run.

- Adapter runs (lora, loraplus, dora, rslora, pissa — PiSSA is saved by `vmeta train` already converted to a plain
  LoRA delta on the original base): load the base model recorded in run.json, apply ``adapter/`` and
  ``merge_and_unload()``. The merge happens in float32; the result is cast to the export dtype afterwards.
- Full-weight runs (freeze, galore, full): ``model/`` is loaded and re-saved (dtype and shard size applied).
- The folder gets safetensors shards no larger than ``--shard-size`` (each *file*, header included; checked after
  writing, with the index), the processor + chat template, the generation config, ``vmeta_export.json`` (what was
  exported, from what, and the shard list) and a model card ``README.md``.
- Atomic: everything is written to a temporary folder beside the target and renamed into place; an existing export
  is replaced only with ``overwrite=True`` (and only once the new one is complete).

What the run folder holds and where its base model is: :mod:`vmeta.export.source`; the model card:
:mod:`vmeta.export.model_card`; shard sizes: :mod:`vmeta.export.shard`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta.config import Settings, get_settings
from vmeta.errors import UserError
from vmeta.export.model_card import eval_results, model_card
from vmeta.export.shard import (
    ShardReport,
    check_tensors_fit,
    human_size,
    parse_size,
    plan_shard_size,
    planned_tensor_sizes,
    verify_shards,
)
from vmeta.export.source import RunInfo, base_dtype, base_marker, locate_base, processor_dir, read_run
from vmeta.jsonio import read_json, write_json
from vmeta.train.methods import METHODS

ADAPTER_METHODS = tuple(name for name, spec in METHODS.items() if spec.merges)
FULL_METHODS = tuple(name for name, spec in METHODS.items() if not spec.merges)
EXPORT_MANIFEST = "vmeta_export.json"
DTYPES = {"auto": None, "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "fp32": "float32", "float32": "float32"}  # fmt: skip


@dataclass
class ExportConfig:
    """What `vmeta export` does (validated before any model loads)."""

    run: Path
    out: Path
    shard_size: str = "2GB"
    dtype: str = "auto"  # auto: the base model's own dtype (bf16 for Qwen2-VL), else fp32
    overwrite: bool = False
    base: str | None = None  # override the base model recorded in run.json (a folder or a registered name)
    device: str | None = None  # where to merge: auto (CUDA when available) | cpu | cuda[:N]
    shard_bytes: int = field(init=False, default=0)  # --shard-size in bytes

    def __post_init__(self) -> None:
        self.run = Path(self.run).expanduser()
        self.out = Path(self.out).expanduser()
        self.shard_bytes = parse_size(self.shard_size)
        key = str(self.dtype or "auto").lower()
        if key not in DTYPES:
            raise UserError(f"--dtype {self.dtype!r}: choose one of auto, bf16, fp16, fp32.")
        self.dtype = key


@dataclass
class ExportSummary:
    out: Path
    method: str
    base: str
    dtype: str
    shards: ShardReport
    seconds: float
    merged_from: str  # "adapter" | "model"
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Target folder handling (atomic)


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder path for the export.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"{out} already exists and is not empty; pass --overwrite to replace it, or choose another --out."
        )


def _move_into_place(staging: Path, out: Path, overwrite: bool) -> None:
    _check_target(out, overwrite)  # again: something may have appeared while we worked
    old: Path | None = None
    if out.exists():
        if any(out.iterdir()):
            old = out.parent / f".{out.name}.replaced-{os.getpid()}-{int(time.time())}"
            out.rename(old)
        else:
            out.rmdir()
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _normal_permissions(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


# ---------------------------------------------------------------------------------------------------------------
# Export


def export_run(cfg: ExportConfig, *, settings: Settings | None = None, log: Any = None) -> ExportSummary:
    """Merge / re-shard the run into ``cfg.out`` (see the module docstring) and return what was written."""
    settings = settings or get_settings()
    say = log or (lambda *_: None)
    t0 = time.perf_counter()
    info = read_run(cfg.run)
    _check_target(cfg.out, cfg.overwrite)
    if cfg.out.resolve() == info.path.resolve() or info.path.resolve() in cfg.out.resolve().parents:
        raise UserError(f"--out {cfg.out} is inside the run folder {info.path}; export somewhere else (e.g. exports/).")

    import torch

    from vmeta.models.load import load_model, pick_device

    base_dir = locate_base(info, cfg.base, settings) if info.is_adapter or cfg.base else None
    device = pick_device(cfg.device)
    warnings: list[str] = []
    weights_dir = base_dir if info.is_adapter else str(info.model_dir)
    assert weights_dir is not None
    dtype_name = DTYPES[cfg.dtype] or base_dtype(base_dir or str(info.model_dir))
    # Fail on an impossible --shard-size before spending minutes loading and merging (merging keeps shapes).
    sizes = planned_tensor_sizes(Path(weights_dir), dtype_name)
    if sizes:
        check_tensors_fit(sizes, cfg.shard_bytes, plan_shard_size(cfg.shard_bytes, list(sizes)), cfg.shard_size)
    if info.is_adapter:
        assert base_dir is not None
        say(f"loading base {base_dir} + adapter {info.adapter_dir} on {device}")
        loaded = load_model(base_dir, adapter=info.adapter_dir, device=device, dtype="float32", settings=settings,
                            cache=False)  # fmt: skip
        model = loaded.model
        peft_cfg = next(iter(getattr(model, "peft_config", {}).values()), None)
        peft_type = str(getattr(peft_cfg, "peft_type", "") or "")
        if "LORA" not in peft_type.upper():
            raise UserError(
                f"{info.adapter_dir}: a {peft_type or 'non-PEFT'} adapter; export merges LoRA-family adapters."
            )
        say("merging the adapter into the base weights")
        model = model.merge_and_unload(progressbar=False, safe_merge=True)
        merged_from = "adapter"
    else:
        assert info.model_dir is not None
        say(f"loading full weights {info.model_dir} on {device}")
        loaded = load_model(info.model_dir, device=device, dtype="float32", settings=settings, cache=False)
        model = loaded.model
        merged_from = "model"
    leftovers = [n for n, _ in model.named_modules() if "lora_" in n or n.endswith(".base_layer")]
    if leftovers:
        raise UserError(f"the adapter did not merge completely (still present: {leftovers[0]} …); report this run.")

    dtype = getattr(torch, dtype_name)
    model = model.to(dtype)
    model.config.dtype = dtype_name  # written as "dtype" in config.json; loaders pick it with dtype="auto"

    state = model.state_dict()
    sizes = {k: v.numel() * v.element_size() for k, v in state.items()}
    max_bytes = plan_shard_size(cfg.shard_bytes, list(state))
    if max_bytes <= 0:
        raise UserError(f"--shard-size {cfg.shard_size} is smaller than the file headers alone; raise it.")
    check_tensors_fit(sizes, cfg.shard_bytes, max_bytes, cfg.shard_size)
    del state

    processor_src = processor_dir(info, base_dir or str(info.model_dir))
    from transformers import AutoProcessor

    processor = (
        loaded.processor
        if base_dir is not None and processor_src == Path(base_dir)
        else AutoProcessor.from_pretrained(str(processor_src), local_files_only=True)
    )

    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cfg.out.name}.exporting.", dir=cfg.out.parent))
    try:
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            say(f"writing {dtype_name} safetensors shards of at most {human_size(cfg.shard_bytes)}")
            model.save_pretrained(str(staging), max_shard_size=max_bytes)
            processor.save_pretrained(str(staging))
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        _ensure_chat_template(staging, processor_src, base_dir)
        _copy_generation_config(staging, info, base_dir)
        marker = base_marker(info, base_dir)
        if marker is not None:  # e.g. the tiny model's "not a real model" note (and its frame settings)
            shutil.copyfile(marker, staging / "vmeta.json")
        report = verify_shards(staging, cfg.shard_bytes)
        if not report.ok:
            raise RuntimeError("the written shards are inconsistent: " + "; ".join(report.problems))
        base_label = info.base_name or base_dir or str(info.model_dir)
        manifest = _manifest(info, cfg, base_label, base_dir, dtype_name, report, merged_from)
        marker_meta = read_json(marker) if marker is not None else {}
        kind = marker_meta.get("kind") if isinstance(marker_meta, dict) else None
        manifest["not_a_real_model"] = kind in ("tiny-random", "tiny-demo")
        if kind == "tiny-demo":
            manifest["demo_model"] = True  # trained on the sample labels by `vmeta models build-demo`
        write_json(staging / EXPORT_MANIFEST, manifest)
        results = eval_results(info)
        (staging / "README.md").write_text(model_card(info, manifest, results, cfg.out), encoding="utf-8")
        _normal_permissions(staging)
        _move_into_place(staging, cfg.out, cfg.overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.folder = cfg.out
    return ExportSummary(
        out=cfg.out,
        method=info.method,
        base=info.base_name or str(base_dir or info.model_dir),
        dtype=dtype_name,
        shards=report,
        seconds=time.perf_counter() - t0,
        merged_from=merged_from,
        warnings=warnings,
    )


def _ensure_chat_template(staging: Path, processor_src: Path, base_dir: str | None) -> None:
    """transformers writes chat_template.jinja (or .json); make sure one is there, copied from the source if not."""
    if any((staging / n).is_file() for n in ("chat_template.jinja", "chat_template.json")):
        return
    for src in (processor_src, Path(base_dir) if base_dir else None):
        if src is None:
            continue
        for n in ("chat_template.jinja", "chat_template.json"):
            if (src / n).is_file():
                shutil.copyfile(src / n, staging / n)
                return
    tok_cfg = staging / "tokenizer_config.json"
    if tok_cfg.is_file() and "chat_template" in json.loads(tok_cfg.read_text(encoding="utf-8")):
        return
    raise UserError(f"no chat template found in {processor_src} or the base model; the export would not chat.")


def _copy_generation_config(staging: Path, info: RunInfo, base_dir: str | None) -> None:
    if (staging / "generation_config.json").is_file():
        return
    for src in (info.model_dir, Path(base_dir) if base_dir else None):
        if src is not None and (src / "generation_config.json").is_file():
            shutil.copyfile(src / "generation_config.json", staging / "generation_config.json")
            return


def _versions() -> dict[str, str | None]:
    from vmeta.evaluate.metrics import pkg_version

    return {pkg: pkg_version(pkg) for pkg in ("vmeta", "torch", "transformers", "peft", "safetensors")}


def _manifest(
    info: RunInfo,
    cfg: ExportConfig,
    base_label: str,
    base_dir: str | None,
    dtype: str,
    report: ShardReport,
    merged: str,
) -> dict[str, Any]:
    m = info.manifest
    return {
        "format": "vmeta-export/1",
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": str(info.path.resolve()),
        "run_name": info.name,
        "method": info.method,
        "merged_from": merged,
        "base_model": base_label,
        "base_model_path": base_dir,
        "base_model_hub_id": m.model.hub_id,
        "adapter": str(info.adapter_dir.resolve()) if info.adapter_dir else None,
        "dataset": m.dataset.model_dump(exclude_none=True) if m.dataset else None,
        "dataset_hash": m.dataset.content_hash if m.dataset else None,
        "prompt_hash": m.prompt_hash,
        "frames": m.frames,
        "context": m.context,  # what the model was trained to read beside the video (on-screen text)
        "dtype": dtype,
        "shard_size": cfg.shard_size,
        "shard_size_bytes": cfg.shard_bytes,
        "shards": report.to_dict(),
        "versions": _versions(),
    }


__all__ = [
    "ADAPTER_METHODS",
    "EXPORT_MANIFEST",
    "FULL_METHODS",
    "ExportConfig",
    "ExportSummary",
    "export_run",
]
