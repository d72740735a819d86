"""What transformers' ``generate`` is handed and what is read back from it: the GenerationConfig made from
:class:`~vmeta.models.generate.GenerationSettings`, the streamers that time each step, the stopping criterion and
per-layer pre-hooks that cancel (also mid-prompt), and the new-token count with its finish reason.

These are the parts that depend on transformers' generation internals, kept in one place so
:mod:`vmeta.models.generate` reads as the flow of one generation.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmeta.models.load import LoadedModel

if TYPE_CHECKING:
    from vmeta.models.generate import GenerationSettings


def generation_config(loaded: LoadedModel, gen: GenerationSettings):  # type: ignore[no-untyped-def]
    base = getattr(loaded.model, "generation_config", None)
    cfg = copy.deepcopy(base) if base is not None else None
    if cfg is None:
        from transformers import GenerationConfig

        cfg = GenerationConfig()
    cfg.max_new_tokens = gen.max_new_tokens
    cfg.max_length = None
    cfg.min_new_tokens = gen.min_new_tokens or None
    cfg.do_sample = gen.do_sample
    cfg.repetition_penalty = gen.repetition_penalty
    if gen.do_sample:
        cfg.temperature, cfg.top_p, cfg.top_k = gen.temperature, gen.top_p, gen.top_k
    else:  # greedy: sampling knobs off (avoids the checkpoint's sampling defaults leaking in)
        cfg.temperature, cfg.top_p, cfg.top_k = None, None, None
    tok = tokenizer_of(loaded.processor)
    if cfg.pad_token_id is None:
        cfg.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if cfg.eos_token_id is None:
        cfg.eos_token_id = tok.eos_token_id
    return cfg


def eos_ids(cfg) -> set[int]:  # type: ignore[no-untyped-def]
    eos = cfg.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, list | tuple) else {int(eos)}


def seed_torch(gen: GenerationSettings) -> None:
    if gen.seed is None:
        return
    import torch

    torch.manual_seed(gen.seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(gen.seed)


def decode_rate(times: list[float]) -> float | None:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


@functools.cache
def timed_streamer_class():  # type: ignore[no-untyped-def]
    """Defined on first use: importing vmeta.models.generate does not import transformers."""
    from transformers import TextIteratorStreamer

    class TimedTextStreamer(TextIteratorStreamer):
        """TextIteratorStreamer that also notes when each generation step produced its token."""

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.times: list[float] = []

        def put(self, value) -> None:  # type: ignore[no-untyped-def]
            if self.next_tokens_are_prompt:  # the prompt, passed once before the first step
                super().put(value)
                return
            self.times.append(time.perf_counter())
            super().put(value)

    return TimedTextStreamer


class StepClock:
    """A transformers streamer that only notes when each generation step produced its tokens."""

    def __init__(self) -> None:
        self.prompt_seen = False
        self.steps: list[float] = []

    def put(self, value) -> None:  # type: ignore[no-untyped-def]
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.steps.append(time.perf_counter())

    def end(self) -> None:
        pass


def stop_criteria(stopped: Callable[[], bool]):  # type: ignore[no-untyped-def]
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):  # type: ignore[no-untyped-def]
            return torch.full((input_ids.shape[0],), stopped(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_Cancel()])


class Cancelled(Exception):
    """Raised inside the model's forward pass once generation is cancelled (see _layer_checks)."""


@contextlib.contextmanager
def layer_checks(model, stopped: Callable[[], bool]):  # type: ignore[no-untyped-def]
    """Ask `stopped` before every layer (each module held in a ModuleList: decoder layers, vision blocks).

    A stopping criterion is only asked between tokens; the prompt's forward pass — a long video is thousands
    of tokens and seconds of compute — would run to its end first. A pre-hook per layer costs ~1 µs per layer
    call and lets a client that went away stop it within one layer."""
    import torch

    def check(module, args):  # type: ignore[no-untyped-def]
        if stopped():
            raise Cancelled

    handles = [
        layer.register_forward_pre_hook(check)
        for module in model.modules()
        if isinstance(module, torch.nn.ModuleList)
        for layer in module
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def new_token_count(row, eos: set[int]) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Tokens up to and including the first end token; finish reason."""
    ids = row.tolist()
    for i, t in enumerate(ids):
        if t in eos:
            return i + 1, "stop"
    return len(ids), "length"


def tokenizer_of(processor: Any) -> Any:
    """The tokenizer inside a processor (or the processor itself when it is one)."""
    return getattr(processor, "tokenizer", processor)


def sequences_of(out: Any) -> Any:
    """The token ids generate returned (a tensor, or the ``sequences`` of a ModelOutput)."""
    return out.sequences if hasattr(out, "sequences") else out


__all__ = [
    "Cancelled",
    "StepClock",
    "decode_rate",
    "eos_ids",
    "generation_config",
    "layer_checks",
    "new_token_count",
    "seed_torch",
    "sequences_of",
    "stop_criteria",
    "timed_streamer_class",
    "tokenizer_of",
]
