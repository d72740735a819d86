"""The one generation function: streaming equals non-streamed greedy output; multi-turn; batches equal one-by-one."""

from __future__ import annotations

import time

import pytest

from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.models.generate import (
    GenerationSettings,
    GenerationStats,
    frame_settings_for,
    generate,
    generate_batch,
    generate_stream,
)
from vmeta.models.registry import MODELS
from vmeta.testing.media import make_clip
from vmeta.video.sampling import FrameSettings

# Greedy with a repetition penalty: deterministic, and the random tiny model then writes varied text
# (plain greedy repeats one token, which would make the equality checks weak).
GEN = GenerationSettings(max_new_tokens=12, repetition_penalty=3.0)


@pytest.fixture(scope="module")
def loaded(tiny_data_dir):
    from vmeta.models.load import load_model

    return load_model("tiny", settings=Settings(data_dir=tiny_data_dir), device="cpu", cache=False)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen-clips")
    return [make_clip(d / f"c{i}.mp4", 64, 64, 10, s, audio=False, seed=i) for i, s in enumerate((1.0, 2.0, 3.0))]


def _ask(video, text="这个视频的隐喻是什么？"):
    return [{"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": text}]}]


def test_settings_are_validated():
    with pytest.raises(UserError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(UserError, match="top_p"):
        GenerationSettings(top_p=0)
    with pytest.raises(UserError, match="temperature"):
        GenerationSettings(do_sample=True, temperature=0)
    with pytest.raises(UserError, match="min_new_tokens"):
        GenerationSettings(max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(UserError, match="unknown"):
        GenerationSettings.from_dict({"max_tokens": 3})
    assert GenerationSettings.from_dict(GEN.to_dict()) == GEN


def test_family_frame_settings_are_valid():
    for spec in MODELS.values():
        fs = frame_settings_for(spec)
        assert isinstance(fs, FrameSettings)
    tiny = frame_settings_for(MODELS["tiny"])
    assert tiny.max_pixels == 224 * 224 and tiny.fps == 2.0 and tiny.min_frames == 4
    assert frame_settings_for(MODELS["internvl2.5-2b"]).nframes == 8


def test_stream_equals_non_streamed_and_has_stats(loaded, clips):
    pieces = list(generate_stream(loaded, _ask(clips[0]), GEN))
    stats = pieces[-1]
    assert isinstance(stats, GenerationStats)
    texts = pieces[:-1]
    assert texts and all(isinstance(p, str) for p in texts)
    streamed = "".join(texts)
    assert streamed == generate_batch(loaded, [_ask(clips[0])], GEN)[0].text
    assert streamed == generate(loaded, _ask(clips[0]), GEN).text
    assert stats.new_tokens == 12 and stats.finish_reason in ("length", "stop")
    assert stats.prompt_tokens > 20
    assert 0 < stats.ttft_s <= stats.total_s and stats.tokens_per_s > 0
    assert stats.frames[0]["nframes"] == 4 and stats.frames[0]["indices"] == [0, 3, 6, 9]
    assert stats.frames[0]["source"] == str(clips[0])
    assert stats.frame_settings["max_pixels"] == 224 * 224


def test_multi_turn_with_video_in_the_first_turn(loaded, clips):
    first = generate(loaded, _ask(clips[1]), GEN)
    messages = [
        *_ask(clips[1]),
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "请再简短一点。"},
    ]
    again = generate(loaded, messages, GEN)
    assert again.stats.prompt_tokens > first.stats.prompt_tokens + 5
    assert len(again.stats.frames) == 1 and again.stats.new_tokens > 0
    # a system turn and a plain-text conversation work too
    plain = generate(loaded, [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"}], GEN)
    assert plain.stats.frames == [] and plain.stats.new_tokens > 0
    with pytest.raises(UserError, match="assistant"):
        generate(loaded, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}], GEN)
    with pytest.raises(UserError, match="role"):
        generate(loaded, [{"role": "robot", "content": "hi"}], GEN)


def test_batch_with_videos_of_different_lengths_equals_one_by_one(loaded, clips):
    convs = [_ask(c) for c in clips]
    batch = generate_batch(loaded, convs, GEN)
    single = [generate_batch(loaded, [c], GEN)[0] for c in convs]
    assert [r.text for r in batch] == [r.text for r in single]
    assert [r.stats.frames[0]["nframes"] for r in batch] == [4, 4, 6]
    assert len({r.text for r in batch}) > 1  # the inputs matter
    assert [r.stats.prompt_tokens for r in batch] == [r.stats.prompt_tokens for r in single]


def test_array_video_and_explicit_frame_settings(loaded, clips, video_4x56):
    res = generate(loaded, [{"role": "user", "content": [{"type": "video", "video": video_4x56}, "描述视频"]}], GEN)
    assert res.stats.frames[0]["nframes"] == 4 and res.stats.frames[0]["source"] == "array"
    fs = FrameSettings(nframes=6, max_pixels=56 * 56, min_pixels=56 * 56)
    res = generate(loaded, _ask(clips[2]), GEN, fs)
    assert res.stats.frames[0]["nframes"] == 6 and (res.stats.frames[0]["height"], res.stats.frames[0]["width"]) == (
        56,
        56,
    )


def test_closing_the_stream_stops_generation(loaded, clips):
    long = GenerationSettings(max_new_tokens=400, min_new_tokens=400, repetition_penalty=3.0)
    stream = generate_stream(loaded, _ask(clips[0]), long)
    first = next(stream)
    assert isinstance(first, str)
    t = time.perf_counter()
    stream.close()  # a client went away: the background thread must end soon
    assert time.perf_counter() - t < 5


def test_cancel_stops_the_prompt_pass_within_one_layer(loaded, clips):
    """A client that goes away while a long video is being read (prefill) stops it at the next layer."""
    import threading

    import torch

    cancel = threading.Event()
    seen: list[object] = []

    def spy(module, args):  # registered before generate_stream's own checks, so it runs first
        seen.append(module)
        if len(seen) == 3:  # part-way through the vision blocks of the prompt's forward pass
            cancel.set()

    layers = [layer for m in loaded.model.modules() if isinstance(m, torch.nn.ModuleList) for layer in m]
    assert len(layers) > 3
    handles = [layer.register_forward_pre_hook(spy) for layer in layers]
    try:
        pieces = list(generate_stream(loaded, _ask(clips[0]), GEN, cancel=cancel))
    finally:
        for h in handles:
            h.remove()
    assert pieces == []  # no text and no stats: the stream just ends
    assert len(seen) == 3  # the third layer never ran, nor anything after it
    # the checks are gone afterwards: the next answer is whole
    assert isinstance(list(generate_stream(loaded, _ask(clips[0]), GEN))[-1], GenerationStats)
    cancel.set()  # set before the call: nothing runs
    assert list(generate_stream(loaded, _ask(clips[0]), GEN, cancel=cancel)) == []


def test_unreadable_video_is_a_user_error(loaded, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(UserError, match=r"bad\.mp4"):
        generate(loaded, _ask(bad), GEN)


# ---------------------------------------------------------------------------------------------------------------
# The other families' code paths, on toy checkpoints built here (random weights, the tiny model's tokenizer).


def _build_tiny_qwen25(src, out):
    import json

    import torch
    from transformers import (
        AutoProcessor,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )

    proc = AutoProcessor.from_pretrained(str(src))
    cfg = json.loads((src / "config.json").read_text())
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "out_hidden_size": cfg["text_config"]["hidden_size"],
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
    }
    ids = {k: cfg[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config = Qwen2_5_VLConfig(text_config=cfg["text_config"], vision_config=vision, tie_word_embeddings=True, **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = _gen_config(proc.tokenizer)
    model.save_pretrained(str(out))
    Qwen2_5_VLProcessor(
        image_processor=proc.image_processor,
        video_processor=proc.video_processor,
        tokenizer=proc.tokenizer,
        chat_template=proc.chat_template,
    ).save_pretrained(str(out))
    return out


def _gen_config(tok):
    from transformers import GenerationConfig

    end = tok.convert_tokens_to_ids("<|im_end|>")
    return GenerationConfig(eos_token_id=[end, tok.pad_token_id], pad_token_id=tok.pad_token_id, do_sample=False)


INTERNVL_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif c['type'] == 'video' %}<video>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _build_tiny_internvl(src, out):
    import json

    import torch
    from transformers import (
        AutoTokenizer,
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    extra = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tok = AutoTokenizer.from_pretrained(str(src))
    tok.add_special_tokens({"additional_special_tokens": list(extra.values())})
    tok.save_pretrained(str(out / "tok"))
    tok_cfg = out / "tok" / "tokenizer_config.json"
    tok_cfg.write_text(json.dumps(json.loads(tok_cfg.read_text()) | {"extra_special_tokens": extra}))
    tok = AutoTokenizer.from_pretrained(str(out / "tok"))
    InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(crop_to_patches=False, size={"height": 56, "width": 56}),
        video_processor=InternVLVideoProcessor(size={"height": 56, "width": 56}),
        tokenizer=tok,
        image_seq_length=4,  # (56 / 14)^2 * 0.5^2
        chat_template=INTERNVL_TEMPLATE,
    ).save_pretrained(str(out))
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "image_size": [56, 56],
            "patch_size": [14, 14],
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tok),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
        },
        image_token_id=tok.context_image_token_id,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = InternVLForConditionalGeneration(config).eval()
    model.generation_config = _gen_config(tok)
    model.save_pretrained(str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen2_5_vl", "internvl"])
def test_other_families_load_and_generate(family, tiny_model_dir, tiny_data_dir, clips, tmp_path):
    from vmeta.models.chat_inputs import prepare_inputs
    from vmeta.models.load import load_model

    build = _build_tiny_qwen25 if family == "qwen2_5_vl" else _build_tiny_internvl
    folder = build(tiny_model_dir, tmp_path / family)
    lm = load_model(folder, settings=Settings(data_dir=tiny_data_dir), device="cpu", cache=False)
    assert lm.family == family
    convs = [_ask(c) for c in clips]
    if family == "qwen2_5_vl":
        # absolute-time mRoPE: the sampling fps of each video reaches the model as seconds per temporal patch
        prepared = prepare_inputs(lm, convs[:2], frame_settings_for(lm.spec))
        assert prepared.inputs["second_per_grid_ts"].tolist() == [2 / 4.0, 2 / 2.0]
    else:
        assert frame_settings_for(lm.spec).nframes == 8
    pieces = list(generate_stream(lm, convs[0], GEN))
    assert isinstance(pieces[-1], GenerationStats) and pieces[-1].new_tokens == GEN.max_new_tokens
    batch = generate_batch(lm, convs, GEN)
    assert "".join(pieces[:-1]) == batch[0].text
    assert [r.text for r in batch] == [generate(lm, c, GEN).text for c in convs]


def test_image_parts(loaded, tmp_path):
    import numpy as np
    from PIL import Image

    img = Image.fromarray(np.random.RandomState(3).randint(0, 256, (60, 80, 3), dtype=np.uint8))
    img.save(tmp_path / "x.png")
    by_path = generate(
        loaded, [{"role": "user", "content": [{"type": "image", "image": str(tmp_path / "x.png")}, "看图"]}], GEN
    )
    by_pil = generate(loaded, [{"role": "user", "content": [{"type": "image", "image": img}, "看图"]}], GEN)
    assert by_path.text == by_pil.text and by_path.stats.prompt_tokens > 20 and by_path.stats.frames == []
