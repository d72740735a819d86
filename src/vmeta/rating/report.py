"""`vmeta rate report STUDY`: report/report.md, report.html (plots embedded), report.json, the plots as PNG, and
STUDY/human_ratings/<model>.jsonl in the shape `vmeta eval --judge-model ... --human FILE` reads.

How the numbers are computed is in `rating/stats.py` (conventions) and repeated in report.json["conventions"].
This module computes report.json and writes the files; the words are in `report_i18n.py`, the figures in
`report_plots.py`, the Markdown and HTML in `report_render.py`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import vmeta
from vmeta.errors import UserError
from vmeta.evaluate.bertscore import BertScoreConfig
from vmeta.jsonio import atomic_write_bytes, atomic_write_text, write_json, write_jsonl
from vmeta.rating import stats
from vmeta.rating.report_i18n import texts
from vmeta.rating.report_plots import make_plots
from vmeta.rating.report_render import to_html, to_markdown
from vmeta.rating.scores import sample_scores
from vmeta.rating.study import SLOTS, Study

REPORT_DIR = "report"
HUMAN_DIR = "human_ratings"

CONVENTIONS = {
    "outcome": "each rating becomes an outcome of the item's pair (names sorted): first wins, second wins, tie, both_wrong",
    "win_rate": "a_win_rate = (a_wins + 0.5 * (ties + both_wrong)) / n; tie and both_wrong both count as a tie",
    "ci": "95% percentile bootstrap resampling test ids (all ratings of a drawn id come with it), seeded",
    "bradley_terry": "maximum likelihood, P(i beats j) = sigmoid(b_i - b_j), ties as half a win each; 'score' = "
    "1000 + 400 * b / ln(10) (Elo-like, mean 1000), 'log_strength' = b (natural log, mean 0); 'prior' = 1 means "
    "the MLE did not exist and one virtual tie per pair was added",
    "agreement": "4-way outcome on items rated by >= 2 raters; Cohen's kappa per rater pair on shared items (mean "
    "over pairs; pairs where both used one and the same category are undefined and left out); Fleiss' kappa "
    "generalised to a varying number of raters per item; Krippendorff's alpha, nominal",
    "metric_agreement": "ratings with a winner only (ties and both_wrong excluded): agree = 1 when the metric scores "
    "the winner higher, 0.5 on a metric tie, else 0; kendall_tau = scipy.stats.kendalltau (tau-b) between "
    "s(first) - s(second) and the human outcome +1/-1/0 over all ratings with both scores",
    "human_ratings": "human_ratings/<model>.jsonl: per id, each criterion is the majority of the raters' per-slot "
    "judgements of that model (an even split is left out); 'mapping' is not in the rating rubric and 'loose' "
    "cannot be derived from a pairwise choice, so both are absent (judge.py then reports no value for them)",
}


# --------------------------------------------------------------------------------------------------------------
# Building the numbers


def build_report(
    study: Study,
    *,
    bert: BertScoreConfig | None = None,
    judge_cache: Path | None = None,
    judge_model: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Everything report.json holds."""
    if n_boot < 0:
        raise UserError(f"--bootstrap must be >= 0, got {n_boot}.")
    ratings = study.ratings()
    categories = {i: study.category(i) for i in study.ids}
    res = stats.outcomes(ratings, categories)
    ids = [i for i in study.ids if any(o.id == i for o in res)]
    boot = stats.Resampler(ids, n_boot, seed)
    raters = Counter(r["rater"] for r in ratings)
    out: dict = {
        "vmeta_version": getattr(vmeta, "__version__", None),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "study": {
            "root": str(study.root),
            "models": study.models,
            "ids": len(study.ids),
            "items": len(study.items),
            "design": study.meta.get("design"),
            "ratings": len(ratings),
            "ids_rated": len(ids),
            "raters": dict(sorted(raters.items())),
            "sources": dict(Counter(r.get("source", "page").split(":")[0] for r in ratings)),
        },
        "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "resampled": "test ids"},
        "conventions": CONVENTIONS,
        "notes": [],
    }
    if not ratings:
        out.update(
            win_rates=[],
            bradley_terry=[],
            bradley_terry_fit={"prior": None, "n": 0},
            agreement={
                "items_multi_rated": 0,
                "cohen_kappa": None,
                "cohen_pairs": [],
                "fleiss_kappa": None,
                "krippendorff_alpha": None,
                "raw_agreement": None,
                "metrics": {},
            },
            by_category={},
            by_slot={},
        )
        out["notes"].append("no ratings yet")
        return out
    bt, fit = stats.bradley_terry(res, study.models, boot)
    agreement = stats.agreement(res)
    scores, notes = sample_scores(study, ids, bert=bert, judge_cache=judge_cache, judge_model=judge_model)
    agreement["metrics"] = stats.metric_agreement(res, scores, boot)
    out.update(
        win_rates=stats.win_rates(res, study.models, boot),
        bradley_terry=bt,
        bradley_terry_fit=fit,
        agreement=agreement,
        by_category=stats.by_category(res, study.models, boot),
        by_slot=stats.by_slot(res, study.models, list(SLOTS), boot),
    )
    if bert is not None and "bertscore" in scores:
        from vmeta.evaluate.metrics import EvalContext

        out["bertscore"] = EvalContext(bert=bert).scorer().describe()
    out["notes"] += notes
    return out


