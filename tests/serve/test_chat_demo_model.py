"""The chat app with the real LocalEngine on the demo model (`vmeta models build-demo`): a sample clip sent with
no text, or with a question, is answered in the template's words — what a newcomer sees offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import sse_events

from vmeta.dataset.template import parse

VIDEOS = Path(__file__).resolve().parents[2] / "examples" / "sample" / "videos"


@pytest.mark.slow
def test_a_sample_clip_is_answered_in_template_words(demo_model_dir, tmp_path):
    from fastapi.testclient import TestClient

    from vmeta.config import Settings
    from vmeta.serve.app import create_app
    from vmeta.serve.engine import LocalEngine

    settings = Settings(
        data_dir=tmp_path / "data", argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1, hf_offline=True
    )
    engine = LocalEngine(settings, str(demo_model_dir))
    assert engine.wait_ready(120)
    with TestClient(create_app(settings, engine, background_tasks=False)) as http:
        r = http.post("/api/auth/register", json={"email": "demo@example.com", "password": "long enough pw"})
        http.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        for clip, text, concept in (
            ("硬核类_8.mp4", "", "使命必达"),
            ("自嘲幽默类_2.mp4", "这个视频是什么意思？", "厨房杀手"),
        ):
            cid = http.post("/api/conversations", json={"title": clip}).json()["id"]
            with (VIDEOS / clip).open("rb") as fh:
                up = http.post("/api/uploads", params={"conversation_id": cid}, files={"file": (clip, fh)}).json()
            r = http.post(f"/api/conversations/{cid}/messages", json={"text": text, "upload_ids": [up["id"]]})
            events = sse_events(r)
            assert "done" in events, r.text[-500:]
            answer = "".join(t["text"] for t in events.get("token", []))
            parsed = parse(answer)
            assert answer.startswith("本视频讲述了") and parsed.ok, answer
            assert concept in parsed.slots["concept"]
