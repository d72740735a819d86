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

from vmeta import runs
from vmeta.config import Settings, get_settings
from vmeta.errors import UserError
from vmeta.export.shard import (
    ShardReport,
    check_tensors_fit,
    human_size,
    parse_size,
    plan_shard_size,
    verify_shards,
)
from vmeta.train.methods import METHODS

ADAPTER_METHODS = tuple(name for name, spec in METHODS.items() if spec.merges)
FULL_METHODS = tuple(name for name, spec in METHODS.items() if not spec.merges)
EXPORT_MANIFEST = "vmeta_export.json"
DTYPES = {"auto": None, "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "fp32": "float32", "float32": "float32"}  # fmt: skip
# Processor files: where they are found, the run's own processor wins over the base model's.
_PROCESSOR_MARKERS = ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json")


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
class RunInfo:
    """What a run folder says about itself (run.json + config.yaml + which weights it holds)."""

    path: Path
    name: str
    method: str
    manifest: runs.RunManifest
    config: dict[str, Any]  # config.yaml: the training config (method parameters for the model card)
    adapter_dir: Path | None
    model_dir: Path | None
    base_name: str | None  # registered name / hub id / folder as the user gave it
    base_resolved: str | None  # the local folder or hub id training actually loaded
    status: str | None

    @property
    def is_adapter(self) -> bool:
        return self.adapter_dir is not None


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
# Reading a run folder


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read it as JSON ({exc}).") from None
    return data if isinstance(data, dict) else {}


def read_run(run_dir: str | Path) -> RunInfo:
    """Describe a finished run folder; a clear error when it is missing, unfinished or holds no weights."""
    path = Path(run_dir).expanduser()
    if not path.exists():
        raise UserError(f"run folder {path} does not exist; give the folder `vmeta train --out` wrote.")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run folder; give the folder `vmeta train --out` wrote.")
    manifest = runs.read_run(path)
    if manifest is None:
        raise UserError(
            f"{path} has no run.json, so it is not a (finished) `vmeta train` run folder. "
            "If training was interrupted, finish it with `vmeta train ... --resume` first."
        )
    config = runs.read_config(path)
    status = manifest.status
    if status is not None and not manifest.is_finished:
        raise UserError(
            f"run {path} is not finished (run.json status: {status!r}); resume it with "
            f"`vmeta train --config {path / 'config.yaml'} --resume` (or wait for it) before exporting."
        )
    method = manifest.method or ""
    adapter_dir = path / "adapter" if (path / "adapter" / "adapter_config.json").is_file() else None
    model_dir = path / "model" if (path / "model" / "config.json").is_file() else None
    if adapter_dir is None and model_dir is None:
        if (path / "adapter_config.json").is_file():
            adapter_dir = path
        else:
            raise UserError(
                f"run {path} holds no final weights (neither adapter/adapter_config.json nor model/config.json); "
                "was training stopped before it saved? Resume it with `vmeta train ... --resume`."
            )
    if not method:
        method = "lora" if adapter_dir is not None else "full"
    base_name = manifest.base_name
    if adapter_dir is not None and not base_name:
        base_name = runs.read_json_object(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    return RunInfo(
        path=path,
        name=path.resolve().name,
        method=method,
        manifest=manifest,
        config=config,
        adapter_dir=adapter_dir,
        model_dir=model_dir,
        base_name=str(base_name) if isinstance(base_name, str | Path) else None,
        base_resolved=manifest.base_resolved,
        status=status,
    )


def locate_base(info: RunInfo, override: str | None, settings: Settings) -> str:
    """A local folder (or registered name on disk) for the run's base model; never downloads.

    Order: ``--base``; the folder training resolved (when it still exists); the recorded name through the registry.
    """
    from vmeta.models.registry import resolve

    if override:
        folder = Path(override).expanduser()
        if folder.is_dir():
            if not (folder / "config.json").is_file():
                raise UserError(f"--base {folder}: no config.json there, so it is not a model folder.")
            return str(folder.resolve())
        r = resolve(override, settings)
        if r.source == "hub":
            raise UserError(f"--base {override}: {r.name} is not on this machine either ({r.where}); give a folder.")
        return r.pretrained_id
    if info.base_resolved and Path(info.base_resolved).expanduser().is_dir():
        return str(Path(info.base_resolved).expanduser().resolve())
    name = info.base_name or info.base_resolved
    if not name:
        raise UserError(
            f"{info.path / 'run.json'} does not say which base model the run fine-tuned; pass --base DIR "
            "(the model folder training started from)."
        )
    try:
        r = resolve(name, settings)
    except UserError as exc:
        raise UserError(
            f"the base model of run {info.path} ({name!r}) cannot be found: {exc} Pass --base DIR to point at it."
        ) from None
    if r.source == "hub":
        hub = r.hub_id or name
        recorded = f" (training loaded it from {info.base_resolved})" if info.base_resolved else ""
        raise UserError(
            f"the base model {name!r}{recorded} is not available locally, and export needs it to merge the adapter. "
            f"Download it (huggingface-cli download {hub} --local-dir DIR) and pass --base DIR, "
            f"or put it under VMETA_MODELS_DIR as {hub.split('/')[-1]}."
        )
    return r.pretrained_id


def _base_dtype(folder: str) -> str:
    cfg_path = Path(folder) / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "float32"
    value = cfg.get("dtype") or cfg.get("torch_dtype") or (cfg.get("text_config") or {}).get("dtype")
    return value if value in ("bfloat16", "float16", "float32") else "float32"


_FLOAT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_ST_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def planned_tensor_sizes(folder: Path, dtype_name: str) -> dict[str, int]:
    """Tensor name -> bytes in the export dtype, read from the safetensors headers of ``folder`` (no loading).

    Empty when the folder holds no safetensors (then the check runs after loading instead).
    """
    from vmeta.export.shard import read_safetensors_header

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set((json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}).values()))
    else:
        files = [p.name for p in folder.glob("*.safetensors")]
    out: dict[str, int] = {}
    for name in files:
        try:
            header = read_safetensors_header(folder / name)
        except (OSError, ValueError):
            return {}
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            numel = 1
            for d in meta["shape"]:
                numel *= int(d)
            floating = meta["dtype"] in ("F64", "F32", "F16", "BF16")
            out[key] = numel * (_FLOAT_BYTES[dtype_name] if floating else _ST_BYTES.get(meta["dtype"], 4))
    return out


