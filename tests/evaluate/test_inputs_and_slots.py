"""Reading predictions files (vmeta and LLaMA-Factory formats) and slot-level scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evaldata import SAMPLES, write_predictions

from vmeta.dataset.prompts import prompt_hash
from vmeta.errors import UserError
from vmeta.evaluate.metrics import METRICS, EvalContext
from vmeta.evaluate.predictions import load_predictions
from vmeta.evaluate.slots import FUZZY_BACKEND, normalize_concept, similarity


def test_vmeta_format(tmp_path):
    rows, fmt = load_predictions(write_predictions(tmp_path / "p.jsonl", 2))
    assert fmt == "vmeta" and len(rows) == len(SAMPLES)
    assert rows[0].id == "v000" and rows[0].category == "讽刺类" and rows[0].model == "qwen2-vl-2b-instruct"
    assert rows[0].prompt_hash == prompt_hash(rows[0].prompt)  # the same hash `vmeta predict` writes


def test_llamafactory_format(tmp_path):
    p = tmp_path / "generated_predictions.jsonl"
    p.write_text(
        "".join(
            json.dumps({"prompt": "<video>理解", "predict": s[2], "label": s[1]}, ensure_ascii=False) + "\n"
            for s in SAMPLES[:3]
        ),
        encoding="utf-8",
    )
    rows, fmt = load_predictions(p)
    assert fmt == "llamafactory"
    assert [r.id for r in rows] == ["1", "2", "3"] and {r.category for r in rows} == {"all"}
    assert rows[1].output == SAMPLES[1][2] and rows[1].reference == SAMPLES[1][1]


def test_category_aliases_are_canonicalised(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": 1, "category": "satire", "reference": "a", "output": "b"}) + "\n", encoding="utf-8")
    assert load_predictions(p)[0][0].category == "讽刺类"


@pytest.mark.parametrize(
    "line,match",
    [
        ({"id": 1, "reference": "参考"}, r"line 2 has no 'output' \(or 'predict'\)"),
        ({"id": 1, "output": "输出"}, r"line 2 has no 'reference' \(or 'label'\)"),
        ({"id": 1, "output": None, "reference": "r"}, "line 2: 'output' is null"),
        ({"id": 1, "output": 3, "reference": "r"}, "must be a string"),
        ({"id": 0, "output": "o", "reference": "r"}, "line 2 repeats id '0'"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, line, match):
    p = tmp_path / "p.jsonl"
    p.write_text(
        json.dumps({"id": 0, "output": "o", "reference": "r"}) + "\n" + json.dumps(line) + "\n", encoding="utf-8"
    )
    with pytest.raises(UserError, match=match):
        load_predictions(p)


def test_bad_json_and_missing_file(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"id": 1, "output": "o", "reference": "r"}\n{oops\n', encoding="utf-8")
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        load_predictions(p)
    with pytest.raises(UserError, match="not found"):
        load_predictions(tmp_path / "nope.jsonl")


def test_concept_normalisation_and_similarity():
    assert normalize_concept("“避雷”") == normalize_concept("避雷") == normalize_concept("「避雷」。")
    assert normalize_concept("ＡＩ 芯片") == normalize_concept("ai芯片")
    assert similarity("避雷", "避雷") == 100.0 and 0 < similarity("避雷", "防雷") < 100
    assert FUZZY_BACKEND.startswith(("rapidfuzz", "difflib"))


def test_slot_scores():
    preds = [SAMPLES[0][2], SAMPLES[3][2], "不是模板的输出", SAMPLES[2][3]]
    refs = [SAMPLES[0][1], SAMPLES[3][1], SAMPLES[1][1], SAMPLES[2][1]]
    preds[1] = preds[1].replace("“避雷”出自", "“防雷”出自")
    res = METRICS["slots"].fn(preds, refs, EvalContext(bert=None))
    c = res.columns
    assert c["template_ok"].tolist() == [100.0, 100.0, 0.0, 0.0]
    assert c["concept_exact"][0] == 100.0 and c["concept_exact"][1] == 0.0
    assert 0 < c["concept_fuzzy"][1] < 100
    assert np.isnan(c["concept_exact"][2]) and np.isnan(c["slot_rougeL_content"][3])
    assert 0 <= c["emotion_fuzzy"][0] <= 100
    assert "slot_bertscore_concept" not in c  # BERTScore disabled
    assert res.corpus["template"]["output_conformance"] == 50.0
    assert res.sample_extra["output_slots"][0]["concept"] == "画大饼"
    assert res.spec["concept_fuzzy"]["similarity"] == FUZZY_BACKEND


def test_slot_bertscore(bert_cfg):
    preds = [SAMPLES[0][2], SAMPLES[1][1]]
    refs = [SAMPLES[0][1], SAMPLES[1][1]]
    c = METRICS["slots"].fn(preds, refs, EvalContext(bert=bert_cfg)).columns
    assert c["slot_bertscore_concept"][0] == pytest.approx(100.0, abs=1e-4)  # same concept 画大饼
    assert all(c[f"slot_bertscore_{s}"][1] == pytest.approx(100.0, abs=1e-4) for s in ("content", "emotion"))
