"""`vmeta eval` and `vmeta compare` end to end on small realistic Chinese predictions (tiny local encoder)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from evaldata import SAMPLES, write_predictions
from typer.testing import CliRunner

from vmeta.cli import app
from vmeta.errors import UserError

runner = CliRunner()


def _eval(pred, out, tiny_encoder, *extra):
    args = [
        "eval",
        str(pred),
        "--out",
        str(out),
        "--bert-model",
        str(tiny_encoder),
        "--bert-layer",
        "2",
        "--bootstrap",
        "200",
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, tiny_encoder):
    """zero-shot, LoRA-like and a slightly degraded LoRA-like run, each evaluated."""
    d = tmp_path_factory.mktemp("runs")
    zs = write_predictions(d / "zs.jsonl", 3, adapter=None)
    ft = write_predictions(d / "ft.jsonl", 2, adapter="lora")
    worse = write_predictions(
        d / "worse.jsonl", 2, adapter="lora-e1", transform=lambda i, s: s[2][: len(s[2]) * 2 // 3] if i % 2 else s[2]
    )
    outs = {}
    for name, p in (("zero-shot", zs), ("lora", ft), ("lora-e1", worse)):
        outs[name] = d / name / "eval"
        _eval(p, outs[name], tiny_encoder)
    return outs


def test_eval_writes_results_samples_and_report(three_runs):
    out = three_runs["lora"]
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for col in (
        "bertscore",
        "bleu4",
        "rougeL",
        "rougeL_char",
        "bleu4_stripped",
        "template_ok",
        "concept_exact",
        "slot_bertscore_feature",
    ):
        e = res["metrics"][col]
        assert e["ci95"][0] <= e["mean"] <= e["ci95"][1], col
    assert set(res["headline"]) == {"bertscore", "bleu4", "rougeL"}
    assert list(res["per_category"]) == ["讽刺类", "诙谐类", "生活态度类", "硬核类", "自嘲幽默类"]
    assert res["per_category"]["硬核类"]["n_samples"] == 2
    comp = res["computation"]
    assert comp["bleu4"]["smoothing"] == "SmoothingFunction().method3" and comp["bleu4"]["tokenizer"].startswith(
        "characters"
    )
    assert comp["rougeL"]["tokenizer"].startswith("jieba")
    assert comp["bertscore"]["num_layers"] == 2 and comp["bertscore"]["idf"] is False
    assert "_L2_no-idf_version=" in comp["bertscore"]["hash"]
    assert "tok:zh" in comp["sacrebleu"]["signature"]
    assert (
        res["corpus"]["sacrebleu"]["ci95"][0]
        <= res["corpus"]["sacrebleu"]["score"]
        <= res["corpus"]["sacrebleu"]["ci95"][1]
    )
    assert res["bootstrap"] == {**res["bootstrap"], "n_boot": 200, "seed": 0, "method": "percentile"}
    # template words inflate n-gram scores
    assert res["metrics"]["bleu4_stripped"]["mean"] < res["metrics"]["bleu4"]["mean"]

    text = (out / "samples.jsonl").read_text(encoding="utf-8")
    assert "本视频讲述了" in text and "\\u" not in text  # ensure_ascii=False
    rows = [json.loads(x) for x in text.splitlines()]
    assert len(rows) == len(SAMPLES) and rows[0]["id"] == "v000"
    assert set(rows[0]["scores"]) >= {"bertscore", "bleu4", "rougeL"}
    assert rows[0]["output_slots"]["concept"] == "画大饼"

    html = (out / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) >= 2 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "讽刺类" in html and "BERT-F1" in html


def test_eval_is_deterministic(three_runs, tiny_encoder, tmp_path):
    out = tmp_path / "again"
    _eval(three_runs["lora"].parent.parent / "ft.jsonl", out, tiny_encoder)
    a = json.loads((three_runs["lora"] / "results.json").read_text(encoding="utf-8"))
    b = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert a["metrics"] == b["metrics"]


def test_eval_prints_a_table(tmp_path, tiny_encoder):
    p = write_predictions(tmp_path / "p.jsonl", 2, ids=[0, 1, 2, 3])
    result = _eval(p, tmp_path / "o", tiny_encoder, "--metrics", "bleu4,rougeL,bertscore")
    assert "BERT-F1" in result.output and "BLEU-4" in result.output and "[" in result.output
    res = json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))
    assert set(res["metrics"]) == {"bleu4", "rougeL", "rouge1", "rouge2", "bertscore", "bertscore_p", "bertscore_r"}


def test_no_bertscore(tmp_path):
    p = write_predictions(tmp_path / "p.jsonl", 2)
    result = runner.invoke(app, ["eval", str(p), "--out", str(tmp_path / "o"), "--no-bertscore", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))
    assert "bertscore" not in res["metrics"] and "bleu4" in res["metrics"] and "concept_fuzzy" in res["metrics"]
    assert not any(k.startswith("slot_bertscore") for k in res["metrics"])


def test_missing_encoder_is_one_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    p = write_predictions(tmp_path / "p.jsonl", 2, ids=[0])
    result = runner.invoke(app, ["eval", str(p), "--out", str(tmp_path / "o"), "--bert-model", "no-such/encoder"])
    assert isinstance(result.exception, UserError)
    assert "--bert-model" in str(result.exception) and "--no-bertscore" in str(result.exception)
    assert not (tmp_path / "o" / "results.json").exists()


def test_llamafactory_file_evaluates(tmp_path):
    p = tmp_path / "generated_predictions.jsonl"
    p.write_text(
        "".join(
            json.dumps({"prompt": "x", "predict": s[2], "label": s[1]}, ensure_ascii=False) + "\n" for s in SAMPLES
        ),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["eval", str(p), "--out", str(tmp_path / "o"), "--no-bertscore", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    res = json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))
    assert res["input"]["format"] == "llamafactory" and list(res["per_category"]) == ["all"]


def test_unknown_metric(tmp_path):
    p = write_predictions(tmp_path / "p.jsonl", 2, ids=[0])
    result = runner.invoke(app, ["eval", str(p), "--out", str(tmp_path / "o"), "--metrics", "bleu5"])
    assert isinstance(result.exception, UserError) and "unknown metric" in str(result.exception)


def test_compare_three_runs(three_runs, tmp_path):
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        [
            "compare",
            *[str(p) for p in three_runs.values()],
            "--out",
            str(out),
            "--names",
            "Zero-shot,LoRA,LoRA-1ep",
            "--bootstrap",
            "200",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "BERT-F1" in result.output and "Paired tests vs" in result.output
    assert re.search(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", result.output)
    md = (out / "compare.md").read_text(encoding="utf-8")
    assert md.splitlines()[0] == "| run | BERT-F1 | BLEU-4 | ROUGE-L |"
    assert "**" in md and "significantly better" in md
    lora_row = next(line for line in md.splitlines() if line.startswith("| LoRA |"))
    assert lora_row.count("**") == 6  # LoRA is best in all three columns
    csv = (out / "compare.csv").read_text(encoding="utf-8")
    assert csv.splitlines()[0].startswith("run,bertscore_mean,bertscore_ci_low,bertscore_ci_high,bertscore_n")
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert "<b>" in html and "data:image/png;base64," in html
    for png in ("bars.png", "heatmap_bertscore.png", "heatmap_bleu4.png", "heatmap_rougeL.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert data["baseline"] == "LoRA" and len(data["paired"]) == 6
    zs = next(p for p in data["paired"] if p["name_a"] == "Zero-shot" and p["column"] == "rougeL")
    assert zs["diff"] < 0 and zs["p_permutation"] < 0.05


def test_compare_accepts_results_file_and_run_dir(three_runs):
    result = runner.invoke(
        app,
        [
            "compare",
            str(three_runs["lora"] / "results.json"),
            str(three_runs["zero-shot"].parent),
            "--baseline",
            "first",
            "--extra",
            "rougeL_char",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "lora" in result.output and "zero-shot" in result.output and "ROUGE-L (char)" in result.output


def test_compare_refuses_disjoint_ids_and_warns_on_partial(tmp_path, tiny_encoder):
    a = write_predictions(tmp_path / "a.jsonl", 2, ids=[0, 1, 2, 3, 4])
    b = write_predictions(tmp_path / "b.jsonl", 3, ids=[5, 6, 7, 8, 9])
    c = write_predictions(tmp_path / "c.jsonl", 3, ids=[2, 3, 4, 5, 6, 7])
    for name, p in (("a", a), ("b", b), ("c", c)):
        _eval(p, tmp_path / name, tiny_encoder, "--metrics", "bleu4,rougeL")
    result = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--baseline", "first"])
    assert isinstance(result.exception, UserError) and "share no sample id" in str(result.exception)
    result = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "c"), "--baseline", "first"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "share only 3 ids" in result.output


def test_compare_errors(tmp_path, three_runs):
    result = runner.invoke(app, ["compare", str(tmp_path / "nothing")])
    assert isinstance(result.exception, UserError) and "run `vmeta eval` first" in str(result.exception)
    result = runner.invoke(app, ["compare", str(three_runs["lora"]), "--names", "a,b"])
    assert isinstance(result.exception, UserError) and "one name per input" in str(result.exception)


def test_predict_error_rows_are_left_out_and_meta_recorded(tmp_path):
    """`vmeta predict` writes output "" and an 'error' for unreadable videos, and FILE.meta.json beside."""
    p = write_predictions(tmp_path / "pred.jsonl", 2)
    rows = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]
    rows[4].update(output="", error="videos/v04.mp4: not a video file")
    for r in rows:
        r["prompt_hash"] = "abc123"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "pred.jsonl.meta.json").write_text(json.dumps({"model": "tiny", "split": "test"}), encoding="utf-8")
    result = runner.invoke(app, ["eval", str(p), "--out", str(tmp_path / "o"), "--no-bertscore", "--bootstrap", "0"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "1 row(s) carry an error" in result.output and "v004" in result.output
    res = json.loads((tmp_path / "o" / "results.json").read_text(encoding="utf-8"))
    assert res["n"] == len(SAMPLES) - 1 and res["skipped"][0]["id"] == "v004"
    assert res["predictions_meta"] == {"model": "tiny", "split": "test"}
    samples = [json.loads(x) for x in (tmp_path / "o" / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert samples[0]["prompt_hash"] == "abc123" and "v004" not in {s["id"] for s in samples}


def test_list_metrics_and_missing_arguments():
    result = runner.invoke(app, ["eval", "--list-metrics"])
    assert result.exit_code == 0 and "bleu4 (default)" in result.output and "slots" in result.output
    result = runner.invoke(app, ["eval"])
    assert isinstance(result.exception, UserError) and "--out DIR" in str(result.exception)
