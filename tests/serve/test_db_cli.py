"""Database (Alembic migrations match the tables; SQLite pragmas), the `vmeta serve` CLI, engine failures,
remote URLs when allowed, the body limit."""

from __future__ import annotations

import http.server
import threading
from collections.abc import AsyncIterator

import pytest
from serve_helpers import PASSWORD, UserClient, _empty_tables, fast_settings, sse_events
from sqlalchemy import text
from typer.testing import CliRunner

from vmeta.serve import db as dbmod
from vmeta.serve.engine_api import ChatRequest, Done, EngineError, ModelInfo, Token


def test_migrations_match_tables_and_round_trip(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vmeta.serve.tables import Base

    eng = app.state.db_engine
    assert dbmod.current_revision(eng) == "0001"
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"tables.py and the migrations differ; add an Alembic revision: {diff}"
    if eng.dialect.name == "sqlite":
        with eng.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        from alembic import command

        command.downgrade(dbmod.alembic_config(eng), "base")
        assert dbmod.current_revision(eng) is None
        dbmod.upgrade(eng)
        assert dbmod.current_revision(eng) == "0001"


def test_cli_db_admin_token(tmp_path, monkeypatch, db_url):
    from vmeta.cli import app as cli
    from vmeta.config import get_settings

    monkeypatch.setenv("VMETA_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("VMETA_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("VMETA_ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("VMETA_ARGON2_PARALLELISM", "1")
    if db_url:
        monkeypatch.setenv("VMETA_DATABASE_URL", db_url)
    else:
        monkeypatch.delenv("VMETA_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(cli, ["serve", "db", "upgrade"])
        assert r.exit_code == 0, r.output
        assert "0001" in r.output
        r = runner.invoke(cli, ["serve", "admin", "create", "Boss@Example.org", "--password", PASSWORD])
        assert r.exit_code == 0 and "created" in r.output, r.output
        r = runner.invoke(cli, ["serve", "token", "create", "boss@example.org"])
        assert r.exit_code == 0, r.output
        token = r.output.strip().splitlines()[-1]
        assert token.startswith("vmt_")
        from fastapi.testclient import TestClient

        from vmeta.serve.app import create_app

        app = create_app(get_settings(), background_tasks=False)
        try:
            with TestClient(app) as c:
                me = c.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
                assert me["user"]["email"] == "boss@example.org" and me["user"]["is_admin"]
                assert (
                    c.post("/api/auth/login", json={"email": "boss@example.org", "password": PASSWORD}).status_code
                    == 200
                )
        finally:
            _empty_tables(app)
        r = runner.invoke(cli, ["serve", "token", "create", "nobody@example.org"])
        assert r.exit_code != 0
    finally:
        get_settings.cache_clear()


class FailingEngine:
    """Answers two tokens, then fails like a model that hit a bad video."""

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id="flaky", base="flaky")]

    async def stream(self, request: ChatRequest) -> AsyncIterator:
        yield Token("half ")
        yield Token("an answer")
        if "crash" in str(request.messages[-1]["content"]):
            raise RuntimeError("CUDA out of memory")
        raise EngineError("the video could not be decoded; upload it again.")
        yield Done(model="flaky", adapter=None, ttft_s=0, total_s=0)  # pragma: no cover

    async def aclose(self) -> None:
        return None


def test_engine_error_mid_stream_is_an_error_event(tmp_path, db_url):
    from fastapi.testclient import TestClient

    from vmeta.serve.app import create_app

    app = create_app(fast_settings(tmp_path / "d", db_url), FailingEngine(), background_tasks=False)
    try:
        with TestClient(app):
            u = UserClient(app, "flaky@example.org")
            cid = u.conversation()
            ev = u.say(cid, "hello")
            assert ev["error"][0]["detail"].startswith("the video could not be decoded")
            ev = u.say(cid, "crash now")
            assert "RuntimeError" in ev["error"][0]["detail"] and "CUDA" not in ev["error"][0]["detail"]
            msgs = u.get(f"/api/conversations/{cid}").json()["messages"]
            assert [m["status"] for m in msgs] == ["complete", "error", "complete", "error"]
            assert u.get("/api/auth/me").status_code == 200  # still up
            r = u.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {u.token()}"},
                json={"model": "flaky", "messages": [{"role": "user", "content": "x"}]},
            )
            assert r.status_code == 400 and "decoded" in r.json()["error"]["message"]
            u.close()
    finally:
        _empty_tables(app)


@pytest.fixture
def file_server(small_clip):
    directory = small_clip.parent

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(directory), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/{small_clip.name}"
    srv.shutdown()


def test_remote_urls_only_when_allowed(app, make_user, file_server):
    u = make_user()
    tok = u.token()
    body = {
        "model": "echo",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": file_server}},
                    {"type": "text", "text": "remote"},
                ],
            }
        ],
    }
    r = u.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "remote_url_refused"
    app.state.vmeta.settings.allow_remote_urls = True
    r = u.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 200 and "videos=1" in r.json()["choices"][0]["message"]["content"]
    assert not list(app.state.vmeta.tmp_dir.iterdir()), "temporary files are removed"


def test_json_body_limit(tmp_path, db_url):
    from fastapi.testclient import TestClient

    from vmeta.serve.app import create_app

    app = create_app(fast_settings(tmp_path / "d", db_url, api_max_body_bytes=10_000), background_tasks=False)
    try:
        with TestClient(app):
            u = UserClient(app, "big@example.org")
            cid = u.conversation()
            r = u.post(f"/api/conversations/{cid}/messages", json={"text": "x" * 20_000})
            assert r.status_code == 413 and "limit" in r.json()["detail"]
            chunked = u.post(
                f"/api/conversations/{cid}/messages",
                content=iter([b'{"text": "', b"y" * 20_000, b'"}']),
                headers={"Content-Type": "application/json"},
            )
            assert chunked.status_code == 413
            assert sse_events(u.post(f"/api/conversations/{cid}/messages", json={"text": "small"}))["done"]
            u.close()
    finally:
        _empty_tables(app)
