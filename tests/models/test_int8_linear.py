"""The int8 runtime (PyTorch's int8 operators): a single token is computed from the int8 weights exactly (the
weight-only operator); prompts quantise their activations per row too and stay within a stated tolerance; LoRA
adapters wrap the int8 layers; shapes the operators do not take are left alone."""

from __future__ import annotations

import copy

import pytest
import torch

from vmeta.config import Settings
from vmeta.models.int8_linear import ROWS_FOR_INT8_MATMUL, Int8Linear, convert_linears, convertible, quantize_int8


def _rounded(linear: torch.nn.Linear) -> torch.nn.Linear:
    """A float copy of `linear` whose weight is its int8 round trip (what Int8Linear holds)."""
    out = copy.deepcopy(linear)
    q, scale = quantize_int8(linear.weight)
    with torch.no_grad():
        out.weight.copy_((q.float() * scale[:, None]).to(out.weight.dtype))
    return out


def test_one_layer_single_token_exact_prompt_close():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 40)
    layer, ref = Int8Linear(lin), _rounded(lin)
    assert isinstance(layer, torch.nn.Linear) and layer.weight.numel() == 0 and layer.qweight.dtype == torch.int8
    one = torch.randn(1, 3, 64)  # 3 rows: the weight-only operator, activations and result in bf16
    expected = ref(one.bfloat16().float())
    torch.testing.assert_close(layer(one), expected, atol=2e-2, rtol=1e-2)
    assert (layer(one) - ref(one)).abs().max() > 0  # float32 input is rounded to bf16 (17x faster without AVX512-BF16)
    many = torch.randn(2, ROWS_FOR_INT8_MATMUL, 64)  # 32 rows: int8 x int8
    err = (layer(many) - ref(many)).abs().max() / ref(many).abs().max()
    assert 0 < err < 0.02, err  # activations are rounded to int8 too, per row
    assert layer(many.bfloat16()).dtype == torch.bfloat16 and layer(one.bfloat16()).dtype == torch.bfloat16


def test_unsupported_shapes_stay_float():
    model = torch.nn.Sequential(torch.nn.Linear(64, 40), torch.nn.Linear(40, 24), torch.nn.Linear(24, 64))
    conv = convert_linears(model)
    assert [type(m).__name__ for m in model] == ["Int8Linear", "Linear", "Linear"]  # in 40 / 24: not multiples of 32
    assert conv.layers == 1 and conv.kept == 2 and conv.bytes_after < conv.bytes_before / 3


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tiny_data_dir):
    from vmeta.models.load import load_model

    return load_model(tiny_model_dir, settings=Settings(data_dir=tiny_data_dir), device="cpu", cache=False)


def _inputs(lm, clip):
    from vmeta.models.chat_inputs import prepare_inputs, to_device
    from vmeta.models.generate import frame_settings_for

    ask = [{"role": "user", "content": [{"type": "video", "video": str(clip)}, {"type": "text", "text": "隐喻？"}]}]
    return to_device(lm, prepare_inputs(lm, [ask], frame_settings_for(lm.spec)).inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_whole_model_stays_close(tiny, small_clip, dtype):
    model = copy.deepcopy(tiny.model).to(dtype)
    inputs = _inputs(tiny, small_clip)
    inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(dtype)
    with torch.inference_mode():
        ref = model(**inputs).logits.float()
        conv = convert_linears(model)
        out = model(**inputs).logits.float()
    left = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    assert conv.layers > 10 and left == ["lm_head"]  # the tiny vocabulary (151,669) is not a multiple of 8
    err = (out - ref).abs().max() / ref.abs().max()
    assert err < 0.05, f"relative logit error {err:.3f}"
    assert (out[0, -1].argmax() == ref[0, -1].argmax()).item()


def test_lora_adapters_wrap_the_int8_layers(tiny, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(3)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft = get_peft_model(
        copy.deepcopy(tiny.model), LoraConfig(r=4, lora_alpha=32, target_modules=targets, init_lora_weights=False)
    )
    peft.save_pretrained(tmp_path / "adapter")
    ids = tiny.processor.tokenizer("你好，这个视频讲了什么？", return_tensors="pt").input_ids  # < 16 tokens: exact path
    with torch.inference_mode():
        base = copy.deepcopy(tiny.model)
        convert_linears(base)
        converted = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
        assert any(type(getattr(m, "base_layer", None)) is Int8Linear for m in converted.modules())
        rounded = copy.deepcopy(tiny.model)
        for name, m in list(rounded.named_modules()):
            for child_name, child in list(m.named_children()):
                if type(child) is torch.nn.Linear and "lora_" not in name and convertible(child):
                    setattr(m, child_name, _rounded(child))
        reference = PeftModel.from_pretrained(rounded, str(tmp_path / "adapter"))
        with_adapter = converted(input_ids=ids).logits
        # the weight-only operator rounds activations to bf16: ~2e-3 here, the adapter changes logits by far more
        torch.testing.assert_close(with_adapter, reference(input_ids=ids).logits, atol=5e-3, rtol=1e-2)
        with converted.disable_adapter():
            without = converted(input_ids=ids).logits
        assert (without - with_adapter).abs().max() > 20 * (with_adapter - reference(input_ids=ids).logits).abs().max()


def test_compiled_matmul_matches_eager_and_serves_every_shape(monkeypatch):
    from torch._dynamo.utils import counters

    from vmeta.models import int8_linear

    monkeypatch.setattr(int8_linear, "_MATMUL", [int8_linear.int8_matmul])  # restored after the test
    note = int8_linear.compile_int8_matmul(torch.float32)
    assert note.startswith("int8 matmuls compiled"), note
    assert int8_linear._MATMUL[0] is not int8_linear.int8_matmul
    graphs = counters["stats"]["unique_graphs"]
    torch.manual_seed(0)
    for k, n, bias in ((128, 384, True), (384, 96, False), (96, 160, True)):  # other sizes than the warm-up's
        layer = Int8Linear(torch.nn.Linear(k, n, bias=bias))
        with torch.inference_mode():
            x = torch.randn(2, 40, k)
            eager = int8_linear.int8_matmul(x.reshape(-1, k), layer.qweight, layer.scale, layer.bias)
            torch.testing.assert_close(layer(x), eager.reshape(2, 40, n), atol=1e-4, rtol=1e-4)
    assert counters["stats"]["unique_graphs"] == graphs  # compiled once at start: no answer waits for a compile
    assert int8_linear.compile_int8_matmul(torch.float32).startswith("int8 matmuls compiled")
