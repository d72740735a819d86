"""A variant trained with on-screen text as context (issue #15) is served with it: the engine reads an uploaded
video's captions (real rapidocr) and puts the same block before the user's words; a variant trained without it,
and the base, get the user's words alone."""

from __future__ import annotations

import os
import re
import shutil
from asyncio import run
from pathlib import Path

import pytest

from vmeta.runs import update_run
from vmeta.serve.engine_api import ChatRequest, Done, Stage

CAPTION = "上班第一天"


@pytest.fixture(scope="module")
def context_engine(engine_settings, engine_data_dir, adapters, tmp_path_factory):
    from vmeta.serve.engine import LocalEngine

    runs = tmp_path_factory.mktemp("ctx-runs")
    tiny = str(engine_data_dir / "models" / "tiny")
    for name, kinds, adapter in (("withtext", ["screen_text"], "A"), ("plain", [], "B")):
        shutil.copytree(adapters[adapter], runs / name / "adapter")
        update_run(runs / name, base_model=tiny, method="lora", status="finished", context={"kinds": kinds})
    eng = LocalEngine(engine_settings, "tiny", runs_dir=runs, device="cpu", dtype="float32", runtime="torch")
    assert eng.wait_ready(120)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def caption_clip(tmp_path_factory) -> Path:
    from vmeta.testing.captions import Caption, make_caption_clip, require_cjk_font

    pytest.importorskip("rapidocr")
    d = tmp_path_factory.mktemp("ctx-clip")
    return make_caption_clip(
        d / "clip.mp4",
        [Caption(CAPTION, 0.0, 1.0, size=40)],
        1.0,
        width=360,
        height=640,
        fps=4,
        moving_background=False,
        font=require_cjk_font(),
    )


@pytest.fixture
def seen(monkeypatch) -> list[list[dict]]:
    """The messages each answer was generated from."""
    import vmeta.models.generate as generate

    calls: list[list[dict]] = []
    real = generate.generate_stream

    def spy(loaded, messages, *args, **kwargs):
        calls.append(messages)
        return real(loaded, messages, *args, **kwargs)

    monkeypatch.setattr(generate, "generate_stream", spy)
    return calls


def _ask(engine, model: str, clip: Path) -> tuple[Done, list]:
    content = [{"type": "video", "video": str(clip)}, {"type": "text", "text": "这是什么梗？"}]
    request = ChatRequest(model=model, messages=[{"role": "user", "content": content}], max_new_tokens=2)

    async def collect():
        return [ev async for ev in engine.stream(request)]

    events = run(collect())
    assert isinstance(events[-1], Done)
    return events[-1], events


def _text(messages: list[dict]) -> str:
    return next(p["text"] for p in messages[0]["content"] if p.get("type") == "text")


def test_the_variant_trained_with_screen_text_reads_it(context_engine, caption_clip, seen):
    infos = {m.id: m for m in context_engine.models()}
    assert infos["tiny:withtext"].context == ("screen_text",)
    assert infos["tiny:plain"].context == () and infos["tiny"].context == ()

    done, events = _ask(context_engine, "tiny:withtext", caption_clip)
    assert _text(seen[-1]) == f"画面文字：{CAPTION}\n这是什么梗？"
    assert done.extra["context"] == {caption_clip.name: f"画面文字：{CAPTION}"}
    assert any(isinstance(e, Stage) and e.name == "context" for e in events)


@pytest.mark.parametrize("model", ["tiny:plain", "tiny"])
def test_variants_without_it_get_the_words_alone(context_engine, caption_clip, seen, model):
    done, events = _ask(context_engine, model, caption_clip)
    assert _text(seen[-1]) == "这是什么梗？"
    assert "context" not in done.extra
    assert not any(isinstance(e, Stage) and e.name == "context" for e in events)


def test_a_video_whose_text_cannot_be_read_is_answered_without_it(context_engine, caption_clip, seen, monkeypatch):
    import vmeta.dataset.context as context
    from vmeta.errors import UserError

    def broken(*_a, **_k):
        raise UserError("clip.mp4: cannot sample frames to read text from")

    monkeypatch.setattr(context, "context_values", broken)
    done, _ = _ask(context_engine, "tiny:withtext", caption_clip)
    assert _text(seen[-1]) == "这是什么梗？"
    assert "cannot sample frames" in done.extra["context_error"]


