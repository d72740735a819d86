"""`vmeta serve --workers N`: refused where it would load the model N times; otherwise N real worker processes
on one port sharing the database (sessions, conversations) — started as a user starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from serve_helpers import PASSWORD
from typer.testing import CliRunner

from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.serve import launch
from vmeta.testing.browser import free_port


def test_workers_with_the_local_engine_are_refused_with_the_way_out():
    from vmeta.cli import app as cli

    r = CliRunner().invoke(cli, ["serve", "--model", "tiny", "--workers", "2"])
    assert isinstance(r.exception, UserError)  # printed as a one-line error by the vmeta entry point
    assert "load the model 2 times" in str(r.exception) and "--engine remote --remote-url" in str(r.exception)
    with pytest.raises(UserError, match="--workers 0"):
        launch.check_spec(launch.EngineSpec(kind="echo"), workers=0)
    with pytest.raises(UserError, match="--remote-url"):
        launch.check_spec(launch.EngineSpec(kind="remote"), workers=2)
    launch.check_spec(launch.EngineSpec(kind="remote", remote_url="http://gpu:8000/v1"), workers=4)


def test_workers_get_the_parents_settings_secrets_included(tmp_path, monkeypatch):
    parent = Settings(data_dir=tmp_path / "d", secret_key=SecretStr("s3cret"), allowed_hosts=["chat.example.org"])
    payload = launch._settings_payload(parent)
    assert payload["secret_key"] == "s3cret"  # model_dump would have written '**********'
    monkeypatch.setenv(
        launch.SPEC_ENV, json.dumps({"settings": payload, "engine": {"kind": "echo", "models": ["m1", "m1:ft"]}})
    )
    app = launch.worker_app()
    state = app.state.vmeta
    assert state.settings.secret_key.get_secret_value() == "s3cret"
    assert state.settings.data_dir == tmp_path / "d" and state.settings.allowed_hosts == ["chat.example.org"]
    assert [m.id for m in state.engine.models()] == ["m1", "m1:ft"]
    app.state.db_engine.dispose()


def _spawned_workers(parent: int) -> int:
    """Live children of `parent` started by multiprocessing's spawn (uvicorn's worker processes)."""
    n = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        n += ppid == parent and b"spawn_main" in cmd
    return n


def _start(args: list[str], data_dir: Path, **env_extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "VMETA_DATA_DIR": str(data_dir),
        "VMETA_ARGON2_TIME_COST": "1",
        "VMETA_ARGON2_MEMORY_KIB": "1024",
        "VMETA_ARGON2_PARALLELISM": "1",
        **env_extra,
    }
    env.pop("VMETA_DATABASE_URL", None)
    cmd = [sys.executable, "-m", "vmeta", "serve", *args, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_up(proc: subprocess.Popen, base: str, workers: int = 0) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200 and _spawned_workers(proc.pid) == workers:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{proc.args} did not come up"
        time.sleep(0.3)


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def test_two_web_workers_in_front_of_a_model_process(tmp_path):
    """docs/serve-api.md's recipe: the model in one process, `--workers 2 --engine remote` in front of it."""
    model, model_base = _start(
        ["--engine", "echo", "--model", "m-base"], tmp_path / "model", VMETA_API_ALLOW_ANONYMOUS="true"
    )
    web = None
    try:
        _wait_up(model, model_base)
        web, base = _start(
            ["--engine", "remote", "--remote-url", model_base + "/v1", "--workers", "2"], tmp_path / "web"
        )
        _wait_up(web, base, workers=2)
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.post("/api/auth/register", json={"email": "w@example.org", "password": PASSWORD})
            assert r.status_code == 201, r.text
            c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
            assert [m["id"] for m in c.get("/api/models").json()] == ["m-base"]
            cid = c.post("/api/conversations", json={"title": "两个进程"}).json()["id"]
            r = c.post(f"/api/conversations/{cid}/messages", json={"text": "这个视频的隐喻是什么？", "model": "m-base"})
            assert r.status_code == 200 and "event: done" in r.text, r.text
            cookies = dict(c.cookies)
        # A fresh connection per request: the kernel hands them to either worker; each must see the same state.
        for _ in range(12):
            r = httpx.get(f"{base}/api/conversations/{cid}", cookies=cookies, headers={"Connection": "close"})
            assert r.status_code == 200, r.text
            msgs = r.json()["messages"]
            assert [m["role"] for m in msgs] == ["user", "assistant"]
            assert msgs[0]["content"] == "这个视频的隐喻是什么？"
            assert (
                msgs[1]["model"] == "m-base" and "这个视频的隐喻是什么" in msgs[1]["content"]
            )  # echoed by the model process
        assert _spawned_workers(web.pid) == 2
    finally:
        if web is not None:
            _stop(web)
        _stop(model)
