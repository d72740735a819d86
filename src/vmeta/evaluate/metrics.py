"""The metric registry: one table, filled by a decorator. Scores are per sample, on a 0-100 scale.

Defaults are comparable with the thesis and LLaMA-Factory's `ComputeSimilarity`:
- BLEU-4: nltk `sentence_bleu([list(ref)], list(pred), smoothing_function=SmoothingFunction().method3)`,
  i.e. on characters, averaged over samples, x100;
- ROUGE-L: `rouge_chinese.Rouge().get_scores(" ".join(jieba.cut(pred)), " ".join(jieba.cut(ref)))`,
  F of "rouge-l", x100; an output or reference with no token after the split scores 0 (LLaMA-Factory's rule);
- BERTScore F1: bert-score semantics (see `bertscore.py`), bert-base-chinese layer 8, no rescale, x100.
(LLaMA-Factory rounds each sample to 4 decimals before averaging; we keep full precision: the means differ
by less than 5e-5.)

Alternates: corpus BLEU with sacrebleu `tokenize="zh"`, ROUGE-L on characters, ROUGE-1/2 (jieba), and the
"template-stripped" BLEU-4 / ROUGE-L without the template's fixed words.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from vmeta.dataset.template import FIXED_PHRASES, strip_template_words
from vmeta.errors import UserError
from vmeta.evaluate.bertscore import BertScoreConfig, BertScorer

# The thesis' three columns, in its order (tables 4.2-4.11).
THESIS_COLUMNS = ("bertscore", "bleu4", "rougeL")


def pkg_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@dataclass
class MetricResult:
    columns: dict[str, np.ndarray]  # per-sample scores, 0-100, NaN = not applicable
    spec: dict  # exactly how it was computed
    corpus: dict = field(default_factory=dict)  # corpus-level numbers (e.g. sacrebleu) with their stats
    sample_extra: dict[str, list] = field(default_factory=dict)  # per-sample non-score data for samples.jsonl


@dataclass
class EvalContext:
    bert: BertScoreConfig | None = None  # None: BERTScore disabled
    show_progress: bool = False
    cache: dict[str, Any] = field(default_factory=dict)

    def scorer(self) -> BertScorer:
        if self.bert is None:
            raise UserError("BERTScore is disabled (--no-bertscore); drop the BERTScore metrics from --metrics.")
        if "scorer" not in self.cache:
            self.cache["scorer"] = BertScorer(self.bert, show_progress=self.show_progress)
        return self.cache["scorer"]


MetricFn = Callable[[list[str], list[str], EvalContext], MetricResult]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    help: str
    columns: dict[str, str]  # every per-sample column it writes -> its label in tables and plots
    default: bool = True
    needs_bertscore: bool = False
    higher_is_better: bool = True  # which run a comparison marks best


METRICS: dict[str, Metric] = {}


def metric(
    name: str,
    *,
    help: str,
    columns: dict[str, str],
    default: bool = True,
    needs_bertscore: bool = False,
    higher_is_better: bool = True,
):
    """Register a metric (lm-eval style: the columns it writes carry their label and direction)."""

    def deco(fn: MetricFn) -> MetricFn:
        METRICS[name] = Metric(name, fn, help, columns, default, needs_bertscore, higher_is_better)
        return fn

    return deco


def score(names: list[str], preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    """Run the named metrics over (prediction, reference) pairs -> one merged result (every column, how each was
    computed, corpus numbers, per-sample extras): what `vmeta eval` and evaluation during training both score."""
    merged = MetricResult({}, {})
    for name in dict.fromkeys(names):
        if name not in METRICS:
            raise UserError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}.")
        res = METRICS[name].fn(preds, refs, ctx)
        merged.columns.update(res.columns)
        merged.spec.update(res.spec)
        merged.corpus.update(res.corpus)
        merged.sample_extra.update(res.sample_extra)
    return merged


def column_labels() -> dict[str, str]:
    """Column -> label over every registered metric (import vmeta.evaluate first: it registers them all)."""
    return {col: label for m in METRICS.values() for col, label in m.columns.items()}


def higher_is_better(column: str) -> bool:
    return next((m.higher_is_better for m in METRICS.values() if column in m.columns), True)


def default_metrics(*, bertscore: bool = True) -> list[str]:
    return [m.name for m in METRICS.values() if m.default and (bertscore or not m.needs_bertscore)]


# --------------------------------------------------------------------------------------------------------------
# The per-sample reference functions (also used by slot-level scores and tests)


def _jieba():
    import jieba

    if not getattr(_jieba, "ready", False):
        jieba.setLogLevel(logging.CRITICAL)
        jieba.initialize()
        _jieba.ready = True
    return jieba


def bleu4_chars(pred: str, ref: str) -> float:
    """LLaMA-Factory's BLEU-4 for one sample, x100."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return 100.0 * float(sentence_bleu([list(ref)], list(pred), smoothing_function=SmoothingFunction().method3))


