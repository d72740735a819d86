"""Optional LLM judge through any OpenAI-compatible endpoint. Reported separately in results.json["judge"];
never mixed into the reference metrics.

Rubric (per sample, the model output judged against the reference label):
- strict 0/1 for each of: core_concept (the same meme/concept), source (where it comes from), mapping (why the
  concept fits the video: the feature / new meaning / event), emotion (the attitude expressed);
- loose 0-10: overall agreement in meaning.
Requests go through `vmeta.llm_client` (concurrency limit, retries honouring Retry-After). Answers are cached on
disk (CACHE_DIR/judge.jsonl, keyed by rubric version + model + reference + output), so a re-run costs nothing and
an interrupted run resumes. With a human-rated JSONL ({"id", the four criteria 0/1, "loose"
0-10}), agreement is reported: Cohen's kappa per strict criterion, Spearman's rho for the loose score.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vmeta import llm_client
from vmeta.errors import UserError
from vmeta.evaluate.bootstrap import resample_counts, summarize
from vmeta.evaluate.predictions import Prediction
from vmeta.jsonio import read_jsonl
from vmeta.llm_client import LLMClient, LLMError, ResponseCache, SettingNames

RUBRIC_VERSION = "v1"
CRITERIA = ("core_concept", "source", "mapping", "emotion")
SYSTEM = "你是严谨的评测员，负责比较模型对短视频隐喻的解释与人工标注的参考答案。只输出一个 JSON 对象。"
PROMPT = """参考答案（人工标注）：
{reference}

模型输出：
{output}

请逐项判断模型输出是否与参考答案一致（一致为 1，否则为 0）：
- core_concept：核心概念（被隐喻的词/梗）是否相同或等价；
- source：概念的出处是否一致；
- mapping：概念与视频内容之间的联系（特征/新含义/事件）是否一致；
- emotion：表达的情绪/态度是否一致。
再给出 loose：0-10 的整体语义一致程度（10 为完全一致）。
只输出 JSON，例如：{{"core_concept": 1, "source": 0, "mapping": 1, "emotion": 1, "loose": 7, "reason": "一句话理由"}}"""


@dataclass(frozen=True)
class JudgeConfig:
    model: str
    base_url: str | None = None
    api_key: str | None = None
    cache_dir: Path | None = None
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 3
    temperature: float = 0.0
    n_boot: int = 1000
    seed: int = 0


# How `vmeta eval` sets the judge's endpoint, for the client's error sentences.
JUDGE_SETTINGS = SettingNames(
    api_key="VMETA_LLM_API_KEY", model="--judge-model", base_url="--judge-base-url (or VMETA_LLM_BASE_URL)"
)


def cache_key(model: str, reference: str, output: str) -> str:
    """The verdict's key in judge.jsonl (these parts in this order: older caches still hit)."""
    return llm_client.cache_key(RUBRIC_VERSION, model, reference, output)


def parse_verdict(text: str) -> dict:
    """The first JSON object in the answer, validated: four 0/1 criteria and a 0-10 loose score."""
    m = re.search(r"\{.*\}", text or "", re.S)
    if not m:
        raise ValueError("no JSON object in the answer")
    obj = json.loads(m.group(0))
    out: dict = {}
    for k in CRITERIA:
        v = obj.get(k)
        if v not in (0, 1, True, False, "0", "1"):
            raise ValueError(f"'{k}' must be 0 or 1, got {v!r}")
        out[k] = int(v)
    loose = float(obj.get("loose"))
    if not 0 <= loose <= 10:
        raise ValueError(f"'loose' must be within 0-10, got {loose}")
    out["loose"] = loose
    out["reason"] = str(obj.get("reason", ""))[:500]
    return out


