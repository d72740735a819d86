"""The case gallery: N test videos per category, each with a poster frame (and the playable video when the
dataset is at hand), the reference and every run's answer with its five slots highlighted and its per-sample
scores — the thesis' case-analysis tables (§4.2–4.4), generated from the runs `vmeta compare` reads.

Scores are the ones `vmeta eval` wrote per sample (samples.jsonl), never recomputed, so the gallery shows
exactly the numbers behind the comparison table. The videos shown are a seeded choice per category.
"""

from __future__ import annotations

import html
import io
import os
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vmeta.dataset.categories import CATEGORIES
from vmeta.dataset.review import SLOT_LABELS_EN, analyze
from vmeta.dataset.template import SLOT_LABELS_ZH, SLOT_NAMES
from vmeta.errors import UserError
from vmeta.evaluate.compare import Run
from vmeta.evaluate.metrics import THESIS_COLUMNS
from vmeta.evaluate.report import ALL_LABELS, SAMPLES
from vmeta.jsonio import atomic_write_bytes, atomic_write_text

GALLERY = "gallery.html"
FILES = "gallery_files"  # poster frames, beside gallery.html
POSTER_WIDTH = 320

# The slot colours of the review page (web/static/css/base.css), so a slot looks the same everywhere.
_SLOT_CSS = {
    "content": ("#dbeafe", "#2563eb"),
    "concept": ("#fde68a", "#b45309"),
    "source": ("#d1fae5", "#047857"),
    "feature": ("#fbcfe8", "#be185d"),
    "emotion": ("#e9d5ff", "#7c3aed"),
    "extra": ("#e5e7eb", "#9ca3af"),
    "note": ("#fee2e2", "#dc2626"),
}
_CSS = (
    "body{font-family:'Noto Sans CJK SC','WenQuanYi Micro Hei','Microsoft YaHei',system-ui,sans-serif;"
    "margin:2em;max-width:1400px;color:#1f2328;line-height:1.6}"
    "h2{border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:2em}"
    ".case{display:grid;grid-template-columns:320px 1fr;gap:16px;border:1px solid #d0d7de;border-radius:8px;"
    "padding:12px;margin:14px 0}"
    "@media (max-width:800px){.case{grid-template-columns:1fr}}"
    ".media img,.media video{width:100%;max-width:320px;border-radius:6px;background:#000;display:block}"
    ".media .none{color:#656d76;font-size:.9em;border:1px dashed #d0d7de;border-radius:6px;padding:24px 8px;"
    "text-align:center}"
    "table{border-collapse:collapse;width:100%}td,th{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}"
    "th{text-align:left;white-space:nowrap;background:#f6f8fa}td.num{text-align:right;white-space:nowrap;"
    "font-variant-numeric:tabular-nums}td.best{font-weight:700}td.text{line-height:1.9}"
    "tr.ref td.text{background:#fafbfc}.warn{color:#9a6700;font-size:.85em}.muted{color:#656d76}"
    ".slot{border-radius:3px;padding:1px 2px;border-bottom:2px solid transparent}"
    ".legend .slot{margin-right:6px;padding:0 6px}"
    + "".join(f".slot-{k}{{background:{bg};border-color:{edge}}}" for k, (bg, edge) in _SLOT_CSS.items())
)


def _category_order(cats: set[str]) -> list[str]:
    known = [c for c in CATEGORIES if c in cats]
    return known + sorted(c for c in cats if c not in CATEGORIES)


def choose_cases(runs: list[Run], per_category: int, seed: int = 0) -> dict[str, list[str]]:
    """category -> the chosen test ids (sorted): `per_category` ids per category among the ids every run
    scored, picked by a seeded RNG (the same runs and seed always give the same gallery)."""
    if per_category < 1:
        raise UserError(f"--gallery needs a positive number of videos per category, got {per_category}.")
    missing = [str(r.results_path.parent / SAMPLES) for r in runs if not r.samples]
    if missing:
        raise UserError(f"the gallery needs samples.jsonl beside each results.json; missing: {', '.join(missing)}.")
    common = set.intersection(*({str(s["id"]) for s in r.samples or []} for r in runs))
    if not common:
        raise UserError("the runs share no sample id, so there is no case to show side by side.")
    category = {str(s["id"]): str(s.get("category") or "all") for s in runs[0].samples or []}
    by_cat: dict[str, list[str]] = {}
    for sid in sorted(common):
        by_cat.setdefault(category[sid], []).append(sid)
    rng = random.Random(seed)
    return {
        cat: sorted(rng.sample(by_cat[cat], min(per_category, len(by_cat[cat]))))
        for cat in _category_order(set(by_cat))
    }