def _processor_dir(info: RunInfo, base_dir: str) -> Path:
    for cand in (info.path, info.model_dir, Path(base_dir)):
        if cand is not None and any((cand / m).is_file() for m in _PROCESSOR_MARKERS):
            return cand
    raise UserError(
        f"no processor files ({', '.join(_PROCESSOR_MARKERS)}) in {info.path} nor in the base model {base_dir}."
    )


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
    dtype_name = DTYPES[cfg.dtype] or _base_dtype(base_dir or str(info.model_dir))
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

    processor_src = _processor_dir(info, base_dir or str(info.model_dir))
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
        marker = _base_marker(info, base_dir)
        if marker is not None:  # e.g. the tiny model's "not a real model" note (and its frame settings)
            shutil.copyfile(marker, staging / "vmeta.json")
        report = verify_shards(staging, cfg.shard_bytes)
        if not report.ok:
            raise RuntimeError("the written shards are inconsistent: " + "; ".join(report.problems))
        base_label = info.base_name or base_dir or str(info.model_dir)
        manifest = _manifest(info, cfg, base_label, base_dir, dtype_name, report, merged_from)
        kind = _read_json(marker).get("kind") if marker is not None else None
        manifest["not_a_real_model"] = kind in ("tiny-random", "tiny-demo")
        if kind == "tiny-demo":
            manifest["demo_model"] = True  # trained on the sample labels by `vmeta models build-demo`
        from vmeta.jsonio import write_json

        write_json(staging / EXPORT_MANIFEST, manifest)
        results = _eval_results(info)
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


