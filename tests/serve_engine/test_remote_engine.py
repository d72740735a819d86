"""ForwardingEngine against a real local OpenAI-compatible server (vmeta.testing.fake_openai)."""

from __future__ import annotations

import base64
from asyncio import run  # a fresh event loop per call: the engine serves any loop

import pytest

from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Queued, Token
from vmeta.serve.remote_engine import ForwardingEngine
from vmeta.testing.fake_openai import FakeOpenAI, Rule, template_answer


async def collect(engine, request):
    events = [ev async for ev in engine.stream(request)]
    return "".join(e.text for e in events if isinstance(e, Token)), events


def _req(model: str, content="原始标签：打工人的“摸鱼”日常", **kw) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": content}], **kw)


def test_models_are_listed_from_the_server():
    with FakeOpenAI(models=("qwen2-vl", "qwen2-vl-lora")) as fake:
        eng = ForwardingEngine(fake.base_url, api_key="k")
        infos = eng.models()  # no event loop running: one blocking request
        assert [m.id for m in infos] == ["qwen2-vl", "qwen2-vl-lora"]
        assert all(m.kind == "remote" and fake.base_url in m.description for m in infos)
        assert any(r.path.endswith("/models") for r in fake.requests)

        async def inside_loop():
            ids = await eng.refresh_models()
            listed = [m.id for m in eng.models()]
            await eng.aclose()
            return ids, listed

        ids, listed = run(inside_loop())
        assert ids == listed == ["qwen2-vl", "qwen2-vl-lora"]
    fixed = ForwardingEngine("http://127.0.0.1:9/v1", models=["a", "b"])
    assert [m.id for m in fixed.models()] == ["a", "b"]


def test_streams_the_answer_with_usage_and_timings():
    with FakeOpenAI(models=("m",), api_key="secret") as fake:
        eng = ForwardingEngine(fake.base_url, api_key="secret")

        async def go():
            try:
                return await collect(eng, _req("m", max_new_tokens=64, temperature=0.3, top_p=0.9, seed=5))
            finally:
                await eng.aclose()

        text, events = run(go())
        body = fake.chat_requests[-1].body
    assert text == template_answer({"messages": [{"role": "user", "content": "原始标签：打工人的“摸鱼”日常"}]})
    assert sum(isinstance(e, Token) for e in events) > 1, "streamed in pieces"
    done = events[-1]
    assert isinstance(done, Done) and done.model == "m" and done.adapter is None
    assert done.completion_tokens > 0 and done.prompt_tokens > 0
    assert 0 <= done.ttft_s <= done.total_s and done.finish_reason == "stop"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 64 and body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["seed"] == 5


def test_video_and_image_parts_become_data_urls_or_file_urls(tmp_path, small_clip):
    from PIL import Image

    image = tmp_path / "pic.png"
    Image.new("RGB", (8, 8), "red").save(image)
    content = [
        {"type": "video", "video": str(small_clip)},
        {"type": "image", "image": str(image)},
        {"type": "text", "text": "这个视频的隐喻是什么？"},
    ]
    with FakeOpenAI(models=("m",)) as fake:
        eng = ForwardingEngine(fake.base_url)
        run(collect(eng, _req("m", content)))  # (one event loop per engine in real use; a fresh one here)
        parts = fake.chat_requests[-1].messages[0]["content"]
        assert parts[0]["type"] == "video_url"
        url = parts[0]["video_url"]["url"]
        assert url.startswith("data:video/mp4;base64,")
        assert base64.b64decode(url.split(",", 1)[1]) == small_clip.read_bytes()
        assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
        assert parts[2] == {"type": "text", "text": "这个视频的隐喻是什么？"}

        shared = ForwardingEngine(fake.base_url, share_files=True)
        run(collect(shared, _req("m", content)))
        parts = fake.chat_requests[-1].messages[0]["content"]
        assert parts[0]["video_url"]["url"] == small_clip.resolve().as_uri()


def test_errors_are_sentences_for_people(tmp_path):
    with FakeOpenAI(models=("m",), script=[Rule(match="boom", status=500, error_message="kaputt")]) as fake:
        eng = ForwardingEngine(fake.base_url, max_retries=0)

        async def go():
            with pytest.raises(EngineError, match=r"unknown model 'other'.*offers: m"):
                await collect(eng, _req("other"))
            with pytest.raises(EngineError, match=r"rejected the request \(500\)"):
                await collect(eng, _req("m", "boom"))
            missing = [{"type": "video", "video": str(tmp_path / "gone.mp4")}]
            with pytest.raises(EngineError, match=r"gone\.mp4"):
                await collect(eng, _req("m", missing))
            text, _ = await collect(eng, _req("m"))  # still fine afterwards
            await eng.aclose()
            return text

        assert run(go())
    down = ForwardingEngine("http://127.0.0.1:9/v1", models=["m"], max_retries=0, timeout_s=5)
    with pytest.raises(EngineError, match="cannot be reached"):
        run(collect(down, _req("m")))


def test_a_concurrency_limit_queues_with_positions():
    import asyncio

    with FakeOpenAI(models=("m",), script=[Rule(delay=0.3)]) as fake:
        eng = ForwardingEngine(fake.base_url, max_concurrency=1)

        async def go():
            return await asyncio.gather(*(collect(eng, _req("m")) for _ in range(3)))

        results = run(go())
        assert fake.max_in_flight == 1
    positions = [[e.position for e in events if isinstance(e, Queued)] for _, events in results]
    assert positions[0] == [] and positions[1] == [1] and positions[2] == [2]
    assert all(isinstance(events[-1], Done) for _, events in results)
