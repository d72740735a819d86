"""Commands: `vmeta video inspect VIDEO` — the probe, the frames a model will see, and a contact sheet of them;
`vmeta video text VIDEO` — the on-screen text (OCR) with the times it was shown; `vmeta video speech VIDEO` — what
is said (offline ASR) with the times it was said."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vmeta.cli.apps import console, err_console, video_app
from vmeta.errors import UserError


def _settings(**kw: Any):
    from vmeta.video.sampling import FrameSettings

    try:
        return FrameSettings(**{k: v for k, v in kw.items() if v is not None})
    except ValueError as exc:
        raise UserError(f"{exc}.") from None


def contact_sheet(frames, indices: list[int], timestamps: list[float], out: Path, thumb_width: int = 240) -> Path:
    """A PNG grid of exactly these frames ((T, 3, H, W) uint8), each labelled '#index  t=1.23s'."""
    import numpy as np
    from PIL import Image, ImageDraw

    from vmeta.jsonio import atomic_write_bytes

    t, _, h, w = frames.shape
    cols = min(t, max(1, math.ceil(math.sqrt(t * 1.5))) if h <= w else max(1, math.ceil(math.sqrt(t * 2.5))))
    cols = min(cols, 8)
    rows = math.ceil(t / cols)
    tw = min(thumb_width, w)
    th = max(1, round(h * tw / w))
    label_h, pad = 18, 4
    sheet = Image.new("RGB", (cols * (tw + pad) + pad, rows * (th + label_h + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i in range(t):
        r, c = divmod(i, cols)
        x, y = pad + c * (tw + pad), pad + r * (th + label_h + pad)
        img = Image.fromarray(np.ascontiguousarray(frames[i].transpose(1, 2, 0)))
        sheet.paste(img.resize((tw, th), Image.Resampling.BILINEAR), (x, y))
        draw.text((x + 2, y + th + 3), f"#{indices[i]}  t={timestamps[i]:.2f}s", fill=(235, 235, 235))
    import io

    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return out


@video_app.command("inspect")
def inspect(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    fps: Annotated[float, typer.Option(help="Frames sampled per second (qwen-vl-utils default 2.0).")] = 2.0,
    min_frames: Annotated[int, typer.Option(help="At least this many frames (rounded up to even).")] = 4,
    max_frames: Annotated[int, typer.Option(help="At most this many frames (rounded down to even).")] = 768,
    nframes: Annotated[int | None, typer.Option(help="Exactly this many frames (even); overrides --fps.")] = None,
    min_pixels: Annotated[int | None, typer.Option(help="Per-frame pixel minimum (default 128*28*28).")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Per-frame pixel maximum (default 768*28*28).")] = None,
    total_pixels: Annotated[int | None, typer.Option(help="Pixel budget for the whole video.")] = None,
    index_rule: Annotated[
        str,
        typer.Option(
            help="qwen: evenly from the first to the last frame; segment_middle: each segment's middle (InternVL)."
        ),
    ] = "qwen",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (frame_indices, size, tokens, probe).")] = False,
    sheet: Annotated[Path | None, typer.Option(help="Write a contact sheet PNG of the sampled frames here.")] = None,
) -> None:
    """Show what a Qwen-VL model sees of VIDEO: probe, chosen frame indices and timestamps, output size, tokens."""
    from vmeta.video.container import plan_for_file
    from vmeta.video.decode import load_video
    from vmeta.video.probe import probe

    settings = _settings(
        fps=fps,
        min_frames=min_frames,
        max_frames=max_frames,
        nframes=nframes,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        total_pixels=total_pixels,
        index_rule=index_rule,
    )
    meta = probe(video)  # ProbeError (a UserError) names the file and the problem
    if sheet is not None:
        sampled = load_video(video, settings)
        plan, timestamps = sampled.plan, sampled.timestamps
        contact_sheet(sampled.frames, sampled.indices, timestamps, sheet)
    else:
        plan, _ = plan_for_file(video, settings)
        if meta.rotation in (90, 270):  # sized from the stored picture; the model sees it upright
            import dataclasses

            plan = dataclasses.replace(plan, height=plan.width, width=plan.height)
        timestamps = plan.timestamps
    result = {
        "video": str(video),
        "probe": meta.model_dump(mode="json"),
        "settings": settings.to_dict(),
        "frame_indices": list(plan.indices),
        "timestamps": [round(t, 4) for t in timestamps],
        "nframes": plan.nframes,
        "total_frames": plan.total_frames,
        "video_fps": plan.video_fps,
        "sample_fps": plan.sample_fps,
        "output_height": plan.height,
        "output_width": plan.width,
        "grid_thw": [math.ceil(plan.nframes / 2), plan.height // 14, plan.width // 14],
        "tokens": plan.token_count(),
        "sheet": str(sheet) if sheet is not None else None,
    }
    if as_json:
        console.print_json(json.dumps(result, ensure_ascii=False))
        return
    table = Table(title=f"{video}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    m = meta
    table.add_row(
        "container / codec", f"{m.container} / {m.codec}" + (f" + audio {m.audio_codec}" if m.has_audio else "")
    )
    table.add_row(
        "stored size",
        f"{m.width}x{m.height}"
        + (f", rotation {m.rotation}° → {m.display_width}x{m.display_height}" if m.rotation else ""),
    )
    table.add_row("duration / fps / frames", f"{m.duration_s} s / {plan.video_fps:g} / {plan.total_frames}")
    table.add_row("sampled frames", f"{plan.nframes} (sample fps {plan.sample_fps:.4g})")
    table.add_row("frame_indices", ", ".join(map(str, plan.indices)))
    table.add_row("timestamps (s)", ", ".join(f"{t:.2f}" for t in timestamps))
    table.add_row("output size (HxW)", f"{plan.height}x{plan.width}")
    g = result["grid_thw"]
    table.add_row("visual tokens", f"{result['tokens']}  (grid {g[0]}x{g[1]}x{g[2]} / 4)")
    if sheet is not None:
        table.add_row("contact sheet", str(sheet))
    console.print(table)


@video_app.command("text")
def text(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    fps: Annotated[float, typer.Option(help="Frames read per second; a caption shown at least 1/fps s is seen.")] = 1.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (lines with text, start, end, score, box).")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Read the video again even when a result is cached.")
    ] = False,
) -> None:
    """Print the on-screen text of VIDEO (burned-in captions, titles) with the times it was shown (OCR, [ocr] extra)."""
    from vmeta.config import get_settings
    from vmeta.video.screen_text import ScreenTextSettings
    from vmeta.video.screen_text_cache import ScreenTextCache
    from vmeta.video.screen_text_reader import read_screen_text

    try:
        settings = ScreenTextSettings(fps=fps)
    except ValueError as exc:
        raise UserError(f"{exc}.") from None
    cache = None if no_cache else ScreenTextCache(get_settings().resolved_cache_dir / "screen_text")
    result = read_screen_text(video, settings, cache=cache)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    s = result.stats
    how = "from cache" if s.cached else f"{s.frames_read} of {s.frames_sampled} sampled frames read"
    _print_timed(video, result.lines, "no on-screen text found", f"{len(result.lines)} line(s); {how}")


@video_app.command("speech")
def speech(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    language: Annotated[
        str, typer.Option(help="Whisper language code of the speech (zh, en, ...); 'auto' detects it.")
    ] = "zh",
    model: Annotated[
        Path | None, typer.Option(help="faster-whisper model folder (default: VMETA_SPEECH_MODEL).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (segments with start, end, text).")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Transcribe again even when a result is cached.")
    ] = False,
) -> None:
    """Print what is said in VIDEO with the times it was said (offline ASR: the speech extra and a local model)."""
    from vmeta.config import get_settings
    from vmeta.video.speech import SpeechCache, SpeechSettings, transcribe

    try:
        settings = SpeechSettings(language=None if language == "auto" else language)
    except ValueError as exc:
        raise UserError(f"{exc}.") from None
    cache = None if no_cache else SpeechCache(get_settings().resolved_cache_dir / "speech")
    result = transcribe(video, settings, cache=cache, model_dir=model)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    s = result.stats
    how = "from cache" if s.cached else f"{s.audio_s:.1f} s of audio in {s.decode_s + s.asr_s:.1f} s"
    _print_timed(
        video,
        result.segments,
        "no speech found" if result.has_audio else "no audio track",
        f"{len(result.segments)} segment(s), {result.language or '?'}, model {result.model}; {how}",
    )


def _print_timed(video: Path, rows: list, none: str, summary: str) -> None:
    """`mm:ss.s–mm:ss.s  text` per row (text on stdout, the summary on stderr), or why there is none."""
    from vmeta.video.screen_text import format_time

    if not rows:
        console.print(f"{video}: {none}.", highlight=False, markup=False, soft_wrap=True)
        return
    for row in rows:
        text = f"{format_time(row.start)}–{format_time(row.end)}  {row.text}"
        console.print(text, highlight=False, markup=False, soft_wrap=True)
    err_console.print(summary, highlight=False, markup=False, soft_wrap=True)
