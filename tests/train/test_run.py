"""The collator, the cutoff, resume, the run folder rules, `vmeta train` end to end, and evaluation on val."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from transformers import TrainerCallback

from vmeta.errors import UserError
from vmeta.train.collate import IGNORE_INDEX, SupervisedCollator, encode_sample
from vmeta.train.data import preflight, split_records
from vmeta.train.run import run_training


@pytest.fixture(scope="module")
def processor(train_settings):
    from transformers import AutoProcessor

    from vmeta.models.resolution import resolve

    return AutoProcessor.from_pretrained(resolve("tiny", train_settings).pretrained_id)


def _video():
    return np.random.RandomState(0).randint(0, 256, size=(4, 3, 56, 56), dtype=np.uint8)


def test_collator_masks_everything_but_the_answer_and_its_end_token(processor):
    meta = {"fps": 2.0, "frames_indices": [0, 1, 2, 3], "total_num_frames": 4}
    a = encode_sample(processor, _video(), meta, "解释隐喻", "本视频讲述了猫。", cutoff_len=256, sample_id="a")
    b = encode_sample(processor, _video(), meta, "解释隐喻", "短", cutoff_len=256, sample_id="b")
    tok = processor.tokenizer
    ids, labels = a.features["input_ids"], a.features["labels"]
    assert a.vision_tokens == 8  # 4 frames 56x56: (4/2) x (4x4 patches) / (2x2 merge)
    trained = labels[labels != IGNORE_INDEX]
    assert tok.decode(trained) == "本视频讲述了猫。<|im_end|>"
    assert (labels[: a.prompt_tokens] == IGNORE_INDEX).all()
    assert tok.decode(ids) == processor.apply_chat_template(
        [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "解释隐喻"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "本视频讲述了猫。"}]},
        ],
        tokenize=False,
    ).replace("<|video_pad|>", "<|video_pad|>" * 8)
    batch = SupervisedCollator(tok.pad_token_id)([a.features, b.features])
    n = a.features["input_ids"].shape[0]
    assert batch["input_ids"].shape == (2, n) and batch["labels"].shape == (2, n)
    m = b.features["input_ids"].shape[0]
    assert (batch["labels"][1, m:] == IGNORE_INDEX).all() and (batch["attention_mask"][1, m:] == 0).all()
    assert (batch["input_ids"][1, m:] == tok.pad_token_id).all()
    assert batch["pixel_values_videos"].shape[0] == 2 * a.features["pixel_values_videos"].shape[0]
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4], [2, 4, 4]]


def test_cutoff_never_cuts_vision_tokens(processor, train_dataset):
    meta = {"fps": 2.0, "frames_indices": [0, 1, 2, 3], "total_num_frames": 4}
    with pytest.raises(UserError) as exc:
        encode_sample(processor, _video(), meta, "解释隐喻", "答案", cutoff_len=20, sample_id="s42")
    msg = str(exc.value)
    assert "sample s42" in msg and "8 of them vision tokens" in msg and "data.cutoff_len" in msg and "max_pixels" in msg
    # an over-long answer is cut at the end instead, and reported
    enc = encode_sample(processor, _video(), meta, "解释隐喻", "很长的答案" * 20, cutoff_len=40, sample_id="s1")
    assert enc.truncated and enc.features["input_ids"].shape[0] == 40
    # the pre-flight check reads the probed metadata only (no decoding) and names the worst sample
    from vmeta.models.generate import frame_settings_for
    from vmeta.models.registry import MODELS

    recs = split_records(train_dataset, "train")
    fs = frame_settings_for(MODELS["tiny"])
    assert preflight(recs, fs, 30, 256)["max_vision_tokens"] == 8
    with pytest.raises(UserError, match=r"sample s\d has 8 vision tokens.*data.cutoff_len=30"):
        preflight(recs, fs, 30, 30)


class InterruptAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kw):
        if state.global_step >= self.step:
            raise KeyboardInterrupt


def _adapter_shapes(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def test_resume_after_an_interruption_reaches_the_same_step_and_adapter(make_cfg, train_settings, tmp_path):
    over = {
        "training.max_steps": 6,
        "training.save_steps": 3,
        "training.save_checkpoints": True,
        "data.val_split": None,
    }
    cfg = make_cfg("lora", tmp_path / "resumed", **over)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, settings=train_settings, progress=False, callbacks=[InterruptAfterSave(3)])
    run = tmp_path / "resumed"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and info["global_step"] == 3
    assert (run / "checkpoints" / "checkpoint-3" / "optimizer.pt").is_file()

    with pytest.raises(UserError, match="--resume"):
        run_training(cfg, settings=train_settings, progress=False)
    changed = make_cfg("lora", run, **over, **{"lora.r": 8})
    with pytest.raises(UserError, match=r"lora\.r"):
        run_training(changed, settings=train_settings, progress=False, resume=True)

    run_training(cfg, settings=train_settings, progress=False, resume=True)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 6
    assert info["resumed_from"].endswith("checkpoint-3")
    steps = [int(r["step"]) for r in csv.DictReader((run / "loss.csv").open(encoding="utf-8"))]
    assert steps == [1, 2, 3, 4, 5, 6]

    straight = run_training(make_cfg("lora", tmp_path / "straight", **over), settings=train_settings, progress=False)
    assert json.loads((straight / "run.json").read_text())["global_step"] == 6
    assert _adapter_shapes(run / "adapter") == _adapter_shapes(straight / "adapter")

    with pytest.raises(UserError, match="finished run"):
        run_training(cfg, settings=train_settings, progress=False)


def test_only_the_main_process_checks_and_changes_the_run_folder(make_cfg, tmp_path, monkeypatch):
    """With several processes, a late rank must not judge the folder the main one has started writing (its
    run.json says "running"), nor delete anything; it waits for the main one, then finds the checkpoint."""
    import vmeta.train.run_folder as run_mod
    from vmeta.train.run_folder import RunFolder

    folder = tmp_path / "ddp-run"
    cfg = make_cfg("lora", folder)
    (folder / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (folder / "run.json").write_text(json.dumps({"status": "running"}))
    files = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    seen_at_barrier: list[bool] = []
    monkeypatch.setattr(run_mod, "wait_for_everyone", lambda: seen_at_barrier.append(folder.exists()))

    monkeypatch.setattr(run_mod, "is_main_process", lambda: False)
    run = RunFolder(folder)
    assert run.prepare(cfg, resume=False, overwrite=False) is None  # the main process's fresh run: no refusal
    assert run.prepare(cfg, resume=True, overwrite=False) == folder / "checkpoints" / "checkpoint-2"
    assert run.prepare(cfg, resume=False, overwrite=True) is None
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == files  # nothing deleted here
    shutil.rmtree(folder / "checkpoints" / "checkpoint-2")
    assert run.prepare(cfg, resume=True, overwrite=False) is None  # nothing to resume: the main one cleans up
    assert (folder / "run.json").is_file() and len(seen_at_barrier) == 4

    monkeypatch.setattr(run_mod, "is_main_process", lambda: True)
    with pytest.raises(UserError, match="unfinished run"):
        run.prepare(cfg, resume=False, overwrite=False)
    assert run.prepare(cfg, resume=False, overwrite=True) is None
    assert seen_at_barrier[-1] is False  # the others go on only after the main process deleted the old run


def test_cli_train_writes_the_full_run_folder(train_settings, train_dataset, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vmeta.cli import app
    from vmeta.config import get_settings
    from vmeta.train.config import load_config

    monkeypatch.setenv("VMETA_DATA_DIR", str(train_settings.data_dir))
    get_settings.cache_clear()
    out = tmp_path / "runs" / "cli-lora"
    args = [
        "train", "--method", "lora", "--model", "tiny", "--data", str(train_dataset), "--out", str(out),
        "--max-steps", "2", "--lr", "1e-3", "--no-progress",
        "--set", "training.batch_size=2", "--set", "training.grad_accum=1", "--set", "data.cutoff_len=256",
        "--set", "data.prompt=解释视频的隐喻。", "--set", "data.val_split=null", "--set", "training.save_steps=2",
    ]  # fmt: skip
    try:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        info = json.loads((out / "run.json").read_text())
        assert info["status"] == "finished" and info["global_step"] == 2
        for key in ("method", "base_model", "model", "dataset", "prompt", "prompt_hash", "frames", "libraries",
                    "trainable_parameters", "trainable_share", "memory", "samples_per_s", "started", "finished"):  # fmt: skip
            assert info.get(key) is not None, key
        assert info["dataset"]["content_hash"] and info["libraries"]["transformers"]
        for name in ("config.yaml", "metrics.jsonl", "loss.csv", "loss.png", "logs/train.log",
                     "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "tokenizer_config.json",
                     "checkpoints/checkpoint-2/trainer_state.json"):  # fmt: skip
            assert (out / name).exists(), name
        again = load_config(out / "config.yaml", {})
        assert again.method == "lora" and again.training.max_steps == 2
        # a second identical command refuses to overwrite the finished run
        res = CliRunner().invoke(app, args)
        assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    finally:
        get_settings.cache_clear()


def test_evaluation_on_val_keeps_the_best_checkpoint(make_cfg, train_settings, tmp_path):
    over = {
        "training.max_steps": 2,
        "training.eval_steps": 1,
        "training.eval_limit": 1,
        "training.eval_max_new_tokens": 4,
        "training.best_metric": "rougeL",
    }
    run = run_training(make_cfg("lora", tmp_path / "eval", **over), settings=train_settings, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [r for r in rows if "eval_rougeL" in r]
    assert [r["step"] for r in evals] == [1, 2] and all("eval_bleu4" in r for r in evals)
    info = json.loads((run / "run.json").read_text())
    assert info["best"]["metric"] == "rougeL" and info["best"]["step"] in (1, 2)
    assert (run / "best" / "adapter_config.json").is_file()


def test_disk_frame_cache_decodes_each_video_once(train_dataset, tmp_path):
    from vmeta.models.generate import frame_settings_for
    from vmeta.models.registry import MODELS
    from vmeta.train.data import FrameCache

    fs = frame_settings_for(MODELS["tiny"])
    video = train_dataset / "videos" / "v0.mp4"
    first = FrameCache("disk", tmp_path / "frames")
    a = first.load(video, fs)
    second = FrameCache("disk", tmp_path / "frames")  # a later run (epoch 2, or another run) reads it back
    b = second.load(video, fs)
    assert (first.misses, second.hits, second.misses) == (1, 1, 0)
    assert a.frames.shape == (4, 3, 56, 56) and np.array_equal(a.frames, b.frames) and a.metadata == b.metadata


def _tensors(folder):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out |= load_file(str(f))
    return out


@pytest.mark.parametrize("method", ["lora", "freeze"])
def test_save_final_writes_the_gathered_weights_of_a_sharded_model(
    method, make_cfg, train_settings, processor, tmp_path
):
    """Under ZeRO-3 / FSDP each process holds shards only: save_final writes the gathered state dict it is
    given; without one (one process, DDP) it writes the model's own tensors, file for file as before."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from vmeta.models.resolution import resolve
    from vmeta.train.methods import METHODS
    from vmeta.train.save import save_final

    cfg = make_cfg(method)
    base = Qwen2VLForConditionalGeneration.from_pretrained(resolve("tiny", train_settings).pretrained_id)
    model = METHODS[method].prepare(base, cfg)
    own = save_final(model, processor, tmp_path / "own", cfg, "final", pissa_init=None)
    same = save_final(model, processor, tmp_path / "same", cfg, "final", pissa_init=None, state_dict=model.state_dict())
    assert own.name == same.name == ("adapter" if method == "lora" else "model")
    files = sorted(p.name for p in own.iterdir())
    assert files == sorted(p.name for p in same.iterdir())
    for name in files:
        if name.endswith((".safetensors", ".json")):
            assert (own / name).read_bytes() == (same / name).read_bytes(), name

    gathered = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    written = _tensors(save_final(model, processor, tmp_path / "gathered", cfg, "final", pissa_init=None,
                                  state_dict=gathered))  # fmt: skip
    assert written and all((v == 0.5).all() for v in written.values() if v.is_floating_point())
    assert all(not (v == 0.5).all() for k, v in _tensors(own).items() if "lora_B" not in k and "norm" not in k)


