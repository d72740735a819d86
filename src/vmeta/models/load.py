"""Load a registered model (or a hub id, or a local folder) with its processor, optionally with a PEFT adapter.

``load_model(name_or_path, settings=...)`` returns a :class:`LoadedModel` (model in eval mode, processor, spec,
device, dtype, where it came from). Choices:

- **device / dtype**: CUDA when available, in bfloat16 (float16 on GPUs without bf16) with PyTorch's SDPA
  attention; otherwise CPU in float32 — or, for serving (:func:`serving_dtype`), bfloat16 on CPUs that compute
  it natively (AVX512-BF16 / AMX). Both can be forced (``device="cpu"``, ``dtype="float32"``).
- **class**: the spec's transformers class (Qwen2-VL / Qwen2.5-VL / InternVL ``-hf``), ``AutoModelForCausalLM``
  with ``trust_remote_code`` for VideoLLaMA3; ``AutoModelForImageTextToText`` when a class is missing from the
  installed transformers.
- **offline**: weights that are not on disk are only fetched when the Hub may be used; otherwise one
  :class:`UserError` names the model, its hub id and how to point at a local copy.
- **adapter**: a PEFT adapter folder (``adapter_config.json``) applied on top; :func:`resolve_run` turns a
  run folder into (base model, adapter folder).
- **cache**: loaded models are kept in an in-process LRU (size 1 by default) keyed by what was loaded, so a
  prediction loop or a server loads each model once; :func:`clear_model_cache` frees it.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta import runs
from vmeta.config import Settings, get_settings
from vmeta.errors import UserError
from vmeta.models.registry import ModelSpec
from vmeta.models.resolution import ResolvedModel, resolve

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


@dataclass
class LoadedModel:
    """A model ready for :func:`vmeta.models.generate.generate_stream`."""

    model: Any
    processor: Any
    spec: ModelSpec
    device: str
    dtype: Any  # torch.dtype
    source: str  # "local" | "hf-cache" | "hub" | "build"
    pretrained_id: str  # the folder or hub id passed to from_pretrained
    name: str  # the spec's name (registered name, hub id or folder name)
    adapter: str | None = None  # adapter folder applied on top, if any
    resolved: ResolvedModel | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one generate() at a time

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def describe(self) -> dict[str, Any]:
        """What a run/prediction file records about the model."""
        return {
            "model": self.name,
            "family": self.family,
            "source": self.source,
            "pretrained_id": self.pretrained_id,
            "hub_id": self.spec.hub_id,
            "adapter": self.adapter,
            "device": self.device,
            "dtype": self.dtype_name,
            "model_class": type(self.model).__name__,
        }


# ---------------------------------------------------------------------------------------------------------------
# Device and dtype


def pick_device(device: str | None = None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu.")
    if device.startswith("mps") and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device {device!r} was asked for but MPS is not available here; use --device cpu.")
    return device


def native_bf16_cpu() -> str | None:
    """The CPU feature that makes bfloat16 matmuls fast here ("amx" / "avx512_bf16"), or None.

    Without one, PyTorch emulates bf16 on the CPU and it is slower than float32; with one, a Qwen2-VL-2B prompt
    is read ~2.3x faster than in float32 (bench/chat_cpu.py)."""
    import torch.cpu

    for name, probe in (("amx", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported")):
        check = getattr(torch.cpu, probe, None)  # private, but the only place PyTorch says what the CPU has
        if check is not None and check():
            return name
    return None


def serving_dtype(dtype: Any, device: str) -> tuple[Any, str]:
    """The dtype a chat server loads its model in, and why (a sentence printed at start).

    Unlike :func:`pick_dtype` (prediction and training keep float32 on CPUs, so scores are the same on every
    machine), a server on a CPU with native bf16 uses bfloat16: half the memory and twice the speed."""
    import torch

    if dtype not in (None, "", "auto"):
        return pick_dtype(dtype, device), "as asked (--dtype)"
    if not device.startswith("cpu"):
        dt = pick_dtype(None, device)
        return dt, f"the default on {device}"
    feature = native_bf16_cpu()
    if feature:
        return torch.bfloat16, f"this CPU computes bfloat16 natively ({feature})"
    return torch.float32, "this CPU has no native bfloat16 (AVX512-BF16 / AMX), where float32 is faster"


def pick_dtype(dtype: Any, device: str):  # type: ignore[no-untyped-def]
    """``None``/"auto": bfloat16 on CUDA (float16 where bf16 is unsupported), float32 elsewhere."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    key = str(dtype).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise UserError(f"dtype {dtype!r} is not one of: auto, float32, bfloat16, float16.")
    return getattr(torch, _DTYPES[key])


