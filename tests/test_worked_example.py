"""The README's worked example runs as written (examples/worked_example.sh), offline, on CPU."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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

    test_ids = sorted(json.loads((ds / "splits.json").read_text(encoding="utf-8"))["ids"]["test"])
    for name in ("zero-shot", "lora"):
        lines = (work / "pred" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == test_ids
        assert json.loads((work / "eval" / name / "results.json").read_text(encoding="utf-8"))["n"] == len(test_ids)
    assert json.loads((work / "runs" / "lora" / "run.json").read_text(encoding="utf-8"))["status"] == "finished"
    assert (work / "compare" / "compare.md").is_file()
    assert (work / "exports" / "lora" / "model.safetensors").is_file()
