"""Writing what a run trained: the adapter (PiSSA converted to a plain LoRA on the original base) or the full
weights, atomically, gathered first where the model is sharded across processes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from vmeta.jsonio import read_json, write_json
from vmeta.train.config import TrainConfig
from vmeta.train.methods import METHODS


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
    cfg_file = folder / "adapter_config.json"
    data = read_json(cfg_file)
    data["init_lora_weights"] = True
    write_json(cfg_file, data)


__all__ = ["save_final", "sharded_state_dict"]
