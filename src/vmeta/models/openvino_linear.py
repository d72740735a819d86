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

from typing import Any

import torch

from vmeta.models.int8_linear import Conversion, quantize_int8, replace_linears

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
        q, scale = quantize_int8(linear.weight)  # the same int8 weights as the PyTorch runtime's
        q, scale = q.numpy(), scale[:, None].numpy()
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


def convert_linears(
    model: torch.nn.Module, *, precision: str = "f32", dynamic_group: int = DYNAMIC_GROUP
) -> Conversion:
    """Every ``nn.Linear`` of `model` becomes an :class:`OVLinear` (see int8_linear.replace_linears). `precision`:
    OpenVINO's inference precision ("bf16" where the CPU computes it natively, else "f32"); `dynamic_group` 0
    keeps activations in floating point."""
    import openvino as ov

    core = ov.Core()
    conversion = replace_linears(
        model, lambda linear: OVLinear(linear, core, precision=precision, dynamic_group=dynamic_group)
    )
    acts = f"int8 activations (groups of {dynamic_group})" if dynamic_group else "float activations"
    conversion.runtime = f"OpenVINO {version()}: int8 weights and {acts}, {precision} elsewhere"
    return conversion


__all__ = ["DYNAMIC_GROUP", "OVLinear", "convert_linears", "unavailable", "version"]
