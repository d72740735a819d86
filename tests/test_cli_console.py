"""The CLI's output is not wrapped at 80 columns when it is not a terminal (CI logs, `| tee`)."""

from __future__ import annotations

import io
import subprocess
import sys

from vmeta.cli.apps import NOT_A_TERMINAL_WIDTH, CliConsole, console, err_console


def test_console_not_a_terminal_does_not_wrap(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    long_path = "/data/" + "x" * 150 + "/records.jsonl"
    out = io.StringIO()
    c = CliConsole(file=out)
    c.print(f"Records: {long_path}  (0.1 s)")
    assert c.width == NOT_A_TERMINAL_WIDTH
    assert f"Records: {long_path}  (0.1 s)\n" == out.getvalue()
    assert isinstance(console, CliConsole) and isinstance(err_console, CliConsole)


def test_console_keeps_an_explicit_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert CliConsole(file=io.StringIO()).width == 60
    assert CliConsole(file=io.StringIO(), width=70).width == 70


def test_piped_cli_output_keeps_long_lines_whole(tmp_path):
    """A real run with stdout piped: the build's long 'no valid rows' line stays one line."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    sheet = deep / "sheet.csv"
    deep.mkdir(parents=True)
    sheet.write_text("短视频文件名,类别,隐喻解释\nmissing,诙谐类,x\n", encoding="utf-8")
    out = deep / "dataset"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("COLUMNS", "FORCE_TERMINAL")}
    proc = subprocess.run(
        [sys.executable, "-m", "vmeta", "data", "build", str(sheet), "--videos", str(tmp_path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"nothing was written ({out} not created)" in proc.stdout, proc.stdout
