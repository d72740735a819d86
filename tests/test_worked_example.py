"""The README's worked example runs as written (examples/worked_example.sh), offline, on CPU."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmeta.dataset.template import conforms
from vmeta.testing.browser import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_worked_example_end_to_end(tmp_path):
    if not shutil.which("vmeta"):
        pytest.fail("the `vmeta` command is not on PATH: run `bash scripts/setup.sh` and `source .venv/bin/activate`")
    env = {**os.environ, "VMETA_EXAMPLE_PORT": str(free_port()), "VMETA_DATA_DIR": str(tmp_path / "data")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    work = tmp_path / "example"
    proc = subprocess.run(
        ["bash", str(ROOT / "examples" / "worked_example.sh"), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ds = work / "ds"
    records = [json.loads(line) for line in (ds / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 10
    assert len((ds / "rejects.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert all(r["label_origin"] in {"rewrite", "review"} and r["conforms"] for r in records)
    reviewed = [r for r in records if r["review"]["status"] == "accepted"]
    assert [r["id"] for r in reviewed] == ["诙谐类_47"]
    assert len((ds / "review_log.jsonl").read_text(encoding="utf-8").splitlines()) == 1
    test = json.loads((ds / "export" / "sharegpt" / "test.json").read_text(encoding="utf-8"))
    assert len(test) == 5 and test[0]["messages"][0]["content"].startswith("<video>")
    assert (ds / "export" / "sharegpt" / test[0]["videos"][0]).resolve().is_file()
    assert (ds / "report" / "stats.html").is_file()

    split_ids = json.loads((ds / "splits.json").read_text(encoding="utf-8"))["ids"]
    test_ids = sorted(split_ids["test"])
    # the demo model learnt the train split's labels only: the test clips stay unseen
    demo = json.loads((work / "demo" / "vmeta.json").read_text(encoding="utf-8"))
    assert demo["kind"] == "tiny-demo" and sorted(demo["trained_on"]["ids"]) == sorted(split_ids["train"])
    for name in ("zero-shot", "lora"):
        lines = (work / "pred" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        preds = [json.loads(line) for line in lines]
        assert sorted(p["id"] for p in preds) == test_ids
        # it answers in words, in the template's shape: Chinese sentences, not blank lines
        assert all(p["output"].strip().startswith("本视频") for p in preds), [p["output"][:40] for p in preds]
        assert any(conforms(p["output"]) for p in preds)
        results = json.loads((work / "eval" / name / "results.json").read_text(encoding="utf-8"))
        assert results["n"] == len(test_ids)
        # other clips' labels score some overlap (the template's words, shared phrases), not a copy of the reference
        assert 0 < results["headline"]["bleu4"] < 100 and 0 < results["headline"]["rougeL"] < 100
    assert json.loads((work / "runs" / "lora" / "run.json").read_text(encoding="utf-8"))["status"] == "finished"
    assert (work / "compare" / "compare.md").is_file() and (work / "compare" / "gallery.html").is_file()
    report = json.loads((work / "study" / "report" / "report.json").read_text(encoding="utf-8"))
    (pair,) = report["win_rates"]  # two models: one pair, the ten imported ratings
    assert pair["a_wins"] + pair["b_wins"] + pair["ties"] + pair["both_wrong"] == 10
    assert {m["model"] for m in report["bradley_terry"]} == {"zero-shot", "lora"}
    assert (work / "exports" / "lora" / "model.safetensors").is_file()
