"""Helpers for export tests: PEFT adapters made here with a non-zero delta, and run folders laid out as
`vmeta train` writes them (run.json, config.yaml, adapter/ or model/, the processor)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from vmeta import runs

# The language model's linear layers (vision tower and merger untouched), as `vmeta train` targets by default.
LM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
FINISHED = "finished"


def make_adapter(base: Path, out: Path, kind: str, *, seed: int = 0, r: int = 4) -> Path:
    """A PEFT adapter of ``kind`` (lora | dora | rslora | pissa | lora_merger) on ``base`` with random non-zero updates.

    PiSSA is saved the way `vmeta train` saves it: converted to a plain LoRA delta on the ORIGINAL base weights
    (``path_initial_model_for_weight_conversion``), so it merges onto the unmodified base model.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(base), dtype=torch.float32)
    cfg = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        lora_dropout=0.0,
        target_modules=LM_TARGETS,
        use_dora=kind == "dora",
        modules_to_save=["merger"] if kind == "lora_merger" else None,  # train_merger: the projector trained fully
        use_rslora=kind == "rslora",
        init_lora_weights="pissa" if kind == "pissa" else True,
    )
    pm = get_peft_model(model, cfg)
    init_dir = None
    if kind == "pissa":
        init_dir = out.parent / f"{out.name}_pissa_init"
        pm.peft_config["default"].init_lora_weights = True
        pm.save_pretrained(str(init_dir))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # "training": move A, B (and DoRA's magnitude) so the delta is clearly non-zero
        for name, p in pm.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    if init_dir is not None:
        pm.save_pretrained(str(out), path_initial_model_for_weight_conversion=str(init_dir))
        shutil.rmtree(init_dir)
    else:
        pm.save_pretrained(str(out))
    return out


def make_run(
    root: Path,
    base: Path,
    *,
    method: str = "lora",
    kind: str | None = None,
    status: str = FINISHED,
    name: str | None = None,
    full: bool = False,
    results: dict | None = None,
    seed: int = 0,
) -> Path:
    """A run folder as `vmeta train` writes it: run.json, config.yaml, adapter/ (or model/ for full runs), processor."""
    run = root / (name or f"run-{method}")
    run.mkdir(parents=True)
    if full:
        import torch
        from transformers import Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration.from_pretrained(str(base), dtype=torch.float32)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if ".layers.1." in n:  # "freeze": only the last decoder layer moved
                    p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.02)
        model.save_pretrained(str(run / "model"))
    else:
        make_adapter(base, run / "adapter", kind or method, seed=seed)
    from transformers import AutoProcessor

    # vmeta train: the processor beside the adapter (run root), or inside model/ for full-weight runs.
    AutoProcessor.from_pretrained(str(base)).save_pretrained(str(run / "model" if full else run))
    config = {  # the shape of vmeta.train.config.TrainConfig (the parts export reads)
        "method": method,
        "model": {"name": "tiny"},
        "data": {"path": "dataset"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "loraplus_lr_ratio": 16.0},
        "freeze": {"trainable_layers": 1},
        "training": {"epochs": 4, "lr": 5e-5, "batch_size": 1, "grad_accum": 8, "seed": seed},
        "out": str(run),
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    run_json = {  # what vmeta.train.run.run_training records, through the same writer
        "format": runs.RUN_FORMAT,
        "name": run.name,
        "method": method,
        "base_model": "tiny",
        "model": {"name": "tiny", "resolved": str(base), "hub_id": None, "family": "tiny", "source": "local"},
        "dataset": {"path": "dataset", "content_hash": "sha256:0123abcd", "train_samples": 3},
        "prompt": "请解释视频中的隐喻。",
        "prompt_hash": "p-42",
        "frames": {"fps": 2.0, "min_frames": 4},
        "status": status,
        "adapter": None if full else "adapter",
        "weights": "model" if full else None,
    }
    runs.update_run(run, **run_json)
    if results is not None:
        (run / "eval").mkdir()
        (run / "eval" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run
