"""Our BLEU / ROUGE / sacrebleu numbers equal the reference libraries on the same inputs, edge cases included."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from evaldata import EDGE_TEXTS, SAMPLES

from vmeta.evaluate.metrics import (
    METRICS,
    EvalContext,
    bleu4_chars,
    rougeL_chars,
    rougeL_jieba,
    sacrebleu_from_stats,
)

jieba = pytest.importorskip("jieba")
nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
rouge_chinese = pytest.importorskip("rouge_chinese")
sacrebleu = pytest.importorskip("sacrebleu")
jieba.setLogLevel(logging.CRITICAL)


def llamafactory_scores(pred: str, label: str) -> dict[str, float]:
    """LLaMA-Factory's ComputeSimilarity for one pair (src/llamafactory/train/sft/metric.py), unrounded."""
    hypothesis = list(jieba.cut(pred))
    reference = list(jieba.cut(label))
    if len(" ".join(hypothesis).split()) == 0 or len(" ".join(reference).split()) == 0:
        result = {"rouge-1": {"f": 0.0}, "rouge-2": {"f": 0.0}, "rouge-l": {"f": 0.0}}
    else:
        result = rouge_chinese.Rouge().get_scores(" ".join(hypothesis), " ".join(reference))[0]
    out = {k: v["f"] * 100 for k, v in result.items()}
    out["bleu-4"] = 100 * nltk_bleu.sentence_bleu(
        [list(label)], list(pred), smoothing_function=nltk_bleu.SmoothingFunction().method3
    )
    return out


REF = SAMPLES[0][1]
EDGE_CASES = {
    "empty_output": ("", REF),
    "whitespace_output": ("   ", REF),
    "punctuation_only": ("。。。！！！", REF),
    "punctuation_both": ("，、；：？", "。。。！！！"),
    "mixed_zh_en": (
        "本视频讲述了 AI 芯片 is the future，表达出了 optimism。",
        "本视频讲述了AI芯片的未来，表达出了乐观。",
    ),
    "emoji": ("本视频讲述了猫咪😀🐱装睡。", "本视频讲述了猫咪装睡🐱。"),
    "emoji_only": ("🎉🎉🎉", "🎉"),
    "very_long": ("本视频讲述了学生考试。" * 40, SAMPLES[-1][1]),
    "identical": (REF, REF),
    "empty_reference": (REF, ""),
    "both_empty": ("", ""),
}


def _pairs():
    pairs = [(s[2], s[1]) for s in SAMPLES] + [(s[3], s[1]) for s in SAMPLES]
    return pairs + list(EDGE_CASES.values())


@pytest.mark.parametrize("pred,ref", _pairs())
def test_bleu_and_rouge_equal_llamafactory(pred, ref):
    expected = llamafactory_scores(pred, ref)
    assert bleu4_chars(pred, ref) == pytest.approx(expected["bleu-4"], abs=1e-9)
    assert rougeL_jieba(pred, ref) == pytest.approx(expected["rouge-l"], abs=1e-9)


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_cases_through_the_registry(case):
    pred, ref = EDGE_CASES[case]
    ctx = EvalContext(bert=None)
    expected = llamafactory_scores(pred, ref)
    bleu = METRICS["bleu4"].fn([pred], [ref], ctx).columns["bleu4"][0]
    rouge = METRICS["rougeL"].fn([pred], [ref], ctx).columns
    assert bleu == pytest.approx(expected["bleu-4"], abs=1e-9)
    for ours, theirs in (("rougeL", "rouge-l"), ("rouge1", "rouge-1"), ("rouge2", "rouge-2")):
        assert rouge[ours][0] == pytest.approx(expected[theirs], abs=1e-9)
    char = METRICS["rougeL_char"].fn([pred], [ref], ctx).columns["rougeL_char"][0]
    assert 0.0 <= char <= 100.0
    if case in ("empty_output", "whitespace_output", "empty_reference", "both_empty"):
        assert bleu == 0.0 and rouge["rougeL"][0] == 0.0 and char == 0.0
    if case == "identical":
        assert bleu == pytest.approx(100.0)
        assert rouge["rougeL"][0] == pytest.approx(100.0, abs=1e-5)  # rouge-chinese's 1e-8 epsilon
        assert char == pytest.approx(100.0, abs=1e-5)


def test_char_rouge_is_rouge_chinese_on_characters():
    pred, ref = SAMPLES[3][2], SAMPLES[3][1]
    hyp = " ".join(c for c in pred if not c.isspace())
    tgt = " ".join(c for c in ref if not c.isspace())
    expected = 100 * rouge_chinese.Rouge().get_scores(hyp, tgt)[0]["rouge-l"]["f"]
    assert rougeL_chars(pred, ref) == pytest.approx(expected, abs=1e-9)


def test_sacrebleu_corpus_equals_library_and_stats_recompute():
    preds = [s[2] for s in SAMPLES] + [EDGE_CASES["emoji"][0], ""]
    refs = [s[1] for s in SAMPLES] + [EDGE_CASES["emoji"][1], REF]
    res = METRICS["sacrebleu"].fn(preds, refs, EvalContext(bert=None))
    expected = sacrebleu.corpus_bleu(preds, [refs], tokenize="zh")
    assert res.corpus["sacrebleu"]["score"] == pytest.approx(expected.score, abs=1e-9)
    assert "tok:zh" in res.spec["sacrebleu"]["signature"]
    stats = np.array(res.corpus["sacrebleu"]["stats"])
    assert sacrebleu_from_stats(stats.sum(axis=0)) == pytest.approx(expected.score, abs=1e-9)
    # any subset (what the bootstrap resamples) equals sacrebleu on that subset
    rng = np.random.default_rng(1)
    for _ in range(3):
        idx = rng.integers(0, len(preds), len(preds))
        sub = sacrebleu.corpus_bleu([preds[i] for i in idx], [[refs[i] for i in idx]], tokenize="zh")
        assert sacrebleu_from_stats(stats[idx].sum(axis=0)) == pytest.approx(sub.score, abs=1e-9)


def test_stripped_scores_remove_template_words_and_are_lower():
    preds = [s[2] for s in SAMPLES]
    refs = [s[1] for s in SAMPLES]
    ctx = EvalContext(bert=None)
    std = METRICS["bleu4"].fn(preds, refs, ctx).columns["bleu4"]
    stripped = METRICS["stripped"].fn(preds, refs, ctx).columns
    assert stripped["bleu4_stripped"].mean() < std.mean()
    from vmeta.dataset.template import strip_template_words

    p, r = strip_template_words(preds[0]), strip_template_words(refs[0])
    assert "本视频讲述了" not in p and "出自" not in r
    assert stripped["bleu4_stripped"][0] == pytest.approx(llamafactory_scores(p, r)["bleu-4"], abs=1e-9)
    assert stripped["rougeL_stripped"][0] == pytest.approx(llamafactory_scores(p, r)["rouge-l"], abs=1e-9)


def test_edge_texts_all_score_without_error():
    ctx = EvalContext(bert=None)
    preds = EDGE_TEXTS
    refs = [REF] * len(EDGE_TEXTS)
    for name in ("bleu4", "rougeL", "rougeL_char", "stripped", "slots"):
        cols = METRICS[name].fn(preds, refs, ctx).columns
        for v in cols.values():
            assert len(v) == len(preds)
