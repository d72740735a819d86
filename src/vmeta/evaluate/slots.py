"""Slot-level evaluation: what the n-gram scores cannot see.

Output and reference are parsed with the template module (`vmeta.dataset.template.parse`). Per sample:
- `template_ok` / `template_strict`: 100 when the output fills all five slots (strict: nothing else);
- `concept_exact`: 100 when the normalised core concepts are equal (NFKC width fold, case fold, quotes,
  brackets, spaces and trailing punctuation removed);
- `concept_fuzzy`: normalised character similarity of the concepts, 0-100 (rapidfuzz `fuzz.ratio` when
  installed, else difflib `SequenceMatcher.ratio`; same definition up to difflib's junk heuristic, and
  results.json says which ran);
- `emotion_fuzzy`: the same similarity on the emotion/attitude slot;
- `slot_rougeL_<slot>` and `slot_bertscore_<slot>`: ROUGE-L (jieba) and BERTScore F1 on each slot.
A slot score is NaN (not applicable, left out of means) when either side does not parse.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from vmeta.dataset.template import SLOT_NAMES, parse
from vmeta.evaluate.metrics import EvalContext, MetricResult, metric, pkg_version, rougeL_jieba

_STRIP = re.compile(r"[\s\"'“”‘’「」『』《》〈〉()（）\[\]【】<>]+")
_TRAIL = "。.！!？?，,、;；:："

try:  # pragma: no cover - which branch runs depends on the environment
    from rapidfuzz import fuzz as _fuzz

    FUZZY_BACKEND = "rapidfuzz.fuzz.ratio"

    def similarity(a: str, b: str) -> float:
        return float(_fuzz.ratio(a, b))

except ImportError:  # pragma: no cover
    import difflib

    FUZZY_BACKEND = "difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() x100"

    def similarity(a: str, b: str) -> float:
        if not a and not b:
            return 100.0
        return 100.0 * difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def normalize_concept(text: str) -> str:
    s = unicodedata.normalize("NFKC", text or "").casefold()
    s = _STRIP.sub("", s)
    return s.strip(_TRAIL)


def parse_pairs(preds: list[str], refs: list[str], ctx: EvalContext):
    key = "parsed"
    if key not in ctx.cache:
        ctx.cache[key] = ([parse(p) for p in preds], [parse(r) for r in refs])
    return ctx.cache[key]


SLOT_LABELS = {
    "template_ok": "template conformance %",
    "template_strict": "strict template %",
    "concept_exact": "concept exact %",
    "concept_fuzzy": "concept fuzzy",
    "emotion_fuzzy": "emotion fuzzy",
    **{f"slot_rougeL_{s}": f"ROUGE-L [{s}]" for s in SLOT_NAMES},
    **{f"slot_bertscore_{s}": f"BERT-F1 [{s}]" for s in SLOT_NAMES},
}


@metric(
    "slots",
    help="Template conformance, concept exact/fuzzy match, emotion similarity, per-slot ROUGE-L/BERTScore.",
    columns=SLOT_LABELS,
)
def _slots(preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    p_parsed, r_parsed = parse_pairs(preds, refs, ctx)
    n = len(preds)
    nan = np.full(n, np.nan)
    cols: dict[str, np.ndarray] = {
        "template_ok": np.array([100.0 if p.ok else 0.0 for p in p_parsed]),
        "template_strict": np.array([100.0 if p.strict else 0.0 for p in p_parsed]),
        "concept_exact": nan.copy(),
        "concept_fuzzy": nan.copy(),
        "emotion_fuzzy": nan.copy(),
    }
    both = [i for i in range(n) if p_parsed[i].ok and r_parsed[i].ok]
    for slot in SLOT_NAMES:
        cols[f"slot_rougeL_{slot}"] = nan.copy()
    for i in both:
        ps, rs = p_parsed[i].slots, r_parsed[i].slots
        a, b = normalize_concept(ps["concept"]), normalize_concept(rs["concept"])
        cols["concept_exact"][i] = 100.0 if a == b else 0.0
        cols["concept_fuzzy"][i] = similarity(a, b)
        cols["emotion_fuzzy"][i] = similarity(normalize_concept(ps["emotion"]), normalize_concept(rs["emotion"]))
        for slot in SLOT_NAMES:
            cols[f"slot_rougeL_{slot}"][i] = rougeL_jieba(ps[slot], rs[slot])

    spec_common = {
        "parser": "vmeta.dataset.template.parse",
        "applies_to": "samples where output and reference both parse",
    }
    specs: dict[str, dict] = {
        "template_ok": {
            "definition": "100 if parse(output).ok (all five slots filled, no placeholders)",
            "aggregate": "rate in %",
        },
        "template_strict": {
            "definition": "100 if parse(output).strict (exactly the template, no note/extra)",
            "aggregate": "rate in %",
        },
        "concept_exact": {
            **spec_common,
            "normalisation": "NFKC + casefold, quotes/brackets/spaces/trailing punctuation removed",
        },
        "concept_fuzzy": {**spec_common, "similarity": FUZZY_BACKEND, "rapidfuzz": pkg_version("rapidfuzz")},
        "emotion_fuzzy": {**spec_common, "similarity": FUZZY_BACKEND, "slot": "emotion (情绪/态度)"},
    }
    for slot in SLOT_NAMES:
        specs[f"slot_rougeL_{slot}"] = {**spec_common, "metric": "ROUGE-L F, jieba + rouge-chinese, x100", "slot": slot}

    if ctx.bert is not None and both:
        scorer = ctx.scorer()
        cands = [p_parsed[i].slots[s] for s in SLOT_NAMES for i in both]
        targets = [r_parsed[i].slots[s] for s in SLOT_NAMES for i in both]
        _, _, F = scorer.score(cands, targets)
        for k, slot in enumerate(SLOT_NAMES):
            col = nan.copy()
            col[both] = 100 * F[k * len(both) : (k + 1) * len(both)]
            cols[f"slot_bertscore_{slot}"] = col
            specs[f"slot_bertscore_{slot}"] = {
                **spec_common,
                "metric": "BERTScore F1 x100",
                "slot": slot,
                "encoder": scorer.describe()["hash"],
            }

    ref_ok = sum(r.ok for r in r_parsed)
    extra = {
        "output_slots": [p.slots if p.ok else None for p in p_parsed],
        "reference_slots": [r.slots if r.ok else None for r in r_parsed],
    }
    corpus = {
        "template": {
            "output_conformance": float(np.mean(cols["template_ok"])) if n else float("nan"),
            "reference_conformance": 100.0 * ref_ok / n if n else float("nan"),
            "both_parse": len(both),
            "n": n,
        }
    }
    return MetricResult(cols, specs, corpus=corpus, sample_extra=extra)
