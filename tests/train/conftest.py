"""Fixtures for training tests: one tiny Qwen2-VL per session and a 3-record dataset of 4-frame 56x56 videos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vmeta.devtools import torchvision_shim

torchvision_shim.install()

LABELS = [
    "本视频讲述了一只猫。躺平出自网络，其因为猫一直睡觉，表达出了调侃的态度。",
    "本视频讲述了打工人。内卷出自教育，其因为竞争激烈，表达出了无奈的情绪。",
    "本视频讲述了城市夜跑。奔跑出自日常，其因为坚持，表达出了感动。",
]


@pytest.fixture(scope="session")
def train_settings(tmp_path_factory, tiny_model_dir):
    """Settings whose data dir holds models/tiny (so the name "tiny" resolves without building) and a cache."""
    from vmeta.config import Settings

    data = tmp_path_factory.mktemp("train-data-dir")
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    return Settings(data_dir=data, hf_offline=True)


@pytest.fixture(scope="session")
def train_dataset(tmp_path_factory) -> Path:
    """records.jsonl with 2 train + 1 val samples; videos are 2 s at 2 fps, 56x56 (-> 4 frames each)."""
    from vmeta.dataset.records import Dataset, Record, SourceRef
    from vmeta.testing import media
    from vmeta.video.meta import VideoMeta

    root = tmp_path_factory.mktemp("train-dataset")
    (root / "videos").mkdir()
    records = []
    for i, label in enumerate(LABELS):
        media.make_clip(root / "videos" / f"v{i}.mp4", 56, 56, fps=2, seconds=2.0, audio=False, seed=i)
        records.append(
            Record(
                id=f"s{i}",
                video=f"videos/v{i}.mp4",
                category="网络流行语",
                raw_label=label,
                label=label,
                source=SourceRef(sheet="s.csv", row=i + 2),
                split="val" if i == 2 else "train",
                video_meta=VideoMeta(
                    readable=True, frames=4, fps=2.0, width=56, height=56, display_width=56, display_height=56
                ),
            )
        )
    Dataset(root).save(records)
    return root


@pytest.fixture
def make_cfg(train_dataset, tmp_path):
    """Build a validated TrainConfig for the tiny model: tiny steps, no warmup, checkpoints only when asked."""
    from vmeta.train.config import load_config

    def make(method: str, out: Path | None = None, **overrides):
        base = {
            "method": method,
            "model.name": "tiny",
            "data.path": str(train_dataset),
            "data.frame_cache": "memory",
            "data.cutoff_len": 256,
            "data.prompt": "解释视频的隐喻。",  # short: keeps the tiny model's 151k-vocabulary logits cheap
            "out": str(out or tmp_path / f"run-{method}"),
            "training.batch_size": 2,
            "training.grad_accum": 1,
            "training.max_steps": 2,
            "training.warmup": 0,
            "training.scheduler": "constant",
            "training.lr": 1e-3,
            "training.save_checkpoints": False,
            "training.logging_steps": 1,
            "freeze.trainable_layers": 1,
            "lora.r": 4,
            "lora.alpha": 8,
            "galore.rank": 4,
            "galore.update_proj_gap": 5,
        }
        base.update(overrides)
        return load_config(None, base)

    return make
