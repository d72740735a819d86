"""Dataset statistics (`vmeta data stats`): what is in the dataset and what is wrong with it.

`compute_stats(dataset)` returns a JSON-able dict: category distribution, label lengths (characters),
template conformance (ok / strict / with note / with extra text / placeholders), near-duplicate labels
(dataset/near_duplicates.py), video duration / resolution / orientation, unreadable and missing videos,
on-screen text (videos with text, its length), review status, flags and splits. The plots are drawn in
dataset/stats_plots.py, the report (stats.json, stats.md, stats.html) written in dataset/stats_report.py.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from typing import Any

from vmeta.dataset.categories import CATEGORIES
from vmeta.dataset.context import DEFAULT_MAX_CHARS, context_block
from vmeta.dataset.near_duplicates import DUPLICATE_THRESHOLD, SHINGLE, duplicate_groups, near_duplicates
from vmeta.dataset.records import Dataset, Record, ReviewStatus, now_iso
from vmeta.dataset.split import SPLITS
from vmeta.dataset.template import parse


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
        "groups": duplicate_groups(pairs),
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
