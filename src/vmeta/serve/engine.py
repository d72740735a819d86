"""The local inference engine: one base model in memory, fine-tuned LoRA adapters beside it, merged exports.

``LocalEngine(settings, base, adapters={NAME: PATH}, runs_dir=..., exports_dir=...)`` implements the
:class:`~vmeta.serve.engine_api.Engine` contract for the web app and the OpenAI-compatible API.

How it works:

- **One worker thread owns the model.** ``stream()`` puts a job in a FIFO queue and waits on an ``asyncio.Queue``;
  the worker runs one job at a time, so no request ever runs with another request's adapter. Events cross from
  the worker to the event loop with ``loop.call_soon_threadsafe``.
- **Adapters switch per request, the base never reloads.** The base is loaded once with
  :func:`vmeta.models.load.load_model`; the first adapter wraps it with ``PeftModel.from_pretrained(...,
  adapter_name=...)``, the others join with ``load_adapter``. A request for an adapter runs with that adapter
  active, a request for the base with every adapter off: :class:`~vmeta.models.adapters.AdapterSwitch` sets the two flags of each LoRA
  layer that matter for inference (what peft's ``set_adapter`` / ``disable_adapter()`` do, minus their
  full-model walks: ~0.1 ms instead of ~50/200 ms on Qwen2-VL-2B on a CPU).
  Adapters named on the command line load at start; adapters found under ``runs/`` load on first use.
- **Merged exports** (full weights) are separate models, loaded on demand into a small LRU (``max_full_models``,
  default 1: loading another evicts the least recently used one). The base stays loaded.
- **Queue positions**: a waiting client receives ``Queued(position)`` on arrival and whenever it moves up.
- **Cancellation**: a consumer that stops iterating (a client that went away) marks its job cancelled; a waiting
  job leaves the queue at once, a running one stops within one layer (also while its video is being read) and
  the worker moves on.
- **Each variant reads its own frames**: a run or export the frames it was trained on (run.json / export manifest),
  the base model its family's defaults on a GPU and the CPU budget (``VMETA_CPU_VIDEO_MAX_PIXELS``) on a CPU.
- **What was read is not read again**: a :class:`~vmeta.models.prompt_cache.PromptCache` keeps the KV cache of
  recent prompts and the vision features of recent videos per (variant, person), so a follow-up reads only its
  new tokens; :meth:`LocalEngine.read_ahead` reads a just-uploaded video (and the conversation so far) while the
  person types, whenever no answer is waiting, pausing between chunks as soon as one is. ``Stage`` events tell
  the client what is being read before the first token.
- **On a CPU**: bfloat16 where the CPU computes it natively (float32 elsewhere), and every linear layer holds int8
  weights (runtime ``int8``, the default: PyTorch's int8 operators, :mod:`vmeta.models.int8_linear`; or
  ``openvino``: OpenVINO's, :mod:`vmeta.models.openvino_linear`); LoRA adapters still switch per request around
  those layers. ``--runtime torch`` keeps the full weights.
- Generation goes through :func:`vmeta.models.generate.generate_stream` (the one generation function).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta.config import Settings, get_settings
from vmeta.models.prompt_cache import PromptCache
from vmeta.serve import model_catalog
from vmeta.serve.answer import answer
from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Event, ModelInfo, Queued
from vmeta.serve.media_checks import check_media
from vmeta.serve.model_slots import ModelSlots, error_text
from vmeta.serve.variants import Variants

log = logging.getLogger(__name__)

_SHUTDOWN = "the model server is shutting down; try again in a moment."


@dataclass(eq=False)
class _Job:
    request: ChatRequest
    entry: model_catalog.CatalogEntry
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    queued_at: float
    cancel: threading.Event = field(default_factory=threading.Event)
    position: int = 0  # last position sent to the client (0: none sent / running)

    def post(self, item: Any) -> bool:
        """Hand an event to the consumer's loop (from any thread). False when that loop is gone."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
            return True
        except RuntimeError:  # the loop was closed: nobody listens any more
            self.cancel.set()
            return False


