"""The default CPU runtime of `vmeta serve`: linear layers with int8 weights, computed by PyTorch's int8 operators.

Nearly all of a Qwen2-VL answer's compute is in its linear layers. PyTorch ships two int8 CPU operators — the ones
torchao's int8 configurations call — and each wins one half of a chat answer (measured on the 2-core AVX512
machine, Qwen2-VL-2B shapes; ``bench/chat_cpu.py`` for whole answers):

- reading a prompt (many rows at once): ``torch._int_mm`` (int8 x int8 -> int32 on VNNI) with the activations
  quantised per row on the fly: 1.25-1.5x the throughput of the bf16 GEMM;
- writing (one row per token): ``aten._weight_int8pack_mm`` (int8 weights, bf16 activations): 2-3.7x faster
  than bf16, as it reads half the bytes; 4x faster than float32 on a CPU without native bf16 (Ice Lake).

torchao's configurations pick one operator for every shape; :class:`Int8Linear` picks per call by the number of
rows, which is why it is written here (a dozen lines around the two operators, no kernel of our own). Weights are
quantised per output channel, symmetric (``round(w / s)``, ``s = max|w| / 127``). ``Int8Linear`` subclasses
``nn.Linear`` so peft wraps LoRA adapters around it like around the original; the adapters stay in full precision
and still switch per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

ROWS_FOR_INT8_MATMUL = 16  # torch._int_mm needs more than 16 rows; fewer go to the weight-only operator


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8: -> (int8 weights (out, in), float32 scales (out,))."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    return torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


def convertible(linear: torch.nn.Linear) -> bool:
    """The shapes both operators take (in_features a multiple of 32, out_features of 8); others stay as they are."""
    return linear.in_features % 32 == 0 and linear.out_features % 8 == 0


def int8_matmul(
    flat: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``flat @ W.T + b`` for many rows: activations quantised per row, ``torch._int_mm``, rescaled. Eager, the
    passes over the activations around the matmul cost about 40% of a vision-tower layer; compiled
    (:func:`compile_int8_matmul`) they fuse into two."""
    row_max = flat.abs().amax(dim=1, keepdim=True).float().clamp_min(1e-12)
    xq = (flat * (127.0 / row_max)).round().clamp(-127, 127).to(torch.int8)
    out = (torch._int_mm(xq, qweight.t()).float() * (row_max / 127.0) * scale).to(flat.dtype)
    return out if bias is None else out + bias.to(out.dtype)


_MATMUL: list[Callable[..., torch.Tensor]] = [int8_matmul]  # the one in use: int8_matmul or its compiled form


def compile_int8_matmul(dtype: torch.dtype) -> str:
    """Use :func:`int8_matmul` compiled by ``torch.compile`` (Inductor's C++ kernels) from now on, compiled now
    for `dtype` activations with and without bias, so no answer waits for it; shapes are dynamic, so one
    compilation serves every layer (a second call for the same dtype costs nothing). -> a sentence for the start
    line. Without a working C++ compiler it stays eager and says why. Measured on 2 cores (Qwen2-VL-2B vision
    tower, a 15 s clip at 256x256): 13.2 -> 9.7 s."""
    t0 = time.perf_counter()
    compiled = _MATMUL[0] if _MATMUL[0] is not int8_matmul else torch.compile(int8_matmul, dynamic=True)
    # as answers call it: weights made outside inference mode (at load), activations inside; sizes all different
    w, s = quantize_int8(torch.randn(80, 96))  # so that none is assumed equal to another
    try:
        for bias in (None, torch.zeros(80, dtype=dtype)):
            with torch.inference_mode():
                x = torch.randn(48, 96, dtype=dtype)
                torch.testing.assert_close(compiled(x, w, s, bias), int8_matmul(x, w, s, bias), atol=1e-3, rtol=1e-2)
    except Exception as exc:  # any failure to compile leaves the eager operator working
        return f"int8 matmuls eager (torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    _MATMUL[0] = compiled
    return f"int8 matmuls compiled ({time.perf_counter() - t0:.0f} s)"


class Int8Linear(torch.nn.Linear):
    """``y = x @ W.T + b`` from int8 ``W``. ``weight`` is an empty placeholder carrying only the dtype (peft gives
    the adapter weights that dtype); the int8 weights and their scales are buffers."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        torch.nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        dtype = linear.weight.dtype
        self.weight = torch.nn.Parameter(torch.empty(0, dtype=dtype, device=linear.weight.device), requires_grad=False)
        q, scale = quantize_int8(linear.weight)
        self.register_buffer("qweight", q)  # (out, in); torch._int_mm takes its transposed view as fast
        self.register_buffer("scale", scale)
        self.register_buffer("scale_bf16", scale.to(torch.bfloat16), persistent=False)
        self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.int8_bytes = q.numel() + scale.numel() * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] > ROWS_FOR_INT8_MATMUL:
            bias = None if self.bias is None else self.bias.detach()  # a plain tensor: compiled, its size is dynamic
            return _MATMUL[0](flat, self.qweight, self.scale, bias).reshape(*shape[:-1], self.out_features)
        else:
            # bf16 activations on every CPU: with float32 ones the operator takes a slow path (17x slower on an
            # AVX512 CPU without native bf16: 8.4 vs 0.49 ms for 1536x8960), and the rounding is below int8's
            out = torch.ops.aten._weight_int8pack_mm(
                flat.to(torch.bfloat16).contiguous(), self.qweight, self.scale_bf16
            ).to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


@dataclass
class Conversion:
    layers: int
    kept: int  # linear layers whose shapes the int8 operators do not take
    seconds: float
    bytes_before: int
    bytes_after: int
    runtime: str = "PyTorch int8: int8 weights (int8 matmuls for prompts, int8 weights for writing)"

    def describe(self) -> str:
        return (
            f"{self.runtime}; {self.layers} linear layers, {self.bytes_before / 2**30:.2f} -> "
            f"{self.bytes_after / 2**30:.2f} GiB, {self.seconds:.0f} s"
            + (f"; {self.kept} left as they were (shapes)" if self.kept else "")
        )


def replace_linears(model: torch.nn.Module, make: Callable[[torch.nn.Linear], torch.nn.Module | None]) -> Conversion:
    """Replace every ``nn.Linear`` of `model` (LoRA adapters' own layers excepted: they are switched per request)
    by ``make(linear)`` — an int8 layer with an ``int8_bytes`` attribute, or None to keep it — in place; each
    original weight is freed as it goes."""
    t0 = time.perf_counter()
    layers = kept = before = after = 0
    for name, parent in list(model.named_modules()):
        if "lora_" in name:
            continue
        for child_name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child_name.startswith("lora_"):
                continue
            new = make(child)
            if new is None:
                kept += 1
                continue
            before += child.weight.numel() * child.weight.element_size()
            after += new.int8_bytes
            setattr(parent, child_name, new)
            layers += 1
    return Conversion(layers, kept, time.perf_counter() - t0, before, after)


def convert_linears(model: torch.nn.Module) -> Conversion:
    """Every ``nn.Linear`` whose shape the operators take becomes an :class:`Int8Linear` (see replace_linears)."""
    return replace_linears(model, lambda linear: Int8Linear(linear) if convertible(linear) else None)


__all__ = [
    "ROWS_FOR_INT8_MATMUL",
    "Conversion",
    "Int8Linear",
    "compile_int8_matmul",
    "convert_linears",
    "convertible",
    "int8_matmul",
    "quantize_int8",
    "replace_linears",
]