class Judge:
    """Asks the judge model about each (reference, output) pair once; verdicts come from the cache when known.
    `client`: an `openai.AsyncOpenAI`-like object (tests); by default one is made from the config."""

    def __init__(self, config: JudgeConfig, *, client: Any = None):
        if client is None:
            llm_client.require_openai()  # now, not after the metrics have been computed
        self.config = config
        self.client = client
        path = (Path(config.cache_dir) / "judge.jsonl") if config.cache_dir else None
        self.cache = ResponseCache(path, lambda row: "verdict" in row)

    async def ask(self, llm: LLMClient, reference: str, output: str) -> tuple[dict | None, str | None, bool]:
        """(verdict, error, from_cache). Transport failures were already retried by `llm`; an error here is final
        for this sample and the run goes on."""
        key = cache_key(self.config.model, reference, output)
        row = self.cache.get(key)
        if row is not None:
            return row["verdict"], None, True
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": PROMPT.format(reference=reference, output=output or "（空）")},
        ]
        error = None
        for _ in range(2):  # one more try when the answer is not valid JSON
            try:
                answer = await llm.complete(messages, temperature=self.config.temperature)
                verdict = parse_verdict(answer.text)
            except ValueError as exc:
                error = f"unusable answer: {exc}"
                continue
            except LLMError as exc:
                return None, str(exc), False
            self.cache.put({"key": key, "model": self.config.model, "verdict": verdict})
            return verdict, None, False
        return None, error, False

    async def _ask_all(self, rows: list[Prediction]) -> list[tuple[dict | None, str | None, bool]]:
        cfg = self.config
        llm = LLMClient(
            base_url=cfg.base_url,
            api_key=cfg.api_key or "not-needed",
            model=cfg.model,
            concurrency=cfg.concurrency,
            max_retries=cfg.max_retries,
            timeout=cfg.timeout_s,
            settings=JUDGE_SETTINGS,
            client=self.client,
        )
        try:
            return list(await asyncio.gather(*(self.ask(llm, r.reference, r.output) for r in rows)))
        finally:
            if self.client is None:  # ours: close it (a caller's client is the caller's to close)
                await llm.aclose()

    def __call__(self, rows: list[Prediction]) -> tuple[dict, list[dict]]:
        answers = asyncio.run(self._ask_all(rows))
        per_sample = []
        for r, (verdict, error, cached) in zip(rows, answers, strict=True):
            per_sample.append(
                {"id": r.id, "category": r.category, "verdict": verdict, "error": error, "from_cache": cached}
            )
        return self.summarize(rows, per_sample), per_sample

    def summarize(self, rows: list[Prediction], per_sample: list[dict]) -> dict:
        cols = [*CRITERIA, "strict_all", "loose"]
        m = np.full((len(rows), len(cols)), np.nan)
        for i, s in enumerate(per_sample):
            v = s["verdict"]
            if v:
                m[i, :4] = [100.0 * v[k] for k in CRITERIA]
                m[i, 4] = 100.0 * all(v[k] for k in CRITERIA)
                m[i, 5] = v["loose"]
        counts = resample_counts(len(rows), self.config.n_boot, self.config.seed)
        scores = dict(zip(cols, summarize(m, counts), strict=True))
        failed = sum(1 for s in per_sample if s["verdict"] is None)
        summary = f"strict all-four {_fmt(scores['strict_all'])}%, loose {_fmt(scores['loose'])}/10" + (
            f", {failed} sample(s) without a usable answer" if failed else ""
        )
        return {
            "model": self.config.model,
            "base_url": self.config.base_url,
            "rubric_version": RUBRIC_VERSION,
            "system": SYSTEM,
            "prompt": PROMPT,
            "scale": "criteria and strict_all: % of samples judged consistent (0/1 x100); loose: 0-10",
            "n": len(rows),
            "n_failed": failed,
            "from_cache": sum(1 for s in per_sample if s["from_cache"]),
            "scores": scores,
            "summary": summary,
            "errors": [{"id": s["id"], "error": s["error"]} for s in per_sample if s["error"]][:20],
        }


def _fmt(entry: dict) -> str:
    return "–" if entry["mean"] is None else f"{entry['mean']:.1f}"


# --------------------------------------------------------------------------------------------------------------
# Agreement with human ratings


def cohen_kappa(a: list[int], b: list[int]) -> float | None:
    if not a:
        return None
    a_, b_ = np.asarray(a), np.asarray(b)
    labels = np.union1d(a_, b_)
    po = float(np.mean(a_ == b_))
    pe = float(sum(np.mean(a_ == k) * np.mean(b_ == k) for k in labels))
    if pe == 1.0:
        return 1.0 if po == 1.0 else 0.0
    return (po - pe) / (1 - pe)


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):  # average ranks of ties
        idx = x == v
        ranks[idx] = ranks[idx].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2:
        return None
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(per_sample: list[dict], human_path: str | Path) -> dict:
    human = {}
    for n, row in enumerate(read_jsonl(human_path), 1):
        if "id" not in row:
            raise UserError(f"{human_path}: line {n} has no 'id'; human ratings are matched to predictions by id.")
        human[str(row["id"])] = row
    judged = {s["id"]: s["verdict"] for s in per_sample if s["verdict"]}
    common = [i for i in judged if i in human]
    if not common:
        raise UserError(f"{human_path}: no id in common with the judged predictions.")
    out: dict = {"file": str(human_path), "n": len(common), "cohen_kappa": {}, "raw_agreement": {}}
    for k in CRITERIA:
        pairs = [(judged[i][k], int(human[i][k])) for i in common if human[i].get(k) is not None]
        out["cohen_kappa"][k] = cohen_kappa([p[0] for p in pairs], [p[1] for p in pairs])
        out["raw_agreement"][k] = float(np.mean([p[0] == p[1] for p in pairs])) if pairs else None
    loose = [(judged[i]["loose"], float(human[i]["loose"])) for i in common if human[i].get("loose") is not None]
    out["spearman_loose"] = spearman([p[0] for p in loose], [p[1] for p in loose])
    return out


def make_judge(
    config: JudgeConfig, *, human: str | Path | None = None, client=None
) -> Callable[[list[Prediction]], dict]:
    """A callable for `run_eval(..., judge=...)`: returns results["judge"] (per-sample verdicts under 'samples')."""
    judge = Judge(config, client=client)

    def run(rows: list[Prediction]) -> dict:
        summary, per_sample = judge(rows)
        if human:
            summary["agreement"] = agreement(per_sample, human)
        summary["samples"] = per_sample
        return summary

    return run
