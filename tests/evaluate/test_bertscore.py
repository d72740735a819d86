"""BERTScore: the same numbers as `bert_score.score` on the same (tiny, local) encoder; caching; errors."""

from __future__ import annotations

import numpy as np
import pytest
from evaldata import EDGE_TEXTS, SAMPLES

from vmeta.errors import UserError
from vmeta.evaluate.bertscore import BertScoreConfig, BertScorer, bert_score_hash, load_encoder

bert_score = pytest.importorskip("bert_score")


@pytest.fixture
def reference_bert_score(monkeypatch):
    """bert_score.score, with bert-score 0.3.13's empty-string path mended for transformers 5
    (`build_inputs_with_special_tokens` is gone there; on transformers 4 it returned [CLS] [SEP])."""
    import bert_score.utils as bu

    original = bu.sent_encode

    def sent_encode(tokenizer, sent):
        if sent.strip() == "":
            return [tokenizer.cls_token_id, tokenizer.sep_token_id]
        return original(tokenizer, sent)

    monkeypatch.setattr(bu, "sent_encode", sent_encode)

    def score(cands, refs, model, layers, idf=False, batch_size=64):
        (P, R, F), h = bert_score.score(
            cands,
            refs,
            model_type=str(model),
            num_layers=layers,
            idf=idf,
            nthreads=0,
            batch_size=batch_size,
            device="cpu",
            return_hash=True,
        )
        return P.numpy(), R.numpy(), F.numpy(), h

    return score


def _corpus():
    cands = [s[2] for s in SAMPLES] + [s[3] for s in SAMPLES] + EDGE_TEXTS
    refs = [s[1] for s in SAMPLES] * 2 + [SAMPLES[i % len(SAMPLES)][1] for i in range(len(EDGE_TEXTS))]
    # identical pair, empty reference, both empty
    return [*cands, SAMPLES[0][1], SAMPLES[1][2], ""], [*refs, SAMPLES[0][1], "", ""]


@pytest.mark.parametrize("idf", [False, True])
@pytest.mark.parametrize("layers", [1, 3])
def test_equals_bert_score_library(tiny_encoder, reference_bert_score, idf, layers):
    cands, refs = _corpus()
    P0, R0, F0, h = reference_bert_score(cands, refs, tiny_encoder, layers, idf=idf)
    scorer = BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=layers, idf=idf, batch_size=5))
    P, R, F = scorer.score(cands, refs)
    np.testing.assert_allclose(F, F0, atol=1e-6)
    np.testing.assert_allclose(P, np.nan_to_num(P0), atol=1e-6)
    np.testing.assert_allclose(R, np.nan_to_num(R0), atol=1e-6)
    assert scorer.describe()["hash"] == h


def test_match_batches_reproduce_bert_score_padding_quirk(tiny_encoder, reference_bert_score):
    """More than 64 pairs: bert-score matches in input-order batches of 64 with zero-masked padding."""
    cands, refs = _corpus()
    cands, refs = (cands * 4)[:90], (refs[::-1] * 4)[:90]
    *_, F0, _ = reference_bert_score(cands, refs, tiny_encoder, 2)
    _, _, F = BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=2, batch_size=16)).score(cands, refs)
    np.testing.assert_allclose(F, F0, atol=1e-6)


def test_edge_cases(tiny_encoder, reference_bert_score):
    scorer = BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=2))
    ref = SAMPLES[0][1]
    long = "本视频讲述了学生考试。" * 40
    cases = {
        "empty_output": ("", ref),
        "punctuation_only": ("。。。！！！", ref),
        "mixed_zh_en": ("AI 芯片 is the future 😀🐱", ref),
        "emoji": ("emoji only 🎉🎉🎉", ref),
        "very_long": (long, ref),
        "identical": (ref, ref),
    }
    cands = [c for c, _ in cases.values()]
    refs = [r for _, r in cases.values()]
    P, R, F = scorer.score(cands, refs)
    *_, F0, _ = reference_bert_score(cands, refs, tiny_encoder, 2)
    np.testing.assert_allclose(F, F0, atol=1e-6)
    got = dict(zip(cases, F, strict=True))
    assert got["empty_output"] == 0.0 and P[0] == 0.0 and R[0] == 0.0
    assert got["identical"] == pytest.approx(1.0, abs=1e-6)
    # truncation: at model_max_length (64 tokens incl. [CLS]/[SEP]), as bert-score truncates
    assert len(scorer.encode(long)) == 64
    truncated = scorer.tokenizer.decode(scorer.encode(long)[1:-1]).replace(" ", "")
    _, _, F_trunc = scorer.score([truncated], [ref])
    assert F_trunc[0] == pytest.approx(got["very_long"], abs=1e-6)


def test_batch_size_does_not_change_scores(tiny_encoder):
    cands, refs = _corpus()
    a = BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=2, batch_size=3)).score(cands, refs)[2]
    b = BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=2, batch_size=64)).score(cands, refs)[2]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_model_is_loaded_once(tiny_encoder):
    s1 = BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=2))
    s2 = BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=2, batch_size=3))
    assert s1.model is s2.model
    assert load_encoder.cache_info().hits >= 1


def test_layer_out_of_range(tiny_encoder):
    with pytest.raises(UserError, match="out of range"):
        BertScorer(BertScoreConfig(model=str(tiny_encoder), num_layers=9))


def test_missing_model_says_what_to_do(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as err:
        BertScorer(BertScoreConfig(model="no-such-org/no-such-bert", offline=True))
    msg = str(err.value)
    assert "no-such-org/no-such-bert" in msg and "--bert-model" in msg and "--no-bertscore" in msg


def test_bad_local_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UserError, match="could not be loaded"):
        BertScorer(BertScoreConfig(model=str(tmp_path)))


def test_hash_format():
    h = bert_score_hash("bert-base-chinese", 8, False)
    assert h.startswith("bert-base-chinese_L8_no-idf_version=") and "hug_trans=" in h
