"""Per-sample automatic scores of a study's answers, for comparing each metric with the human preferences.

Computed from the study's own prediction copies with the metric registry of `vmeta eval` (`evaluate/metrics.py`,
`evaluate/slots.py`, `evaluate/bertscore.py`), so a number here is the number `vmeta eval` gives that sample.
The LLM judge's loose score comes from its answer cache (`judge.jsonl` under the judge cache folder), looked up
by the same key the judge uses (judge model, reference, output); nothing is sent to an endpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

from vmeta.errors import UserError
from vmeta.evaluate.bertscore import BertScoreConfig
from vmeta.evaluate.judge import cache_key
from vmeta.jsonio import iter_jsonl

# metric key in the report -> (registry metric, its column)
COLUMNS = {
    "bleu4": ("bleu4", "bleu4"),
    "rougeL": ("rougeL", "rougeL"),
    "bertscore": ("bertscore", "bertscore"),
    "concept_exact": ("slots", "concept_exact"),
    "concept_fuzzy": ("slots", "concept_fuzzy"),
    "emotion_fuzzy": ("slots", "emotion_fuzzy"),
    "template_ok": ("slots", "template_ok"),
}
JUDGE_KEY = "judge_loose"

Scores = dict[str, dict[str, dict[str, float]]]  # metric -> model -> test id -> score (NaN = not applicable)


def sample_scores(
    study,
    ids: list[str],
    *,
    bert: BertScoreConfig | None = None,
    judge_cache: Path | None = None,
    judge_model: str | None = None,
) -> tuple[Scores, list[str]]:
    """Scores of every model's answer on `ids`, and notes on what could not be computed."""
    from vmeta.evaluate.metrics import METRICS, EvalContext

    notes: list[str] = []
    wanted = [k for k in COLUMNS if k != "bertscore" or bert is not None]
    scores: Scores = {k: {} for k in wanted}
    shared: dict = {}
    for model in study.models:
        rows = [study.predictions[model][i] for i in ids]
        preds = [r.output for r in rows]
        refs = [r.reference for r in rows]
        ctx = EvalContext(bert=bert, cache=dict(shared))  # a fresh parse cache per model, one encoder for all
        columns: dict = {}
        for name in dict.fromkeys(COLUMNS[k][0] for k in wanted):
            try:
                columns.update(METRICS[name].fn(preds, refs, ctx).columns)
            except ImportError as exc:
                notes.append(f"{name}: not computed ({exc}); install the eval extra: pip install 'vmeta[eval]'.")
        if "scorer" in ctx.cache:
            shared["scorer"] = ctx.cache["scorer"]
        for k in wanted:
            col = columns.get(COLUMNS[k][1])
            if col is not None:
                scores[k][model] = {i: float(v) for i, v in zip(ids, col, strict=True)}
    scores = {k: v for k, v in scores.items() if v}
    if judge_cache is not None:
        scores[JUDGE_KEY] = judge_scores(study, ids, Path(judge_cache), judge_model)
        found = sum(not math.isnan(v) for table in scores[JUDGE_KEY].values() for v in table.values())
        if found < len(ids) * len(study.models):
            notes.append(
                f"LLM judge: {found} of {len(ids) * len(study.models)} answers have a cached verdict; "
                "the others are left out of the judge's agreement."
            )
    return scores, list(dict.fromkeys(notes))


def judge_scores(study, ids: list[str], path: Path, judge_model: str | None) -> dict[str, dict[str, float]]:
    """The judge's loose score (0-10) per model and id, from its cache file."""
    if path.is_dir():
        path = path / "judge.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: no judge cache here; pass the judge.jsonl from the judge cache folder.")
    verdicts: dict[str, dict] = {}
    models: set[str] = set()
    for n, row in enumerate(iter_jsonl(path), 1):
        if not isinstance(row, dict) or "key" not in row or "verdict" not in row:
            raise UserError(f"{path}: line {n} is not a judge cache row (needs 'key' and 'verdict').")
        verdicts[row["key"]] = row["verdict"]
        if row.get("model"):
            models.add(str(row["model"]))
    if judge_model is None:
        if len(models) != 1:
            raise UserError(
                f"{path} holds verdicts of {len(models)} judge models ({', '.join(sorted(models)) or 'none named'}); "
                "pick one with --judge-model."
            )
        judge_model = next(iter(models))
    out: dict[str, dict[str, float]] = {}
    for model in study.models:
        table = {}
        for i in ids:
            p = study.predictions[model][i]
            v = verdicts.get(cache_key(judge_model, p.reference, p.output))
            table[i] = float(v["loose"]) if v and v.get("loose") is not None else math.nan
        out[model] = table
    return out
