"""LocalEngine on the tiny model: base answers, adapters switched per request without reloading the base,
no request ever runs with another request's adapter, queue positions, cancellation, merged exports, runs/
discovery and errors for people."""

from __future__ import annotations

import asyncio
import itertools
import time
from asyncio import run  # a fresh event loop per call: the engine serves any loop

import pytest

from vmeta.serve.engine_api import ChatRequest, Done, EngineError, Queued, Token

N = 6  # new tokens per answer: the tiny model needs ~50 ms each on a CPU


def _req(model: str, text: str = "你好", n: int = N, **kw) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], max_new_tokens=n, **kw)


async def collect(engine, request: ChatRequest) -> tuple[str, list]:
    events = [ev async for ev in engine.stream(request)]
    return "".join(e.text for e in events if isinstance(e, Token)), events


def answer(engine, model: str, text: str = "你好", n: int = N) -> tuple[str, Done]:
    out, events = run(collect(engine, _req(model, text, n)))
    assert isinstance(events[-1], Done) and sum(isinstance(e, Done) for e in events) == 1
    return out, events[-1]


def test_base_answers(engine):
    text, done = answer(engine, "tiny")
    assert text
    assert done.model == "tiny" and done.adapter is None
    assert 0 <= done.ttft_s <= done.total_s
    assert done.queue_s >= 0
    assert done.completion_tokens == N and done.prompt_tokens > 0
    assert done.finish_reason == "length"
    assert done.extra["model_id"] == "tiny" and done.extra["kind"] == "base"
    ids = [m.id for m in engine.models()]
    assert ids[:3] == ["tiny", "tiny:A", "tiny:B"]


def test_adapters_switch_per_request_without_reloading_the_base(engine):
    base_obj = id(engine.base_model)
    outs = {}
    for model in ("tiny", "tiny:A", "tiny:B", "tiny:A", "tiny", "tiny:B"):
        text, done = answer(engine, model)
        if model in outs:
            assert outs[model] == text, f"{model} changed its greedy answer between requests"
        outs[model] = text
        assert done.adapter == (model.split(":")[1] if ":" in model else None)
        if done.adapter:
            assert done.extra["adapter_switch_s"] < 0.05
    assert len(set(outs.values())) == 3, "base, A and B must give different greedy answers"
    assert id(engine.base_model) == base_obj
    assert engine.load_count == 1
    assert [x["kind"] for x in engine.loads].count("base") == 1


def test_the_base_answers_like_the_plain_model_and_adapters_like_peft(engine, engine_settings, adapters):
    """The fast switch (two flags per LoRA layer) gives exactly what a model without peft / with one
    adapter applied the ordinary way gives."""
    from peft import PeftModel

    from vmeta.models.generate import GenerationSettings, generate
    from vmeta.models.load import load_model

    gen = GenerationSettings(max_new_tokens=N)
    messages = [{"role": "user", "content": "你好"}]
    plain = load_model("tiny", settings=engine_settings, device="cpu", cache=False)
    expected_base = generate(plain, messages, gen).text
    plain.model = PeftModel.from_pretrained(plain.model, str(adapters["B"]))
    expected_b = generate(plain, messages, gen).text
    for model in ("tiny:A", "tiny", "tiny:B", "tiny"):  # from every state to every other
        text, _ = answer(engine, model)
        if model == "tiny":
            assert text == expected_base
        elif model == "tiny:B":
            assert text == expected_b


