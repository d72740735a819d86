"""The local engine with the int8 CPU runtimes (PyTorch's int8 operators, the default on CPUs; OpenVINO): each
serves the base, LoRA adapters switched per request and follow-ups from the prompt cache; DoRA adapters are refused
with the reason."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from vmeta.errors import UserError
from vmeta.serve.engine_api import ChatRequest, Done, Token

OPENVINO = importlib.util.find_spec("openvino") is not None
RUNTIMES = [
    "int8",
    pytest.param("openvino", marks=pytest.mark.skipif(not OPENVINO, reason="openvino is not installed")),
]


def ask(engine, model, messages, user="u", n=6):
    async def go():
        return [ev async for ev in engine.stream(ChatRequest(model, messages, max_new_tokens=n, user=user))]

    events = asyncio.run(go())
    assert isinstance(events[-1], Done), events[-1]
    return "".join(e.text for e in events if isinstance(e, Token)), events[-1]


@pytest.fixture(scope="module")
def dora(tiny_loaded, tmp_path_factory):
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    out = tmp_path_factory.mktemp("dora") / "adapter"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = get_peft_model(
            copy.deepcopy(tiny_loaded.model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True)
        )
    model.save_pretrained(str(out))
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_runtime_serves_base_adapters_and_follow_ups(runtime, engine_settings, adapters, dora, small_clip):
    from vmeta.serve.engine import LocalEngine

    eng = LocalEngine(
        engine_settings,
        "tiny",
        adapters={"A": str(adapters["A"]), "D": str(dora)},
        device="cpu",
        runtime=runtime,
    )
    try:
        assert eng.wait_ready(120) and eng.runtime == runtime
        assert "int8" in eng.runtime_note
        from vmeta.models.int8_linear import Int8Linear

        layer = (
            Int8Linear
            if runtime == "int8"
            else __import__("vmeta.models.openvino_linear").models.openvino_linear.OVLinear
        )
        assert any(isinstance(m, layer) for m in eng.base_model.modules())
        base, _ = ask(eng, "tiny", [{"role": "user", "content": "你好"}])
        with_a, done_a = ask(eng, "tiny:A", [{"role": "user", "content": "你好"}])
        assert base != with_a and done_a.adapter == "A"
        assert ask(eng, "tiny", [{"role": "user", "content": "你好"}])[0] == base  # switching back

        first = [{"role": "user", "content": [{"type": "video", "video": str(small_clip)}, "这个视频的隐喻是什么？"]}]
        text, done = ask(eng, "tiny:A", first)
        follow = [*first, {"role": "assistant", "content": text}, {"role": "user", "content": "为什么？"}]
        _, again = ask(eng, "tiny:A", follow)
        assert again.extra["cached_tokens"] >= done.prompt_tokens

        from vmeta.serve.engine_api import EngineError

        # the DoRA adapter failed its preload: listed as unavailable, with the reason, and refused
        assert "tiny:D" not in {m.id for m in eng.models()}
        assert any(info.id == "tiny:D" and "DoRA" in reason for info, reason in eng.unavailable())
        with pytest.raises(EngineError, match="DoRA"):
            ask(eng, "tiny:D", [{"role": "user", "content": "你好"}])
    finally:
        eng.close()


def test_auto_keeps_small_models_in_full_precision(engine_settings):
    """The CPU default is int8, but a test or demo model gains nothing from it and would lose what it learnt."""
    from vmeta.serve.engine import LocalEngine

    eng = LocalEngine(engine_settings, "tiny", device="cpu")  # runtime: VMETA_CPU_RUNTIME=auto
    try:
        assert eng.wait_ready(120) and eng.runtime == "torch" and "too small" in eng.runtime_note
        assert not any(type(m).__name__ == "Int8Linear" for m in eng.base_model.modules())
    finally:
        eng.close()


@pytest.mark.skipif(not OPENVINO, reason="openvino is not installed")
def test_runtime_choice(monkeypatch):
    from vmeta.models import openvino_linear
    from vmeta.models.cpu_runtime import pick_runtime as _pick_runtime

    assert _pick_runtime("auto", "cpu") == "int8"
    assert _pick_runtime("openvino", "cpu") == "openvino"
    assert _pick_runtime("torch", "cpu") == "torch"
    assert _pick_runtime("auto", "cuda") == "torch"  # GPUs keep PyTorch
    with pytest.raises(UserError, match="runs on CPUs"):
        _pick_runtime("openvino", "cuda:0")
    with pytest.raises(UserError, match="one of"):
        _pick_runtime("onnx", "cpu")
    with pytest.raises(UserError, match="runs on CPUs"):
        _pick_runtime("int8", "cuda")
    monkeypatch.setattr(openvino_linear, "unavailable", lambda: "openvino is not installed")
    with pytest.raises(UserError, match="not installed"):
        _pick_runtime("openvino", "cpu")
