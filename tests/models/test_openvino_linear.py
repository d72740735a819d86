"""The OpenVINO runtime: int8 linear layers computed by OpenVINO, everything else in PyTorch. With the int8
rounding taken out (weights already on the int8 grid, float activations) the converted model must answer token
for token like PyTorch; with dynamic int8 activations (the serving default) within a stated tolerance."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("openvino", reason="openvino is not installed (pip install openvino): the CPU runtime is off")

from vmeta.config import Settings
from vmeta.models.generate import GenerationSettings, generate
from vmeta.models.openvino_linear import OVLinear, convert_linears, quantize_int8

GEN = GenerationSettings(max_new_tokens=8)


def _on_int8_grid(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every linear weight replaced by its int8 round trip (what OpenVINO will hold). A weight
    tied to the embeddings (lm_head) gets its own copy: the embeddings stay as they are, as in the converted model."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if type(m) is torch.nn.Linear and "lora_" not in name:
                q, scale = quantize_int8(m.weight)
                rounded = (q.float() * scale[:, None]).to(m.weight.dtype)
                m.weight = torch.nn.Parameter(rounded, requires_grad=False)
    return model


@pytest.fixture(scope="module")
def lively(lively_model_dir, tiny_data_dir):
    from vmeta.models.load import load_model

    return load_model(lively_model_dir, settings=Settings(data_dir=tiny_data_dir), device="cpu", cache=False)


def _ask(clip):
    return [{"role": "user", "content": [{"type": "video", "video": str(clip)}, {"type": "text", "text": "隐喻？"}]}]


def test_one_layer_equals_torch_when_rounding_is_taken_out():
    import openvino as ov

    torch.manual_seed(0)
    lin = _on_int8_grid(torch.nn.Sequential(torch.nn.Linear(48, 40)))[0]
    ovl = OVLinear(lin, ov.Core(), precision="f32", dynamic_group=0)
    assert isinstance(ovl, torch.nn.Linear) and ovl.weight.numel() == 0  # peft wraps it; the weights live in OV
    x = torch.randn(2, 5, 48)
    torch.testing.assert_close(ovl(x), lin(x), atol=1e-5, rtol=1e-5)
    assert ovl(x.bfloat16()).dtype == torch.bfloat16


def test_converted_model_answers_like_torch_with_the_same_int8_weights(lively, small_clip):
    reference = copy.copy(lively)
    reference.model = _on_int8_grid(copy.deepcopy(lively.model))
    converted = copy.copy(lively)
    converted.model = copy.deepcopy(lively.model)
    conv = convert_linears(converted.model, precision="f32", dynamic_group=0)
    assert conv.layers == sum(type(m) is OVLinear for m in converted.model.modules()) > 10
    assert not any(type(m) is torch.nn.Linear for m in converted.model.modules())
    assert conv.bytes_after < conv.bytes_before / 3  # float32 -> int8 (+ one scale per row)
    expected = generate(reference, _ask(small_clip), GEN).text
    assert expected.strip() and generate(converted, _ask(small_clip), GEN).text == expected


def test_dynamic_int8_activations_stay_close(tiny_model_dir, tiny_data_dir, small_clip):
    """The serving default on the plain tiny model (weights of a normally initialised network)."""
    from vmeta.models.chat_inputs import prepare_inputs, to_device
    from vmeta.models.generate import frame_settings_for
    from vmeta.models.load import load_model

    lm = load_model(tiny_model_dir, settings=Settings(data_dir=tiny_data_dir), device="cpu", cache=False)
    inputs = to_device(lm, prepare_inputs(lm, [_ask(small_clip)], frame_settings_for(lm.spec)).inputs)
    with torch.inference_mode():
        ref = lm.model(**inputs).logits
        convert_linears(lm.model)  # int8 weights, int8 activations in groups of 32
        out = lm.model(**inputs).logits
    err = (out - ref).abs().max() / ref.abs().max()
    assert err < 0.05, f"relative logit error {err:.3f}"
    assert (out[0, -1].argmax() == ref[0, -1].argmax()).item()


def test_lora_adapters_wrap_the_openvino_layers(lively, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    torch.manual_seed(3)
    peft = get_peft_model(
        copy.deepcopy(lively.model), LoraConfig(r=4, lora_alpha=32, target_modules=targets, init_lora_weights=False)
    )
    peft.save_pretrained(tmp_path / "adapter")
    messages = [{"role": "user", "content": "你好"}]
    reference = copy.copy(lively)
    reference.model = PeftModel.from_pretrained(_on_int8_grid(copy.deepcopy(lively.model)), str(tmp_path / "adapter"))
    converted = copy.copy(lively)
    base = copy.deepcopy(lively.model)
    convert_linears(base, precision="f32", dynamic_group=0)
    converted.model = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))  # injected around OVLinear
    assert any(type(m.base_layer) is OVLinear for m in converted.model.modules() if hasattr(m, "base_layer"))
    with_adapter = generate(converted, messages, GEN).text
    assert with_adapter == generate(reference, messages, GEN).text
    with converted.model.disable_adapter():
        assert generate(converted, messages, GEN).text != with_adapter
