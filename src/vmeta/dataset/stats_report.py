"""The report of `vmeta data stats`: stats.json, stats.md and a self-contained stats.html (plots inlined as
PNG data URIs), plus the PNG plots themselves, from the statistics dict of dataset/stats.py. The sections
(title, table, plot) are built once in `report_sections` and shared by both formats and the CLI's tables."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vmeta.dataset.records import Dataset
from vmeta.dataset.split import SPLITS
from vmeta.dataset.stats_plots import make_plots
from vmeta.jsonio import atomic_write_text, write_json

REPORT_DIR = "report"


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
