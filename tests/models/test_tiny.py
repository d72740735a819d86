"""The tiny Qwen2-VL builder: deterministic, loads with transformers' own classes, runs a video end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vmeta.errors import UserError
from vmeta.models.chat_templates import QWEN2_VL_CHAT_TEMPLATE, QWEN2_VL_SPECIAL_TOKENS
from vmeta.models.tiny import build_tiny, build_tiny_info, qwen_tokenizer_dir

VIDEO_MESSAGES = [
    {
        "role": "user",
        "content": [{"type": "video"}, {"type": "text", "text": "请解释这个视频中的隐喻。"}],
    }
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()


def test_same_seed_gives_identical_weights(tiny_model_dir, tmp_path):
    again = build_tiny(tmp_path / "again", seed=0)
    assert _sha(again / "model.safetensors") == _sha(tiny_model_dir / "model.safetensors")
    assert json.loads((again / "config.json").read_text()) == json.loads((tiny_model_dir / "config.json").read_text())


def test_other_seed_gives_other_weights(tmp_path):
    # The small fallback tokenizer keeps these two builds fast; the seed is what differs.
    a = build_tiny(tmp_path / "a", seed=0, tokenizer="fallback")
    b = build_tiny(tmp_path / "b", seed=1, tokenizer="fallback")
    assert _sha(a / "model.safetensors") != _sha(b / "model.safetensors")


def test_folder_describes_itself(tiny_model_dir):
    info = json.loads((tiny_model_dir / "vmeta.json").read_text(encoding="utf-8"))
    assert info["kind"] == "tiny-random" and info["not_a_real_model"] is True
    assert info["seed"] == 0 and info["parameters"] > 0
    readme = (tiny_model_dir / "README.md").read_text(encoding="utf-8")
    assert "random weights" in readme and "NOT a real model" in readme
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ):
        assert (tiny_model_dir / name).is_file(), name


def test_config_token_ids_come_from_the_tokenizer(tiny_model_dir, processor):
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    tok = processor.tokenizer
    vocab = tok.get_vocab()
    assert all(t in vocab for t in QWEN2_VL_SPECIAL_TOKENS)
    assert cfg["video_token_id"] == vocab["<|video_pad|>"]
    assert cfg["image_token_id"] == vocab["<|image_pad|>"]
    assert cfg["vision_start_token_id"] == vocab["<|vision_start|>"]
    assert cfg["vision_end_token_id"] == vocab["<|vision_end|>"]
    assert cfg["text_config"]["vocab_size"] == len(tok)
    if qwen_tokenizer_dir() is not None:  # the real Qwen2 BPE: Qwen2-VL's ids
        assert (cfg["video_token_id"], cfg["image_token_id"], cfg["vision_start_token_id"]) == (151656, 151655, 151652)
        assert tok.encode("你好，世界", add_special_tokens=False) == [108386, 3837, 99489]


def test_loads_with_auto_classes(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    auto = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    assert isinstance(auto, Qwen2VLForConditionalGeneration)


def test_chat_template_renders_video_placeholder(processor):
    assert processor.chat_template == QWEN2_VL_CHAT_TEMPLATE
    text = processor.apply_chat_template(VIDEO_MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>请解释这个视频中的隐喻。<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # A given system turn replaces the default one; string content and add_vision_id work as upstream.
    text = processor.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "video"}, {"type": "video"}]}],
        tokenize=False,
        add_vision_id=True,
    )
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n"
        "Video 1: <|vision_start|><|video_pad|><|vision_end|>Video 2: <|vision_start|><|video_pad|><|vision_end|>"
        "<|im_end|>\n"
    )


def test_video_forward_and_generate(processor, model, video_4x56):
    text = processor.apply_chat_template(VIDEO_MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], videos=[video_4x56], return_tensors="pt")
    assert "pixel_values_videos" in inputs
    # 4 frames / temporal patch 2 = 2; 56 px / 14 = 4 patches a side -> grid (2, 4, 4); 2x2 merge -> 8 tokens.
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 8
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    gen = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert gen.shape[1] - inputs["input_ids"].shape[1] == 5


def test_fallback_tokenizer_model_works(tmp_path, video_4x56):
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    info = build_tiny_info(tmp_path / "fb", tokenizer="fallback")
    assert info.tokenizer_source.startswith("fallback")
    meta = json.loads((info.path / "vmeta.json").read_text(encoding="utf-8"))
    assert meta["tokenizer_is_qwen2"] is False
    assert "fallback" in (info.path / "README.md").read_text(encoding="utf-8")
    processor = AutoProcessor.from_pretrained(info.path)
    model = Qwen2VLForConditionalGeneration.from_pretrained(info.path).eval()
    text = processor.apply_chat_template(VIDEO_MESSAGES, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], videos=[video_4x56], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(model.config.video_token_id) == 8
    assert "请解释这个视频中的隐喻。" in processor.decode(ids)  # byte-level BPE round-trips Chinese
    with torch.no_grad():
        assert model(**inputs).logits.shape[-1] == len(processor.tokenizer) == info.vocab_size


def test_refuses_non_empty_folder(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        build_tiny(target)
    assert (target / "keep.txt").read_text() == "mine"
    with pytest.raises(UserError, match="is a file"):
        build_tiny(target / "keep.txt")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmeta", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


def test_cli_build_tiny_refuses_then_forces(tmp_path):
    from typer.testing import CliRunner

    from vmeta.cli import app

    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    # Through the real entry point: exit code 2 and one sentence, no traceback (refuses before importing torch).
    res = _cli("models", "build-tiny", str(target))
    assert res.returncode == 2
    assert "not empty" in res.stderr and "--force" in res.stderr and "Traceback" not in res.stderr
    assert (target / "keep.txt").exists()

    res = CliRunner().invoke(
        app, ["models", "build-tiny", str(target), "--force", "--tokenizer", "fallback", "--seed", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "parameters" in res.output and "fallback" in res.output
    assert not (target / "keep.txt").exists() and (target / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


# --- the CPU torchvision workaround (dev/test only) ------------------------------------------------------------


def _py(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def test_shim_installed_in_this_process():
    from vmeta.devtools import torchvision_shim

    # conftest ran install() before anything imported torchvision; calling it again changes nothing.
    assert torchvision_shim.status() in {"stubbed", "real-ops"}
    assert torchvision_shim.install() == torchvision_shim.status()
    import torchvision.transforms.v2.functional  # noqa: F401
    from transformers import Qwen2VLVideoProcessor  # noqa: F401


def test_shim_pth_line_registers_a_lazy_hook(tmp_path):
    from vmeta.devtools.torchvision_shim import PTH_LINE, write_pth

    pth = write_pth(tmp_path)
    assert pth.read_text(encoding="utf-8") == PTH_LINE
    # A fresh interpreter: drop any hook the venv's own .pth installed, run our line as site.py would.
    res = _py(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != '_TorchvisionImportHook']\n"
        f"exec(open({str(pth)!r}).read())\n"
        "assert 'torch' not in sys.modules, 'the hook must not import torch at start-up'\n"
        "import torchvision, torchvision.transforms.v2.functional\n"
        "from transformers import Qwen2VLVideoProcessor\n"
        "from vmeta.devtools.torchvision_shim import status\n"
        "print(status())"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] in {"stubbed", "real-ops"}


def test_library_never_imports_the_shim():
    src = Path(__file__).resolve().parents[2] / "src" / "vmeta"
    offenders = [
        p
        for p in src.rglob("*.py")
        if "devtools" not in p.parts and "torchvision_shim" in p.read_text(encoding="utf-8")
    ]
    assert offenders == []