def rouge_scores(pred_tokens: list[str], ref_tokens: list[str]) -> dict[str, float]:
    """rouge-chinese on space-joined tokens, F x100 for rouge-1/2/l; 0 when either side has no token."""
    hyp, ref = " ".join(pred_tokens), " ".join(ref_tokens)
    if len(hyp.split()) == 0 or len(ref.split()) == 0:
        return {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    from rouge_chinese import Rouge

    result = Rouge().get_scores(hyp, ref)[0]
    return {k: 100.0 * float(v["f"]) for k, v in result.items()}


def jieba_tokens(text: str) -> list[str]:
    return list(_jieba().cut(text))


def char_tokens(text: str) -> list[str]:
    return [c for c in text if not c.isspace()]


def rougeL_jieba(pred: str, ref: str) -> float:
    return rouge_scores(jieba_tokens(pred), jieba_tokens(ref))["rouge-l"]


def rougeL_chars(pred: str, ref: str) -> float:
    return rouge_scores(char_tokens(pred), char_tokens(ref))["rouge-l"]


def _bleu_spec() -> dict:
    return {
        "library": "nltk",
        "version": pkg_version("nltk"),
        "function": "nltk.translate.bleu_score.sentence_bleu([list(reference)], list(output))",
        "tokenizer": "characters (list(text), spaces and punctuation included)",
        "max_order": 4,
        "weights": [0.25, 0.25, 0.25, 0.25],
        "smoothing": "SmoothingFunction().method3",
        "aggregate": "mean over samples",
        "scale": "x100",
        "comparable_with": "LLaMA-Factory ComputeSimilarity 'bleu-4' (it rounds each sample to 4 decimals)",
    }


def _rouge_spec(tokenizer: str, key: str = "rouge-l") -> dict:
    how = "summary-level union LCS over rouge-chinese's sentence cut" if key == "rouge-l" else "n-gram overlap"
    return {
        "library": "rouge-chinese",
        "version": pkg_version("rouge-chinese"),
        "function": f"rouge_chinese.Rouge().get_scores(hyp, ref)[0]['{key}']['f'] ({how})",
        "tokenizer": tokenizer,
        "tokenizer_version": pkg_version("jieba") if tokenizer.startswith("jieba") else None,
        "empty_rule": "0 when output or reference has no token (LLaMA-Factory)",
        "aggregate": "mean over samples",
        "scale": "x100",
    }


# --------------------------------------------------------------------------------------------------------------
# Registered metrics


@metric(
    "bleu4",
    help="BLEU-4 on characters, nltk sentence_bleu with smoothing method3 (thesis, LLaMA-Factory).",
    columns={"bleu4": "BLEU-4"},
)
def _bleu4(preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    scores = np.array([bleu4_chars(p, r) for p, r in zip(preds, refs, strict=True)], dtype=float)
    return MetricResult({"bleu4": scores}, {"bleu4": _bleu_spec()})


@metric(
    "rougeL",
    help="ROUGE-L F on jieba words with rouge-chinese (thesis, LLaMA-Factory); also ROUGE-1/2.",
    columns={"rougeL": "ROUGE-L", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2"},
)
def _rougeL(preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    rows = [rouge_scores(jieba_tokens(p), jieba_tokens(r)) for p, r in zip(preds, refs, strict=True)]
    tok = "jieba.cut (default mode, HMM on), tokens joined by spaces"
    cols = {
        "rougeL": np.array([x["rouge-l"] for x in rows]),
        "rouge1": np.array([x["rouge-1"] for x in rows]),
        "rouge2": np.array([x["rouge-2"] for x in rows]),
    }
    return MetricResult(
        cols,
        {
            "rougeL": _rouge_spec(tok),
            "rouge1": _rouge_spec(tok, "rouge-1"),
            "rouge2": _rouge_spec(tok, "rouge-2"),
        },
    )


@metric(
    "rougeL_char",
    help="ROUGE-L F on characters (rouge-chinese on space-separated characters).",
    columns={"rougeL_char": "ROUGE-L (char)"},
)
def _rougeL_char(preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    scores = np.array([rougeL_chars(p, r) for p, r in zip(preds, refs, strict=True)], dtype=float)
    return MetricResult({"rougeL_char": scores}, {"rougeL_char": _rouge_spec("characters (whitespace dropped)")})


@metric(
    "bertscore",
    help="BERTScore F1 (bert-score semantics), bert-base-chinese layer 8, no rescale.",
    columns={"bertscore": "BERT-F1", "bertscore_p": "BERT-P", "bertscore_r": "BERT-R"},
    needs_bertscore=True,
)
def _bertscore(preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    scorer = ctx.scorer()
    P, R, F = scorer.score(preds, refs)
    spec = scorer.describe()
    return MetricResult(
        {"bertscore": 100 * F, "bertscore_p": 100 * P, "bertscore_r": 100 * R},
        {"bertscore": spec, "bertscore_p": {**spec, "score": "precision"}, "bertscore_r": {**spec, "score": "recall"}},
    )


@metric(
    "sacrebleu",
    help="Corpus BLEU with sacrebleu tokenize='zh' (one number; bootstrapped from sentence stats).",
    columns={"sacrebleu": "corpus BLEU (sacrebleu zh)"},
)
def _sacrebleu(preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="zh")
    score = bleu.corpus_score(list(preds), [list(refs)])
    stats = [list(map(int, s)) for s in bleu._extract_corpus_statistics(list(preds), [list(refs)])]
    spec = {
        "library": "sacrebleu",
        "version": pkg_version("sacrebleu"),
        "function": "sacrebleu.metrics.BLEU(tokenize='zh').corpus_score(outputs, [references])",
        "signature": str(bleu.get_signature()),
        "aggregate": "corpus-level (not a mean of sentence scores)",
        "scale": "x100 (sacrebleu's own)",
    }
    return MetricResult(
        {},
        {"sacrebleu": spec},
        corpus={"sacrebleu": {"score": float(score.score), "stats": stats, "text": str(score)}},
        sample_extra={"sacrebleu_stats": stats},
    )


@metric(
    "stripped",
    help="BLEU-4 and ROUGE-L with the template's fixed words removed from both sides.",
    columns={"bleu4_stripped": "BLEU-4 (no template words)", "rougeL_stripped": "ROUGE-L (no template words)"},
)
def _stripped(preds: list[str], refs: list[str], ctx: EvalContext) -> MetricResult:
    sp = [strip_template_words(p) for p in preds]
    sr = [strip_template_words(r) for r in refs]
    bleu = np.array([bleu4_chars(p, r) for p, r in zip(sp, sr, strict=True)], dtype=float)
    rouge = np.array([rougeL_jieba(p, r) for p, r in zip(sp, sr, strict=True)], dtype=float)
    note = {"preprocess": f"vmeta.dataset.template.strip_template_words (removes {', '.join(FIXED_PHRASES)})"}
    return MetricResult(
        {"bleu4_stripped": bleu, "rougeL_stripped": rouge},
        {
            "bleu4_stripped": {**_bleu_spec(), **note},
            "rougeL_stripped": {**_rouge_spec("jieba.cut, joined by spaces"), **note},
        },
    )


def sacrebleu_from_stats(stats: np.ndarray) -> float:
    """Corpus BLEU (sacrebleu's formula, exp smoothing) from summed sentence statistics [sys, ref, c1..4, t1..4]."""
    from sacrebleu.metrics import BLEU

    s = [round(x) for x in stats]
    return float(BLEU.compute_bleu(s[2:6], s[6:10], s[0], s[1], smooth_method="exp").score)
