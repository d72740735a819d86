"""The web app (create_app) with the real LocalEngine on the tiny model: a chat answer streams over SSE and
records the model/adapter that produced it; switching model mid-conversation never reloads the base."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("vmeta.serve.app")


def _sse(text: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "event" in lines:
            out.setdefault(lines["event"], []).append(json.loads(lines["data"]))
    return out


def test_chat_switching_model_mid_conversation(engine_data_dir, adapters, tmp_path):
    from fastapi.testclient import TestClient

    from vmeta.config import Settings
    from vmeta.serve.app import create_app
    from vmeta.serve.engine import LocalEngine

    settings = Settings(
        data_dir=tmp_path / "data", argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1, hf_offline=True
    )
    # the tiny model lives in the session's data dir; point the engine at that folder
    engine = LocalEngine(settings, str(engine_data_dir / "models" / "tiny"), adapters={"A": str(adapters["A"])})
    assert engine.wait_ready(120)
    base_id = engine.base_id
    with TestClient(create_app(settings, engine, background_tasks=False)) as http:
        r = http.post("/api/auth/register", json={"email": "eng@example.com", "password": "long enough pw"})
        assert r.status_code == 201, r.text
        http.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        models = {m["id"] for m in http.get("/api/models").json()}
        assert models == {base_id, f"{base_id}:A"}
        cid = http.post("/api/conversations", json={"title": "t"}).json()["id"]
        seen = []
        for model in (base_id, f"{base_id}:A", base_id):
            r = http.post(
                f"/api/conversations/{cid}/messages", json={"text": "你好", "model": model, "max_new_tokens": 4}
            )
            events = _sse(r.text)
            assert "done" in events, r.text[-500:]
            done = events["done"][0]
            assert done["adapter"] == (None if model == base_id else "A")
            assert done["engine_ttft_ms"] is not None and done["completion_tokens"] == 4
            seen.append("".join(t["text"] for t in events.get("token", [])))
        assert seen[0] == seen[2] != seen[1]
        history = http.get(f"/api/conversations/{cid}").json()["messages"]
        assert [m["adapter"] for m in history if m["role"] == "assistant"] == [None, "A", None]
    assert engine.load_count == 1
