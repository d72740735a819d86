"""The metric registry carries each column's label and direction (lm-eval style): every column a registered
metric writes is declared, so tables, plots, comparisons and the rating report label it without a second list."""

from __future__ import annotations

from dataclasses import replace

from evaldata import SAMPLES

import vmeta.evaluate  # noqa: F401  (registers every metric, the slot metric included)
from vmeta.evaluate import metrics
from vmeta.evaluate.metrics import METRICS, EvalContext, column_labels, higher_is_better


def test_every_column_a_metric_writes_is_declared_with_a_label(bert_cfg):
    preds = [s[2] for s in SAMPLES]
    refs = [s[1] for s in SAMPLES]
    ctx = EvalContext(bert=bert_cfg)
    for name, m in METRICS.items():
        result = m.fn(preds, refs, ctx)
        assert set(result.columns) <= set(m.columns), (name, set(result.columns) - set(m.columns))
        assert set(m.columns) & (set(result.columns) | set(result.corpus)), name  # it declares what it writes
    labels = column_labels()
    assert (
        labels["bleu4"] == "BLEU-4"
        and labels["bertscore"] == "BERT-F1"
        and labels["template_ok"].startswith("template")
    )
    assert len(set(labels.values())) == len(labels)  # no two columns share a label in a table


def test_direction_comes_from_the_registry(monkeypatch):
    assert higher_is_better("bleu4") and higher_is_better("rougeL")
    monkeypatch.setitem(METRICS, "bleu4", replace(METRICS["bleu4"], higher_is_better=False))
    assert not metrics.higher_is_better("bleu4") and higher_is_better("rougeL")
