"""Benchmark BERTScore: vmeta's implementation vs the bert-score library, same encoder, same pairs.

    python bench/metrics.py [--pairs 1000] [--runs 3] [--hidden 768 --layers 12 --layer 8] [--threads N]

Builds, offline, a random BERT with bert-base-chinese's shape (12 layers, hidden 768, 12 heads, 512
positions; layer 8 used, as in the thesis) and a Chinese character vocabulary, and N template-shaped Chinese
(candidate, reference) pairs of realistic lengths (about 60-140 characters). Times, with the model already
loaded on both sides, `bert_score.BERTScorer(model_type=<folder>, num_layers=8).score(cands, refs)` and
`vmeta.evaluate.bertscore.BertScorer(...).score(cands, refs)`, several runs each (alternating, so machine load hits both alike), and prints the median
times, the speed-up, and the largest absolute difference of F1 between the two (should be ~1e-7).
Goal: vmeta at least as fast as bert-score (ratio >= 1.0) with max |ΔF1| < 1e-6.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from vmeta.dataset.template import render
from vmeta.evaluate.bertscore import BertScoreConfig, BertScorer
from vmeta.evaluate.tiny_bert import build_char_bert

CONTENT = [
    "打工人加班到深夜还被老板画大饼",
    "网红景点排队三小时拍照五分钟",
    "猫咪假装没看见主人叫它",
    "男子用红酒洗头的荒诞行为",
    "年轻人下班后躺在沙发上什么都不想做",
    "老人每天清晨坚持在公园锻炼",
    "工程师徒手修复老式收音机",
    "外卖小哥在暴雨中准时送达",
    "博主减肥一个月反而胖了五斤",
    "学生通宵复习却睡过头错过考试",
    "宝妈因为瑞士卷分配问题与丈夫争执",
]
CONCEPT = [
    "“画大饼”",
    "“打卡”",
    "“已读不回”",
    "“避雷”",
    "“躺平”",
    "“松弛感”",
    "“硬核”",
    "“脆皮大学生”",
    "“八个瑞士卷怎么分”",
]
SOURCE = [
    "职场流行语",
    "网络流行语",
    "社交软件的聊天场景",
    "现实生活中的防雷概念",
    "游戏圈对高难度内容的称呼",
    "家庭生活场景",
]
FEATURE = [
    "老板只许诺不兑现的行为",
    "被赋予到热门地点拍照留念的新含义",
    "夸张地描述易胖体质",
    "形容在极端条件下依然完成任务的强悍",
    "家庭成员间资源分配不均引发的矛盾",
    "表示放弃内卷、降低欲望的生活方式",
]
EMOTION = [
    "对职场空头承诺的讽刺与无奈",
    "对盲目跟风的讽刺态度",
    "轻松诙谐的调侃态度",
    "对慢生活的向往与赞赏",
    "对普通劳动者的敬意",
    "无奈又好笑的自嘲态度",
    "女性在家庭劳动价值被贬低时的委屈与愤怒情绪",
]


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)

    def label() -> str:
        slots = {
            "content": "，".join(rng.sample(CONTENT, rng.randint(1, 3))),
            "concept": rng.choice(CONCEPT),
            "source": rng.choice(SOURCE),
            "feature": "，".join(rng.sample(FEATURE, rng.randint(1, 2))),
            "emotion": rng.choice(EMOTION),
        }
        return render(slots)

    return [label() for _ in range(n)], [label() for _ in range(n)]


def padded_tokens(lengths: dict[str, int], order: list[str], batch_size: int) -> int:
    """Token positions the encoder computes when `order` is cut into batches padded to their longest text."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(len(b) * max(lengths[t] for t in b) for b in batches)


def interleaved_medians(fns: dict, runs: int) -> tuple[dict[str, float], dict]:
    """Run the contenders alternately (A, B, A, B, ...) so a busy machine slows both alike; median per contender."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict = {}
    for _ in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--layer", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()

    import torch
    from bert_score import BERTScorer as LibScorer

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    cands, refs = make_pairs(args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        heads = max(1, args.hidden // 64)
        folder = build_char_bert(
            tmp,
            cands + refs,
            hidden_size=args.hidden,
            num_layers=args.layers,
            heads=heads,
            intermediate_size=4 * args.hidden,
            max_length=512,
        )
        lib = LibScorer(model_type=str(folder), num_layers=args.layer, batch_size=args.batch_size, device="cpu")
        ours = BertScorer(BertScoreConfig(model=str(folder), num_layers=args.layer, batch_size=args.batch_size))
        # warm-up (first-call allocations), not timed
        lib.score(cands[:8], refs[:8])
        ours.score(cands[:8], refs[:8])
        medians, outs = interleaved_medians(
            {"lib": lambda: lib.score(cands, refs), "ours": lambda: ours.score(cands, refs)}, args.runs
        )
        t_lib, t_ours = medians["lib"], medians["ours"]
        F_lib, F_ours = outs["lib"][2], outs["ours"][2]
    diff = float(np.max(np.abs(F_lib.numpy() - F_ours)))
    n_tok = sum(len(ours.encode(t)) for t in cands + refs) / (2 * len(cands))
    lengths = {t: len(ours.encode(t)) for t in set(cands + refs)}
    # bert-score: unique texts sorted by their number of spaces (none in Chinese), i.e. in set order
    lib_order = sorted(set(refs + cands), key=lambda x: len(x.split(" ")), reverse=True)
    ours_order = sorted(lengths, key=lengths.get, reverse=True)
    real = sum(lengths.values())
    pad_lib = padded_tokens(lengths, lib_order, args.batch_size)
    pad_ours = padded_tokens(lengths, ours_order, args.batch_size)

    table = Table(
        title=f"BERTScore, {args.pairs} Chinese pairs (mean {n_tok:.0f} tokens), random BERT "
        f"L{args.layers}/H{args.hidden}, layer {args.layer}, CPU, {torch.get_num_threads()} threads, "
        f"median of {args.runs} runs"
    )
    table.add_column("implementation")
    table.add_column("median s", justify="right")
    table.add_column("pairs/s", justify="right")
    table.add_row("bert-score BERTScorer.score", f"{t_lib:.2f}", f"{args.pairs / t_lib:.1f}")
    table.add_row("vmeta BertScorer.score", f"{t_ours:.2f}", f"{args.pairs / t_ours:.1f}")
    console.print(table)
    console.print(
        f"token positions encoded (real {real}): bert-score {pad_lib} ({pad_lib / real:.2f}x), "
        f"vmeta {pad_ours} ({pad_ours / real:.2f}x) — padding saved: {pad_lib / pad_ours:.2f}x"
    )
    ratio = t_lib / t_ours
    console.print(
        f"speed-up (bert-score time / vmeta time): [bold]{ratio:.2f}x[/]   "
        f"max |ΔF1|: [bold]{diff:.2e}[/]   goal: >= 1.00x and < 1e-6 -> "
        f"{'[green]met[/]' if ratio >= 1.0 and diff < 1e-6 else '[red]not met[/]'}"
    )


if __name__ == "__main__":
    main()
