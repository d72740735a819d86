"""Several processes: `accelerate launch` (DDP) runs `vmeta train` on CPU with 2 processes (gloo); the run folder is
written once, by the main process; the result exports. DeepSpeed ZeRO-2/3 and FSDP launch configs are checked
for shape (DeepSpeed itself is not installed here, and FSDP needs GPUs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = REPO / "configs" / "accelerate"
DEEPSPEED = REPO / "configs" / "deepspeed"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("ddp", "MULTI_GPU"), ("deepspeed_zero2", "DEEPSPEED"), ("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")],
)
def test_launch_configs_are_valid(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ACCELERATE / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg = load_config_from_file(str(path))  # accelerate's own parser: unknown keys or bad enums fail here
    assert str(cfg.distributed_type).endswith(kind)
    # precision is vmeta's training config (training.precision), never the launcher's: accelerate's default "no"
    assert raw.get("mixed_precision", "no") == "no", raw.get("mixed_precision")
    assert cfg.num_machines == 1 and cfg.num_processes >= 2
    header = path.read_text(encoding="utf-8").splitlines()
    assert any("accelerate launch --config_file configs/accelerate/" + name + ".yaml" in line for line in header)
    if kind == "DEEPSPEED":
        ds_file = REPO / raw["deepspeed_config"]["deepspeed_config_file"]
        ds = json.loads(ds_file.read_text(encoding="utf-8"))
        stage = 2 if name.endswith("2") else 3
        assert ds["zero_optimization"]["stage"] == stage
        # "auto" lets transformers' Trainer fill these from vmeta's training config, so the two never disagree.
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                    "gradient_clipping"):  # fmt: skip
            assert ds[key] == "auto", key
        assert ds["bf16"]["enabled"] == "auto" and ds["fp16"]["enabled"] == "auto"
        if stage == 3:
            assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
            assert raw["deepspeed_config"]["zero3_init_flag"] is True
    if kind == "FSDP":
        import transformers.models.qwen2_vl.modeling_qwen2_vl as qwen2_vl

        fsdp = raw["fsdp_config"]
        for cls in fsdp["fsdp_transformer_layer_cls_to_wrap"].split(","):
            assert hasattr(qwen2_vl, cls), cls
        assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_deepspeed_json_files_parse():
    files = sorted(DEEPSPEED.glob("*.json"))
    assert [p.name for p in files] == ["zero2.json", "zero3.json"]  # the files the launch configs name
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert "zero_optimization" in data, path


def _env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(
        VMETA_DATA_DIR=str(settings.data_dir),  # holds models/tiny, so "tiny" resolves without building
        VMETA_HF_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",  # CPU + gloo even where a GPU exists
        PYTHONPATH=str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


@pytest.mark.slow
def test_accelerate_launch_two_processes_on_cpu(tmp_path, train_dataset, train_settings):
    """2 DDP processes (gloo) x batch 1 -> 2 samples per optimizer step; rank 0 alone writes the run folder."""
    out = tmp_path / "run-ddp"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE / "ddp.yaml"), "--num_processes", "2",
        "-m", "vmeta", "train", "--method", "lora", "--model", "tiny", "--data", str(train_dataset),
        "--out", str(out), "--max-steps", "2", "--no-progress",
        "--set", "training.batch_size=1", "--set", "training.grad_accum=1", "--set", "training.warmup=0",
        "--set", "training.save_steps=1", "--set", "data.cutoff_len=256", "--set", "data.frame_cache=memory",
        "--set", "lora.r=4", "--set", "lora.alpha=8",
    ]  # fmt: skip
    env = _env(train_settings) | {"COLUMNS": "500"}  # the summary on one line
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # the closing summary comes once, from the main process (not "running … step None" from the other)
    summaries = [line for line in proc.stdout.splitlines() if " lora run → " in line]
    assert len(summaries) == 1 and summaries[0].startswith("finished") and "(step 2," in summaries[0], proc.stdout

    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["status"] == "finished" and info["global_step"] == 2
    # The dataset has 2 training samples: with 2 processes each step sees both, so 2 steps = 2 epochs
    # (one process would have done 1 epoch) — the data really was split across ranks.
    assert info["epochs_done"] == pytest.approx(2.0)
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert any((out / "adapter").glob("adapter_model.*"))
    # Written once: one line per logged step in metrics.jsonl and loss.csv, no second writer's copy.
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    loss_steps = [r["step"] for r in rows if "loss" in r]
    assert loss_steps == [1, 2], rows
    assert len((out / "loss.csv").read_text(encoding="utf-8").strip().splitlines()) == 3  # header + 2 steps
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint-")) == [
        "checkpoint-1", "checkpoint-2",
    ]  # fmt: skip
    # no temp left behind, whatever its name (.adapter.saving folders, .run.json.*.tmp files are hidden)
    assert not [p.name for p in out.rglob(".*")], [p.name for p in out.rglob(".*")]

    # A refusal by the main process (the run is finished) ends the launch; the other process, waiting for the
    # main one to prepare the folder, is ended by the launcher rather than left hanging or judging it itself.
    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "holds a finished run" in again.stdout + again.stderr, again.stderr[-3000:]
    assert "unfinished run" not in again.stdout + again.stderr
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "finished"

    # The DDP-trained run exports, and the merged weights give the base+adapter logits.
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from vmeta.export import ExportConfig, export_run

    export = tmp_path / "exports" / "ddp"
    export_run(ExportConfig(run=out, out=export, dtype="fp32"), settings=train_settings)
    base_dir = Path(info["model"]["resolved"])
    processor = AutoProcessor.from_pretrained(str(export))
    msgs = [{"role": "user", "content": [{"type": "text", "text": "请解释这个视频中的隐喻。"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], return_tensors="pt")
    with torch.no_grad():
        base = Qwen2VLForConditionalGeneration.from_pretrained(str(base_dir), dtype=torch.float32)
        ref = PeftModel.from_pretrained(base, str(out / "adapter")).eval()(**inputs).logits
        merged = (
            Qwen2VLForConditionalGeneration.from_pretrained(str(export), dtype=torch.float32).eval()(**inputs).logits
        )
    assert (merged - ref).abs().max().item() < 1e-4
