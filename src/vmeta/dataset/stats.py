"""Dataset statistics (`vmeta data stats`): what is in the dataset and what is wrong with it.

`compute_stats(dataset)` returns a JSON-able dict: category distribution, label lengths (characters),
template conformance (ok / strict / with note / with extra text / placeholders), near-duplicate labels,
video duration / resolution / orientation, unreadable and missing videos, on-screen text (videos with text,
its length), review status, flags and splits.
`write_report(stats, out_dir)` writes stats.json, stats.md and a self-contained stats.html (plots inlined as
PNG data URIs), plus the PNG plots themselves.

Near duplicates: labels are normalised (template.normalize, whitespace removed) and cut into character
3-gram shingles; pairs with Jaccard similarity >= 0.8 are found exactly with prefix filtering (the
"All-Pairs" set-similarity join): tokens are ordered rarest first, and two sets with Jaccard >= t must share a
token among the first |s| - ceil(t*|s|) + 1 of each, so only pairs that share a rare shingle are compared.
10,000 labels take well under a second instead of 50 million pair comparisons.
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from vmeta.dataset.categories import CATEGORIES
from vmeta.dataset.context import DEFAULT_MAX_CHARS, context_block
from vmeta.dataset.records import Dataset, Record, ReviewStatus, now_iso
from vmeta.dataset.split import SPLITS
from vmeta.dataset.template import normalize, parse
from vmeta.jsonio import atomic_write_bytes, atomic_write_text, write_json
from vmeta.plotting import find_cjk_font, pyplot

DUPLICATE_THRESHOLD = 0.8
SHINGLE = 3
REPORT_DIR = "report"
PLOTS = {
    "categories": "categories.png",
    "label_lengths": "label_lengths.png",
    "durations": "durations.png",
    "resolutions": "resolutions.png",
}


# ----------------------------------------------------------------------------------------------- numbers


def describe(values: list[float]) -> dict[str, Any]:
    """min / median / mean / p90 / max (p90 by linear interpolation, like numpy's default)."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {"n": 0, "min": None, "median": None, "mean": None, "p90": None, "max": None}
    return {
        "n": len(vals),
        "min": vals[0],
        "median": statistics.median(vals),
        "mean": round(statistics.fmean(vals), 3),
        "p90": round(_quantile(vals, 0.9), 3),
        "max": vals[-1],
    }


def _quantile(sorted_vals: list[float], q: float) -> float:
    if len(sorted_vals) == 1:
        return float(sorted_vals[0])
    pos = (len(sorted_vals) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def shingles(text: str, k: int = SHINGLE) -> frozenset[str]:
    s = "".join(normalize(text).split())
    if len(s) <= k:
        return frozenset([s]) if s else frozenset()
    return frozenset(s[i : i + k] for i in range(len(s) - k + 1))


def near_duplicates(
    texts: dict[str, str], threshold: float = DUPLICATE_THRESHOLD, k: int = SHINGLE
) -> list[dict[str, Any]]:
    """All pairs of ids whose texts have shingle Jaccard >= threshold (exact; prefix-filtered join)."""
    sets = {i: shingles(t, k) for i, t in texts.items()}
    sets = {i: s for i, s in sets.items() if s}
    freq = Counter(tok for s in sets.values() for tok in s)
    rank = {tok: (n, tok) for tok, n in freq.items()}
    items = sorted(sets, key=lambda i: (len(sets[i]), i))
    index: dict[str, list[str]] = defaultdict(list)
    pairs = []
    eps = 1e-9
    for x in items:
        sx = sets[x]
        toks = sorted(sx, key=rank.__getitem__)
        prefix = len(toks) - math.ceil(threshold * len(toks) - eps) + 1
        candidates: set[str] = set()
        for tok in toks[:prefix]:
            for y in index[tok]:
                if len(sets[y]) >= threshold * len(sx) - eps:  # length filter (y is never larger than x)
                    candidates.add(y)
            index[tok].append(x)
        for y in candidates:
            sy = sets[y]
            inter = len(sx & sy)
            j = inter / (len(sx) + len(sy) - inter)
            if j >= threshold - eps:
                a, b = sorted((x, y))
                pairs.append({"a": a, "b": b, "jaccard": round(j, 4)})
    pairs.sort(key=lambda p: (-p["jaccard"], p["a"], p["b"]))
    return pairs


def _groups(pairs: list[dict[str, Any]]) -> list[list[str]]:
    parent: dict[str, str] = {}

    def find(u: str) -> str:
        parent.setdefault(u, u)
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for p in pairs:
        ra, rb = find(p["a"]), find(p["b"])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    out: dict[str, list[str]] = defaultdict(list)
    for u in parent:
        out[find(u)].append(u)
    return sorted((sorted(g) for g in out.values()), key=lambda g: (-len(g), g))


def _orientation(w: int | None, h: int | None) -> str:
    if not w or not h:
        return "unknown"
    return "portrait" if h > w else "landscape" if w > h else "square"


def _category_sort(names: set[str] | list[str]) -> list[str]:
    order = list(CATEGORIES)
    return sorted(names, key=lambda c: (order.index(c) if c in order else len(order), c))


def compute_stats(dataset: Dataset, *, duplicate_threshold: float = DUPLICATE_THRESHOLD) -> dict[str, Any]:
    dataset.require()
    records = dataset.load()
    return stats_for_records(records, dataset=dataset, duplicate_threshold=duplicate_threshold)


def stats_for_records(
    records: list[Record], *, dataset: Dataset | None = None, duplicate_threshold: float = DUPLICATE_THRESHOLD
) -> dict[str, Any]:
    n = len(records)
    cats = Counter(r.category for r in records)
    categories = {
        c: {"count": cats[c], "share": round(cats[c] / n, 4) if n else 0.0} for c in _category_sort(set(cats))
    }

    # Label lengths (characters of the current label, surrounding whitespace excluded).
    lengths = {r.id: len((r.label or "").strip()) for r in records}
    by_cat_len: dict[str, list[int]] = defaultdict(list)
    for r in records:
        by_cat_len[r.category].append(lengths[r.id])
    label_length = {
        "unit": "characters",
        "all": describe(list(lengths.values())),
        "per_category": {c: describe(by_cat_len[c]) for c in _category_sort(set(by_cat_len))},
    }

    # Template conformance.
    t = Counter()
    t_cat: dict[str, Counter] = defaultdict(Counter)
    nonconforming = []
    for r in records:
        p = parse(r.label or "")
        flags = {
            "ok": p.ok,
            "strict": p.strict,
            "with_note": bool(p.note),
            "with_extra": bool(p.extra),
            "placeholders": bool(p.placeholders),
        }
        for k, v in flags.items():
            t[k] += int(v)
            t_cat[r.category][k] += int(v)
        t_cat[r.category]["n"] += 1
        if not p.ok:
            nonconforming.append({"id": r.id, "missing": p.missing, "placeholders": p.placeholders})
    template = {
        "n": n,
        **{k: t[k] for k in ("ok", "strict", "with_note", "with_extra", "placeholders")},
        "rate": round(t["ok"] / n, 4) if n else None,
        "strict_rate": round(t["strict"] / n, 4) if n else None,
        "per_category": {
            c: {"n": t_cat[c]["n"], "ok": t_cat[c]["ok"], "rate": round(t_cat[c]["ok"] / t_cat[c]["n"], 4)}
            for c in _category_sort(set(t_cat))
        },
        "nonconforming": nonconforming,
    }

    # Near-duplicate labels.
    pairs = near_duplicates({r.id: r.label or "" for r in records}, duplicate_threshold)
    cat_of = {r.id: r.category for r in records}
    for p in pairs:
        p["category_a"], p["category_b"] = cat_of[p["a"]], cat_of[p["b"]]
    duplicates = {
        "method": f"character {SHINGLE}-gram shingles of the normalised label, exact Jaccard >= {duplicate_threshold} "
        "(prefix-filtered set-similarity join)",
        "threshold": duplicate_threshold,
        "pairs": pairs,
        "groups": _groups(pairs),
    }

    # Videos.
    readable = [r for r in records if r.video_meta.readable]
    unreadable = []
    missing = []
    for r in records:
        on_disk = dataset.video_path(r).exists() if dataset is not None else None
        if on_disk is False:
            missing.append({"id": r.id, "video": r.video})
        if not r.video_meta.readable:
            unreadable.append(
                {"id": r.id, "video": r.video, "error": r.video_meta.error or ("missing" if on_disk is False else None)}
            )
    sizes = Counter()
    orient = Counter()
    points = []
    for r in readable:
        m = r.video_meta
        w = m.display_width or m.width
        h = m.display_height or m.height
        orient[_orientation(w, h)] += 1
        if w and h:
            sizes[f"{w}x{h}"] += 1
            points.append([w, h])
    videos = {
        "readable": len(readable),
        "unreadable_count": len(unreadable),
        "unreadable": unreadable,
        "missing_count": len(missing),
        "missing": missing,
        "duration_s": describe([r.video_meta.duration_s for r in readable if r.video_meta.duration_s is not None]),
        "durations": [round(r.video_meta.duration_s, 3) for r in readable if r.video_meta.duration_s is not None],
        "fps": describe([r.video_meta.fps for r in readable if r.video_meta.fps]),
        "resolutions": dict(sizes.most_common()),
        "orientation": {k: orient[k] for k in ("portrait", "landscape", "square", "unknown") if orient[k]},
        "display_sizes": points,
        "with_audio": sum(1 for r in readable if r.video_meta.has_audio),
    }

    screen_text = _screen_text_stats(records)

    review = Counter(r.review.status.value for r in records)
    review_counts = {s.value: review[s.value] for s in ReviewStatus}
    flags = Counter(f for r in records for f in r.flags)
    split_counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    unsplit = 0
    for r in records:
        if r.split in SPLITS:
            split_counts[r.split][r.category] = split_counts[r.split].get(r.category, 0) + 1
        else:
            unsplit += 1
    splits = {
        "counts": {s: {c: v[c] for c in _category_sort(set(v))} for s, v in split_counts.items()},
        "totals": {s: sum(v.values()) for s, v in split_counts.items()},
        "unsplit": unsplit,
    }
    return {
        "created": now_iso(),
        "dataset": str(dataset.root) if dataset is not None else None,
        "records": n,
        "categories": categories,
        "label_length": label_length,
        "label_lengths": list(lengths.values()),
        "label_origin": dict(Counter(r.label_origin for r in records).most_common()),
        "template": template,
        "duplicates": duplicates,
        "videos": videos,
        "screen_text": screen_text,
        "review": review_counts,
        "flags": dict(flags.most_common()),
        "splits": splits,
    }


def _screen_text_stats(records: list[Record]) -> dict[str, Any]:
    """How many videos carry on-screen text and how long it is (`vmeta data screen-text` stores it).

    Length: characters of the distinct lines, newlines not counted, over the videos that show text (a video
    without text would pull every number towards 0). `over_prompt_limit`: texts the prompt's context block cuts
    at its default length (`vmeta.dataset.context`)."""
    read = [r for r in records if r.screen_text is not None]
    texts = [r.screen_text.text for r in read if r.screen_text is not None and r.screen_text.text.strip()]
    cut = sum(
        context_block({"screen_text": t}) != context_block({"screen_text": t}, max_chars=len(t) * 3 + 10) for t in texts
    )
    fps = Counter(r.screen_text.settings.get("fps") for r in read if r.screen_text is not None)
    return {
        "read": len(read),
        "not_read": len(records) - len(read),
        "with_text": len(texts),
        "share": round(len(texts) / len(read), 4) if read else None,  # of the videos read
        "unit": "characters (newlines not counted), videos with text",
        "length": describe([len(t.replace("\n", "")) for t in texts]),
        "over_prompt_limit": cut,
        "prompt_limit": DEFAULT_MAX_CHARS,
        "fps": {str(k): v for k, v in sorted(fps.items(), key=lambda kv: str(kv[0]))},
    }


# ----------------------------------------------------------------------------------------------- plots


def _category_label(name: str, cjk: bool) -> str:
    if cjk or name.isascii():
        return name
    return CATEGORIES[name][0] if name in CATEGORIES else name.encode("ascii", "replace").decode()


def make_plots(stats: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Render the four PNG plots (matplotlib Agg). Chinese tick labels only when a CJK font is installed."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    font = find_cjk_font()
    rc = {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]}
    out: dict[str, Path] = {}
    with plt.rc_context(rc):
        # 1. Category bars.
        cats = stats["categories"]
        fig, ax = plt.subplots(figsize=(7, 4))
        names = [_category_label(c, bool(font)) for c in cats]
        counts = [v["count"] for v in cats.values()]
        bars = ax.bar(names, counts, color="#4c72b0")
        for b, c in zip(bars, counts, strict=True):
            ax.annotate(str(c), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom")
        ax.set_title("Videos per category")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("videos")
        out["categories"] = _save(fig, out_dir / PLOTS["categories"])

        # 2. Label length histogram.
        fig, ax = plt.subplots(figsize=(7, 4))
        lengths = stats.get("label_lengths") or []
        if lengths:
            ax.hist(lengths, bins=min(40, max(5, len(set(lengths)))), color="#55a868")
        ax.set_title("Label length")
        ax.set_xlabel("characters")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("labels")
        out["label_lengths"] = _save(fig, out_dir / PLOTS["label_lengths"])

        # 3. Duration histogram.
        fig, ax = plt.subplots(figsize=(7, 4))
        durations = stats["videos"].get("durations") or []
        if durations:
            ax.hist(durations, bins=min(40, max(5, len(durations) // 5 or 1)), color="#c44e52")
        else:
            ax.text(0.5, 0.5, "no readable videos", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Video duration")
        ax.set_xlabel("seconds")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("videos")
        out["durations"] = _save(fig, out_dir / PLOTS["durations"])

        # 4. Resolution scatter (display size, after rotation).
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        pts = stats["videos"].get("display_sizes") or []
        if pts:
            size_counts = Counter((w, h) for w, h in pts)
            xs, ys, ss = zip(*((w, h, c) for (w, h), c in size_counts.items()), strict=True)
            ax.scatter(xs, ys, s=[20 + 10 * math.sqrt(c) for c in ss], alpha=0.6, color="#8172b2")
            if len(xs) <= 30:
                for x, y, c in zip(xs, ys, ss, strict=True):
                    ax.annotate(f"{x}x{y} ({c})", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
            top = max(max(xs), max(ys)) * 1.1
            ax.plot([0, top], [0, top], ls="--", color="grey", lw=0.8)
            ax.text(top * 0.05, top * 0.9, "portrait", color="grey")
            ax.text(top * 0.7, top * 0.05, "landscape", color="grey")
            ax.set_xlim(0, top)
            ax.set_ylim(0, top)
        else:
            ax.text(0.5, 0.5, "no readable videos", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Display resolution")
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        out["resolutions"] = _save(fig, out_dir / PLOTS["resolutions"])
    return out


def _save(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ----------------------------------------------------------------------------------------------- report


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def report_sections(stats: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]], str | None]]:
    """(title, header, rows, plot key) for each section: shared by the Markdown and HTML reports and the CLI."""
    sections = []
    n = stats["records"]
    sections.append(
        (
            "Categories",
            ["category", "videos", "share"],
            [[c, str(v["count"]), _pct(v["share"])] for c, v in stats["categories"].items()] + [["total", str(n), ""]],
            "categories",
        )
    )
    ll = stats["label_length"]
    keys = ["n", "min", "median", "mean", "p90", "max"]
    sections.append(
        (
            "Label length (characters)",
            ["category", *keys],
            [["all", *(_fmt(ll["all"][k]) for k in keys)]]
            + [[c, *(_fmt(d[k]) for k in keys)] for c, d in ll["per_category"].items()],
            "label_lengths",
        )
    )
    t = stats["template"]
    sections.append(
        (
            "Template conformance",
            ["measure", "labels", "share"],
            [
                ["conforms (all five slots)", str(t["ok"]), _pct(t["rate"])],
                ["strict (nothing extra)", str(t["strict"]), _pct(t["strict_rate"])],
                ["with appended note", str(t["with_note"]), _pct(t["with_note"] / n if n else None)],
                ["with extra text", str(t["with_extra"]), _pct(t["with_extra"] / n if n else None)],
                ["unfilled placeholders", str(t["placeholders"]), _pct(t["placeholders"] / n if n else None)],
            ]
            + [[f"conforms: {c}", str(v["ok"]), _pct(v["rate"])] for c, v in t["per_category"].items()],
            None,
        )
    )
    d = stats["duplicates"]
    sections.append(
        (
            f"Near-duplicate labels (Jaccard >= {d['threshold']})",
            ["a", "b", "jaccard", "categories"],
            [
                [p["a"], p["b"], f"{p['jaccard']:.3f}", f"{p['category_a']} / {p['category_b']}"]
                for p in d["pairs"][:200]
            ],
            None,
        )
    )
    v = stats["videos"]
    dur = v["duration_s"]
    sections.append(
        (
            "Videos",
            ["measure", "value"],
            [
                ["readable", str(v["readable"])],
                ["unreadable", str(v["unreadable_count"])],
                ["missing on disk", str(v["missing_count"])],
                ["duration s (min / median / mean / p90 / max)", " / ".join(_fmt(dur[k]) for k in keys[1:])],
                ["orientation", ", ".join(f"{k} {c}" for k, c in v["orientation"].items()) or "-"],
                [
                    "most common display sizes",
                    ", ".join(f"{k} ({c})" for k, c in list(v["resolutions"].items())[:5]) or "-",
                ],
                ["with audio", str(v["with_audio"])],
            ],
            "durations",
        )
    )
    st = stats.get("screen_text")
    if st is not None:  # stats.json written before on-screen text was counted has none
        length = st["length"]
        sections.append(
            (
                "On-screen text",
                ["measure", "value"],
                [
                    ["videos read / not read yet", f"{st['read']} / {st['not_read']}"],
                    ["with text (share of read)", f"{st['with_text']} ({_pct(st['share'])})"],
                    [
                        "characters (min / median / mean / p90 / max)",
                        " / ".join(_fmt(length[k]) for k in keys[1:]),
                    ],
                    [f"longer than the prompt's {st['prompt_limit']} characters (cut)", str(st["over_prompt_limit"])],
                    ["read at fps", ", ".join(f"{k} ({c})" for k, c in st["fps"].items()) or "-"],
                ],
                None,
            )
        )
    sections.append(("Display resolution", [], [], "resolutions"))
    sections.append(
        (
            "Unreadable / missing videos",
            ["id", "video", "error"],
            [[u["id"], u["video"], u["error"] or ""] for u in v["unreadable"]],
            None,
        )
    )
    sections.append(("Review status", ["status", "records"], [[k, str(c)] for k, c in stats["review"].items()], None))
    sections.append(("Flags", ["flag", "records"], [[k, str(c)] for k, c in stats["flags"].items()], None))
    s = stats["splits"]
    cats = list(stats["categories"])
    sections.append(
        (
            "Splits",
            ["category", *SPLITS],
            [[c, *(str(s["counts"][sp].get(c, 0)) for sp in SPLITS)] for c in cats]
            + [["total", *(str(s["totals"][sp]) for sp in SPLITS)], ["not in a split", str(s["unsplit"]), "", ""]],
            None,
        )
    )
    return sections


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def write_report(stats: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write stats.json, stats.md, stats.html (self-contained) and the PNG plots into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "stats.json", stats)
    plots = make_plots(stats, out)
    sections = report_sections(stats)
    title = f"vmeta dataset statistics — {stats.get('dataset') or ''}"

    md = [f"# {title}", "", f"{stats['records']} records; generated {stats['created']}.", ""]
    for name, header, rows, plot in sections:
        md += [f"## {name}", ""]
        if header and rows:
            md += [_md_table(header, rows), ""]
        elif header:
            md += ["(none)", ""]
        if plot:
            md += [f"![{name}]({plots[plot].name})", ""]
    atomic_write_text(out / "stats.md", "\n".join(md))

    parts = [
        "<!doctype html><html lang='zh'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,'Noto Sans CJK SC','WenQuanYi Micro Hei',sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;color:#222}table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #ccc;"
        "padding:.2rem .6rem;text-align:left}th{background:#f3f3f3}img{max-width:100%}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{stats['records']} records; generated {html.escape(stats['created'])}.</p>",
    ]
    for name, header, rows, plot in sections:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if header and rows:
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            for r in rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>")
            parts.append("</table>")
        elif header:
            parts.append("<p>(none)</p>")
        if plot:
            data = base64.b64encode(plots[plot].read_bytes()).decode("ascii")
            parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    atomic_write_text(out / "stats.html", "\n".join(parts))
    return {"json": out / "stats.json", "md": out / "stats.md", "html": out / "stats.html", **plots}


def default_report_dir(dataset: Dataset) -> Path:
    return dataset.root / REPORT_DIR
