"""`vmeta models build-demo`: the tiny Qwen2-VL trained on the sample labels answers in the template's words."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmeta.dataset.prompts import DEFAULT_PROMPT
from vmeta.dataset.template import conforms, parse
from vmeta.errors import UserError
from vmeta.recipes.demo import CHAT_PROMPTS, DEFAULT_STEPS, build_demo

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample"
VIDEOS = SAMPLE / "videos"


def _sha(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def _ask(loaded, video: Path, prompt: str = DEFAULT_PROMPT) -> str:  # type: ignore[no-untyped-def]
    from vmeta.models.generate import GenerationSettings, generate

    parts = [{"type": "video", "video": str(video)}, {"type": "text", "text": prompt}]
    return generate(loaded, [{"role": "user", "content": parts}], GenerationSettings(max_new_tokens=300)).text


@pytest.fixture(scope="module")
def demo(demo_model_dir):  # type: ignore[no-untyped-def]
    """The session's demo model (tests/conftest.py: build-demo with its defaults), loaded."""
    from vmeta.models.load import load_model

    return load_model(demo_model_dir, device="cpu", cache=False)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    """A 3-step build: enough to compare weights between builds."""
    return build_demo(tmp_path_factory.mktemp("models") / "small", seed=0, steps=3).path


@pytest.mark.slow
@pytest.mark.parametrize(("video", "concept"), [("自嘲幽默类_2.mp4", "厨房杀手"), ("硬核类_8.mp4", "使命必达")])
def test_a_sample_video_gets_its_label_in_the_template(demo, video, concept):
    text = _ask(demo, VIDEOS / video)
    assert text.strip(), "the demo model answered only whitespace"
    assert text.startswith("本视频讲述了")
    parsed = parse(text)
    assert parsed.ok, (text, parsed.missing)
    assert concept in parsed.slots["concept"]  # this video's own label, not another one's


@pytest.mark.slow
@pytest.mark.parametrize("prompt", CHAT_PROMPTS)
def test_chat_messages_get_the_label_too(demo, prompt):
    text = _ask(demo, VIDEOS / "硬核类_8.mp4", prompt)
    assert conforms(text) and "使命必达" in text, text


@pytest.mark.slow
def test_folder_is_a_tiny_checkpoint_marked_as_a_demo(demo_model_dir, tiny_model_dir):
    from vmeta.models.resolution import spec_for_folder

    demo_dir = demo_model_dir
    assert sorted(p.name for p in demo_dir.iterdir()) == sorted(p.name for p in tiny_model_dir.iterdir())
    assert _sha(demo_dir) != _sha(tiny_model_dir)  # trained, not the random weights
    info = json.loads((demo_dir / "vmeta.json").read_text(encoding="utf-8"))
    assert info["kind"] == "tiny-demo" and info["not_a_real_model"] is True and info["random_weights"] is False
    assert info["steps"] == DEFAULT_STEPS and info["trained_on"]["samples"] == 10
    assert conforms(info["sample_answer"])
    assert "NOT a real model" in (demo_dir / "README.md").read_text(encoding="utf-8")
    spec = spec_for_folder(demo_dir)  # the tiny family: its small frames, as in training
    assert spec.family == "tiny" and "build-demo" in spec.notes


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmeta", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        timeout=300,
    )


@pytest.mark.slow
def test_cli_refuses_a_busy_folder_then_forces_the_same_weights(small_demo, tmp_path):
    from typer.testing import CliRunner

    from vmeta.cli import app

    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    res = _cli("models", "build-demo", str(target))  # the real entry point: exit 2, one sentence, no traceback
    assert res.returncode == 2
    assert "not empty" in res.stderr and "--force" in res.stderr and "Traceback" not in res.stderr
    assert (target / "keep.txt").read_text() == "mine"

    res = CliRunner().invoke(app, ["models", "build-demo", str(target), "--force", "--steps", "3"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "built" in res.output and "answer for one of its videos" in res.output
    assert not (target / "keep.txt").exists()
    assert _sha(target) == _sha(small_demo)  # same seed and steps: the same weights
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


@pytest.mark.slow
def test_other_seed_gives_other_weights(small_demo, tmp_path):
    other = build_demo(tmp_path / "other", seed=1, steps=3).path
    assert _sha(other) != _sha(small_demo)


def test_bad_options_are_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="at least 1 step"):
        build_demo(tmp_path / "a", steps=0)
    with pytest.raises(UserError, match="no such folder"):
        build_demo(tmp_path / "b", sample=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no sheet\.csv"):
        build_demo(tmp_path / "c", sample=tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing written, no staging left