def _base_marker(info: RunInfo, base_dir: str | None) -> Path | None:
    """The base model's vmeta.json (written by `vmeta models build-tiny`), if the base folder is known."""
    for folder in (base_dir, info.base_resolved):
        if folder and (Path(folder) / "vmeta.json").is_file():
            return Path(folder) / "vmeta.json"
    return None


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
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("vmeta", "torch", "transformers", "peft", "safetensors"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


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
        "dtype": dtype,
        "shard_size": cfg.shard_size,
        "shard_size_bytes": cfg.shard_bytes,
        "shards": report.to_dict(),
        "versions": _versions(),
    }


def _eval_results(info: RunInfo) -> dict[str, Any] | None:
    for p in (info.path / "eval" / "results.json", info.path / "results.json"):
        if p.is_file():
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return None
            return data if isinstance(data, dict) and "metrics" in data else None
    return None


_CARD_METRICS = {"bertscore": "BERTScore F1", "bleu4": "BLEU-4", "rougeL": "ROUGE-L"}


def _fmt_metric(entry: Any) -> str:
    if isinstance(entry, int | float):
        return f"{entry:.2f}"
    if not isinstance(entry, dict) or entry.get("mean") is None:
        return "–"
    lo, hi = entry.get("ci95") or [None, None]
    return f"{entry['mean']:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else "")


def _settings_rows(info: RunInfo) -> list[tuple[str, Any]]:
    """The training settings worth a line in the card (the method's own group only)."""
    keys: list[tuple[str, tuple[str, ...]]] = [
        ("epochs", ("training.epochs",)),
        ("max steps", ("training.max_steps",)),
        ("learning rate", ("training.lr", "training.learning_rate")),
        ("batch size per device", ("training.batch_size",)),
        ("gradient accumulation", ("training.grad_accum",)),
        ("scheduler", ("training.scheduler",)),
        ("precision", ("training.precision",)),
        ("seed", ("training.seed",)),
    ]
    if info.is_adapter:
        keys += [
            ("LoRA rank", ("lora.r",)),
            ("LoRA alpha", ("lora.alpha",)),
            ("LoRA dropout", ("lora.dropout",)),
            ("LoRA targets", ("lora.target_modules",)),
        ]
        if info.method == "loraplus":
            keys.append(("LoRA+ learning-rate ratio", ("lora.loraplus_lr_ratio",)))
    elif info.method == "freeze":
        keys += [
            ("trainable decoder layers", ("freeze.trainable_layers",)),
            ("extra modules", ("freeze.extra_modules",)),
        ]
    elif info.method == "galore":
        keys += [("GaLore rank", ("galore.rank",)), ("GaLore update interval", ("galore.update_proj_gap",)),
                 ("GaLore scale", ("galore.scale",))]  # fmt: skip
    keys += [("vision tower trained", ("train_vision_tower",)), ("merger trained", ("train_merger",))]
    rows = []
    for label, ks in keys:
        v = next((x for k in ks if (x := runs.lookup(info.config, k)) is not None), None)
        if v is not None:
            rows.append((label, v))
    for label, key in (("trainable parameters", "trainable_parameters"), ("steps", "global_step"),
                       ("samples/s", "samples_per_s")):  # fmt: skip
        v = info.manifest.get(key)
        if v is not None:
            rows.append((label, f"{v:,}" if isinstance(v, int) else v))
    return rows


