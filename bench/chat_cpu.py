"""Benchmark: how long a person waits for the chat assistant on a CPU, today's path against the default one.

    python bench/chat_cpu.py                      # Qwen2-VL-2B architecture, random weights (no download)
    python bench/chat_cpu.py --runs 3 --configs before-bf16,now --json out.json
    python bench/chat_cpu.py --layers 2 --runs 1  # a shallow copy of the architecture: checks the script in a minute

Input, as in issue 12: a 15 s 720x1280 30 fps clip (generated once, cached in --workdir), the question
这个视频的隐喻是什么？ and one follow-up question; frames at the CPU budget (256x256 a frame, 2 fps: the training
budget of configs/qwen2-vl-2b), answers of --new-tokens tokens. The model is the real Qwen2-VL-2B architecture
with random bf16 weights, saved once as a model folder in --workdir and loaded the way `vmeta serve` loads it.

Configurations (each in its own fresh process, so peak memory is its own):

- before-fp32 / before-bf16: the generation path `vmeta serve` used before the prompt cache
  (`generate_stream` without a store: every turn reads the whole conversation, the video included), in
  float32 (the old CPU default) and bfloat16.
- now: the default CPU path, through `LocalEngine` as the server runs it — the int8 runtime (linear layers with
  int8 weights through PyTorch's int8 operators), bf16 elsewhere where the CPU computes it natively (else
  float32), the prompt cache, reading ahead at upload.
- now-openvino: the same with the linear layers in OpenVINO (int8 weights, int8 activations).
- now-torch: the same with full bf16 weights: what the cache and the read ahead give alone.
- now-eager: the default without compiling the int8 matmuls (VMETA_CPU_COMPILE=false).

Measured per run (medians over --runs are printed): first token of a cold turn 1 (video and question in one
request, as /v1 clients send it), first token of the follow-up (the same history + the answer + a question),
first token of a question sent after the video was read at upload (the read's own time is shown beside it: it
happens while the person types), decode tokens/s (after the first token), and the process' peak memory.
The 2 cores are shared by nothing else: do not run two benchmarks, or a benchmark and the tests, at once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

QUESTION = "这个视频的隐喻是什么？"
FOLLOW_UP = "这个隐喻表达了什么情绪？"
CONFIGS = ("before-fp32", "before-bf16", "now-torch", "now-openvino", "now-eager", "now")


# --------------------------------------------------------------------------------------------- inputs
def ensure_model(workdir: Path, layers: int | None) -> Path:
    """The Qwen2-VL-2B architecture with random weights as a model folder (saved once; ~4.4 GB in bf16)."""
    folder = workdir / (f"qwen2-vl-2b-random-{layers}l" if layers else "qwen2-vl-2b-random")
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoProcessor, GenerationConfig, Qwen2VLForConditionalGeneration

    from vmeta.devtools import torchvision_shim
    from vmeta.models.tiny import QWEN2_VL_2B_IDS, build_tiny, qwen2_vl_2b_config

    torchvision_shim.install()
    tiny = workdir / "tiny"
    if not (tiny / "config.json").is_file():
        build_tiny(tiny, seed=0)  # for its processor: the real Qwen2 tokenizer and Qwen2-VL's image processing
    print(f"building the random-weight model in {folder} (once) ...", file=sys.stderr, flush=True)
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration._from_config(qwen2_vl_2b_config(layers=layers), dtype=torch.bfloat16)
    end = QWEN2_VL_2B_IDS["<|im_end|>"]
    model.generation_config = GenerationConfig(eos_token_id=[end], pad_token_id=QWEN2_VL_2B_IDS["<|endoftext|>"])
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    AutoProcessor.from_pretrained(tiny).save_pretrained(tmp)
    tmp.replace(folder)
    return folder


def ensure_clip(workdir: Path) -> Path:
    from video_sampling import generate_clip  # the sampler benchmark's phone-like clips

    path = workdir / "720x1280_gop250_15s.mp4"
    if not path.exists():
        print(f"generating {path.name} (once) ...", file=sys.stderr, flush=True)
        generate_clip(path, 720, 1280, 250, 15)
    return path


# --------------------------------------------------------------------------------------------- worker (subprocess)
def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) / 1024 for ln in fh if ln.startswith("VmHWM:"))


def worker(args) -> None:
    """One configuration in this process: load once, then --runs rounds of (cold turn 1, follow-up, question
    after a read at upload); prints one JSON line."""
    import asyncio
    import tempfile

    from vmeta.devtools import torchvision_shim

    torchvision_shim.install()
    from vmeta.config import Settings
    from vmeta.serve.engine import LocalEngine
    from vmeta.serve.engine_api import ChatRequest, Done, Token

    config = args.worker
    dtype = "float32" if config.endswith("fp32") else "bfloat16" if config == "before-bf16" else None
    runtime = {"now": "int8", "now-eager": "int8", "now-openvino": "openvino"}.get(config, "torch")
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="vmeta-bench-")), hf_offline=True, cpu_compile=config != "now-eager"
    )
    t0 = time.perf_counter()
    engine = LocalEngine(settings, str(args.model), device="cpu", dtype=dtype, runtime=runtime)
    engine.wait_ready()
    load_s = time.perf_counter() - t0
    model_id = engine.base_id
    video = {"type": "video", "video": str(args.clip)}
    first = [{"role": "user", "content": [video, {"type": "text", "text": QUESTION}]}]

    def ask(messages, user):
        """-> (first token s, decode tokens/s, answer, prompt tokens, visual tokens, cached tokens)."""
        if config.startswith("before"):
            return _ask_before(engine, messages, args)

        async def go():
            req = ChatRequest(model_id, messages, max_new_tokens=args.new_tokens, user=user)
            return [ev async for ev in engine.stream(req)]

        events = asyncio.run(go())
        done = events[-1]
        assert isinstance(done, Done), done
        text = "".join(e.text for e in events if isinstance(e, Token))
        x = done.extra  # token-level clock: random weights may write tokens that show no text for a while
        first = done.queue_s + x["first_token_s"]
        rate = x["decode_tokens_per_s"]
        return first, rate, text, done.prompt_tokens, x.get("visual_tokens"), x.get("cached_tokens", 0)

    rows = []
    for run in range(args.runs):
        user = f"bench-{run}"
        cold, rate, text, prompt, visual, _ = ask(first, user)
        history = [*first, {"role": "assistant", "content": text}, {"role": "user", "content": FOLLOW_UP}]
        follow, _, _, _, _, cached = ask(history, user)
        row = {"cold_s": cold, "decode_tps": rate, "follow_s": follow, "prompt_tokens": prompt}
        row |= {"visual_tokens": visual, "follow_cached": cached}
        if not config.startswith("before"):
            user2 = f"bench-upload-{run}"
            t = time.perf_counter()
            assert engine.read_ahead(model_id, [{"role": "user", "content": [video]}], user=user2)
            while not any(r.user == user2 for r in engine.reads):
                time.sleep(0.05)
            row["read_s"] = time.perf_counter() - t
            row["upload_q_s"] = ask(first, user2)[0]
        rows.append(row)
        print(json.dumps({"progress": config, "run": run + 1, **row}), file=sys.stderr, flush=True)
    engine.close()
    out = {"config": config, "dtype": str(engine.dtype).replace("torch.", ""), "why": engine.dtype_reason}
    out["runtime"] = engine.runtime_note
    out |= {"load_s": load_s, "peak_rss_mb": _peak_rss_mb(), "runs": rows}
    print(json.dumps(out), flush=True)


def _ask_before(engine, messages, args):
    """The old path: generate_stream without a prompt cache, frames as the engine now chooses them."""
    from vmeta.models.generate import GenerationSettings, GenerationStats, generate_stream

    loaded = engine.slots.load_base()
    fs, _ = engine.variants.frames_for(engine.variants.entry(engine.base_id), loaded.spec)
    pieces, stats = [], None
    for piece in generate_stream(loaded, messages, GenerationSettings(max_new_tokens=args.new_tokens), frames=fs):
        if isinstance(piece, GenerationStats):
            stats = piece
        else:
            pieces.append(piece)
    text = "".join(pieces)
    return stats.first_token_s, stats.decode_tokens_per_s, text, stats.prompt_tokens, stats.visual_tokens, 0


# --------------------------------------------------------------------------------------------- driver
def _median(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def _fmt(v: float | None, unit: str = "s") -> str:
    if v is None:
        return "—"
    return f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="rounds per configuration (medians are printed)")
    ap.add_argument("--baseline-runs", type=int, default=1, help="rounds for before-fp32 (over 2 minutes each)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--layers", type=int, default=None, help="a shallow copy (text layers and vision depth)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "vmeta-chat-bench")
    ap.add_argument("--json", type=Path, default=None, help="write every run's numbers here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--clip", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"--configs: unknown {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    model, clip = ensure_model(args.workdir, args.layers), ensure_clip(args.workdir)
    results = {}
    for config in configs:
        runs = args.baseline_runs if config == "before-fp32" else args.runs
        cmd = [sys.executable, __file__, "--worker", config, "--model", str(model), "--clip", str(clip)]
        cmd += ["--runs", str(runs), "--new-tokens", str(args.new_tokens)]
        print(f"== {config} ({runs} run(s))", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        results[config] = json.loads(proc.stdout.strip().splitlines()[-1])

    what = f"Qwen2-VL-2B architecture{f' ({args.layers} layers)' if args.layers else ''}, random weights"
    print(f"\n{what}; {clip.name}; {args.new_tokens} new tokens; medians of the runs; {os.cpu_count()} cores\n")
    head = ["config", "dtype", "runs", "prompt tok", "visual tok", "cold turn 1", "follow-up", "after upload (read)"]
    head += ["decode", "peak RSS", "load"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for config, r in results.items():
        rows = r["runs"]
        upload = _fmt(_median(rows, "upload_q_s"))
        if _median(rows, "read_s") is not None:
            upload += f" ({_fmt(_median(rows, 'read_s'))})"
        cells = [config, r["dtype"], str(len(rows)), str(rows[0]["prompt_tokens"]), str(rows[0]["visual_tokens"])]
        cells += [_fmt(_median(rows, "cold_s")), _fmt(_median(rows, "follow_s")), upload]
        cells += [_fmt(_median(rows, "decode_tps"), "tok/s"), f"{r['peak_rss_mb'] / 1024:.1f} GB", _fmt(r["load_s"])]
        print("| " + " | ".join(cells) + " |")
    if "now" in results:
        now = results["now"]["runs"]
        print()
        for ref in ("before-bf16", "before-fp32", "now-torch", "now-openvino", "now-eager"):
            if ref not in results:
                continue
            old = results[ref]["runs"]
            parts = []
            for label, a, b in (
                ("cold turn 1", "cold_s", "cold_s"),
                ("follow-up", "follow_s", "follow_s"),
                ("question after upload", "upload_q_s", "upload_q_s"),
            ):
                # what a person waited for that question before: the whole read, where nothing was read ahead
                x, y = _median(old, a) or _median(old, "cold_s"), _median(now, b)
                if x and y:
                    parts.append(f"{label} {x / y:.1f}x faster")
            dx, dy = _median(old, "decode_tps"), _median(now, "decode_tps")
            if dx and dy:
                parts.append(f"decode {dy / dx:.2f}x")
            print(f"now vs {ref}: " + ", ".join(parts))
        print(f"now: {results['now']['runtime']}; {results['now']['dtype']} elsewhere ({results['now']['why']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
