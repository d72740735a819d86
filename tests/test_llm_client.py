"""vmeta.llm_client against a real local OpenAI-compatible server (vmeta.testing.fake_openai): retries honouring
Retry-After, the concurrency limit, one stop for a wrong key, refusals per request, and the caches that the
rewrite and the judge wrote before the shared module still hitting."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from email.utils import formatdate

import pytest

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from vmeta.llm_client import LLMClient, LLMRefused, LLMStop, ResponseCache, cache_key, retry_after
from vmeta.testing.fake_openai import FakeOpenAI, Rule

HI = [{"role": "user", "content": "原始标签：你好"}]


def prediction(id: str, reference: str, output: str):
    from vmeta.evaluate.predictions import Prediction

    return Prediction(id=id, category="讽刺类", reference=reference, output=output)


def ask(fake: FakeOpenAI, n: int = 1, **kw) -> tuple[list, LLMClient]:
    """`n` concurrent requests; their answers (or exceptions) and the client."""
    kw.setdefault("backoff_base", 0.01)
    llm = LLMClient(base_url=fake.base_url, api_key=kw.pop("api_key", "k"), model=kw.pop("model", "fake-model"), **kw)

    async def go() -> list:
        try:
            return await asyncio.gather(*(llm.complete(HI) for _ in range(n)), return_exceptions=True)
        finally:
            await llm.aclose()

    return asyncio.run(go()), llm


def test_answer_usage_and_retry_after_is_honoured():
    with FakeOpenAI(script=[Rule(calls={1}, status=429, retry_after=0.4)]) as fake:
        (answer,), llm = ask(fake, backoff_base=0.0)
        first, second = fake.chat_requests
    assert answer.text and answer.prompt_tokens > 0 and answer.completion_tokens > 0
    assert (llm.stats.requests, llm.stats.retries) == (2, 1)
    assert llm.stats.completion_tokens == answer.completion_tokens
    assert second.at - first.at >= 0.35  # waited as told, although our own backoff would be 0


def test_concurrency_limit_holds_across_callers():
    with FakeOpenAI(script=[Rule(delay=0.15)]) as fake:
        answers, _ = ask(fake, 7, concurrency=2)
        assert fake.max_in_flight == 2
    assert all(a.text for a in answers)


def test_wrong_key_stops_every_request_at_once():
    with FakeOpenAI(api_key="right-key", script=[Rule(delay=0.1)]) as fake:
        answers, llm = ask(fake, 6, api_key="wrong-key", concurrency=2)
        assert len(fake.chat_requests) <= 2  # the waiting four were never sent
    assert all(isinstance(a, LLMStop) for a in answers)
    assert "VMETA_LLM_API_KEY" in str(answers[0]) and "401" in str(answers[0]) and llm.stopped


def test_a_refused_request_does_not_stop_the_others_and_failing_endpoints_stop():
    with FakeOpenAI(script=[Rule(match="你好", times=1, status=400, error_message="Content Exists Risk")]) as fake:
        answers, llm = ask(fake, 2, concurrency=1)
    assert isinstance(answers[0], LLMRefused) and "Content Exists Risk" in str(answers[0])
    assert answers[1].text and llm.stopped is None
    with FakeOpenAI(script=[Rule(status=503)]) as fake:
        (answer,), llm = ask(fake, max_retries=2)
    assert isinstance(answer, LLMStop) and "kept failing (HTTP 503) after 2 retries" in str(answer)
    assert llm.stats.requests == 3


def test_retry_after_forms():
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "7"}) == 7.0
    later = retry_after({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert later is not None and 25 <= later <= 31
    assert retry_after({"retry-after": "soon"}) is None and retry_after(None) is None


def test_cache_keys_are_the_ones_older_caches_were_written_with(tmp_path):
    from vmeta.dataset import rewrite, rewrite_prompt
    from vmeta.evaluate import judge

    # the formulas of rewrite.py and judge.py before the shared module
    old_rewrite = hashlib.sha256(
        json.dumps(
            ["m", rewrite_prompt.PROMPT_VERSION, rewrite_prompt.SYSTEM_PROMPT, "用户"], ensure_ascii=False
        ).encode("utf-8")
    ).hexdigest()
    old_judge = hashlib.sha256(
        json.dumps([judge.RUBRIC_VERSION, "m", "参考", "输出"], ensure_ascii=False).encode()
    ).hexdigest()
    assert rewrite.cache_key("m", "用户") == old_rewrite
    assert judge.cache_key("m", "参考", "输出") == old_judge
    assert cache_key("a", "b") != cache_key("b", "a")

    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"key": "k1", "ok": true, "text": "x"}\n{"key": "k2", "ok": false}\n{"key": "k3", "ok": tr', "utf-8"
    )
    cache = ResponseCache(path, lambda row: bool(row.get("ok")))
    assert cache.get("k1")["text"] == "x" and cache.get("k2") is None and len(cache) == 1  # torn line skipped
    ResponseCache(path, read=False).put({"key": "k4", "ok": True})
    assert ResponseCache(path, lambda row: bool(row.get("ok"))).get("k4") is not None


def test_a_judge_cache_written_before_the_shared_client_still_hits(tmp_path):
    from vmeta.evaluate.judge import RUBRIC_VERSION, JudgeConfig, make_judge

    verdict = {"core_concept": 1, "source": 1, "mapping": 1, "emotion": 0, "loose": 7.0, "reason": "旧"}
    rows = [prediction("v000", "参考答案", "模型输出")]
    key = hashlib.sha256(json.dumps([RUBRIC_VERSION, "judge-x", "参考答案", "模型输出"], ensure_ascii=False).encode())
    (tmp_path / "judge.jsonl").write_text(
        json.dumps({"key": key.hexdigest(), "model": "judge-x", "verdict": verdict}, ensure_ascii=False) + "\n", "utf-8"
    )
    with FakeOpenAI(models=("judge-x",)) as fake:
        out = make_judge(JudgeConfig(model="judge-x", base_url=fake.base_url, api_key="k", cache_dir=tmp_path))(rows)
        assert fake.chat_requests == []
    assert out["samples"][0]["verdict"] == verdict and out["from_cache"] == 1


def test_the_judge_retries_through_the_shared_client_and_names_its_settings(tmp_path):
    from vmeta.evaluate.judge import JudgeConfig, make_judge

    answer = json.dumps({"core_concept": 1, "source": 1, "mapping": 1, "emotion": 1, "loose": 9})
    rows = [prediction(f"v{i:03d}", f"参考{i}", f"输出{i}") for i in range(3)]
    script = [Rule(calls={1}, status=429, retry_after=0.2), Rule(text=answer)]
    with FakeOpenAI(script=script, models=("judge-x",)) as fake:
        out = make_judge(JudgeConfig(model="judge-x", base_url=fake.base_url, api_key="k", concurrency=1))(rows)
        assert len(fake.chat_requests) == 4  # three samples, one retried after the 429
    assert out["n_failed"] == 0 and out["scores"]["strict_all"]["mean"] == 100.0
    with FakeOpenAI(api_key="right", models=("judge-x",)) as fake:
        out = make_judge(JudgeConfig(model="judge-x", base_url=fake.base_url, api_key="wrong", concurrency=1))(rows)
        assert len(fake.chat_requests) == 1  # one refusal stops the rest
    assert out["n_failed"] == 3 and "VMETA_LLM_API_KEY" in out["errors"][0]["error"]