def test_no_request_runs_with_another_requests_adapter(engine):
    models = ["tiny", "tiny:A", "tiny:B"]
    prompts = ["你好", "explain this video"]
    alone = {(m, p): answer(engine, m, p)[0] for m in models for p in prompts}
    for p in prompts:  # the three models answer each prompt differently (the random base repeats itself)
        assert len({alone[(m, p)] for m in models}) == 3

    async def many():
        jobs = [(models[i % 3], prompts[(i // 3) % 2]) for i in range(12)]
        results = await asyncio.gather(*(collect(engine, _req(m, p)) for m, p in jobs))
        return jobs, results

    jobs, results = run(many())
    for (m, p), (text, events) in zip(jobs, results, strict=True):
        assert text == alone[(m, p)], f"{m} / {p!r} answered with another model's output"
        assert events[-1].adapter == (m.split(":")[1] if ":" in m else None)
    assert engine.load_count == 1


def test_queue_positions_reported_and_decreasing(engine):
    async def go():
        return await asyncio.gather(*(collect(engine, _req(m)) for m in ["tiny", "tiny:A", "tiny:B", "tiny", "tiny:A"]))

    results = run(go())
    last = [e.position for e in results[-1][1] if isinstance(e, Queued)]
    assert last and last[0] >= 4 and last[-1] == 1
    assert all(a > b for a, b in itertools.pairwise(last)), last
    for _, events in results:
        positions = [e.position for e in events if isinstance(e, Queued)]
        assert positions == sorted(positions, reverse=True)
        assert all(isinstance(e, Queued) for e in events[: len(positions)]), "Queued events come before tokens"
        assert [type(e) for e in events[len(positions) :]][-1] is Done


def test_cancellation_frees_the_worker(engine):
    async def go():
        stream = engine.stream(_req("tiny:A", n=2000))
        got = 0
        async for ev in stream:
            if isinstance(ev, Token):
                got += 1
                if got == 2:
                    break
        await stream.aclose()  # what a web server does when the client disconnects
        t0 = time.perf_counter()
        _, events = await collect(engine, _req("tiny:B"))
        return time.perf_counter() - t0, events

    waited, events = run(go())
    assert isinstance(events[-1], Done) and events[-1].adapter == "B"
    assert waited < 10
    cancelled = [r for r in engine.recent if r["finish_reason"] == "cancelled"]
    assert cancelled and cancelled[-1]["model"] == "tiny:A"
    assert (cancelled[-1]["new_tokens"] or 0) < 2000


def test_a_waiting_request_that_leaves_moves_the_others_up(engine):
    async def go():
        long = engine.stream(_req("tiny", n=2000))
        while not isinstance(await long.__anext__(), Token):  # until it runs
            pass
        leaver = engine.stream(_req("tiny:A"))
        stayer = engine.stream(_req("tiny:B"))
        assert await leaver.__anext__() == Queued(position=1)
        assert await stayer.__anext__() == Queued(position=2)
        await leaver.aclose()
        moved = await stayer.__anext__()
        await long.aclose()
        rest = [ev async for ev in stayer]
        return moved, rest

    moved, rest = run(go())
    assert moved == Queued(position=1)
    assert isinstance(rest[-1], Done) and rest[-1].adapter == "B"


def test_video_reaches_the_model(engine, small_clip):
    request = ChatRequest(
        model="tiny:A",
        messages=[
            {"role": "user", "content": [{"type": "video", "video": str(small_clip)}, {"type": "text", "text": "?"}]}
        ],
        max_new_tokens=4,
    )
    _, events = run(collect(engine, request))
    done = events[-1]
    assert isinstance(done, Done)
    assert done.extra["frames"] and done.extra["frames"][0]["source"] == str(small_clip)
    assert done.prompt_tokens > 20  # the video's tokens are part of the prompt


def test_merged_exports_are_served_and_evict_each_other(engine):
    ids = {m.id: m for m in engine.models()}
    assert ids["merged-a"].kind == "merged" and ids["fullrun"].kind == "merged"
    assert "loaded on demand" in ids["merged-a"].description
    text_a, _ = answer(engine, "tiny:A")
    text_m, done = answer(engine, "merged-a")
    assert done.model == "merged-a" and done.adapter is None
    assert text_m == text_a, "a merged export answers like its adapter on the base"
    text_b, _ = answer(engine, "tiny:B")
    text_f, _ = answer(engine, "fullrun")  # runs/NAME/model/: full weights
    assert text_f == text_b
    assert list(engine.slots.full) == ["fullrun"], "one full model at a time by default: loading evicts"
    assert engine.load_count == 1, "serving merged models never reloads the base"


def test_runs_discovery_lists_wrong_base_adapters_as_unavailable(engine):
    catalog = {e.id: e for e in engine.catalog()}
    assert catalog["tiny:good"].available and catalog["tiny:good"].origin == "runs"
    wrong = catalog["tiny:wrongbase"]
    assert not wrong.available and "qwen2-vl-2b-instruct" in wrong.reason and "tiny" in wrong.reason
    assert not catalog["tiny:unfinished"].available
    assert not catalog["broken"].available and "no weights" in catalog["broken"].reason
    served = {m.id for m in engine.models()}
    assert {"tiny:good", "merged-a", "fullrun"} <= served
    assert not served & {"tiny:wrongbase", "tiny:unfinished", "broken"}
    with pytest.raises(EngineError, match="trained on qwen2-vl-2b-instruct"):
        run(collect(engine, _req("tiny:wrongbase")))
    _text, done = answer(engine, "tiny:good")  # loaded lazily, beside the others
    assert done.adapter == "good" and done.extra.get("adapter_load_s", 0) >= 0
    assert engine.load_count == 1


def test_errors_are_sentences_for_people(engine, tmp_path):
    with pytest.raises(EngineError, match=r"unknown model 'nope'.*tiny:A"):
        run(collect(engine, _req("nope")))
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    for path in (not_video, tmp_path / "missing.mp4"):
        request = ChatRequest(
            model="tiny", messages=[{"role": "user", "content": [{"type": "video", "video": str(path)}]}]
        )
        with pytest.raises(EngineError) as info:
            run(collect(engine, request))
        assert path.name in str(info.value)
    with pytest.raises(EngineError, match="max_new_tokens"):
        run(collect(engine, _req("tiny", n=0)))
    with pytest.raises(EngineError, match="last message"):
        run(collect(engine, ChatRequest(model="tiny", messages=[{"role": "assistant", "content": "hi"}])))
    _text, done = answer(engine, "tiny")  # and the engine still works
    assert isinstance(done, Done)


def test_sampling_with_a_seed_is_reproducible(engine):
    a, _ = run(collect(engine, _req("tiny:A", temperature=0.9, top_p=0.95, seed=7)))
    b, _ = run(collect(engine, _req("tiny:A", temperature=0.9, top_p=0.95, seed=7)))
    assert a == b


def test_a_base_that_cannot_load_gives_a_clear_error(engine_settings, tmp_path):
    from vmeta.serve.engine import LocalEngine

    eng = LocalEngine(engine_settings, str(tmp_path / "no-such-model"), device="cpu")
    try:
        assert eng.wait_ready(30)
        with pytest.raises(EngineError, match="no-such-model"):
            run(collect(eng, _req(eng.base_id)))
    finally:
        eng.close()


def test_an_adapter_that_does_not_fit_is_refused_and_listed(engine_settings, adapters, tmp_path):
    """Same base name, wrong shapes (e.g. trained on another size): a sentence, and the base keeps working."""
    import shutil

    from safetensors.torch import load_file, save_file

    from vmeta.serve.engine import LocalEngine

    bad = tmp_path / "bad"
    shutil.copytree(adapters["A"], bad)
    weights = load_file(str(bad / "adapter_model.safetensors"))
    save_file(
        {k: v[:, :-1].contiguous() if "lora_A" in k else v for k, v in weights.items()},
        str(bad / "adapter_model.safetensors"),
    )
    eng = LocalEngine(engine_settings, "tiny", adapters={"bad": str(bad), "A": str(adapters["A"])}, device="cpu")
    try:
        assert eng.wait_ready(60)
        with pytest.raises(EngineError, match="does not fit the base model tiny"):
            run(collect(eng, _req("tiny:bad")))
        assert "tiny:bad" not in {m.id for m in eng.models()}
        assert any(info.id == "tiny:bad" and "does not fit" in why for info, why in eng.unavailable())
        base, _ = answer(eng, "tiny")
        text_a, done = answer(eng, "tiny:A")
        assert done.adapter == "A" and text_a != base
    finally:
        eng.close()
    # The first adapter failing half-way (nothing else loaded) leaves the base exactly as it was.
    alone = LocalEngine(engine_settings, "tiny", adapters={"bad": str(bad)}, device="cpu")
    try:
        assert alone.wait_ready(60)
        assert answer(alone, "tiny")[0] == base
    finally:
        alone.close()
