"""The CPU runtime of `vmeta serve`: a model's linear layers run in OpenVINO with int8 weights.

Nearly all of a Qwen2-VL answer's compute is matrix products (the vision tower's and the language model's linear
layers). OpenVINO's CPU plugin multiplies int8 weights with activations it quantises to int8 on the fly
(``DYNAMIC_QUANTIZATION_GROUP_SIZE``): about twice the throughput of PyTorch's bf16 GEMM on AVX512 cores, and
half the bytes read per decoded token. :func:`convert_linears` swaps each ``nn.Linear`` of a loaded model for an
:class:`OVLinear` that holds the compiled OpenVINO product; everything else stays in PyTorch.

Why layer by layer rather than exporting the whole model (optimum-intel / openvino-genai): the rest of the
serving path stays as it is — the prompt cache and reading ahead (:mod:`vmeta.models.prompt_cache`), the
variant's own frames fed as the same tensors the HF processor makes, M-RoPE positions, and LoRA adapters switched
per request (peft wraps an ``OVLinear`` like any ``nn.Linear``: its adapters run in PyTorch beside the int8
base). It also needs no second transformers version: optimum-intel's Qwen2-VL export requires transformers <= 5.0.

Weights are quantised per output channel, symmetric (``round(w / s)``, ``s = max|w| / 127``), as NNCF's INT8_SYM
mode does; the result is a plain OpenVINO graph (int8 constant -> convert -> multiply by the scales -> MatMul),
which the CPU plugin recognises as compressed weights. No kernel here: the arithmetic is OpenVINO's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

DYNAMIC_GROUP = 32  # activations quantised per group of 32 values (OpenVINO's CPU default for compressed weights)


def unavailable() -> str | None:
    """Why the OpenVINO runtime cannot be used here (None: it can)."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"openvino is not installed ({exc.name}); pip install openvino"
    return None


def version() -> str:
    import openvino as ov

    return ov.__version__.split("-")[0]


def quantize_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8: -> (int8 weights, float32 scales of shape (out, 1))."""
    w = np.asarray(weight, dtype=np.float32)
    scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


class OVLinear(torch.nn.Linear):
    """``y = x @ W.T + b`` computed by OpenVINO from int8 ``W``. Subclasses ``nn.Linear`` so that peft injects LoRA
    adapters around it as around the original; ``weight`` is an empty placeholder that only carries the dtype
    peft gives the adapter weights (the real weights live in OpenVINO)."""

    def __init__(self, linear: torch.nn.Linear, core: Any, *, precision: str, dynamic_group: int) -> None:
        import openvino as ov
        from openvino import opset13 as ops

        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.nn.Parameter(torch.empty(0, dtype=linear.weight.dtype), requires_grad=False)
        self.register_parameter("bias", None)
        q, scale = quantize_int8(linear.weight.detach().float().numpy())
        x = ops.parameter([-1, self.in_features], ov.Type.f32)
        w = ops.multiply(ops.convert(ops.constant(q), ov.Type.f32), ops.constant(scale))
        y = ops.matmul(x, w, False, True)
        if linear.bias is not None:
            y = ops.add(y, ops.constant(linear.bias.detach().float().numpy()))
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": str(dynamic_group),
            "NUM_STREAMS": "1",
        }
        self._request = core.compile_model(ov.Model([y], [x]), "CPU", config).create_infer_request()
        self.int8_bytes = q.nbytes + scale.nbytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        out = self._request.infer({0: flat.numpy()}, share_inputs=True, share_outputs=False)[0]
        return torch.from_numpy(out).reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, openvino int8"


@dataclass
class Conversion:
    layers: int
    seconds: float
    bytes_before: int  # the linear weights in the model's dtype
    bytes_after: int  # int8 weights + scales
    precision: str  # OpenVINO's inference precision for the rest of each product
    dynamic_group: int  # 0: activations not quantised

    def describe(self) -> str:
        acts = f"int8 activations (groups of {self.dynamic_group})" if self.dynamic_group else "float activations"
        return (
            f"OpenVINO {version()}: {self.layers} linear layers with int8 weights and {acts}, {self.precision} "
            f"elsewhere ({self.bytes_before / 2**30:.2f} -> {self.bytes_after / 2**30:.2f} GiB, {self.seconds:.0f} s)"
        )


def convert_linears(
    model: torch.nn.Module, *, precision: str = "f32", dynamic_group: int = DYNAMIC_GROUP
) -> Conversion:
    """Replace every ``nn.Linear`` of `model` (LoRA adapters' own layers excepted) by an :class:`OVLinear`, in place;
    the PyTorch weights are freed as it goes. `precision`: OpenVINO's inference precision ("bf16" where the CPU
    computes it natively, else "f32"); `dynamic_group` 0 keeps activations in floating point."""
    import openvino as ov

    core = ov.Core()
    t0 = time.perf_counter()
    layers = before = after = 0
    for name, parent in list(model.named_modules()):
        if "lora_" in name:  # adapter weights stay in PyTorch: they are switched per request
            continue
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child_name.startswith("lora_"):
                continue
            before += child.weight.numel() * child.weight.element_size()
            ov_linear = OVLinear(child, core, precision=precision, dynamic_group=dynamic_group)
            after += ov_linear.int8_bytes
            setattr(parent, child_name, ov_linear)
            layers += 1
    return Conversion(layers, time.perf_counter() - t0, before, after, precision, dynamic_group)


__all__ = ["DYNAMIC_GROUP", "Conversion", "OVLinear", "convert_linears", "quantize_int8", "unavailable", "version"]