def test_sharded_state_dict_gathers_like_trainer_save_model():
    """transformers' Trainer.save_model: FSDP -> get_state_dict(model); ZeRO-3 -> get_state_dict(the engine)."""
    from types import SimpleNamespace

    from vmeta.train.save import sharded_state_dict

    class Accelerator:
        def __init__(self, stage=None):
            self.deepspeed_config = {"zero_optimization": {"stage": stage}}

        def get_state_dict(self, model):
            return {"from": model}

    plain = SimpleNamespace(is_fsdp_enabled=False, is_deepspeed_enabled=False, accelerator=Accelerator(), model="m")
    assert sharded_state_dict(plain) is None  # one process / DDP: every process holds the whole model
    fsdp = SimpleNamespace(is_fsdp_enabled=True, is_deepspeed_enabled=False, accelerator=Accelerator(), model="fsdp")
    assert sharded_state_dict(fsdp) == {"from": "fsdp"}
    zero2 = SimpleNamespace(is_fsdp_enabled=False, is_deepspeed_enabled=True, accelerator=Accelerator(2), model="m")
    assert sharded_state_dict(zero2) is None
    zero3 = SimpleNamespace(
        is_fsdp_enabled=False, is_deepspeed_enabled=True, accelerator=Accelerator(3), model="m", deepspeed="engine"
    )
    assert sharded_state_dict(zero3) == {"from": "engine"}
