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


def test_page_and_api_reuse_what_was_read(engine_data_dir, adapters, tmp_path):
    """Upload with the selected model -> the video is read before the question; the question and a follow-up
    (page) and a client resending the history (/v1, official openai client) read only their new tokens."""
    import base64
    import time

    import httpx
    import openai

    from vmeta.config import Settings
    from vmeta.serve.app import create_app
    from vmeta.serve.engine import LocalEngine
    from vmeta.testing import media
    from vmeta.testing.browser import serve_in_thread

    clip = media.make_clip(tmp_path / "clip.mp4", 160, 120, 10, 1.0, audio=False)
    settings = Settings(
        data_dir=tmp_path / "data", argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1, hf_offline=True
    )
    engine = LocalEngine(settings, str(engine_data_dir / "models" / "tiny"), adapters={"A": str(adapters["A"])})
    assert engine.wait_ready(120)
    model = f"{engine.base_id}:A"
    with (
        serve_in_thread(create_app(settings, engine, background_tasks=False)) as url,
        httpx.Client(base_url=url, timeout=60) as web,
    ):
        r = web.post("/api/auth/register", json={"email": "reader@example.com", "password": "long enough pw"})
        web.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        frames = {m["id"]: m["frames"] for m in web.get("/api/models").json()}
        assert frames[model]["source"] and frames[model]["max_pixels"]
        cid = web.post("/api/conversations", json={"title": "t"}).json()["id"]
        with clip.open("rb") as fh:
            up = web.post(
                "/api/uploads", params={"model": model, "conversation_id": cid}, files={"file": ("c.mp4", fh)}
            ).json()
        assert up["reading"] is True
        deadline = time.monotonic() + 60
        while not engine.reads and time.monotonic() < deadline:
            time.sleep(0.02)
        read = engine.reads[-1]
        assert read.status == "done"

        def say(body):
            events = _sse(web.post(f"/api/conversations/{cid}/messages", json={**body, "model": model}).text)
            return events, events["done"][0]

        events, done = say({"text": "这个视频的隐喻是什么？", "upload_ids": [up["id"]], "max_new_tokens": 4})
        assert done["cached_tokens"] >= read.total and done["frames"] > 0 and done["visual_tokens"] > 0
        stages = [s["name"] for s in events["stage"]]
        assert "encoding" not in stages and stages[-1] == "writing"
        events, again = say({"text": "为什么？", "max_new_tokens": 4})
        assert again["cached_tokens"] >= done["prompt_tokens"]
        stored = web.get(f"/api/conversations/{cid}").json()["messages"][-1]
        assert stored["timings"]["cached_tokens"] == again["cached_tokens"]

        token = web.post("/api/tokens", json={"name": "t"}).json()["token"]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=60)
        data_url = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
        first = [
            {
                "role": "user",
                "content": [{"type": "video_url", "video_url": {"url": data_url}}, {"type": "text", "text": "讲讲"}],
            }
        ]
        one = client.chat.completions.create(model=model, messages=first, max_tokens=4)
        # the same person asked about this very video on the page: the video (and what precedes it) is not read again
        assert one.usage.prompt_tokens_details.cached_tokens >= read.total
        history = [
            *first,
            {"role": "assistant", "content": one.choices[0].message.content},
            {"role": "user", "content": "再说说"},
        ]
        two = client.chat.completions.create(model=model, messages=history, max_tokens=4)
        assert two.usage.prompt_tokens_details.cached_tokens >= one.usage.prompt_tokens
        client.close()

        assert web.delete(f"/api/uploads/{up['id']}").status_code == 204
        assert read.forgotten
    engine.close()