# ---------------------------------------------------------------------------------------------------------------
# Run folders and adapters


def find_adapter_dir(folder: Path) -> Path | None:
    """The folder holding ``adapter_config.json``: the folder itself or its ``adapter/`` subfolder."""
    for cand in (folder, folder / "adapter"):
        if (cand / "adapter_config.json").is_file():
            return cand
    return None


def resolve_run(run_dir: str | Path) -> tuple[str, Path | None]:
    """A run folder (or a bare adapter folder) -> (base model name or path, adapter folder or None).

    Reads the base model from the run's manifest (``run.json``, :mod:`vmeta.runs`) when present, else the adapter's
    ``base_model_name_or_path``. A folder holding a full model (config.json + weights, e.g. a merged export)
    is returned as the model itself, without adapter.
    """
    folder = Path(run_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"run folder {folder} does not exist (or is not a folder).")
    adapter = find_adapter_dir(folder)
    manifest = runs.read_run(folder)
    base = manifest.base_name if manifest is not None else None
    if adapter is None:
        if (folder / "config.json").is_file():
            return str(folder.resolve()), None
        raise UserError(
            f"{folder}: no adapter_config.json (nor adapter/adapter_config.json) and no model config.json; "
            "point --run at a training run folder or --model at a model folder."
        )
    if not base:
        base = runs.read_json_object(adapter / "adapter_config.json").get("base_model_name_or_path")
    if not base:
        raise UserError(
            f"{adapter / 'adapter_config.json'}: does not say which base model it belongs to "
            "(base_model_name_or_path); pass --model NAME together with --adapter DIR."
        )
    return str(base), adapter.resolve()


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _hub_offline(settings: Settings) -> bool:
    if settings.hf_offline:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover
        return False


def _not_local_message(resolved: ResolvedModel, why: str) -> str:
    hub = resolved.hub_id or "(no hub id)"
    return (
        f"model {resolved.name!r} ({hub}) is not on this machine and {why}. Download it where you have network "
        f"(huggingface-cli download {hub} --local-dir DIR), then pass --model DIR, or put it under "
        f"VMETA_MODELS_DIR as {resolved.name} or {hub.split('/')[-1]}."
    )


def _model_class(spec: ModelSpec):  # type: ignore[no-untyped-def]
    import transformers

    cls = getattr(transformers, spec.model_class, None)
    if cls is None:
        if spec.family == "videollama3":
            return transformers.AutoModelForCausalLM
        return transformers.AutoModelForImageTextToText
    return cls


def _processor_class(spec: ModelSpec):  # type: ignore[no-untyped-def]
    import transformers

    if spec.trust_remote_code:
        return transformers.AutoProcessor
    return getattr(transformers, spec.processor_class, None) or transformers.AutoProcessor


def _load_fresh(resolved: ResolvedModel, device: str, dtype, adapter: Path | None, settings: Settings) -> LoadedModel:  # type: ignore[no-untyped-def]
    import torch

    spec = resolved.spec
    offline = _hub_offline(settings)
    if resolved.source == "hub" and offline:
        raise UserError(_not_local_message(resolved, "the Hub is switched off (HF_HUB_OFFLINE / VMETA_HF_OFFLINE)"))
    pretrained = resolved.pretrained_id
    local_only = resolved.source != "hub"
    common: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code, "local_files_only": local_only}
    model_kwargs: dict[str, Any] = {"dtype": dtype}
    if device.startswith("cuda"):
        model_kwargs["attn_implementation"] = "sdpa"
        model_kwargs["device_map"] = {"": device}
    try:
        from transformers.utils import logging as hf_logging

        processor = _processor_class(spec).from_pretrained(pretrained, **common)
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = _model_class(spec).from_pretrained(pretrained, **common, **model_kwargs)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
    except UserError:
        raise
    except (OSError, ValueError, ConnectionError) as exc:
        text = str(exc)
        if resolved.source == "hub" and any(
            k in text.lower() for k in ("connect", "offline", "resolve", "internet", "network", "timed out")
        ):
            raise UserError(_not_local_message(resolved, f"could not be downloaded ({text.splitlines()[0]})")) from None
        raise UserError(
            f"model {resolved.name!r} from {pretrained} could not be loaded: {text.splitlines()[0]}"
        ) from None
    if not device.startswith("cuda"):
        model = model.to(device)
    if adapter is not None:
        model = _apply_adapter(model, adapter)
    model.eval()
    if getattr(processor, "tokenizer", None) is not None and processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return LoadedModel(
        model=model,
        processor=processor,
        spec=spec,
        device=device,
        dtype=dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype)),
        source=resolved.source,
        pretrained_id=pretrained,
        name=spec.name,
        adapter=str(adapter) if adapter is not None else None,
        resolved=resolved,
    )