def human_rating_rows(study: Study) -> dict[str, list[dict]]:
    """Per model: one row per id in judge.py's human-rated shape ({"id", criterion: 0/1, ...}), from the raters'
    per-slot judgements (majority; an even split leaves the criterion out)."""
    votes: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in study.ratings():
        for model, judged in (r.get("slots") or {}).items():
            for slot, v in judged.items():
                votes[model][str(r["id"])][slot].append(int(v))
    out: dict[str, list[dict]] = {}
    for model in study.models:
        rows = []
        for i in study.ids:
            per = votes.get(model, {}).get(i)
            if not per:
                continue
            row: dict = {"id": i, "model": model}
            for slot in SLOTS:
                v = per.get(slot)
                if v and 2 * sum(v) != len(v):
                    row[slot] = int(2 * sum(v) > len(v))
            row["n_raters"] = max(len(v) for v in per.values())
            if any(s in row for s in SLOTS):
                rows.append(row)
        out[model] = rows
    return out


def write_report(
    study: Study,
    *,
    lang: str = "zh",
    out_dir: Path | None = None,
    bert: BertScoreConfig | None = None,
    judge_cache: Path | None = None,
    judge_model: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[dict, dict[str, Path]]:
    """Compute and write the report; returns (report.json content, written files)."""
    texts(lang)
    out = Path(out_dir) if out_dir is not None else study.root / REPORT_DIR
    report = build_report(study, bert=bert, judge_cache=judge_cache, judge_model=judge_model, n_boot=n_boot, seed=seed)
    files: dict[str, Path] = {}
    human_files: list[str] = []
    if report["study"]["ratings"]:
        for model, rows in human_rating_rows(study).items():
            if rows:
                p = study.root / HUMAN_DIR / f"{model}.jsonl"
                write_jsonl(p, rows)
                files[f"human_ratings/{model}"] = p
                human_files.append(str(p))
    images = make_plots(report, lang)
    out.mkdir(parents=True, exist_ok=True)
    for name, (_, png) in images.items():
        atomic_write_bytes(out / name, png)
        files[name] = out / name
    report["plots"] = {name: title for name, (title, _) in images.items()}
    report["human_ratings"] = human_files
    atomic_write_text(out / "report.md", to_markdown(report, lang, images, human_files))
    atomic_write_text(out / "report.html", to_html(report, lang, images, human_files))
    write_json(out / "report.json", report)
    for name in ("report.md", "report.html", "report.json"):
        files[name] = out / name
    return report, files


__all__ = ["CONVENTIONS", "build_report", "human_rating_rows", "write_report"]
