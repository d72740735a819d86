"""The prompt cache: a follow-up reads only its new tokens, answers exactly as without the cache, and state never
crosses scopes (variant + person) or videos."""

from __future__ import annotations

import numpy as np
import pytest

from vmeta.config import Settings
from vmeta.models.generate import GenerationSettings, GenerationStats, generate, generate_stream
from vmeta.models.prompt_cache import PromptCache, read_prompt

GEN = GenerationSettings(max_new_tokens=8)
QUESTION = "这个视频的隐喻是什么？"


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def lively(request, lively_model_dir, tiny_data_dir):
    from vmeta.models.load import load_model

    return load_model(
        lively_model_dir, settings=Settings(data_dir=tiny_data_dir), device="cpu", dtype=request.param, cache=False
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two clips of the same size and length (same visual-token grid), different pictures."""
    from vmeta.testing.media import make_clip

    d = tmp_path_factory.mktemp("pc-clips")
    return [make_clip(d / f"c{i}.mp4", 160, 120, 10, 1.0, audio=False, seed=i) for i in range(2)]


def ask(loaded, messages, store=None, scope="s"):
    stages: list[str] = []
    pieces = list(
        generate_stream(loaded, messages, GEN, store=store, scope=scope, on_stage=lambda n, f: stages.append(n))
    )
    stats = pieces[-1]
    assert isinstance(stats, GenerationStats)
    return "".join(pieces[:-1]), stats, stages


def turn1(video):
    return [{"role": "user", "content": [{"type": "video", "video": str(video)}, {"type": "text", "text": QUESTION}]}]


def test_follow_up_reads_only_its_new_tokens_and_answers_as_without_cache(lively, clips):
    store = PromptCache(max_bytes=1 << 30)
    first = turn1(clips[0])
    text1, s1, stages1 = ask(lively, first, store)
    assert text1 == generate(lively, first, GEN).text and text1.strip()  # a real answer, not whitespace
    assert s1.cached_tokens == 0 and s1.visual_tokens > 0
    assert 0 < s1.first_token_s <= s1.total_s and s1.decode_tokens_per_s > 0  # the token-level clock
    assert stages1[0] == "frames" and "encoding" in stages1 and stages1[-1] == "writing"

    second = [*first, {"role": "assistant", "content": text1}, {"role": "user", "content": "再说一遍，短一点"}]
    text2, s2, stages2 = ask(lively, second, store)
    assert text2 == generate(lively, second, GEN).text
    # everything up to the first answer's end was kept (the re-tokenised answer may differ in its last piece)
    assert s2.cached_tokens >= s1.prompt_tokens
    assert s2.prompt_tokens - s2.cached_tokens < 20
    assert "encoding" not in stages2  # the video was not read again
    assert store.hits == 1 and len(store) == 1  # turn 2's state replaced turn 1's (a prefix of it)


def test_a_new_conversation_about_the_same_video_skips_the_vision_tower(lively, clips):
    store = PromptCache(max_bytes=1 << 30)
    ask(lively, turn1(clips[0]), store)
    other = [{"role": "system", "content": "你是短视频隐喻专家。"}, *turn1(clips[0])]
    text, stats, stages = ask(lively, other, store)
    assert text == generate(lively, other, GEN).text
    # a new prefix (only the template's opening tokens are shared), but the video's features are kept
    assert stats.cached_tokens < 5 and "encoding" not in stages


def test_no_reuse_across_scopes_or_videos(lively, clips):
    store = PromptCache(max_bytes=1 << 30)
    ask(lively, turn1(clips[0]), store, scope=("tiny:A", "alice"))
    _, other_person, stages = ask(lively, turn1(clips[0]), store, scope=("tiny:A", "bob"))
    assert other_person.cached_tokens == 0 and "encoding" in stages
    _, other_variant, stages = ask(lively, turn1(clips[0]), store, scope=("tiny:B", "alice"))
    assert other_variant.cached_tokens == 0 and "encoding" in stages
    # same person, same grid, another video: only the tokens before the video are shared
    text, other_video, stages = ask(lively, turn1(clips[1]), store, scope=("tiny:A", "alice"))
    assert 0 < other_video.cached_tokens < 20 and "encoding" in stages
    assert text == generate(lively, turn1(clips[1]), GEN).text


def test_a_paused_read_is_continued_by_the_question(lively, clips, monkeypatch):
    import torch

    from vmeta.models import prompt_cache
    from vmeta.models.chat_inputs import prepare_inputs, to_device
    from vmeta.models.generate import frame_settings_for

    monkeypatch.setattr(prompt_cache, "PAUSE_CHUNK_TOKENS", 16)
    store = PromptCache(max_bytes=1 << 30)
    messages = turn1(clips[0])
    inputs = to_device(lively, prepare_inputs(lively, [messages], frame_settings_for(lively.spec)).inputs)
    n = int(inputs["input_ids"].shape[1])
    chunks = iter(range(100))
    with torch.inference_mode():
        state = read_prompt(lively.model, inputs, n - 1, store=store, scope="s", should_pause=lambda: next(chunks) >= 2)
    assert state.done == 48 < n - 1 and len(store) == 1  # three chunks read, kept for later
    text, stats, _ = ask(lively, messages, store)
    assert stats.cached_tokens == 48
    assert text == generate(lively, messages, GEN).text


def test_the_store_stays_within_its_bytes(lively, clips):
    first = turn1(clips[0])
    probe = PromptCache(max_bytes=1 << 30)
    ask(lively, first, probe)
    one = probe.nbytes
    store = PromptCache(max_bytes=int(one * 1.5))  # room for one conversation's state and its video's features
    ask(lively, first, store, scope="a")
    ask(lively, first, store, scope="b")
    assert store.nbytes <= store.max_bytes
    _, again, _ = ask(lively, first, store, scope="a")  # evicted: read again, same answer
    assert again.cached_tokens == 0
    off = PromptCache(max_bytes=0)
    ask(lively, first, off)
    assert len(off) == 0 and off.nbytes == 0


def test_prefix_key_marks_media_by_content():
    import torch

    from vmeta.models.prompt_cache import Media, prompt_key

    ids = torch.tensor([[1, 2, 9, 9, 9, 3]])
    a = Media("video", 2, 3, b"a" * 16, None, None)
    b = Media("video", 2, 3, b"b" * 16, None, None)
    ka, kb = prompt_key(ids, [a]), prompt_key(ids, [b])
    assert ka[:2].tolist() == [1, 2] and ka[5] == 3 and (ka[2:5] < 0).all()
    assert np.flatnonzero(ka != kb).tolist() == [2, 3, 4]