def model_card(info: RunInfo, manifest: dict[str, Any], results: dict[str, Any] | None, out: Path) -> str:
    """README.md of the export: what it is, how it was trained, its scores, how to load and serve it."""
    base = manifest["base_model"]
    tiny = bool(manifest.get("not_a_real_model"))
    hub_base = manifest.get("base_model_hub_id") or (
        base if isinstance(base, str) and "/" in base and not Path(base).exists() else None
    )
    front = ["---", "library_name: transformers", "pipeline_tag: video-text-to-text"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    front += ["tags:", "  - vmeta", "  - video-metaphor", f"  - {info.method}", "---", ""]
    name = out.name
    lines = [*front, f"# {name}", ""]
    if manifest.get("demo_model"):
        lines += [
            "> **Demo test model**: exported from a run on vmeta's demo Qwen2-VL (the tiny architecture trained on "
            "a few sample labels, which it recites). Not a real model.",
            "",
        ]
    elif tiny:
        lines += ["> **Random-weight test model**: exported from a run on vmeta's tiny Qwen2-VL. Not a real model.", ""]
    lines += [
        f"A video LLM fine-tuned with **{info.method}** by vmeta to explain the metaphor of a "
        "short video (thesis template: content, core concept, origin, reason, emotion), merged into one "
        "self-contained transformers checkpoint.",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | `{base}`" + (f" ({hub_base})" if hub_base and hub_base != base else "") + " |",
        f"| fine-tuning method | {info.method} ({'adapter merged into the base' if manifest['merged_from'] == 'adapter' else 'full weights'}) |",
        f"| training run | `{info.name}` |",
        f"| dataset hash | `{manifest.get('dataset_hash') or 'not recorded'}` |",
        f"| prompt hash | `{manifest.get('prompt_hash') or 'not recorded'}` |",
        f"| dtype | {manifest['dtype']} |",
        f"| weights | {len(manifest['shards']['files'])} safetensors file(s), each ≤ {manifest['shard_size']} |",
        f"| exported | {manifest['exported_at']} with transformers {manifest['versions'].get('transformers')}, peft {manifest['versions'].get('peft')} |",
        "",
    ]
    rows = _settings_rows(info)
    if rows:
        lines += ["## Training settings", "", "| setting | value |", "| --- | --- |"]
        lines += [f"| {k} | `{v}` |" for k, v in rows]
        lines.append("")
    if results:
        metrics = results.get("metrics", {})
        cols = [c for c in _CARD_METRICS if c in metrics]
        if cols:
            split = results.get("split") or "test"
            lines += [f"## Evaluation ({split} split)", ""]
            lines.append("| " + " | ".join(_CARD_METRICS[c] for c in cols) + " |")
            lines.append("|" + "|".join("---:" for _ in cols) + "|")
            lines.append("| " + " | ".join(_fmt_metric(metrics[c]) for c in cols) + " |")
            lines += ["", "Mean over the samples ×100 [95% bootstrap CI], computed by `vmeta eval`.", ""]
    else:
        lines += ["## Evaluation", "", "No evaluation was recorded in the run folder (`eval/results.json`).", ""]
    fr = manifest.get("frames")
    if fr:
        lines += ["## Video frames", "", f"Frames were sampled with `{json.dumps(fr, ensure_ascii=False)}`; use the "
                  "same settings at inference.", ""]  # fmt: skip
    path = str(out)
    lines += [
        "## Use it",
        "",
        "With transformers:",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'model = AutoModelForImageTextToText.from_pretrained("{path}", dtype="auto", device_map="auto")',
        f'processor = AutoProcessor.from_pretrained("{path}")',
        'messages = [{"role": "user", "content": [{"type": "video", "path": "clip.mp4"},',
        '                                         {"type": "text", "text": "请解释这个视频中的隐喻。"}]}]',
        "inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,",
        '                                       return_dict=True, return_tensors="pt").to(model.device)',
        "out = model.generate(**inputs, max_new_tokens=256)",
        'print(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])',
        "```",
        "",
        "With vmeta (CLI and web app):",
        "",
        "```bash",
        f"vmeta predict --model {path} --data dataset --split test --out predictions.jsonl",
        f"vmeta serve --model {path}",
        "```",
        "",
        "With vLLM (OpenAI-compatible server; `--tensor-parallel-size N` splits the model over N GPUs), with the "
        "vmeta web app in front of it:",
        "",
        "```bash",
        f"vllm serve {path} --served-model-name {name} --port 8001 --limit-mm-per-prompt '{{\"video\": 1}}'",
        f"vmeta serve --engine remote --remote-url http://127.0.0.1:8001/v1 --model {name}",
        "```",
        "",
    ]
    return "\n".join(lines)


__all__ = [
    "ADAPTER_METHODS",
    "EXPORT_MANIFEST",
    "FULL_METHODS",
    "ExportConfig",
    "ExportSummary",
    "RunInfo",
    "export_run",
    "locate_base",
    "model_card",
    "read_run",
]
