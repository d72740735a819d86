"""The models the engine's worker holds: the base (loaded once, converted for the CPU runtime), LoRA adapters
beside it switched per request without peft's full-model walks, and merged exports in a small LRU.

Touched by the engine's worker thread only; the engine (`vmeta.serve.engine`) decides when, this decides how."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.models.adapters import AdapterSwitch, is_dora, remove_partial_adapter
from vmeta.models.cpu_runtime import accelerate, pick_runtime
from vmeta.models.load import free_memory
from vmeta.models.prompt_cache import PromptCache
from vmeta.serve import model_catalog
from vmeta.serve.engine_api import EngineError

log = logging.getLogger("vmeta.serve.engine")


class ModelSlots:
    def __init__(
        self,
        settings: Settings,
        base: str,
        base_id: str,
        device: str,
        dtype: Any,
        *,
        runtime: str | None,
        max_full_models: int,
        prompt_cache: PromptCache,
        on_adapter_error: Callable[[], Any],
    ) -> None:
        self.settings = settings
        self.base = base
        self.base_id = base_id
        self.device = device
        self.dtype = dtype
        self.runtime = pick_runtime(runtime or settings.cpu_runtime, device)
        self.auto_runtime = (runtime or settings.cpu_runtime or "auto").strip().lower() == "auto"
        self.runtime_note = {"torch": "PyTorch, full weights"}.get(self.runtime, f"{self.runtime} (not loaded yet)")
        self.max_full_models = max(1, int(max_full_models))
        self.prompt_cache = prompt_cache  # a merged model's prompts go when it is evicted
        self.on_adapter_error = on_adapter_error  # the catalogue lists the variant as unavailable
        self.base_loaded: Any = None  # LoadedModel of the base
        self.base_error: str | None = None
        self.peft: Any = None  # the PeftModel wrapping the base once an adapter is loaded
        self.switch: AdapterSwitch | None = None
        self.adapter_slots: dict[str, str] = {}  # real path of an adapter folder -> peft adapter name
        self.adapter_errors: dict[str, str] = {}  # real path -> why it could not be loaded
        self.full: OrderedDict[str, Any] = OrderedDict()  # model id -> LoadedModel of a merged model
        self.load_count = 0  # how many times the base model was loaded (stays 1)
        self.loads: list[dict[str, Any]] = []  # every load: {"kind", "id", "seconds"}

    def load_base(self) -> Any:
        if self.base_loaded is not None:
            return self.base_loaded
        if self.base_error is not None:
            raise EngineError(f"the base model {self.base_id} could not be loaded: {self.base_error}")
        from vmeta.models import load as load_mod

        t0 = time.perf_counter()
        loaded = load_mod.load_model(
            self.base, device=self.device, dtype=self.dtype, settings=self.settings, cache=False
        )
        self.load_count += 1
        self.loads.append({"kind": "base", "id": self.base_id, "seconds": time.perf_counter() - t0})
        self.accelerate(loaded)
        self.base_loaded = loaded
        return loaded

    def accelerate(self, loaded: Any) -> None:
        """The loaded model converted for this server's CPU runtime (vmeta.models.cpu_runtime), in place."""
        runtime, note = accelerate(
            loaded.model, self.runtime, self.dtype, auto=self.auto_runtime, compile_matmuls=self.settings.cpu_compile
        )
        self.runtime = runtime
        if note is not None:
            self.runtime_note = note

    def ensure_adapter(self, entry: model_catalog.CatalogEntry) -> tuple[str, float]:
        """Load the adapter beside the base (once) -> (peft adapter name, seconds spent loading now)."""
        assert entry.path is not None
        key = real_path(entry.path)
        if key in self.adapter_slots:
            return self.adapter_slots[key], 0.0
        if key in self.adapter_errors:
            raise EngineError(f"model '{entry.id}' cannot be used on this server: {self.adapter_errors[key]}.")
        base = self.load_base()
        if self.runtime != "torch" and is_dora(entry.path):
            reason = (
                "a DoRA adapter needs the base model's full weights; serve it with --runtime torch, or merge it "
                "with `vmeta export` and serve the export"
            )
            self.adapter_errors[key] = reason
            self.on_adapter_error()
            raise EngineError(f"model '{entry.id}' cannot be used on this server: {reason}.")
        name = f"adapter{len(self.adapter_slots) + len(self.adapter_errors)}"
        t0 = time.perf_counter()
        try:
            from peft import PeftModel
        except ImportError:  # pragma: no cover - peft ships with the train extra
            raise EngineError("serving adapters needs peft: pip install 'vmeta[train]'.") from None
        try:
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(
                    base.model, str(entry.path), adapter_name=name, is_trainable=False, low_cpu_mem_usage=True
                )
            else:
                self.peft.load_adapter(str(entry.path), adapter_name=name, is_trainable=False, low_cpu_mem_usage=True)
        except Exception as exc:
            remove_partial_adapter(base.model, self.peft, name)
            if self.switch is not None:
                self.switch.refresh()
            reason = f"its adapter does not fit the base model {self.base_id} ({error_text(exc)})"
            self.adapter_errors[key] = reason
            self.on_adapter_error()
            raise EngineError(f"model '{entry.id}' cannot be used on this server: {reason}.") from None
        base.model.eval()
        if self.switch is None:
            self.switch = AdapterSwitch(self.peft)
        else:
            self.switch.refresh()
        seconds = time.perf_counter() - t0
        self.adapter_slots[key] = name
        self.loads.append({"kind": "adapter", "id": entry.id, "seconds": seconds})
        return name, seconds

    def ensure_full(self, entry: model_catalog.CatalogEntry) -> tuple[Any, float]:
        if entry.id in self.full:
            self.full.move_to_end(entry.id)
            return self.full[entry.id], 0.0
        while len(self.full) >= self.max_full_models:
            evicted, _ = self.full.popitem(last=False)
            self.prompt_cache.drop(lambda scope, gone=evicted: scope[0] == gone)
            log.info("engine: evicting merged model %s", evicted)
        free_memory()
        from vmeta.models import load as load_mod

        t0 = time.perf_counter()
        try:
            loaded = load_mod.load_model(
                str(entry.path), device=self.device, dtype=self.dtype, settings=self.settings, cache=False
            )
        except Exception as exc:
            raise EngineError(f"model '{entry.id}' could not be loaded: {error_text(exc)}.") from None
        seconds = time.perf_counter() - t0
        self.accelerate(loaded)
        self.full[entry.id] = loaded
        self.loads.append({"kind": "merged", "id": entry.id, "seconds": seconds})
        return loaded, seconds

    def select(self, entry: model_catalog.CatalogEntry) -> tuple[Any, contextlib.AbstractContextManager, dict]:
        """-> (LoadedModel to generate with, context to generate in, facts for Done.extra)."""
        facts: dict[str, Any] = {}
        if entry.kind == "merged":
            loaded, seconds = self.ensure_full(entry)
            if seconds:
                facts["load_s"] = seconds
            return loaded, contextlib.nullcontext(), facts
        base = self.load_base()
        if entry.kind == "base":
            if self.switch is not None:
                t0 = time.perf_counter()
                self.switch.activate(None)
                facts["adapter_switch_s"] = time.perf_counter() - t0
            return base, contextlib.nullcontext(), facts
        name, seconds = self.ensure_adapter(entry)
        if seconds:
            facts["adapter_load_s"] = seconds
        t0 = time.perf_counter()
        assert self.switch is not None
        self.switch.activate(name)
        facts["adapter_switch_s"] = time.perf_counter() - t0
        return base, contextlib.nullcontext(), facts

    def close(self) -> None:
        self.full.clear()
        self.peft = None
        self.base_loaded = None
        free_memory()


def real_path(path: Path | str) -> str:
    return os.path.realpath(str(path))


def error_text(exc: BaseException) -> str:
    """The first line of an error, with its type unless it is already a sentence for people."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if isinstance(exc, UserError | EngineError) else f"{type(exc).__name__}: {text}"


__all__ = ["ModelSlots", "error_text", "real_path"]