# ------------------------------------------------------------------------------------------------ videos
def _dataset_root(runs: list[Run], data: str | Path | None) -> Path | None:
    """--data, else the dataset `vmeta predict` recorded for the first run that has one and still exists."""
    if data is not None:
        return Path(data)
    for r in runs:
        root = (r.results.get("predictions_meta") or {}).get("dataset")
        if root and Path(root).is_dir():
            return Path(root)
    return None


def video_paths(root: Path | None, ids: set[str], *, required: bool) -> dict[str, Path]:
    """test id -> its video file, for the ids whose file exists. `required`: a bad --data is an error."""
    if root is None:
        return {}
    from vmeta.dataset.records import Dataset

    ds = Dataset(root)
    if not ds.records_path.is_file():
        if required:
            raise UserError(f"--data {root}: no records.jsonl there; give the dataset folder the runs were made on.")
        return {}
    out = {}
    for rec in ds.load():
        if rec.id in ids:
            path = ds.video_path(rec)
            if path.is_file():
                out[rec.id] = path
    return out


def poster_jpeg(video: Path, width: int = POSTER_WIDTH) -> bytes | None:
    """A JPEG of a frame from the middle of `video` (upright, `width` px wide), or None if it cannot be read."""
    from PIL import Image

    from vmeta.video.decode import load_video
    from vmeta.video.sampling import FrameSettings

    try:
        clip = load_video(video, FrameSettings(nframes=4))
    except Exception:  # an unreadable video gets no poster, not a failed gallery
        return None
    frame = clip.frames[len(clip.frames) // 2].transpose(1, 2, 0)
    img = Image.fromarray(frame)
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ render
def highlight(text: str) -> str:
    """`text` as escaped HTML, each template slot in a coloured span (the review page's colours)."""
    parts = []
    for seg in analyze(text)["segments"]:
        piece = html.escape(seg["text"])
        slot = seg["slot"]
        if slot:
            title = f"{SLOT_LABELS_ZH[slot]} / {SLOT_LABELS_EN[slot]}" if slot in SLOT_NAMES else slot
            piece = f'<span class="slot slot-{slot}" data-slot="{slot}" title="{html.escape(title)}">{piece}</span>'
        parts.append(piece)
    return "".join(parts) or '<span class="muted">(empty)</span>'


def _fits(text: str) -> str:
    a = analyze(text)
    if a["ok"]:
        return ""
    missing = "、".join(SLOT_LABELS_ZH[s] for s in a["missing"])
    return f'<div class="warn">not in the five-slot template (missing: {html.escape(missing)})</div>'


def _score_cell(value: Any, best: bool, run: str, column: str) -> str:
    if value is None:
        return '<td class="num muted">–</td>'
    v = float(value)
    cls = "num best" if best else "num"
    return (
        f'<td class="{cls}" data-run="{html.escape(run)}" data-metric="{html.escape(column)}" '
        f'data-value="{v!r}">{v:.2f}</td>'
    )


def _media(poster: str | None, video: str | None) -> str:
    if video:
        p = f' poster="{html.escape(poster)}"' if poster else ""
        return f'<video controls preload="none" playsinline{p} src="{html.escape(video)}"></video>'
    if poster:
        return f'<img alt="poster frame" src="{html.escape(poster)}">'
    return '<div class="none">no video (pass --data DATASET to show frames)</div>'


def render_gallery(
    runs: list[Run],
    chosen: dict[str, list[str]],
    columns: list[str],
    media: dict[str, tuple[str | None, str | None]],
    *,
    seed: int,
) -> str:
    """The gallery page. `media`: test id -> (poster URL, video URL), both relative to the page, or None."""
    esc = html.escape
    samples = {r.name: {str(s["id"]): s for s in r.samples or []} for r in runs}
    first = samples[runs[0].name]
    n_cases = sum(len(v) for v in chosen.values())
    legend = "".join(
        f'<span class="slot slot-{s}">{esc(SLOT_LABELS_ZH[s])} {esc(SLOT_LABELS_EN[s])}</span>' for s in SLOT_NAMES
    )
    heads = "".join(f"<th>{esc(ALL_LABELS.get(c, c))}</th>" for c in columns)
    out = [
        f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>vmeta case gallery</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{_CSS}</style></head><body>",
        "<h1>Case gallery · 案例分析</h1>",
        f"<p>{n_cases} test videos ({esc(', '.join(f'{c}: {len(v)}' for c, v in chosen.items()))}), chosen with "
        f"seed {seed} · runs: {esc(', '.join(r.name for r in runs))} · scores per sample as <code>vmeta eval</code> "
        "wrote them (0–100); the best answer per column in bold.</p>",
        f'<p class="legend">{legend}</p>',
    ]
    k = 0
    for cat, ids in chosen.items():
        english = CATEGORIES[cat][0] if cat in CATEGORIES else ""
        out.append(
            f'<h2 data-category="{esc(cat)}">{esc(cat)}'
            + (f' <span class="muted">({esc(english)})</span>' if english else "")
            + f" · {len(ids)}</h2>"
        )
        for sid in ids:
            k += 1
            poster, video = media.get(sid, (None, None))
            ref = first[sid].get("reference") or ""
            best = {}
            for c in columns:
                vals = [(samples[r.name][sid].get("scores", {}).get(c), r.name) for r in runs]
                vals = [(v, n) for v, n in vals if v is not None]
                if len(vals) > 1:
                    top = max(v for v, _ in vals)
                    best[c] = {n for v, n in vals if v == top}
            rows = [
                f'<tr class="ref"><th>reference · 参考</th><td class="text">{highlight(ref)}</td>'
                + "".join("<td></td>" for _ in columns)
                + "</tr>"
            ]
            for r in runs:
                s = samples[r.name][sid]
                text = s.get("output") or ""
                cells = "".join(
                    _score_cell(s.get("scores", {}).get(c), r.name in best.get(c, ()), r.name, c) for c in columns
                )
                rows.append(
                    f'<tr class="answer" data-run="{esc(r.name)}"><th>{esc(r.name)}</th>'
                    f'<td class="text">{highlight(text)}{_fits(text)}</td>{cells}</tr>'
                )
            out.append(
                f'<section class="case" id="case-{k}" data-id="{esc(sid)}" data-category="{esc(cat)}">'
                f'<div class="media">{_media(poster, video)}</div><div><h3>{esc(sid)}</h3>'
                f"<table><tr><th></th><th>text · 文本</th>{heads}</tr>{''.join(rows)}</table></div></section>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def gallery_columns(runs: list[Run], columns: list[str] | None = None) -> list[str]:
    """The score columns shown: `columns` (the comparison's), else the thesis' three that the samples have."""
    have = set.intersection(*({c for s in r.samples or [] for c in s.get("scores", {})} for r in runs))
    wanted = list(columns) if columns else list(THESIS_COLUMNS)
    return [c for c in wanted if c in have]


def write_gallery(
    runs: list[Run],
    out_dir: str | Path,
    per_category: int,
    *,
    columns: list[str] | None = None,
    data: str | Path | None = None,
    seed: int = 0,
) -> Path:
    """Write OUT/gallery.html (and poster JPEGs in OUT/gallery_files/); returns the page's path."""
    chosen = choose_cases(runs, per_category, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    all_ids = {sid for ids in chosen.values() for sid in ids}
    videos = video_paths(_dataset_root(runs, data), all_ids, required=data is not None)
    media: dict[str, tuple[str | None, str | None]] = {}
    k = 0
    for ids in chosen.values():
        for sid in ids:
            k += 1
            path = videos.get(sid)
            if path is None:
                continue
            poster = None
            jpeg = poster_jpeg(path)
            if jpeg is not None:  # named by position, not id: an id may hold characters a file name cannot
                atomic_write_bytes(out / FILES / f"case-{k:04d}.jpg", jpeg)
                poster = f"{FILES}/case-{k:04d}.jpg"
            try:
                video = quote(Path(os.path.relpath(path.resolve(), out.resolve())).as_posix(), safe="/")
            except ValueError:  # another drive (Windows)
                video = path.resolve().as_uri()
            media[sid] = (poster, video)
    page = out / GALLERY
    atomic_write_text(page, render_gallery(runs, chosen, gallery_columns(runs, columns), media, seed=seed))
    return page


__all__ = ["GALLERY", "choose_cases", "gallery_columns", "highlight", "poster_jpeg", "render_gallery", "write_gallery"]