def test_the_export_manifest_carries_the_context(tmp_path):
    """A merged export of such a run tells the catalogue what its model reads."""
    from vmeta.serve.engine_api import ModelInfo
    from vmeta.serve.model_catalog import CatalogEntry, recorded_context

    (tmp_path / "vmeta_export.json").write_text('{"context": {"kinds": ["screen_text"], "max_chars": 120}}')
    info = ModelInfo(id="merged", base="merged", kind="merged")
    ctx = recorded_context(CatalogEntry(info=info, kind="merged", origin="exports", path=tmp_path))
    assert ctx.kinds == ("screen_text",) and ctx.max_chars == 120
    (tmp_path / "vmeta_export.json").write_text('{"frames": {}}')  # an export made without context
    assert not recorded_context(CatalogEntry(info=info, kind="merged", origin="exports", path=tmp_path)).enabled


def test_the_answer_payload_names_the_words_read():
    """What the chat page shows on the answer (and what is stored with it): the blocks, one per video."""
    from vmeta.serve.routes.answer_stream import _reading_facts

    done = Done(
        model="tiny", adapter=None, ttft_s=0.1, total_s=0.2, extra={"context": {"a.mp4": "画面文字：x", "b.mp4": ""}}
    )
    assert _reading_facts(done)["context_text"] == "画面文字：x"
    assert _reading_facts(Done(model="tiny", adapter=None, ttft_s=0.1, total_s=0.2))["context_text"] is None


@pytest.mark.browser
def test_the_chat_page_shows_what_the_variant_read(context_engine, caption_clip, engine_settings, tmp_path):
    """In Chromium: the picker marks the variant, its answer to an uploaded captioned clip carries the mark with
    the text it read (hover), and the base's answer does not."""
    from playwright.sync_api import expect

    from vmeta.config import Settings
    from vmeta.serve.app import create_app
    from vmeta.testing.browser import chromium, serve_in_thread

    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=engine_settings.resolved_cache_dir,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        hf_offline=True,
        max_new_tokens=8,  # the random tiny model would write 512 tokens of noise
    )
    app = create_app(settings, context_engine, background_tasks=False)
    with serve_in_thread(app) as url, chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US").new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15_000)
        page.locator("#guest-start").click()
        expect(page.locator("#app")).to_be_visible(timeout=15_000)
        option = page.locator("#model-select option[value='tiny:withtext']")
        expect(option).to_contain_text("读画面文字")
        expect(page.locator("#model-select option[value='tiny:plain']")).not_to_contain_text("读画面文字")
        page.locator("#model-select").select_option("tiny:withtext")
        page.locator("#file-input").set_input_files(str(caption_clip))
        expect(page.locator(".attachment").first).to_have_class(re.compile(r"\bdone\b"), timeout=15_000)
        page.locator("#input").fill("这是什么梗？")
        page.locator("#input").press("Enter")
        answer = page.locator(".msg.assistant").nth(0)
        expect(answer).to_have_attribute("data-status", "complete", timeout=60_000)
        mark = answer.locator(".meta-context")
        expect(mark).to_have_text("已读视频里的文字")
        assert mark.get_attribute("title") == f"画面文字：{CAPTION}"
        page.screenshot(path=str(tmp_path / "context-answer.png"))
        shots = os.environ.get("VMETA_SCREENSHOT_DIR")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            (Path(shots) / "context-answer.png").write_bytes((tmp_path / "context-answer.png").read_bytes())

        page.locator("#model-select").select_option("tiny")
        page.locator("#input").fill("再说一遍")
        page.locator("#input").press("Enter")
        second = page.locator(".msg.assistant").nth(1)
        expect(second).to_have_attribute("data-status", "complete", timeout=60_000)
        expect(second.locator(".meta-context")).to_have_count(0)
        assert errors == []