def _apply_adapter(model, adapter: Path):  # type: ignore[no-untyped-def]
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a train extra
        raise UserError("loading an adapter needs peft: pip install 'vmeta[train]'.") from None
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"{adapter}: no adapter_config.json, so this is not a PEFT adapter folder.")
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except Exception as exc:
        raise UserError(
            f"adapter {adapter} does not fit this base model ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "check that it was trained on the same base model."
        ) from None


# In-process cache: (pretrained_id, device, dtype, adapter) -> LoadedModel, least recently used first.
_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()
_CACHE_LOCK = threading.RLock()
CACHE_SIZE = 1


def clear_model_cache() -> None:
    """Drop every cached model (frees GPU memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    free_memory()


def cached_models() -> list[LoadedModel]:
    with _CACHE_LOCK:
        return list(_CACHE.values())


def free_memory() -> None:
    """Give memory back after dropping a model (CUDA caches too)."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def load_model(
    name_or_path: str | Path | None = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    settings: Settings | None = None,
    adapter: str | Path | None = None,
    run_dir: str | Path | None = None,
    cache: bool = True,
    cache_size: int | None = None,
) -> LoadedModel:
    """Load a model and its processor (see the module docstring). ``run_dir``: a run/adapter folder whose
    base model is loaded with its adapter on top. ``name_or_path`` None: the configured default model."""
    settings = settings or get_settings()
    resolved, adapter_path = plan_load(name_or_path, settings=settings, adapter=adapter, run_dir=run_dir)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    key = (resolved.pretrained_id, dev, str(dt), str(adapter_path) if adapter_path else None)
    size = CACHE_SIZE if cache_size is None else cache_size
    with _CACHE_LOCK:
        if cache and key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        if cache:
            # Make room first, so two big models never sit in memory together.
            while _CACHE and len(_CACHE) >= max(size, 1):
                _CACHE.popitem(last=False)
            free_memory()
        loaded = _load_fresh(resolved, dev, dt, adapter_path, settings)
        if cache and size > 0:
            _CACHE[key] = loaded
        return loaded


def plan_load(
    name_or_path: str | Path | None = None,
    *,
    settings: Settings | None = None,
    adapter: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> tuple[ResolvedModel, Path | None]:
    """What :func:`load_model` would load (the resolved base model and the adapter folder), loading nothing."""
    settings = settings or get_settings()
    if run_dir is not None:
        base, run_adapter = resolve_run(run_dir)
        if adapter is None:
            adapter = run_adapter
        if name_or_path is None:
            name_or_path = base
    if name_or_path is None:
        name_or_path = settings.default_model
    # A bare adapter folder given as the model: load its base model with it.
    as_path = Path(str(name_or_path)).expanduser()
    if adapter is None and as_path.is_dir() and not (as_path / "config.json").is_file() and find_adapter_dir(as_path):
        base, adapter = resolve_run(as_path)
        name_or_path = base
    adapter_path = Path(adapter).expanduser().resolve() if adapter is not None else None
    if adapter_path is not None:
        found = find_adapter_dir(adapter_path)
        if found is None:
            raise UserError(f"{adapter_path}: no adapter_config.json, so this is not a PEFT adapter folder.")
        adapter_path = found
    return resolve(name_or_path, settings), adapter_path


__all__ = [
    "LoadedModel",
    "cached_models",
    "clear_model_cache",
    "find_adapter_dir",
    "load_model",
    "native_bf16_cpu",
    "pick_device",
    "pick_dtype",
    "plan_load",
    "resolve_run",
    "serving_dtype",
]
