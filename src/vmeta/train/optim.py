"""Optimizer choices: plain AdamW, LoRA+ (peft ``create_loraplus_optimizer``), GaLore (galore-torch).

AdamW and GaLore go through transformers' own optimizer factory (``TrainingArguments.optim``: ``adamw_torch``,
``galore_adamw`` / ``galore_adamw_layerwise`` with ``optim_target_modules`` and ``optim_args``), so resume,
DDP and the scheduler behave as in any Trainer run. LoRA+ builds its parameter groups with peft and is handed
to the Trainer through :meth:`VmetaTrainer.create_optimizer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmeta.train.methods import METHODS, galore_target_regex

if TYPE_CHECKING:
    from vmeta.train.config import TrainConfig


def training_args_optim(cfg: TrainConfig) -> dict[str, Any]:
    """The TrainingArguments keys that choose the optimizer."""
    kind = METHODS[cfg.method].optimizer
    if kind == "galore":
        g = cfg.galore
        return {
            "optim": "galore_adamw_layerwise" if g.layerwise else "galore_adamw",
            "optim_target_modules": galore_target_regex(cfg),
            "optim_args": f"rank={g.rank},update_proj_gap={g.update_proj_gap},scale={g.scale},proj_type={g.proj_type}",
        }
    return {"optim": "adamw_torch"}


def build_custom_optimizer(model: Any, cfg: TrainConfig):  # type: ignore[no-untyped-def]
    """The optimizer for methods transformers does not build itself (LoRA+), else None."""
    if METHODS[cfg.method].optimizer != "loraplus":
        return None
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model=model,
        optimizer_cls=torch.optim.AdamW,
        lr=cfg.training.lr,
        loraplus_lr_ratio=cfg.lora.loraplus_lr_ratio,
        loraplus_lr_embedding=cfg.lora.loraplus_lr_embedding,
        weight_decay=cfg.training.weight_decay,
    )


def training_arguments(cfg: TrainConfig, output_dir: str, device: str, precision: str):  # type: ignore[no-untyped-def]
    """transformers.TrainingArguments for a run: its settings, the method's optimizer keys, vmeta's own logging
    and evaluation (the Trainer's are off), checkpoints in ``output_dir``."""
    from transformers import TrainingArguments

    t = cfg.training
    on_cuda = device.startswith("cuda")
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps if t.max_steps else -1,
        learning_rate=t.lr,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_cuda and device == "cpu",
        **_checkpointing_args(t.gradient_checkpointing),
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy=("steps" if t.save_steps else "epoch") if t.save_checkpoints else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        eval_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=cfg.data.num_workers,
        dataloader_pin_memory=on_cuda,
        disable_tqdm=True,
        deepspeed=t.deepspeed,
        fsdp=t.fsdp or "",
        ddp_find_unused_parameters=False if METHODS[cfg.method].kind == "lora" else None,
        **training_args_optim(cfg),
    )


def _checkpointing_args(on: bool) -> dict[str, Any]:
    """Gradient (activation) checkpointing under the name this transformers version uses."""
    if not on:
        return {}
    import inspect

    from transformers import TrainingArguments

    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in inspect.signature(TrainingArguments).parameters
        else "gradient_checkpointing"
    )
    return {name: True, f"{name}_kwargs": {"use_reentrant": False}}


def make_trainer(cfg: TrainConfig, **kwargs: Any):  # type: ignore[no-untyped-def]
    """A transformers.Trainer whose optimizer is the method's (LoRA+ groups from peft; otherwise transformers')."""
    from transformers import Trainer

    class VmetaTrainer(Trainer):
        def create_optimizer(self, model=None):  # type: ignore[no-untyped-def]
            if self.optimizer is None:
                custom = build_custom_optimizer(self.model, cfg)
                if custom is not None:
                    self.optimizer = custom
                    return self.optimizer
            return super().create_optimizer(model) if model is not None else super().create_optimizer()

    return VmetaTrainer(**kwargs)


__all__ = ["build_custom_optimizer", "make_trainer", "training_args_optim", "training_arguments"]
