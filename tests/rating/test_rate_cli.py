"""`vmeta rate new | report | import | export` through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import vmeta.cli.rate  # noqa: F401  (attaches the commands)
from vmeta.cli.apps import rate_app
from vmeta.errors import UserError

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(rate_app, [str(a) for a in args])
    result.text = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    return result


def test_new_resume_refuse(pred_files, tmp_path):
    out = tmp_path / "study"
    r = run("new", *pred_files, "--out", out)
    assert r.exit_code == 0, r.output
    assert "created" in r.text and "18 items" in r.text and "vmeta rate serve" in r.text
    r = run("new", *pred_files, "--out", out)
    assert r.exit_code == 0 and "already holds this study" in r.text
    r = run("new", *pred_files, "--out", out, "--seed", "3")
    assert isinstance(r.exception, UserError) and "other inputs" in str(r.exception)
    r = run("new", *pred_files, "--out", tmp_path / "named", "--name", "A1", "--name", "B1", "--name", "C1")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "named" / "study.json").read_text(encoding="utf-8"))
    assert [m["name"] for m in meta["models"]] == ["A1", "B1", "C1"]
    r = run("new", *pred_files, "--out", tmp_path / "bal", "--design", "balanced", "--per-pair", "2", "--no-reference")
    assert r.exit_code == 0 and "6 items" in r.text
    assert json.loads((tmp_path / "bal" / "study.json").read_text(encoding="utf-8"))["show_reference"] is False


def test_import_report_export(study, tmp_path):
    sheet = tmp_path / "sheet.csv"
    lines = ["id,rater,model_a,model_b,winner"]
    for it in study.items:
        x, y = it["models"]
        lines.append(f"{it['id']},ann,{x},{y},{max((x, y), key=['bad', 'mid', 'good'].index)}")
        lines.append(f"{it['id']},ben,{y},{x},tie")
    lines.append("t01,ann,good,nope,good")
    sheet.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = run("import", study.root, sheet)
    assert r.exit_code == 0, r.output
    assert "imported 36 rating(s)" in r.text and "1 bad row(s)" in r.text
    assert "line 38, field 'model_b'" in r.text
    r = run("report", study.root, "--bootstrap", "50", "--lang", "en")
    assert r.exit_code == 0, r.output
    assert "Bradley–Terry" in r.text and "Krippendorff" in r.text
    data = json.loads((study.root / "report" / "report.json").read_text(encoding="utf-8"))
    assert [b["model"] for b in data["bradley_terry"]] == ["good", "mid", "bad"]
    assert data["agreement"]["items_multi_rated"] == 18
    r = run("export", study.root, "--format", "jsonl", "--out", tmp_path / "all.jsonl")
    assert r.exit_code == 0 and "wrote 36 rating(s)" in r.text
    assert len((tmp_path / "all.jsonl").read_text(encoding="utf-8").splitlines()) == 36


def test_report_on_an_empty_study_and_bad_language(study):
    r = run("report", study.root, "--bootstrap", "10")
    assert r.exit_code == 0 and "no ratings yet" in r.text
    r = run("report", study.root, "--lang", "fr")
    assert isinstance(r.exception, UserError) and "zh or en" in str(r.exception)


def test_not_a_study(tmp_path):
    r = run("report", tmp_path)
    assert isinstance(r.exception, UserError) and "not a rating study" in str(r.exception)


@pytest.mark.parametrize("command", ["new", "report", "import", "export"])
def test_help(command):
    r = run(command, "--help")
    assert r.exit_code == 0 and "Usage" in r.text
