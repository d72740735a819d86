"""Stage 2 rewrite against a real local OpenAI-compatible server, through the real `openai` client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from vmeta.dataset.records import Dataset, Record, Review, ReviewStatus, SourceRef
from vmeta.dataset.rewrite import CACHE_FILE, FLAG_FAILED, FLAG_NOTE, load_cache, rewrite_dataset
from vmeta.dataset.rewrite_prompt import PROMPT_VERSION, SYSTEM_PROMPT, clean_answer
from vmeta.dataset.template import parse
from vmeta.errors import UserError
from vmeta.testing.fake_openai import FakeOpenAI, Rule, template_answer

CATEGORIES = ("讽刺类", "诙谐类", "生活态度类", "硬核类", "自嘲幽默类")
GOOD = (
    "本视频讲述了一对情侣男生情绪低落，女生搬沙发跳舞哄他开心的故事。“搬沙发跳舞”出自日常生活物品的非常规使用，"
    "其因为被赋予“手风琴”的象征意义，表达出了从压抑到欢快的情绪转变。"
)
BAD = "好的，这个视频很有意思，讲的是一对情侣跳舞。"


def raw_label(i: int) -> str:
    return f"第{i}号视频：网友用“梗{i}”调侃加班，讽刺了老板画大饼的现象。"


def make_dataset(root: Path, n: int = 4, *, reviewed: tuple[int, ...] = ()) -> Dataset:
    records = []
    for i in range(n):
        cat = CATEGORIES[i % len(CATEGORIES)]
        r = Record(
            id=f"v{i:03d}",
            video=f"videos/{cat}_{i}.mp4",
            category=cat,
            raw_label=raw_label(i),
            label=raw_label(i),
            source=SourceRef(sheet="labels.xlsx", row=i + 2),
        )
        if i in reviewed:
            r.review = Review(status=ReviewStatus.accepted, reviewer="ann", at="2026-01-01T00:00:00+00:00")
            r.set_label(f"人工确认的标签{i}", "review")
        records.append(r)
    ds = Dataset(root)
    ds.save(records)
    return ds


def run(ds: Dataset, fake: FakeOpenAI, **kw):
    kw.setdefault("api_key", "test-key")
    kw.setdefault("model", "fake-model")
    kw.setdefault("backoff_base", 0.01)
    return rewrite_dataset(ds, base_url=fake.base_url, **kw)


def by_id(ds: Dataset) -> dict[str, Record]:
    return {r.id: r for r in ds.load()}


# --------------------------------------------------------------------------------------- happy path


def test_success_updates_label_slots_and_conformance(tmp_path):
    ds = make_dataset(tmp_path, 4)
    with FakeOpenAI() as fake:
        report = run(ds, fake)
    assert (report.rewritten, report.failed, report.requests) == (4, 0, 4)
    assert report.prompt_tokens > 0 and report.completion_tokens > 0  # from the usage field
    for r in ds.load():
        assert r.label_origin == "rewrite" and r.conforms
        assert r.label.startswith("本视频讲述了") and r.slots and all(r.slots.values())
        assert r.rewrite and r.rewrite.ok and r.rewrite.model == "fake-model" and r.rewrite.attempts == 1
        assert r.raw_label == raw_label(int(r.id[1:]))  # the raw label is kept
    # What went over the wire: the system prompt, then category + file name + raw label.
    req = fake.chat_requests[0]
    assert req.body["model"] == "fake-model"
    assert req.messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert "搬沙发跳舞" in SYSTEM_PROMPT and "沙发舞" in SYSTEM_PROMPT  # the thesis' compression warning
    user = req.messages[1]["content"]
    assert "类别：" in user and ".mp4" in user and "原始标签：" in user
    assert req.headers["authorization"] == "Bearer test-key"


def test_malformed_answer_is_retried_with_feedback(tmp_path):
    ds = make_dataset(tmp_path, 2)
    script = [Rule(match="梗1”", times=1, text=BAD)]
    with FakeOpenAI(script=script) as fake:
        report = run(ds, fake)
    assert (report.rewritten, report.failed, report.requests) == (2, 0, 3)
    rec = by_id(ds)["v001"]
    assert rec.conforms and rec.rewrite.attempts == 2
    retry = [r for r in fake.chat_requests if "梗1”" in r.user_text][-1]
    roles = [m["role"] for m in retry.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert retry.messages[2]["content"] == BAD
    fb = retry.last_user_text
    assert "不符合要求" in fb and "本视频讲述了" in fb  # names what was wrong and restates the template


def test_always_malformed_is_flagged_and_label_unchanged(tmp_path):
    ds = make_dataset(tmp_path, 2)
    script = [
        Rule(
            match="梗0”",
            text="本视频讲述了[视频内容]。[核心概念]出自[出处]，其因为[特征/新含义/事件]，表达出了[情绪/态度]。",
        )
    ]
    with FakeOpenAI(script=script) as fake:
        report = run(ds, fake, max_attempts=3)
    assert (report.rewritten, report.failed) == (1, 1)
    rec = by_id(ds)["v000"]
    assert FLAG_FAILED in rec.flags
    assert rec.label == raw_label(0) and rec.label_origin == "raw"
    assert rec.rewrite is not None and not rec.rewrite.ok and rec.rewrite.attempts == 3
    assert "占位符" in rec.rewrite.error
    assert len([r for r in fake.chat_requests if "梗0”" in r.user_text]) == 3
    # The unfilled placeholders were named in the feedback.
    assert "[出处]" in fake.chat_requests[-1].last_user_text or any(
        "[出处]" in r.last_user_text for r in fake.chat_requests if len(r.messages) > 2
    )


def test_think_and_note_tails_are_stripped(tmp_path):
    ds = make_dataset(tmp_path, 2)
    answer0 = "<think>用户要我改写……先找核心概念。</think>\n" + GOOD
    answer1 = GOOD + "\n\n（说明：重构后严格遵循给定格式，将“搬沙发跳舞”提炼为核心概念。）"
    script = [Rule(match="梗0”", text=answer0), Rule(match="梗1”", text=answer1)]
    with FakeOpenAI(script=script) as fake:
        report = run(ds, fake)
    assert (report.rewritten, report.note_stripped, report.requests) == (2, 1, 2)
    recs = by_id(ds)
    for rid in ("v000", "v001"):
        assert recs[rid].label == GOOD and recs[rid].conforms
    assert FLAG_NOTE not in recs["v000"].flags and "<think>" in recs["v000"].rewrite.raw
    assert FLAG_NOTE in recs["v001"].flags and "说明" in recs["v001"].rewrite.raw


@pytest.mark.parametrize(
    "answer",
    [
        "好的，以下是改写后的标签：\n" + GOOD,
        "标签：" + GOOD,
        "改写后：“" + GOOD + "”",
        "```text\n" + GOOD + "\n```",
        "**" + GOOD + "**",
        GOOD + "\n（注：保留了原标注的核心概念。）",
        GOOD + "\n\n以上改写保留了原意。",
        "好的</think>" + GOOD,
        "<think>\n嗯\n</think>\n\n“" + GOOD + "”\n\n说明：保留了原意。",
    ],
)
def test_clean_answer(answer):
    text, _ = clean_answer(answer)
    assert text == GOOD and parse(text).strict


# --------------------------------------------------------------------------------------- transport


def test_429_with_retry_after_then_success(tmp_path):
    ds = make_dataset(tmp_path, 1)
    with FakeOpenAI(script=[Rule(calls={1}, status=429, retry_after=0.4)]) as fake:
        report = run(ds, fake, backoff_base=0.0)
    assert (report.rewritten, report.retries, report.requests) == (1, 1, 2)
    first, second = fake.chat_requests
    assert second.at - first.at >= 0.35  # waited as told, although our own backoff would be 0


def test_500_then_success(tmp_path):
    ds = make_dataset(tmp_path, 2)
    with FakeOpenAI(script=[Rule(calls={1, 2}, status=500)]) as fake:
        report = run(ds, fake)
    assert (report.rewritten, report.failed, report.retries, report.requests) == (2, 0, 2, 4)
    assert all(r.conforms for r in ds.load())


def test_unreadable_body_is_retried_and_a_refused_record_does_not_stop_the_job(tmp_path):
    ds = make_dataset(tmp_path, 3)
    script = [
        Rule(calls={1}, body="{not json"),  # a broken 200 response: retried like a transport error
        Rule(match="梗2”", status=400, error_message="Content Exists Risk"),  # the provider refuses this input
    ]
    with FakeOpenAI(script=script) as fake:
        report = run(ds, fake, concurrency=1)
    assert (report.rewritten, report.failed, report.retries) == (2, 1, 1)
    rec = by_id(ds)["v002"]
    assert FLAG_FAILED in rec.flags and "Content Exists Risk" in rec.rewrite.error and rec.label == raw_label(2)


def test_timeouts_and_refused_connections_give_up_with_a_clear_error(tmp_path):
    ds = make_dataset(tmp_path, 1)
    with FakeOpenAI() as fake:
        url = fake.base_url
    # The server is gone: connection refused, retried, then one sentence naming the setting.
    with pytest.raises(UserError, match="VMETA_LLM_BASE_URL"):
        rewrite_dataset(ds, base_url=url, api_key="k", model="m", max_retries=2, backoff_base=0.01)
    assert ds.load()[0].label_origin == "raw"


def test_401_stops_with_a_clear_error_and_loses_nothing(tmp_path):
    ds = make_dataset(tmp_path, 6)
    with FakeOpenAI() as fake:  # first run: everything rewritten
        run(ds, fake, limit=3)
    before = ds.records_path.read_text(encoding="utf-8")
    with FakeOpenAI(api_key="right-key") as fake, pytest.raises(UserError) as err:
        run(ds, fake, api_key="wrong-key", concurrency=2)
    msg = str(err.value)
    assert "VMETA_LLM_API_KEY" in msg and "401" in msg
    assert len(fake.chat_requests) <= 2  # stopped at once, not once per record
    assert ds.records_path.read_text(encoding="utf-8") == before


def test_unknown_model_names_the_model_setting(tmp_path):
    ds = make_dataset(tmp_path, 2)
    with FakeOpenAI(strict_models=True) as fake, pytest.raises(UserError, match="VMETA_LLM_MODEL"):
        run(ds, fake, model="no-such-model")


def test_missing_api_key_fails_before_any_request(tmp_path):
    ds = make_dataset(tmp_path, 2)
    with FakeOpenAI() as fake:
        with pytest.raises(UserError, match="VMETA_LLM_API_KEY"):
            run(ds, fake, api_key=None)
        with pytest.raises(UserError, match="VMETA_LLM_API_KEY"):
            run(ds, fake, api_key="  ")
        assert fake.requests == []
        # A local endpoint that accepts anything: any value will do.
        assert run(ds, fake, api_key="none").rewritten == 2


def test_concurrency_limit_is_respected(tmp_path):
    ds = make_dataset(tmp_path, 9)
    with FakeOpenAI(script=[Rule(delay=0.15)]) as fake:
        report = run(ds, fake, concurrency=3)
    assert report.rewritten == 9
    assert fake.max_in_flight == 3


# --------------------------------------------------------------------------------------- cache, review, resume


def test_second_run_makes_zero_requests(tmp_path):
    ds = make_dataset(tmp_path, 4)
    fresh = ds.records_path.read_text(encoding="utf-8")
    with FakeOpenAI() as fake:
        first = run(ds, fake)
        assert first.requests == 4
        second = run(ds, fake)  # records already rewritten: skipped
        assert (second.requests, second.skipped_done) == (0, 4)
        ds.records_path.write_text(fresh, encoding="utf-8")  # same inputs, records reset: answered from the cache
        third = run(ds, fake)
        assert (third.requests, third.from_cache) == (0, 4)
        assert len(fake.chat_requests) == 4
    assert all(r.conforms and r.label_origin == "rewrite" for r in ds.load())
    rows = [json.loads(line) for line in (tmp_path / CACHE_FILE).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and {r["prompt_version"] for r in rows} == {PROMPT_VERSION}
    # A different model is a different cache key.
    with FakeOpenAI(models=("fake-model", "other")) as fake:
        ds.records_path.write_text(fresh, encoding="utf-8")
        assert run(ds, fake, model="other").requests == 4


def test_reviewed_records_are_never_sent_nor_changed(tmp_path):
    ds = make_dataset(tmp_path, 4, reviewed=(1, 3))
    before = by_id(ds)
    with FakeOpenAI() as fake:
        report = run(ds, fake, force=True)
    assert (report.rewritten, report.skipped_reviewed) == (2, 2)
    sent = "\n".join(r.user_text for r in fake.chat_requests)
    assert "梗1”" not in sent and "梗3”" not in sent
    after = by_id(ds)
    for rid in ("v001", "v003"):
        assert after[rid] == before[rid]


def test_a_review_made_while_the_answer_is_on_its_way_wins(tmp_path):
    """The review page writes through the same lock; the rewrite re-reads and leaves the decision alone."""
    ds = make_dataset(tmp_path, 3)

    def review_meanwhile(body):
        def decide(records):
            for r in records:
                if r.id == "v002":
                    r.review = Review(status=ReviewStatus.edited, reviewer="ann")
                    r.set_label("审阅者改好的标签", "review")

        ds.update(decide)
        return GOOD

    with FakeOpenAI(script=[Rule(match="梗2”", handler=review_meanwhile)]) as fake:
        report = run(ds, fake)
    rec = by_id(ds)["v002"]
    assert rec.label == "审阅者改好的标签" and rec.review.status == ReviewStatus.edited and rec.rewrite is None
    assert report.rewritten == 2 and report.skipped_reviewed == 1
    assert by_id(ds)["v000"].conforms


def test_ids_and_limit_select_records(tmp_path):
    ds = make_dataset(tmp_path, 5)
    with FakeOpenAI() as fake:
        assert run(ds, fake, ids=["v003"]).rewritten == 1
        assert run(ds, fake, limit=2).rewritten == 2
        with pytest.raises(UserError, match="nope"):
            run(ds, fake, ids=["nope"])
    origins = {r.id: r.label_origin for r in ds.load()}
    assert origins == {"v000": "rewrite", "v001": "rewrite", "v002": "raw", "v003": "rewrite", "v004": "raw"}


def test_dry_run_makes_zero_requests_and_prints_an_estimate(tmp_path):
    from typer.testing import CliRunner

    from vmeta.cli import app

    ds = make_dataset(tmp_path, 5, reviewed=(4,))
    with FakeOpenAI() as fake:
        run(ds, fake, ids=["v000"])  # one answer cached ...
        ds.update(lambda rs: [setattr(r, "rewrite", None) for r in rs if r.id == "v000"])  # ... record reset
        n = len(fake.requests)
        report = rewrite_dataset(ds, base_url=fake.base_url, api_key=None, model="fake-model", dry_run=True)
        assert (report.would_send, report.cache_hits, report.skipped_reviewed) == (3, 1, 1)
        assert report.estimated_prompt_tokens > 3 * 200 and report.estimated_completion_tokens > 0
        result = CliRunner().invoke(
            app, ["data", "rewrite", str(tmp_path), "--dry-run", "--base-url", fake.base_url, "--model", "fake-model"]
        )
        assert len(fake.requests) == n
    assert result.exit_code == 0, result.output
    out = result.output
    assert "would be sent" in out and "estimated prompt tokens" in out
    assert "Qwen2 tokenizer" in out or "characters estimate" in out


def _rewrite_cmd(ds_root: Path, base_url: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vmeta",
        "data",
        "rewrite",
        str(ds_root),
        "--base-url",
        base_url,
        "--api-key",
        "none",
        "--model",
        "fake-model",
        *extra,
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMETA_")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["COLUMNS"] = "120"
    return env


def test_resume_after_kill_9(tmp_path):
    n = 12
    ds = make_dataset(tmp_path, n)
    cache = tmp_path / CACHE_FILE
    with FakeOpenAI(script=[Rule(delay=0.25)]) as fake:
        proc = subprocess.Popen(
            _rewrite_cmd(tmp_path, fake.base_url, "--concurrency", "2"),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while len(load_cache(cache)) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no answers cached in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(0.3)  # let the in-flight requests finish on the server side
        cached = load_cache(cache)
        assert 3 <= len(cached) < n
        cached_labels = {raw_label(int(row["id"][1:])) for row in cached.values()}
        seen = len(fake.chat_requests)

        done = subprocess.run(
            _rewrite_cmd(tmp_path, fake.base_url, "--concurrency", "4"),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        again = fake.chat_requests[seen:]
    resent = [r for r in again if any(label in r.user_text for label in cached_labels)]
    assert resent == []  # cached inputs were not asked again
    assert len(again) == n - len(cached)
    records = ds.load()
    assert all(r.rewrite and r.rewrite.ok and r.conforms for r in records)
    assert "from cache" in done.stdout and "rewritten" in done.stdout
    rows = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in records)  # every record rewritten exactly once


# --------------------------------------------------------------------------------------- the fake itself


def test_fake_server_speaks_stream_and_models():
    import openai

    with FakeOpenAI(models=("m1", "m2")) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="x", max_retries=0)
        assert [m.id for m in client.models.list()] == ["m1", "m2"]
        messages = [{"role": "user", "content": "类别：讽刺类\n视频文件：a.mp4\n原始标签：讽刺了“画大饼”的老板。"}]
        stream = client.chat.completions.create(
            model="m1", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        parts, usage = [], None
        for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
            if chunk.usage:
                usage = chunk.usage
        text = "".join(parts)
        assert parse(text).ok and "画大饼" in text
        assert usage is not None and usage.completion_tokens > 0
        assert text == template_answer({"messages": messages})
        assert fake.chat_requests[0].body["stream"] is True
