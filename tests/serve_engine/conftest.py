"""Fixtures for the inference-engine tests: a tiny Qwen2-VL, LoRA adapters whose greedy outputs differ,
run folders as `vmeta train` writes them (good, wrong base, unfinished, full model) and a merged export.

Everything is built offline on the CPU in a few seconds, once per session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vmeta.devtools import torchvision_shim
from vmeta.runs import update_run

torchvision_shim.install()  # dev/test only: PyPI's CUDA torchvision next to CPU torch

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="session")
def engine_data_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A VMETA data dir whose models/tiny holds the tiny random Qwen2-VL (a copy of the suite's one)."""
    data = tmp_path_factory.mktemp("engine-data")
    shutil.copytree(tiny_model_dir, data / "models" / "tiny")
    return data


@pytest.fixture(scope="session")
def engine_settings(engine_data_dir):
    from vmeta.config import Settings

    return Settings(data_dir=engine_data_dir, hf_offline=True)


@pytest.fixture(scope="session")
def tiny_loaded(engine_settings):
    """The tiny model loaded once; helpers work on deep copies of it."""
    from vmeta.models.load import load_model

    return load_model("tiny", settings=engine_settings, device="cpu", cache=False)


def make_adapter(tiny_loaded, out: Path, seed: int, r: int = 4, alpha: int = 32) -> Path:
    """A LoRA adapter on the tiny model's LLM with random (non-zero) B weights, so it changes greedy output."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(
            copy.deepcopy(tiny_loaded.model),
            LoraConfig(r=r, lora_alpha=alpha, target_modules=LORA_TARGETS, init_lora_weights=False),
        )
    model.save_pretrained(str(out))
    return out


def make_merged(tiny_loaded, adapter: Path, out: Path) -> Path:
    """The tiny model with `adapter` merged in, saved as a full checkpoint with its processor (like `vmeta export`)."""
    import copy

    from peft import PeftModel

    merged = PeftModel.from_pretrained(copy.deepcopy(tiny_loaded.model), str(adapter)).merge_and_unload()
    merged.save_pretrained(str(out))
    tiny_loaded.processor.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def adapters(tiny_loaded, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(tiny_loaded, d / name, seed) for name, seed in (("A", 1), ("B", 2))}


@pytest.fixture(scope="session")
def runs_dir(tiny_loaded, engine_data_dir, adapters, tmp_path_factory) -> Path:
    """runs/good (adapter on tiny), runs/wrongbase (adapter that says it was trained on Qwen2-VL-2B),
    runs/unfinished (run.json only), runs/fullrun (run.json + model/ with full weights)."""
    runs = tmp_path_factory.mktemp("runs")
    tiny = str(engine_data_dir / "models" / "tiny")
    good = runs / "good"
    good.mkdir()
    make_adapter(tiny_loaded, good / "adapter", seed=3)
    update_run(good, base_model=tiny, method="lora", status="finished")
    wrong = runs / "wrongbase"
    wrong.mkdir()
    shutil.copytree(adapters["A"], wrong / "adapter")
    update_run(wrong, base_model="qwen2-vl-2b-instruct", method="lora", status="finished")
    unfinished = runs / "unfinished"
    unfinished.mkdir()
    update_run(unfinished, base_model="tiny", method="lora", status="running")
    full = runs / "fullrun"
    full.mkdir()
    make_merged(tiny_loaded, adapters["B"], full / "model")
    update_run(full, base_model="tiny", method="full", status="finished")
    return runs


@pytest.fixture(scope="session")
def exports_dir(tiny_loaded, adapters, tmp_path_factory) -> Path:
    """exports/merged-a: tiny + adapter A merged; exports/broken: config.json without weights."""
    exports = tmp_path_factory.mktemp("exports")
    make_merged(tiny_loaded, adapters["A"], exports / "merged-a")
    (exports / "broken").mkdir()
    (exports / "broken" / "config.json").write_text("{}", encoding="utf-8")
    return exports


@pytest.fixture(scope="module")
def engine(engine_settings, adapters, runs_dir, exports_dir):
    """One LocalEngine for the module: tiny base + adapters A and B (+ runs/ and exports/)."""
    from vmeta.serve.engine import LocalEngine

    eng = LocalEngine(
        engine_settings,
        "tiny",
        adapters={k: str(v) for k, v in adapters.items()},
        runs_dir=runs_dir,
        exports_dir=exports_dir,
        device="cpu",
        dtype="float32",  # exact comparisons with plain transformers/peft (bf16 rounds by GEMM shape)
        runtime="torch",  # and full weights (tests/serve_engine/test_openvino_engine.py covers int8 OpenVINO)
    )
    assert eng.wait_ready(120)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory) -> Path:
    from vmeta.testing import media

    d = tmp_path_factory.mktemp("engine-clips")
    return media.make_clip(d / "clip.mp4", 160, 120, 10, 1.0, audio=False)
