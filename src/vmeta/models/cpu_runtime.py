"""How a chat server runs its model on a CPU: which runtime (int8 — PyTorch's int8 operators, openvino, or torch
with full weights), chosen from the setting and the device, and the model converted in place for it."""

from __future__ import annotations

import logging
from typing import Any

from vmeta.errors import UserError

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "int8", "openvino", "torch")
AUTO_INT8_MIN_PARAMETERS = 300_000_000  # "auto" keeps smaller models in full precision


def pick_runtime(asked: str, device: str) -> str:
    """int8 | openvino | torch for a device. The int8 runtimes are for CPUs; "auto" is int8 there, torch on GPUs."""
    asked = (asked or "auto").strip().lower()
    if asked not in RUNTIMES:
        raise UserError(f"runtime {asked!r} is not one of: {', '.join(RUNTIMES)}.")
    if not device.startswith("cpu"):
        if asked in ("int8", "openvino"):
            raise UserError(f"the {asked} runtime runs on CPUs; this server uses {device}. Use --runtime torch.")
        return "torch"
    if asked == "openvino":
        from vmeta.models.openvino_linear import unavailable

        why = unavailable()
        if why is not None:
            raise UserError(f"--runtime openvino: {why}.")
    return "int8" if asked == "auto" else asked


def accelerate(model: Any, runtime: str, dtype: Any, *, auto: bool, compile_matmuls: bool) -> tuple[str, str | None]:
    """Convert `model`'s linear layers for `runtime`, in place -> (the runtime used, a sentence for the start line;
    None when nothing changed). Chosen automatically (`auto`), int8 is skipped for models under
    ``AUTO_INT8_MIN_PARAMETERS`` (test and demo models), where it saves no time and rounds away what they learnt."""
    if runtime != "torch" and auto:
        n = sum(p.numel() for p in model.parameters())
        if n < AUTO_INT8_MIN_PARAMETERS:
            return "torch", f"PyTorch, full weights ({n / 1e6:.0f}M parameters: too small for int8 to pay)"
    if runtime == "int8":
        from vmeta.models.int8_linear import compile_int8_matmul, convert_linears

        conversion = convert_linears(model)
        if compile_matmuls:
            conversion.runtime += "; " + compile_int8_matmul(dtype)
    elif runtime == "openvino":
        import torch

        from vmeta.models.openvino_linear import convert_linears as convert_ov

        conversion = convert_ov(model, precision="bf16" if dtype == torch.bfloat16 else "f32")
    else:
        return runtime, None
    log.info("engine: %s", conversion.describe())
    return runtime, conversion.describe()


__all__ = ["AUTO_INT8_MIN_PARAMETERS", "RUNTIMES", "accelerate", "pick_runtime"]
