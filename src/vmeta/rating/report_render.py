"""The rating report as Markdown and as one self-contained HTML page (plots embedded), from report.json's
content. Both are built from the same tables (:func:`tables`), so the two never disagree.
"""

from __future__ import annotations

import base64
import html
import math

from vmeta.dataset.categories import CATEGORIES
from vmeta.rating.report_i18n import TEXT, category_label, metric_label
from vmeta.rating.study import SLOTS


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _rate_ci(rate: float | None, ci: list | None) -> str:
    if rate is None:
        return "–"
    text = f"{100 * rate:.1f}%"
    if ci and ci[0] is not None:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def tables(report: dict, lang: str) -> list[tuple[str, str | None, list[str], list[list[str]]]]:
    """(heading, note, header, rows) for every table of the report, shared by Markdown and HTML."""
    t = TEXT[lang]
    models = report["study"]["models"]
    out = []
    rows = [
        [
            f"{w['a']} vs {w['b']}",
            *(str(w[k]) for k in ("a_wins", "b_wins", "ties", "both_wrong", "n")),
            _rate_ci(w["a_win_rate"], w["ci"]),
        ]
        for w in report["win_rates"]
    ]
    out.append(
        (
            t["win_rates"],
            t["win_rates_note"],
            [t["pair"], t["a_wins"], t["b_wins"], t["ties"], t["both_wrong"], "n", t["a_rate"]],
            rows,
        )
    )
    bt_note = t["bt_note"] + (" " + t["bt_prior"] if report["bradley_terry_fit"].get("prior") else "")
    rows = [
        [
            str(b["rank"]),
            b["model"],
            f"{b['score']:.0f}" + (f" [{b['ci'][0]:.0f}, {b['ci'][1]:.0f}]" if b["ci"][0] is not None else ""),
            _num(b["log_strength"]),
        ]
        for b in report["bradley_terry"]
    ]
    out.append((t["bt"], bt_note, [t["rank"], t["model"], t["score"], t["log_strength"]], rows))
    ag = report["agreement"]
    if ag["items_multi_rated"]:
        rows = [
            [t["cohen"], _num(ag["cohen_kappa"])],
            [t["fleiss"], _num(ag["fleiss_kappa"])],
            [t["alpha"], _num(ag["krippendorff_alpha"])],
            [t["raw"], _rate_ci(ag["raw_agreement"], None)],
        ]
        note = t["agreement_note"].format(n=ag["items_multi_rated"])
        out.append((t["agreement"], note, [t["measure"], t["value"]], rows))
    else:
        out.append((t["agreement"], t["no_multi"], [], []))
    rows = [
        [
            metric_label(m, lang),
            _rate_ci(e["agree_rate"], e["ci"]),
            str(e["n"]),
            _num(e["kendall_tau"]),
            _p(e["kendall_p"]),
        ]
        for m, e in ag["metrics"].items()
    ]
    out.append((t["metrics"], t["metrics_note"], [t["metric"], t["agree"], "n", t["tau"], "p"], rows))
    rows = []
    cats = report["by_category"]
    for cat in [c for c in CATEGORIES if c in cats] + sorted(c for c in cats if c not in CATEGORIES):
        entry = cats[cat]
        cells = [category_label(cat, lang), str(entry["n_ratings"])]
        for m in models:
            e = entry["models"].get(m)
            cells.append(_rate_ci(e["win_rate"], e["ci"]) if e else "–")
        rows.append(cells)
    out.append((t["by_category"], None, [t["category"], "n", *models], rows))
    slot_names = t["slot_names"]
    if any(e["n"] for per in report["by_slot"].values() for e in per.values()):
        rows = [
            [m, *[f"{_rate_ci(e['rate'], e['ci'])} (n={e['n']})" for e in report["by_slot"][m].values()]]
            for m in models
        ]
        out.append((t["by_slot"], None, [t["model"], *[slot_names[s] for s in SLOTS]], rows))
    else:
        out.append((t["by_slot"], t["no_slots"], [], []))
    return out


def _summary_lines(report: dict, lang: str) -> list[tuple[str, str]]:
    t = TEXT[lang]
    s = report["study"]
    d = s.get("design") or {}
    design = d.get("kind", "?") + (f", per_pair={d['per_pair']}" if d.get("per_pair") else "")
    design += f", raters_per_item={d.get('raters_per_item')}"
    raters = ", ".join(f"{r} ({n})" for r, n in s["raters"].items()) or "–"
    return [
        (t["models"], ", ".join(s["models"])),
        (t["ids"], f"{s['ids']} ({s['ids_rated']})"),
        (t["items"], str(s["items"])),
        (t["ratings"], str(s["ratings"])),
        (t["raters"], raters),
        (t["design"], design),
    ]


def to_markdown(report: dict, lang: str, images: dict[str, tuple[str, bytes]], human_files: list[str]) -> str:
    t = TEXT[lang]
    lines = [f"# {t['title']}", "", f"## {t['summary']}", ""]
    lines += [f"- {k}: {v}" for k, v in _summary_lines(report, lang)]
    if not report["study"]["ratings"]:
        lines += ["", t["no_ratings"].format(root=report["study"]["root"]), ""]
        return "\n".join(lines)
    for heading, note, head, rows in tables(report, lang):
        lines += ["", f"## {heading}", ""]
        if note:
            lines += [note, ""]
        if head:
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
            lines += ["| " + " | ".join(r) + " |" for r in rows]
    for name, (title, _) in images.items():
        lines += ["", f"![{title}]({name})"]
    if human_files:
        lines += ["", f"## {t['human_ratings']}", ""] + [f"- `{f}`" for f in human_files]
    if report["notes"]:
        lines += ["", f"## {t['notes']}", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def to_html(report: dict, lang: str, images: dict[str, tuple[str, bytes]], human_files: list[str]) -> str:
    esc = html.escape
    t = TEXT[lang]
    out = [
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{esc(t['title'])}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "p.note{color:#555;font-size:.9em}img{max-width:100%}figure{margin:1em 0}</style></head><body>",
        f"<h1>{esc(t['title'])}</h1><h2>{esc(t['summary'])}</h2><ul>",
    ]
    out += [f"<li>{esc(k)}: {esc(v)}</li>" for k, v in _summary_lines(report, lang)]
    out.append("</ul>")
    if not report["study"]["ratings"]:
        out.append(f"<p>{esc(t['no_ratings'].format(root=report['study']['root']))}</p></body></html>")
        return "\n".join(out)
    for heading, note, head, rows in tables(report, lang):
        out.append(f"<h2>{esc(heading)}</h2>")
        if note:
            out.append(f"<p class='note'>{esc(note)}</p>")
        if head:
            out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
            out.append("</table>")
    for name, (title, png) in images.items():
        out.append(
            f"<figure><figcaption><b>{esc(title)}</b></figcaption><img alt='{esc(title)}' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}' data-file='{esc(name)}'></figure>"
        )
    if human_files:
        out.append(f"<h2>{esc(t['human_ratings'])}</h2><ul>")
        out += [f"<li><code>{esc(f)}</code></li>" for f in human_files]
        out.append("</ul>")
    if report["notes"]:
        out.append(f"<h2>{esc(t['notes'])}</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in report["notes"]) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


__all__ = ["tables", "to_html", "to_markdown"]