@dataclass(eq=False)
class _Read:
    """A conversation prefix (history + a just-uploaded video) to read before the question comes."""

    entry: model_catalog.CatalogEntry
    messages: list[dict[str, Any]]
    user: str
    tags: frozenset[str]  # the upload's and the conversation's ids: deleting either forgets the read
    cancel: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int = 0
    digests: list[bytes] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "waiting"  # waiting | paused | done | cancelled | error
    forgotten: bool = False  # its upload or conversation was deleted: what it kept goes too
    pauses: int = 0  # times it stepped aside for an answer


class LocalEngine:
    """See the module docstring. Thread-safe; ``stream`` may be called from any event loop."""

    def __init__(
        self,
        settings: Settings | None = None,
        base: str | Path | None = None,
        adapters: dict[str, str | Path] | None = None,
        runs_dir: str | Path | None = None,
        exports_dir: str | Path | None = None,
        device: str | None = None,
        dtype: Any = None,
        *,
        max_full_models: int = 1,
        preload: bool = True,
        catalog_ttl_s: float = 5.0,
        check_videos: bool = True,
        runtime: str | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.base = str(base or self.settings.default_model)
        self.adapters = {str(k): Path(v) for k, v in (adapters or {}).items()}
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.exports_dir = Path(exports_dir) if exports_dir is not None else None
        from vmeta.models.load import pick_device, serving_dtype

        self.device = pick_device(device)
        self.dtype, self.dtype_reason = serving_dtype(dtype, self.device)
        self.check_videos = check_videos
        self.base_id = model_catalog.base_model_id(self.base, self.settings)
        self.recent: deque[dict[str, Any]] = deque(maxlen=200)  # finished jobs (cancelled ones too)
        # Model state of prompts already read, per (variant, person): follow-ups read only their new tokens.
        self.prompt_cache = PromptCache(max_bytes=max(0, int(self.settings.prompt_cache_mb)) * 2**20)
        self.slots = ModelSlots(
            self.settings,
            self.base,
            self.base_id,
            self.device,
            self.dtype,
            runtime=runtime,
            max_full_models=max_full_models,
            prompt_cache=self.prompt_cache,
            on_adapter_error=lambda: self.variants.refresh(force=True),
        )
        self.variants = Variants(
            self.settings,
            self.base,
            self.adapters,
            self.runs_dir,
            self.exports_dir,
            self.device,
            self.slots,
            catalog_ttl_s,
        )

        # Queue state, guarded by _cv.
        self._cv = threading.Condition()
        self._waiting: list[_Job] = []
        self._running: _Job | None = None
        self._reads: dict[str, _Read] = {}  # user -> the read ahead waiting for a free worker (one per user)
        self._reading: _Read | None = None
        self.reads: deque[_Read] = deque(maxlen=200)  # finished reads ahead (their media, for forget())
        self._ready = threading.Event()
        self._closed = False

        self.variants.refresh(force=True)

        self._preload = preload
        self._thread = threading.Thread(target=self._work, name="vmeta-engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------------------- catalog

    def catalog(self) -> list[model_catalog.CatalogEntry]:
        """Every variant found, servable or not (``entry.available``, ``entry.reason``)."""
        return self.variants.refresh()

    def models(self) -> list[ModelInfo]:
        """The variants a client can ask for (unservable ones are in :meth:`catalog` with their reason)."""
        return self.variants.models()

    def unavailable(self) -> list[tuple[ModelInfo, str]]:
        return self.variants.unavailable()

    # ---------------------------------------------------------------------------------------------- requests

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        entry = self.variants.entry(request.model)
        await check_media(request.messages, probe_videos=self.check_videos)
        loop = asyncio.get_running_loop()
        job = _Job(request=request, entry=entry, loop=loop, events=asyncio.Queue(), queued_at=time.perf_counter())
        with self._cv:
            if self._closed:
                raise EngineError(_SHUTDOWN)
            self._waiting.append(job)
            position = len(self._waiting)
            must_wait = self._running is not None or not self._ready.is_set() or position > 1
            if must_wait:
                job.position = position
            self._cv.notify_all()
        try:
            if must_wait:
                yield Queued(position=position)
            while True:
                item = await job.events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Done):
                    return
        finally:
            job.cancel.set()
            with self._cv:
                if job in self._waiting:
                    self._waiting.remove(job)
                    self._reposition_locked()

    def _reposition_locked(self) -> None:
        """Tell every waiting job whose position changed (call with _cv held)."""
        for i, job in enumerate(self._waiting):
            pos = i + 1
            if (job.position and job.position != pos) or (not job.position and (self._running is not None or i > 0)):
                job.position = pos
                job.post(Queued(position=pos))

    # ------------------------------------------------------------------------------------------------ worker

    def _work(self) -> None:
        try:
            self._startup()
        except Exception:  # a bug while preloading must not kill the worker: every later request would hang
            log.exception("engine: unexpected error while starting")
        finally:
            with self._cv:
                self._ready.set()
                self._cv.notify_all()
        while True:
            with self._cv:
                while not self._waiting and not self._reads and not self._closed:
                    self._cv.wait()
                if self._closed:
                    pending, self._waiting = self._waiting, []
                    for job in pending:
                        job.post(EngineError(_SHUTDOWN))
                    return
                if not self._waiting:  # answers first; reads ahead only when nobody waits
                    self._reading = read = next(iter(self._reads.values()))
                    job = None
                else:
                    job = self._waiting.pop(0)
                    self._running = job
                    job.position = 0
                    self._reposition_locked()
            if job is None:
                self._read(read)
                continue
            final: Any = None
            try:
                final = answer(job, self.variants, self.slots, self.prompt_cache, self.recent)
            except BaseException as exc:  # never let the worker die
                log.exception("engine worker: unexpected error")
                final = EngineError(f"the model failed on this request ({type(exc).__name__}: {exc}).")
            finally:
                with self._cv:
                    self._running = None
            if final is not None:  # after the worker is free, so a client that comes next is not told to wait
                job.post(final)

    # ------------------------------------------------------------------------------------------- reading ahead

    def read_ahead(self, model: str, messages: list[dict[str, Any]], *, user: str, tags: tuple[str, ...] = ()) -> bool:
        """Start reading a conversation's prefix (its history and a video just uploaded, before the question) in
        the background, below every waiting answer: a question arriving pauses it between two chunks, and its
        own read continues from where this one stopped. One per user (a newer one replaces it). -> whether it
        was queued (False: unknown or unusable model, or the engine is closing)."""
        try:
            entry = self.variants.entry(model)
        except EngineError:
            return False
        read = _Read(entry=entry, messages=list(messages), user=user, tags=frozenset(t for t in tags if t))
        with self._cv:
            if self._closed:
                return False
            old = self._reads.pop(user, None)
            if old is not None:
                old.cancel.set()
            self._reads[user] = read
            self._cv.notify_all()
        return True

    def forget(self, tag: str) -> int:
        """An upload or a conversation was deleted: drop its reads ahead (waiting or running) and the model state
        they kept. -> reads forgotten."""
        with self._cv:
            hits = [r for r in (*self._reads.values(), *self.reads) if tag in r.tags]
            if self._reading is not None and tag in self._reading.tags:
                hits.append(self._reading)
            for r in hits:
                r.cancel.set()
                r.forgotten = True
                if self._reads.get(r.user) is r:
                    del self._reads[r.user]
        for r in hits:
            self._drop_read_state(r)
        return len(hits)

    def forget_user(self, user: str) -> int:
        """A person's account is gone (an expired guest): drop their reads ahead and every prompt and video state
        kept for them, so nothing of theirs stays in memory until eviction. -> entries dropped."""
        with self._cv:
            hits = [r for r in (*self._reads.values(), *self.reads) if r.user == user]
            if self._reading is not None and self._reading.user == user:
                hits.append(self._reading)
            for r in hits:
                r.cancel.set()
                r.forgotten = True
            self._reads.pop(user, None)
        return self.prompt_cache.drop(lambda scope: scope[1] == user)

    def _drop_read_state(self, read: _Read) -> None:
        for digest in read.digests:
            self.prompt_cache.drop(lambda scope, u=read.user: scope[1] == u, digest=digest)

    def _read(self, read: _Read) -> None:
        """Run one read ahead until it finishes or an answer is waiting (worker thread)."""
        from vmeta.models.generate import read_ahead

        t0 = time.perf_counter()
        try:
            loaded, _, _ = self.slots.select(read.entry)
            fs, _ = self.variants.frames_for(read.entry, loaded.spec) or (None, "")
            messages, _ = self.variants.with_context(read.entry, read.messages)
            read.done, read.total, read.digests = read_ahead(
                loaded,
                messages,
                fs,
                store=self.prompt_cache,
                scope=(read.entry.id, read.user),
                should_pause=lambda: bool(self._waiting) or read.cancel.is_set() or self._closed,
            )
            read.status = "done" if read.done >= read.total else "cancelled" if read.cancel.is_set() else "paused"
            read.pauses += read.status == "paused"
        except Exception as exc:  # a read ahead only saves time: never fail anything for it
            log.warning("engine: reading ahead for %s failed: %s", read.entry.id, error_text(exc))
            read.status = "error"
        read.seconds += time.perf_counter() - t0
        with self._cv:
            self._reading = None
            if read.status != "paused" and self._reads.get(read.user) is read:
                del self._reads[read.user]
            if read.status != "paused":
                self.reads.append(read)
        if read.forgotten:
            self._drop_read_state(read)  # forgotten while it ran

    def _startup(self) -> None:
        try:
            self.slots.load_base()
        except Exception as exc:
            self.slots.base_error = error_text(exc)
            log.error("engine: the base model %s could not be loaded: %s", self.base, self.slots.base_error)
            self.variants.refresh(force=True)
            return
        if self._preload:
            for e in self.variants.refresh(force=True):
                if e.kind == "adapter" and e.origin == "option" and e.available:
                    try:
                        self.slots.ensure_adapter(e)
                    except EngineError as exc:
                        log.warning("engine: adapter %s not loaded: %s", e.id, exc)
            self.variants.refresh(force=True)

    # ----------------------------------------------------------------------------------------------- control

    @property
    def base_model(self) -> Any:
        """The loaded base model object (None until loaded)."""
        return self.slots.base_loaded.model if self.slots.base_loaded is not None else None

    # what the slots hold, for the start line, /api/stats and tests
    @property
    def runtime(self) -> str:
        return self.slots.runtime

    @property
    def runtime_note(self) -> str:
        return self.slots.runtime_note

    @property
    def load_count(self) -> int:
        return self.slots.load_count

    @property
    def loads(self) -> list[dict[str, Any]]:
        return self.slots.loads

    @property
    def queue_length(self) -> int:
        with self._cv:
            return len(self._waiting) + (1 if self._running is not None else 0)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the base model is loaded (or failed to load)."""
        return self._ready.wait(timeout)

    async def ready(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self._ready.wait, timeout)

    def close(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._closed = True
            self._reads.clear()
            if self._running is not None:
                self._running.cancel.set()
            self._cv.notify_all()
        self._thread.join(timeout)
        self.prompt_cache.drop(lambda scope: True)
        self.slots.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


# -------------------------------------------------------------------------------------------------------- helpers


__all__ = ["LocalEngine"]
