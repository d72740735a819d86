"""LoRA adapters beside one base model at inference: switching the active one per request without peft's
full-model walks, taking out a half-loaded one, telling DoRA adapters apart (they need the base's full weights)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any


class AdapterSwitch:
    """Switch the active LoRA adapter of a PeftModel (or turn adapters off for the base) in well under a millisecond.

    peft's ``set_adapter`` walks every module of the model, toggles ``requires_grad`` on every adapter weight and
    handles auxiliary modules: ~50 ms on Qwen2-VL-2B on a CPU; ``disable_adapter()`` also computes the model status
    (~200 ms). For inference only two flags per LoRA layer matter: the active adapter and "adapters disabled". This
    keeps the list of tuner layers (refreshed after each adapter load) and sets exactly those, keeping peft's own
    bookkeeping (``active_adapter``) in step. Models with auxiliary trained modules (``modules_to_save``) fall back
    to peft's own calls, which also switch those.
    """

    def __init__(self, peft_model: Any) -> None:
        self.peft = peft_model
        self.layers: list[Any] = []
        self.slow = False
        self.state: str | bool | None = False  # False: unknown; None: adapters off; str: that adapter active
        self.refresh()

    def refresh(self) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        self.layers, self.slow = [], False
        for module in self.peft.base_model.model.modules():
            if isinstance(module, BaseTunerLayer):
                self.layers.append(module)
            elif isinstance(module, AuxiliaryTrainingWrapper):
                self.slow = True
        self.state = False

    def activate(self, name: str | None) -> None:
        """``name``: the adapter to use; None: the base model (every adapter off)."""
        if name == self.state:
            return
        if self.slow:
            if name is None:
                self.peft.base_model.disable_adapter_layers()
            else:
                self.peft.base_model.enable_adapter_layers()
                self.peft.set_adapter(name, inference_mode=True)
        elif name is None:
            for layer in self.layers:
                layer._disable_adapters = True
        else:
            active = [name]
            for layer in self.layers:
                layer._active_adapter = active
                layer._disable_adapters = False
            self.peft.base_model.active_adapter = name
        self.state = name


def remove_partial_adapter(model: Any, peft_model: Any, name: str) -> None:
    """After a failed load: take out whatever layers of adapter `name` were already injected, so the base model
    (and the other adapters) answer exactly as before."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover
        return
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            with contextlib.suppress(Exception):
                module.delete_adapter(name)  # drops its weights; a layer left without adapters adds nothing
    if peft_model is not None:
        peft_model.peft_config.pop(name, None)


def is_dora(path: Path | None) -> bool:
    try:
        cfg = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return False
    return bool(cfg.get("use_dora"))


__all__ = ["AdapterSwitch", "is_dora", "remove_partial_adapter"]
