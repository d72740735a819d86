"""Benchmark one training step per fine-tuning method: samples/s and peak memory.

    python bench/train_step.py [--methods lora,dora,...] [--steps 5] [--batch 2]      # tiny model, CPU
    python bench/train_step.py --real-arch [--frames 16 --frame-size 252]            # Qwen2-VL-2B shape, GPU

Each method runs in its own subprocess (so peak memory is that method's alone): the model is prepared by
``vmeta.train.methods.METHODS[m].prepare`` and the optimizer built by the same Trainer factory a run uses
(AdamW / LoRA+ / GaLoreAdamW), then ``--warmup`` untimed and ``--steps`` timed steps (forward, backward,
optimizer step) run on one fixed batch made by vmeta's collator.

Default: the tiny random Qwen2-VL (``vmeta.models.tiny``) with 4-frame 56x56 videos, on CPU. Peak memory is
the process's peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU.

``--real-arch``: the real Qwen2-VL-2B-Instruct architecture (config written below, no download) with random
bf16 weights, one ``--frames``-frame video at ``--frame-size`` pixels square and a thesis-length answer, with
gradient checkpointing, on CUDA. Also prints MFU: model FLOPs per step ~ (4 + 2 x trainable share) x params x
tokens (forward 2N, activation gradients 2N, weight gradients 2N only for trained weights) for the language
model plus the same for the vision tower over its patches, divided by time and the GPU's dense bf16 peak
(``--peak-tflops``, default 989 for an H100 SXM). Goal (issue 4): LoRA peak <= 12 GB (the thesis saw ~19 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("lora", "loraplus", "dora", "rslora", "pissa", "freeze", "galore", "full")

ANSWER = (
    "本视频讲述了网络用语“避雷”的隐喻含义及应用场景。“避雷”出自现实生活中的防雷概念，其因为被赋予“避开不良事物”"
    "的新含义（如劣质商品、糟糕体验等），表达出了网民在信息筛选时警惕、劝诫的实用态度。"
)


def _shim() -> None:
    try:
        from vmeta.devtools import torchvision_shim

        torchvision_shim.install()  # CPU-only dev machines (PyPI's torchvision is a CUDA build)
    except Exception:  # pragma: no cover
        pass


def build_model(args, workdir: Path):
    """-> (model, processor, device, dtype)."""
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from vmeta.models.tiny import build_tiny

    tiny = workdir / "tiny"
    if not (tiny / "config.json").is_file():
        build_tiny(tiny, seed=0)
    processor = AutoProcessor.from_pretrained(tiny)
    if not args.real_arch:
        return Qwen2VLForConditionalGeneration.from_pretrained(tiny).train(), processor, "cpu", torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke_layers:
        raise SystemExit("--real-arch needs a CUDA GPU (the 2B architecture does not fit a CPU benchmark).")
    from vmeta.models.tiny import qwen2_vl_2b_config

    # --smoke-layers: a shallow copy of the architecture, to check this code path on a CPU
    cfg = qwen2_vl_2b_config(layers=args.smoke_layers or None)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(cfg, attn_implementation="sdpa", dtype=torch.bfloat16)
    # The real processor's pixel limits (the tiny one caps frames at 224x224).
    processor.video_processor.size = {"shortest_edge": 3136, "longest_edge": 16384 * 28 * 28}
    return model.train(), processor, device, torch.bfloat16


def make_batch(args, processor, device):
    import numpy as np

    from vmeta.train.collate import SupervisedCollator, encode_sample

    size = args.frame_size if args.real_arch else 56
    n = args.frames if args.real_arch else 4
    rng = np.random.RandomState(0)
    feats = []
    for _ in range(args.batch):
        video = rng.randint(0, 256, size=(n, 3, size, size), dtype=np.uint8)
        meta = {"fps": 2.0, "frames_indices": list(range(n)), "total_num_frames": n}
        prompt = "理解视频的隐喻内容，由以下格式回答：本视频讲述了 [视频内容]。[核心概念] 出自 [出处]，其因为 [特征/新含义/事件]，表达出了 [情绪/态度]。"
        feats.append(
            encode_sample(processor, video, meta, prompt, ANSWER, cutoff_len=32768, sample_id="bench").features
        )
    batch = SupervisedCollator(processor.tokenizer.pad_token_id)(feats)
    return {k: v.to(device) for k, v in batch.items()}


def _qualname(obj) -> str:
    t = type(obj)
    return f"{t.__module__.split('.')[0]}.{t.__name__}"


def run_one(method: str, args) -> dict:
    import torch

    from vmeta.train.config import load_config
    from vmeta.train.methods import METHODS as TABLE
    from vmeta.train.methods import trainable_summary
    from vmeta.train.optim import make_trainer, training_arguments

    work = Path(args.workdir)
    model, processor, device, dtype = build_model(args, work)
    cfg = load_config(
        None,
        {
            "method": method,
            "lora.r": 8 if args.real_arch else 4,
            "lora.alpha": 16 if args.real_arch else 8,
            "freeze.trainable_layers": 6 if args.real_arch else 1,
            "galore.rank": 8 if args.real_arch else 4,
            "training.lr": 1e-5,
            "training.grad_accum": 1,
        },
    )
    model = TABLE[method].prepare(model, cfg)
    if dtype != torch.float32:
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    if args.real_arch:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    counts = trainable_summary(model)
    targs = training_arguments(
        cfg, output_dir=str(work / "out"), learning_rate=1e-5, report_to="none", use_cpu=device == "cpu",
        bf16=dtype == torch.bfloat16, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
    )  # fmt: skip
    trainer = make_trainer(cfg, model=model, args=targs)
    opt = trainer.create_optimizer()
    batch = make_batch(args, processor, device)
    tokens = int(batch["attention_mask"].sum())
    patches = int(batch["pixel_values_videos"].shape[0])
    autocast = torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> float:
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(args.warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    out = {
        "method": method,
        "device": device,
        "step_s": dt,
        "samples_per_s": args.batch / dt,
        "tokens": tokens,
        "vision_patches": patches,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "optimizer": _qualname(getattr(opt, "optimizer", opt)),
        **counts,
    }
    if args.real_arch:
        base = trainer.model
        n_vis = sum(p.numel() for n, p in base.named_parameters() if ".visual." in f".{n}" and "lora_" not in n)
        n_lm = counts["total_parameters"] - n_vis
        per = 4 + 2 * counts["trainable_share"]
        flops = per * (n_lm * tokens + n_vis * patches)
        out["mfu"] = flops / dt / (args.peak_tflops * 1e12)
    if device == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--real-arch", action="store_true", help="Qwen2-VL-2B architecture, random weights, CUDA")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--frame-size", type=int, default=252, help="square frame side in pixels (multiple of 28)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak for MFU (H100 SXM: 989)")
    ap.add_argument("--smoke-layers", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    _shim()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args)))
        return
    if args.real_arch:
        import torch

        if not torch.cuda.is_available() and not args.smoke_layers:
            print("--real-arch needs a CUDA GPU; none here, so the real-architecture benchmark cannot run.")
            sys.exit(2)
        if args.batch == 2:
            args.batch = 1
    from rich.console import Console
    from rich.table import Table

    rows = []
    with tempfile.TemporaryDirectory(prefix="vmeta-bench-") as tmp:
        base = [sys.executable, __file__, "--workdir", tmp, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        base += ["--batch", str(args.batch), "--frames", str(args.frames), "--frame-size", str(args.frame_size)]
        base += ["--peak-tflops", str(args.peak_tflops), "--smoke-layers", str(args.smoke_layers)]
        base += ["--real-arch"] if args.real_arch else []
        for m in args.methods.split(","):
            proc = subprocess.run([*base, "--one", m], capture_output=True, text=True, env=os.environ.copy())
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{m}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(line[7:]))
    what = "Qwen2-VL-2B architecture (random bf16)" if args.real_arch else "tiny Qwen2-VL (random, fp32, CPU)"
    table = Table(
        title=f"train step per method — {what}, batch {args.batch}, {args.steps} timed steps", title_justify="left"
    )
    for col in (
        "method",
        "optimizer",
        "trainable",
        "share",
        "step s",
        "samples/s",
        "peak MB",
        "tokens",
        "loss first→last",
    ):
        table.add_column(col, justify="right" if col not in ("method", "optimizer") else "left")
    if args.real_arch:
        table.add_column("MFU", justify="right")
    ref = next((r for r in rows if r["method"] == "full"), None)
    for r in rows:
        cells = [
            r["method"], r["optimizer"], f"{r['trainable_parameters']:,}", f"{100 * r['trainable_share']:.2f}%",
            f"{r['step_s']:.3f}", f"{r['samples_per_s']:.2f}", f"{r['peak_mb']:.0f}", str(r["tokens"]),
            f"{r['loss_first']:.3f}→{r['loss_last']:.3f}",
        ]  # fmt: skip
        if args.real_arch:
            cells.append(f"{100 * r['mfu']:.1f}%")
        table.add_row(*cells)
    Console(width=170).print(table)
    if ref:
        for r in rows:
            if r["method"] != "full":
                print(f"{r['method']}: peak memory {r['peak_mb'] / ref['peak_mb']:.2f}x of full fine-tuning, "
                      f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x its samples/s")  # fmt: skip
    if args.real_arch:
        lora = next((r for r in rows if r["method"] == "lora"), None)
        if lora:
            ok = lora["peak_mb"] <= 12 * 1024
            print(
                f"LoRA peak {lora['peak_mb'] / 1024:.1f} GB: {'meets' if ok else 'misses'} the 12 GB goal (thesis: ~19 GB)"
            )


if __name__ == "__main__":
    main()
