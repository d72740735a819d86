"""Which variants the local engine offers — the base, adapters beside it, runs and merged exports found on disk
(re-read every few seconds, so a run that just finished is offered) — and what each reads: the frames and the
context (on-screen text, speech) it was trained with."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.serve import model_catalog
from vmeta.serve.engine_api import EngineError, ModelInfo
from vmeta.serve.model_catalog import CatalogEntry
from vmeta.serve.model_slots import ModelSlots, real_path

log = logging.getLogger("vmeta.serve.engine")


class Variants:
    def __init__(
        self,
        settings: Settings,
        base: str,
        adapters: dict[str, Path],
        runs_dir: Path | None,
        exports_dir: Path | None,
        device: str,
        slots: ModelSlots,
        ttl_s: float,
    ) -> None:
        self.settings = settings
        self.base = base
        self.adapters = adapters
        self.runs_dir = runs_dir
        self.exports_dir = exports_dir
        self.device = device
        self.slots = slots  # adapters that failed to load, and a base that did, are listed as unavailable
        self.ttl_s = ttl_s
        self._frames: dict[tuple[str, str], tuple[Any, str] | None] = {}  # (id, path) -> (FrameSettings, source)
        self._contexts: dict[tuple[str, str], Any] = {}  # (id, path) -> ContextSettings
        self._lock = threading.Lock()
        self._catalog: list[CatalogEntry] = []
        self._at = 0.0

    def refresh(self, force: bool = False) -> list[CatalogEntry]:
        with self._lock:
            if force or time.monotonic() - self._at > self.ttl_s:
                entries = model_catalog.discover(
                    self.base, self.settings, self.adapters, runs_dir=self.runs_dir, exports_dir=self.exports_dir
                )
                # Adapters that failed to load stay listed as unavailable, with the reason.
                out = []
                for e in entries:
                    key = real_path(e.path) if e.kind == "adapter" and e.path is not None else None
                    if e.available and key in self.slots.adapter_errors:
                        e = e.unavailable(self.slots.adapter_errors[key])
                    if e.kind == "base" and self.slots.base_error:
                        e = e.unavailable(self.slots.base_error)
                    out.append(e)
                self._catalog = out
                self._at = time.monotonic()
            return list(self._catalog)

    def models(self) -> list[ModelInfo]:
        """The variants a client can ask for, with the frames and context each reads."""
        models = []
        for e in self.refresh():
            if not e.available:
                continue
            info = e.info
            frames = self.frames_for(e)
            if frames is not None:
                info = replace(info, frames=model_catalog.frames_summary(*frames))
            kinds = self.context_for(e).kinds
            if kinds:
                info = replace(info, context=kinds)
            if e.kind == "merged" and self.slots.max_full_models > 1:
                info = replace(
                    info,
                    description=f"merged model (full weights; up to {self.slots.max_full_models} loaded at once "
                    "beside the base, loading another evicts the least recently used)",
                )
            models.append(info)
        return models

    def frames_for(self, entry: CatalogEntry, spec: Any = None) -> tuple[Any, str] | None:
        """(FrameSettings, where they come from) for a variant: the frames its run recorded, else the base
        model's (its family's defaults on a GPU, the CPU budget on a CPU). None when its model cannot be resolved."""
        key = (entry.id, str(entry.path))
        if self._frames.get(key) is not None or (key in self._frames and spec is None):
            return self._frames[key]
        fs = model_catalog.recorded_frames(entry)
        out: tuple[Any, str] | None = None
        if fs is not None:
            out = (fs, "export manifest" if entry.origin == "exports" else "run.json (what it was trained on)")
        else:
            if spec is None:
                from vmeta.models.resolution import resolve

                try:
                    spec = resolve(
                        entry.path if entry.kind == "merged" else self.base, self.settings, build_tiny=False
                    ).spec
                except Exception:
                    spec = None
            if spec is not None:
                out = model_catalog.base_frames(spec, self.device, self.settings)
        self._frames[key] = out
        return out

    def context_for(self, entry: CatalogEntry) -> Any:
        """The context (ContextSettings) a variant was trained with; its answers add the same block."""
        key = (entry.id, str(entry.path))
        if key not in self._contexts:
            self._contexts[key] = model_catalog.recorded_context(entry)
        return self._contexts[key]

    def with_context(
        self, entry: CatalogEntry, messages: list[dict[str, Any]], on_stage: Any = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages as the variant was trained to see them: each uploaded video's context (on-screen text,
        speech) before the user's words (read once per video; the OCR / speech caches keep it). -> (messages, facts for the answer). A video
        whose text cannot be read is answered without it (said in the facts and the log), never refused."""
        from vmeta.dataset.context import messages_with_context

        ctx = self.context_for(entry)
        if not ctx.enabled:
            return messages, {}
        if on_stage is not None:
            on_stage("context", {"kinds": list(ctx.kinds)})
        try:
            out, added = messages_with_context(messages, ctx, cache_dir=self.settings.resolved_cache_dir)
        except UserError as exc:
            log.warning("engine: %s answers without its context: %s", entry.id, exc)
            return messages, {"context_error": str(exc)}
        return out, {"context": {Path(v).name: block for v, block in added.items()}}

    def unavailable(self) -> list[tuple[ModelInfo, str]]:
        return [(e.info, e.reason) for e in self.refresh() if not e.available]

    def entry(self, model: str) -> CatalogEntry:
        model = (model or "").strip()
        for force in (False, True):  # a run that just finished training is found without waiting for the TTL
            entries = self.refresh(force=force)
            for e in entries:
                if e.id == model or (e.kind == "base" and model in (self.base,)):
                    if not e.available:
                        raise EngineError(f"model '{model}' cannot be used on this server: {e.reason}.")
                    return e
        names = ", ".join(e.id for e in entries if e.available) or "(none)"
        raise EngineError(f"unknown model '{model}'; this server offers: {names}.")


__all__ = ["Variants"]
