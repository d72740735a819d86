"""Every reader of a run folder sees the same thing, from the run.json `vmeta train` really writes — and from the
same run rewritten in an older shape (vmeta.runs migrates it in one place)."""

from __future__ import annotations

import json

import pytest

from vmeta import runs
from vmeta.export.source import read_run as export_view
from vmeta.models.load import resolve_run
from vmeta.predict.run_inputs import run_inputs
from vmeta.recipes.sweep_plan import plan_status
from vmeta.serve.model_catalog import discover, recorded_frames
from vmeta.train.run import run_training


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_settings, train_dataset):
    from vmeta.train.config import load_config

    out = tmp_path_factory.mktemp("runs") / "lora-run"
    over = {"method": "lora", "model.name": "tiny", "data.path": str(train_dataset), "data.frame_cache": "memory",
            "data.cutoff_len": 256, "data.prompt": "解释视频的隐喻。", "out": str(out), "training.batch_size": 2,
            "training.max_steps": 1, "training.warmup": 0, "training.save_checkpoints": False, "lora.r": 4,
            "data.val_split": None}  # fmt: skip
    run_training(load_config(None, over), settings=train_settings, progress=False)
    return out


def _readers_agree(run, settings) -> runs.RunManifest:
    m = runs.read_run(run)
    assert m.method == "lora" and m.is_finished and m.base_name == "tiny" and m.prompt == "解释视频的隐喻。"
    frames = m.frame_settings()
    assert frames is not None
    info = export_view(run)
    assert (info.method, info.base_name, info.status, info.adapter_dir) == ("lora", "tiny", "finished", run / "adapter")
    assert resolve_run(run) == ("tiny", (run / "adapter").resolve())
    assert run_inputs(run) == {"prompt": m.prompt, "frames": frames}
    assert plan_status(run) == "finished"
    entry = next(e for e in discover("tiny", settings, runs_dir=run.parent) if e.info.adapter == run.name)
    assert entry.available, entry.reason
    assert entry.trained_on == "tiny" and recorded_frames(entry) == frames
    return m


def test_the_writer_and_every_reader_agree(trained, train_settings):
    m = _readers_agree(trained, train_settings)
    assert m.format == runs.RUN_FORMAT and m.model.resolved and m.dataset.content_hash
    assert m.trainable_parameters > 0 and m.global_step == 1 and m.started and m.finished


def test_an_older_shape_of_the_same_run_reads_the_same(trained, train_settings, tmp_path):
    import shutil

    old = tmp_path / "old" / trained.name
    shutil.copytree(trained, old)
    now = json.loads((old / "run.json").read_text(encoding="utf-8"))
    legacy = {"model": "tiny", "state": "completed", "prompt": {"text": now["prompt"], "hash": now["prompt_hash"]},
              "frames": now["frames"]}  # fmt: skip
    (old / "run.json").write_text(json.dumps(legacy, ensure_ascii=False), encoding="utf-8")
    _readers_agree(old, train_settings)  # the method comes from config.yaml, as older runs kept it
