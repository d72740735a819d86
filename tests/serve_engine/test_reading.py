"""What the engine reads and how much of it it reads again: each variant's own frames, the prompt cache across
turns (never across people or variants), and reading a video ahead of the question below every waiting answer."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest

from vmeta.serve.engine_api import ChatRequest, Done, Stage, Token
from vmeta.video.sampling import FrameSettings

RUN_FRAMES = FrameSettings(fps=4.0, min_pixels=56 * 56, max_pixels=56 * 84)  # what runs/small was "trained" on
CPU_BUDGET = 112 * 112  # VMETA_CPU_VIDEO_MAX_PIXELS for these tests: below the tiny model's 224x224 default


@pytest.fixture(scope="module")
def reading_runs(adapters, engine_data_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("reading-runs")
    shutil.copytree(adapters["B"], runs / "small" / "adapter")
    info = {"model": str(engine_data_dir / "models" / "tiny"), "method": "lora", "frames": RUN_FRAMES.to_dict()}
    (runs / "small" / "run.json").write_text(json.dumps(info), encoding="utf-8")
    return runs


def _engine(engine_settings, adapters, runs, **settings):
    from vmeta.serve.engine import LocalEngine

    s = engine_settings.model_copy(update={"cpu_video_max_pixels": CPU_BUDGET, **settings})
    # float32: answers are compared token for token with a cache-less engine that reads in other chunk shapes
    eng = LocalEngine(
        s, "tiny", adapters={"A": str(adapters["A"])}, runs_dir=runs, device="cpu", dtype="float32", runtime="torch"
    )
    assert eng.wait_ready(120)
    return eng


@pytest.fixture(scope="module")
def eng(engine_settings, adapters, reading_runs):
    e = _engine(engine_settings, adapters, reading_runs)
    yield e
    e.close()


@pytest.fixture(scope="module")
def uncached(engine_settings, adapters, reading_runs):
    """The same server with the prompt cache off: what every answer must equal."""
    e = _engine(engine_settings, adapters, reading_runs, prompt_cache_mb=0)
    yield e
    e.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from vmeta.testing import media

    return media.make_clip(tmp_path_factory.mktemp("reading-clip") / "c.mp4", 160, 120, 10, 2.0, audio=False)


def first_turn(clip, question="这个视频的隐喻是什么？"):
    return [{"role": "user", "content": [{"type": "video", "video": str(clip)}, {"type": "text", "text": question}]}]


def ask(engine, model, messages, user="alice", n=6):
    async def go():
        return [ev async for ev in engine.stream(ChatRequest(model, messages, max_new_tokens=n, user=user))]

    events = asyncio.run(go())
    done = events[-1]
    assert isinstance(done, Done)
    return "".join(e.text for e in events if isinstance(e, Token)), done, events


def test_each_variant_reads_its_own_frames(eng, clip):
    from vmeta.video.container import plan_for_file

    infos = {m.id: m for m in eng.models()}
    assert infos["tiny"].frames["source"].startswith("CPU budget") and infos["tiny"].frames["max_pixels"] == CPU_BUDGET
    assert infos["tiny:A"].frames["source"].startswith("CPU budget")  # a bare adapter folder reads the base's frames
    assert infos["tiny:small"].frames["source"].startswith("run.json")
    assert infos["tiny:small"].frames["fps"] == 4.0 and infos["tiny:small"].frames["max_pixels"] == 56 * 84

    from dataclasses import replace

    from vmeta.models.generate import frame_settings_for

    base_fs = replace(frame_settings_for(eng.slots.load_base().spec), max_pixels=CPU_BUDGET, min_pixels=56 * 56)
    for model, fs in (("tiny", base_fs), ("tiny:small", RUN_FRAMES)):
        plan, _ = plan_for_file(clip, fs)
        _, done, _ = ask(eng, model, first_turn(clip))
        assert done.extra["visual_tokens"] == plan.token_count(), model
        assert sum(f["nframes"] for f in done.extra["frames"]) == plan.nframes
    assert plan_for_file(clip, base_fs)[0].token_count() != plan_for_file(clip, RUN_FRAMES)[0].token_count()


def test_a_follow_up_reads_only_its_words_and_answers_the_same(eng, uncached, clip):
    first = first_turn(clip)
    text1, done1, _ = ask(eng, "tiny:A", first, user="carol")
    assert text1 == ask(uncached, "tiny:A", first, user="carol")[0]
    second = [*first, {"role": "assistant", "content": text1}, {"role": "user", "content": "为什么？"}]
    text2, done2, events = ask(eng, "tiny:A", second, user="carol")
    assert text2 == ask(uncached, "tiny:A", second, user="carol")[0]
    assert done2.extra["cached_tokens"] >= done1.prompt_tokens
    assert 0 < done2.extra["first_token_s"] <= done2.total_s and done2.extra["decode_tokens_per_s"] > 0
    assert done2.prompt_tokens - done2.extra["cached_tokens"] < 20
    assert not any(isinstance(e, Stage) and e.name == "encoding" for e in events)
    # another person, or another variant, asking the very same thing reads everything itself
    assert ask(eng, "tiny:A", second, user="dave")[1].extra["cached_tokens"] < 5
    assert ask(eng, "tiny", second, user="carol")[1].extra["cached_tokens"] < 5


def test_stages_come_before_the_first_token(eng, clip):
    _, _, events = ask(eng, "tiny:A", first_turn(clip, "讲讲这个"), user="erin")
    names = [e.name for e in events if isinstance(e, Stage)]
    first_token = next(i for i, e in enumerate(events) if isinstance(e, Token))
    assert names[0] == "frames" and "encoding" in names and "reading" in names and names[-1] == "writing"
    assert all(i < first_token for i, e in enumerate(events) if isinstance(e, Stage))
    frames = next(e for e in events if isinstance(e, Stage) and e.name == "frames")
    assert frames.facts["frames"] > 0 and frames.facts["visual_tokens"] > 0


def _wait_read(engine, user, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = [r for r in engine.reads if r.user == user]
        if done:
            return done[-1]
        time.sleep(0.02)
    raise AssertionError("the read ahead did not finish")


def test_the_question_after_an_upload_reads_only_itself(eng, uncached, clip):
    video_only = [{"role": "user", "content": [{"type": "video", "video": str(clip)}]}]
    assert eng.read_ahead("tiny:A", video_only, user="frank", tags=("up1",))
    read = _wait_read(eng, "frank")
    assert read.status == "done" and read.total > 0 and read.done == read.total
    text, done, events = ask(eng, "tiny:A", first_turn(clip), user="frank")
    assert done.extra["cached_tokens"] >= read.total
    assert not any(isinstance(e, Stage) and e.name == "encoding" for e in events)
    assert text == ask(uncached, "tiny:A", first_turn(clip), user="frank")[0]
    assert not eng.read_ahead("no-such-model", video_only, user="frank")


def test_reading_ahead_steps_aside_for_a_waiting_answer(eng, uncached, clip, monkeypatch):
    from vmeta.models import prompt_cache

    monkeypatch.setattr(prompt_cache, "PAUSE_CHUNK_TOKENS", 2)  # a long read in many short steps
    monkeypatch.setattr(prompt_cache, "VISION_CHUNK_T", 1)
    history = [{"role": "user", "content": "你好" * 200}, {"role": "assistant", "content": "好的" * 200}]
    long_read = [*history, {"role": "user", "content": [{"type": "video", "video": str(clip)}]}]

    async def race():
        assert eng.read_ahead("tiny:A", long_read, user="gina", tags=("up2",))
        while eng._reading is None:  # the worker picked the read up
            await asyncio.sleep(0.001)
        events = [ev async for ev in eng.stream(ChatRequest("tiny", [{"role": "user", "content": "hi"}], 4, user="h"))]
        return events

    events = asyncio.run(race())
    assert isinstance(events[-1], Done)
    read = _wait_read(eng, "gina")
    assert read.pauses >= 1 and read.status == "done"
    assert events[-1].queue_s < 1.0  # it did not wait for the whole read
    # the question continues the read: it reads only its own words and answers as without any cache
    question = [*history, *first_turn(clip)]
    text, done, _ = ask(eng, "tiny:A", question, user="gina")
    assert done.extra["cached_tokens"] >= read.total
    monkeypatch.undo()
    assert text == ask(uncached, "tiny:A", question, user="gina")[0]


def test_deleting_the_upload_forgets_what_was_read(eng, clip):
    video_only = [{"role": "user", "content": [{"type": "video", "video": str(clip)}]}]
    assert eng.read_ahead("tiny:A", video_only, user="ivan", tags=("up3", "conv3"))
    _wait_read(eng, "ivan")
    assert eng.forget("up3") == 1
    _, done, events = ask(eng, "tiny:A", first_turn(clip), user="ivan")
    assert done.extra["cached_tokens"] < 5 and any(isinstance(e, Stage) and e.name == "encoding" for e in events)


def test_a_person_gone_leaves_no_prompt_state_behind(eng, clip):
    ask(eng, "tiny:A", first_turn(clip), user="judy")
    ask(eng, "tiny:A", first_turn(clip), user="kim")
    assert eng.forget_user("judy") >= 2  # the prompt and the video's features
    assert ask(eng, "tiny:A", first_turn(clip), user="judy")[1].extra["cached_tokens"] < 5
    assert ask(eng, "tiny:A", first_turn(clip), user="kim")[1].extra["cached_tokens"] > 20
