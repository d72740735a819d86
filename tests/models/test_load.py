"""Loading: device/dtype choice, the tiny model from a folder or by name, offline errors, PEFT adapters, the cache."""

from __future__ import annotations

import json

import pytest

from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.models import load as load_mod
from vmeta.models.load import clear_model_cache, load_model, pick_device, pick_dtype, resolve_run


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_device_and_dtype_choice():
    import torch

    dev = pick_device(None)
    assert dev == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_dtype(None, "cpu") is torch.float32
    assert pick_dtype("bf16", "cpu") is torch.bfloat16
    assert pick_dtype("float32", "cuda") is torch.float32
    with pytest.raises(UserError, match="dtype"):
        pick_dtype("int3", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            pick_device("cuda")


def test_load_tiny_by_name_and_folder_and_cache(tiny_data_dir, tiny_model_dir):
    import torch

    settings = Settings(data_dir=tiny_data_dir)
    lm = load_model("tiny", settings=settings, device="cpu")
    assert type(lm.model).__name__ == "Qwen2VLForConditionalGeneration"
    assert lm.device == "cpu" and lm.dtype is torch.float32 and lm.source == "local"
    assert lm.family == "tiny" and not lm.model.training
    assert lm.processor.tokenizer.pad_token_id is not None
    # cached: the same object comes back; another model evicts it (LRU of 1)
    assert load_model("tiny", settings=settings, device="cpu") is lm
    other = load_model(str(tiny_model_dir), settings=settings, device="cpu")
    assert other is not lm and other.pretrained_id == str(tiny_model_dir)
    assert load_mod.cached_models() == [other]
    assert lm.describe()["dtype"] == "float32"


def test_missing_weights_offline_is_one_clear_error(tmp_path, empty_hf_cache):
    settings = Settings(data_dir=tmp_path / "data", models_dir=tmp_path / "models", hf_offline=True)
    with pytest.raises(UserError) as info:
        load_model("qwen2-vl-2b-instruct", settings=settings, device="cpu")
    msg = str(info.value)
    assert "qwen2-vl-2b-instruct" in msg and "Qwen/Qwen2-VL-2B-Instruct" in msg
    assert "--model" in msg and "VMETA_MODELS_DIR" in msg


def _make_adapter(base_dir, out_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(str(base_dir))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(out_dir))
    cfg_path = out_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base_dir)
    cfg_path.write_text(json.dumps(cfg))
    return out_dir


def test_adapter_and_run_folder(tmp_path, tiny_data_dir, tiny_model_dir):
    from peft import PeftModel

    run = tmp_path / "runs" / "lora1"
    _make_adapter(tiny_model_dir, run / "adapter")
    base, adapter = resolve_run(run)
    assert base == str(tiny_model_dir) and adapter == (run / "adapter").resolve()

    settings = Settings(data_dir=tiny_data_dir)
    lm = load_model(settings=settings, run_dir=run, device="cpu")
    assert isinstance(lm.model, PeftModel)
    assert lm.adapter == str((run / "adapter").resolve())
    # an adapter folder given as --model loads its base with it
    lm2 = load_model(str(run / "adapter"), settings=settings, device="cpu")
    assert isinstance(lm2.model, PeftModel)

    with pytest.raises(UserError, match=r"adapter_config\.json"):
        load_model("tiny", settings=settings, adapter=tmp_path, device="cpu")
    with pytest.raises(UserError, match="does not exist"):
        resolve_run(tmp_path / "nope")


def test_serving_dtype_follows_the_cpu(monkeypatch):
    import torch

    from vmeta.models import load

    monkeypatch.setattr(load, "native_bf16_cpu", lambda: "avx512_bf16")
    dt, why = load.serving_dtype(None, "cpu")
    assert dt == torch.bfloat16 and "avx512_bf16" in why
    monkeypatch.setattr(load, "native_bf16_cpu", lambda: None)
    dt, why = load.serving_dtype("auto", "cpu")
    assert dt == torch.float32 and "no native bfloat16" in why
    assert load.serving_dtype("bfloat16", "cpu")[0] == torch.bfloat16  # --dtype wins
    assert load.pick_dtype(None, "cpu") == torch.float32  # prediction and training keep float32 on any CPU
    with pytest.raises(UserError, match="float8"):
        load.serving_dtype("float8", "cpu")


def test_native_bf16_reads_the_cpu_flags():
    """What PyTorch reports agrees with the kernel's CPU flags (Linux)."""
    import re
    from pathlib import Path

    from vmeta.models.load import native_bf16_cpu

    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo here")
    flags = set(re.findall(r"\b(avx512_bf16|amx_tile)\b", info.read_text()))
    assert (native_bf16_cpu() is not None) == bool(flags)
