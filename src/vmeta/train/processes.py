"""Which of the processes `accelerate launch` / torchrun started this one is, and a barrier across them.

Only the main process writes the run folder; the others wait for it (see `RunFolder.prepare`)."""

from __future__ import annotations


def _process_state():  # type: ignore[no-untyped-def]
    """accelerate's PartialState: which process this is of those `accelerate launch` / torchrun started.

    The first call joins the process group (a no-op for a single process), with the Trainer's own timeout
    (TrainingArguments.ddp_timeout), which the group keeps when the Trainer reuses it."""
    from datetime import timedelta

    from accelerate import PartialState
    from transformers import TrainingArguments

    return PartialState(timeout=timedelta(seconds=TrainingArguments.ddp_timeout))


def is_main_process() -> bool:
    """The process that writes the run folder (the only one with several DDP/DeepSpeed/FSDP processes)."""
    return _process_state().is_main_process


def wait_for_everyone() -> None:
    """A barrier across the launched processes (a no-op for a single process)."""
    _process_state().wait_for_everyone()


__all__ = ["is_main_process", "wait_for_everyone"]
