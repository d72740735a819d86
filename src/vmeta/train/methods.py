"""The fine-tuning methods as ONE table (DESIGN house rule 1): name -> how to prepare the model, which optimizer,
what it saves (an adapter export merges, or full weights it re-shards). Config validation, export and the CLI read
their names from here: adding a method is one row (and its ``_PREPARE`` kind, if new).

- ``lora`` / ``dora`` / ``rslora`` / ``pissa`` / ``loraplus``: peft LoRA on the language model's linear layers
  (q,k,v,o,gate,up,down of every decoder layer); DoRA, rsLoRA and PiSSA are LoRA options (``use_dora``,
  ``use_rslora``, ``init_lora_weights="pissa_niter_N"``), LoRA+ is an optimizer choice (peft's
  ``create_loraplus_optimizer``).
- ``freeze``: the last N decoder layers trainable (negative N: the first |N|), plus optional extra modules.
- ``galore``: the language model trainable, its target linear weights updated through GaLore's low-rank
  gradient projection (galore-torch, via transformers' ``galore_adamw`` optimizer).
- ``full``: the whole language model trainable.

For every method the vision tower and the merger stay frozen unless ``train_vision_tower`` / ``train_merger``
(LoRA methods put LoRA on the vision tower's linear layers and train the merger fully as ``modules_to_save``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vmeta.errors import UserError

if TYPE_CHECKING:
    from vmeta.train.config import TrainConfig

# Module-name patterns of Qwen2-VL / Qwen2.5-VL in transformers >= 4.52 (model.visual, model.language_model).
VISION_PREFIX = re.compile(r"(^|\.)visual\.")
MERGER_PREFIX = re.compile(r"(^|\.)visual\.merger(\.|$)")
LLM_LAYER = re.compile(r"(^|\.)language_model\.layers\.(\d+)\.")
VISION_LINEAR = ("qkv", "proj", "fc1", "fc2")  # Qwen2-VL vision blocks (attn.qkv, attn.proj, mlp.fc1, mlp.fc2)


def is_vision_tower(name: str) -> bool:
    """A parameter/module of the vision encoder proper (not the merger)."""
    return bool(VISION_PREFIX.search(name)) and not MERGER_PREFIX.search(name)


def is_merger(name: str) -> bool:
    return bool(MERGER_PREFIX.search(name))


def is_language_model(name: str) -> bool:
    return not VISION_PREFIX.search(name)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    kind: Literal["lora", "freeze", "galore", "full"]
    help: str
    optimizer: Literal["adamw", "loraplus", "galore"] = "adamw"
    lora_overrides: dict[str, Any] = field(default_factory=dict)
    saves: Literal["adapter", "model"] = "adapter"
    thesis: str = ""  # best setting from the thesis (configs/qwen2-vl-2b/NAME.yaml)

    @property
    def merges(self) -> bool:
        """Whether `vmeta export` merges an adapter into the base (else it re-shards the saved full weights)."""
        return self.saves == "adapter"

    def prepare(self, model: Any, cfg: TrainConfig) -> Any:
        return _PREPARE[self.kind](model, cfg)


METHODS: dict[str, MethodSpec] = {
    "lora": MethodSpec(
        "lora", "lora", "LoRA on the language model's linear layers", thesis="4 epochs, lr 5e-5, r 8, alpha 16"
    ),
    "loraplus": MethodSpec(
        "loraplus",
        "lora",
        "LoRA with a larger learning rate for B (peft create_loraplus_optimizer)",
        optimizer="loraplus",
        thesis="r 16, lr 3e-5, 1 epoch, ratio 0.1 (as written in the thesis)",
    ),
    "dora": MethodSpec(
        "dora",
        "lora",
        "weight-decomposed LoRA (peft use_dora)",
        lora_overrides={"use_dora": True},
        thesis="r 16, lr 3e-5",
    ),
    "rslora": MethodSpec(
        "rslora",
        "lora",
        "rank-stabilised LoRA: scale alpha/sqrt(r) (peft use_rslora)",
        lora_overrides={"use_rslora": True},
        thesis="r 16, lr 3e-5 (best of the LoRA variants)",
    ),
    "pissa": MethodSpec(
        "pissa",
        "lora",
        "LoRA initialised from the principal singular vectors (peft init_lora_weights=pissa); saved as a plain LoRA delta",
        lora_overrides={"init": "pissa"},
        thesis="r 16, lr 3e-5",
    ),
    "freeze": MethodSpec(
        "freeze", "freeze", "train only the last N decoder layers", saves="model", thesis="6 layers, lr 5e-5, 1 epoch"
    ),
    "galore": MethodSpec(
        "galore",
        "galore",
        "full-parameter training of the language model with GaLore gradient projection",
        optimizer="galore",
        saves="model",
        thesis="rank 8, update interval 50, lr 3e-5",
    ),
    "full": MethodSpec("full", "full", "full fine-tuning of the language model", saves="model"),
}


# ---------------------------------------------------------------------------------------------------------------
# Preparing a model


def _freeze_all(model: Any) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def _unfreeze_vision(model: Any, cfg: TrainConfig) -> None:
    for name, p in model.named_parameters():
        if (cfg.train_vision_tower and is_vision_tower(name)) or (cfg.train_merger and is_merger(name)):
            p.requires_grad_(True)


def num_decoder_layers(model: Any) -> int:
    layers = {int(m.group(2)) for n, _ in model.named_parameters() if (m := LLM_LAYER.search(n))}
    if not layers:
        raise UserError(
            "could not find the language model's decoder layers (…language_model.layers.N…) in this model; "
            "the freeze/LoRA methods support Qwen2-VL-style models."
        )
    return max(layers) + 1


def lora_target_regex(modules: list[str], *, vision: bool) -> str:
    """A peft ``target_modules`` regex: the given linear layers of the language model (and the vision blocks)."""
    names = "|".join(re.escape(m) for m in modules)
    parts = [rf".*language_model\.layers\.\d+\.(self_attn|mlp)\.({names})"]
    if vision:
        parts.append(rf".*visual\.blocks\.\d+\.(attn|mlp)\.({'|'.join(VISION_LINEAR)})")
    return "|".join(f"(?:{p})" for p in parts) if len(parts) > 1 else parts[0]


def peft_lora_config(cfg: TrainConfig):  # type: ignore[no-untyped-def]
    from peft import LoraConfig

    o = cfg.lora_options
    init: Any = True
    if o["init"] == "gaussian":
        init = "gaussian"
    elif o["init"] == "pissa":
        init = f"pissa_niter_{o['pissa_niter']}" if o["pissa_niter"] else "pissa"
    return LoraConfig(
        r=o["r"],
        lora_alpha=o["alpha"],
        lora_dropout=o["dropout"],
        target_modules=lora_target_regex(o["target_modules"], vision=cfg.train_vision_tower),
        use_dora=o["use_dora"],
        use_rslora=o["use_rslora"],
        init_lora_weights=init,
        modules_to_save=["merger"] if cfg.train_merger else None,
        task_type="CAUSAL_LM",
        bias="none",
    )


def _prepare_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import get_peft_model

    _freeze_all(model)
    lcfg = peft_lora_config(cfg)
    try:
        peft_model = get_peft_model(model, lcfg)
    except ValueError as exc:
        raise UserError(
            f"LoRA could not be applied ({exc}); check lora.target_modules={cfg.lora.target_modules}."
        ) from None
    return peft_model


def _prepare_freeze(model: Any, cfg: TrainConfig) -> Any:
    _freeze_all(model)
    n_layers = num_decoder_layers(model)
    n = cfg.freeze.trainable_layers
    if abs(n) > n_layers:
        raise UserError(
            f"freeze.trainable_layers={n} but the model has {n_layers} decoder layers; use at most {n_layers}."
        )
    chosen = set(range(n_layers - n, n_layers)) if n > 0 else set(range(-n))
    extras = cfg.freeze.extra_modules
    matched = dict.fromkeys(extras, False)
    for name, p in model.named_parameters():
        m = LLM_LAYER.search(name)
        if m and int(m.group(2)) in chosen:
            p.requires_grad_(True)
        for extra in extras:
            if re.search(rf"(^|\.){re.escape(extra)}(\.|$)", name):
                p.requires_grad_(True)
                matched[extra] = True
    missing = [e for e, ok in matched.items() if not ok]
    if missing:
        raise UserError(
            f"freeze.extra_modules {missing} match no parameter of this model (e.g. embed_tokens, norm, lm_head)."
        )
    _unfreeze_vision(model, cfg)
    return model


def _prepare_language_model(model: Any, cfg: TrainConfig) -> Any:
    for name, p in model.named_parameters():
        p.requires_grad_(is_language_model(name))
    _unfreeze_vision(model, cfg)
    return model


def galore_target_regex(cfg: TrainConfig) -> str:
    names = "|".join(re.escape(m) for m in cfg.galore.target_modules)
    return rf".*language_model\.layers\.\d+\.(self_attn|mlp)\.({names})"


_PREPARE: dict[str, Callable[[Any, Any], Any]] = {
    "lora": _prepare_lora,
    "freeze": _prepare_freeze,
    "galore": _prepare_language_model,
    "full": _prepare_language_model,
}


def trainable_summary(model: Any) -> dict[str, Any]:
    """Trainable / total parameter counts (unique tensors: tied embeddings count once) and their share."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return {
        "trainable_parameters": trainable,
        "total_parameters": total,
        "trainable_share": trainable / total if total else 0.0,
    }


__all__ = [
    "METHODS",
    "MethodSpec",
    "galore_target_regex",
    "is_language_model",
    "is_merger",
    "is_vision_tower",
    "lora_target_regex",
    "num_decoder_layers",
    "peft_lora_config",
    "trainable_summary",
]
