"""The optional LLM judge against a real local OpenAI-compatible server (vmeta.testing.fake_openai)."""

from __future__ import annotations

import json
import re

import pytest
from evaldata import SAMPLES, write_predictions

from vmeta.errors import UserError
from vmeta.evaluate.judge import JudgeConfig, agreement, cohen_kappa, make_judge, parse_verdict, spearman
from vmeta.evaluate.report import EvalConfig, run_eval

pytest.importorskip("openai")
fake_openai = pytest.importorskip("vmeta.testing.fake_openai")


def rubric_handler(body: dict) -> str:
    """A deterministic 'judge': concept right when the output's quoted concept appears in the reference."""
    text = body["messages"][-1]["content"]
    ref = text.split("参考答案（人工标注）：", 1)[1].split("模型输出：", 1)[0]
    out = text.split("模型输出：", 1)[1].split("请逐项判断", 1)[0]
    concepts = re.findall(r"“([^”]+)”", out)
    ok = int(bool(concepts) and concepts[0] in ref)
    if "打卡" in out:  # one malformed answer, to exercise the retry
        return "我觉得还行"
    return json.dumps(
        {"core_concept": ok, "source": ok, "mapping": 1, "emotion": ok, "loose": 8 if ok else 2, "reason": "测试"},
        ensure_ascii=False,
    )


def test_judge_reported_separately_cached_and_agreement(tmp_path):
    pred = write_predictions(tmp_path / "p.jsonl", 2, ids=[0, 1, 2, 3, 4, 5])
    human = tmp_path / "human.jsonl"
    human.write_text(
        "".join(
            json.dumps({"id": f"v{i:03d}", "core_concept": 0, "source": 0, "mapping": 1, "emotion": i % 2, "loose": i})
            + "\n"
            for i in range(6)
        ),
        encoding="utf-8",
    )
    cfg = EvalConfig(metrics=["bleu4", "rougeL"], bert=None, n_boot=100)
    with fake_openai.FakeOpenAI([fake_openai.Rule(handler=rubric_handler)], models=("judge-x",)) as fake:
        jc = JudgeConfig(model="judge-x", base_url=fake.base_url, api_key="k", cache_dir=tmp_path / "cache", n_boot=100)
        res = run_eval(pred, tmp_path / "o", cfg, judge=make_judge(jc, human=human))
        first_calls = len(fake.chat_requests)
        again = run_eval(pred, tmp_path / "o2", cfg, judge=make_judge(jc, human=human))
        assert len(fake.chat_requests) == first_calls + 2  # only the unusable answer (asked twice) is asked again
    j = res["judge"]
    assert set(res["metrics"]) == {"bleu4", "rougeL", "rouge1", "rouge2"}  # never mixed in
    assert j["model"] == "judge-x" and j["n"] == 6 and j["rubric_version"] == "v1"
    assert set(j["scores"]) == {"core_concept", "source", "mapping", "emotion", "strict_all", "loose"}
    assert j["scores"]["mapping"]["mean"] == 100.0 and 0 <= j["scores"]["loose"]["mean"] <= 10
    assert j["n_failed"] == 1 and "unusable answer" in j["errors"][0]["error"]  # sample v001 mentions 打卡
    assert again["judge"]["from_cache"] == 5
    ag = j["agreement"]
    assert ag["n"] == 5 and ag["cohen_kappa"]["mapping"] == 1.0
    assert -1.0 <= ag["spearman_loose"] <= 1.0 if ag["spearman_loose"] is not None else True
    rows = [json.loads(x) for x in (tmp_path / "o" / "judge.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and rows[1]["verdict"] is None
    assert "samples" not in json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))["judge"]
    assert "LLM judge" in (tmp_path / "o" / "report.html").read_text(encoding="utf-8")


def test_parse_verdict():
    v = parse_verdict('好的：{"core_concept": 1, "source": "0", "mapping": true, "emotion": 0, "loose": 6.5}')
    assert v == {"core_concept": 1, "source": 0, "mapping": 1, "emotion": 0, "loose": 6.5, "reason": ""}
    for bad in (
        "没有 JSON",
        '{"core_concept": 2, "source": 0, "mapping": 1, "emotion": 0, "loose": 1}',
        '{"core_concept": 1, "source": 0, "mapping": 1, "emotion": 0, "loose": 11}',
    ):
        with pytest.raises(ValueError):
            parse_verdict(bad)


def test_agreement_statistics(tmp_path):
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == 1.0
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 1, 0]) == 0.0
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    human = tmp_path / "h.jsonl"
    human.write_text(json.dumps({"id": "zzz", "core_concept": 1}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="no id in common"):
        agreement(
            [{"id": "a", "verdict": {"core_concept": 1, "source": 1, "mapping": 1, "emotion": 1, "loose": 5}}], human
        )


def test_cli_human_needs_judge(tmp_path):
    from typer.testing import CliRunner

    from vmeta.cli import app

    p = write_predictions(tmp_path / "p.jsonl", 2, ids=[0])
    r = CliRunner().invoke(app, ["eval", str(p), "--out", str(tmp_path / "o"), "--no-bertscore", "--human", str(p)])
    assert isinstance(r.exception, UserError) and "--judge-model" in str(r.exception)
    assert SAMPLES  # data module imported
