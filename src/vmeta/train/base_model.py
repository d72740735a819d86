"""The model a run trains, loaded in its training precision (QLoRA through bitsandbytes on CUDA), and what it
is shown: the frame settings (the family's defaults plus data.frames) and the instruction."""

from __future__ import annotations

from typing import Any

from vmeta.errors import UserError
from vmeta.train.config import TrainConfig


def load_base(cfg: TrainConfig, settings: Any):  # type: ignore[no-untyped-def]
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
    from vmeta.models.resolution import resolve

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


__all__ = ["frame_settings", "load_base", "prompt_text"]
