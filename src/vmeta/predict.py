"""`vmeta predict`: run a model over a dataset split and write one JSONL line per sample, resumably.

- The user turn is the video followed by the prompt (thesis §4.2 instruction by default), generated through
  :mod:`vmeta.models.generate` (the one generation function).
- **Resumable**: the output file is read first; ids already written are skipped, new lines are appended with
  an fsync each (:func:`vmeta.jsonio.append_jsonl`), and a torn last line left by a killed run is cut.
- **Self-describing**: ``FILE.meta.json`` records the model, adapter, versions, dataset and split hashes,
  prompt, generation and frame settings, and where the prompt and frames came from. A re-run whose settings differ is refused (rather than mixing
  outputs of two configurations in one file) unless ``force_new`` starts the file over.
- **A run folder** (``run``) predicts with the prompt and frame settings its run.json recorded, so the model
  sees what it saw in training; an explicit prompt or frame setting still overrides them.
- **Context** (issue #15): a run trained with `data.context` (on-screen text) gets the same block before the
  instruction — the record's stored text, else read now through the OCR cache; `context` overrides it.
- **Per-sample lines**: id, category, prompt, context, prompt_hash, reference, output, model, adapter, frame settings,
  frame indices, timings (ttft, total, tokens/s), generation settings. A video that cannot be read gives a
  line with ``"output": ""`` and ``"error"`` (the run goes on; the summary counts them).
- :func:`compare_models` runs several base models over the same split (thesis §4.2's zero-shot comparison),
  one file per model in an output folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmeta import runs
from vmeta.config import Settings, get_settings
from vmeta.errors import UserError
from vmeta.jsonio import append_jsonl, iter_jsonl, write_json
from vmeta.models.generate import GenerationSettings, Result, frame_settings_for, generate_batch
from vmeta.video.sampling import FrameSettings

META_SUFFIX = ".meta.json"
FORMAT = "vmeta-predictions/1"
# Settings that must match between a file and a re-run that appends to it.
COMPARED = ("model", "adapter", "dataset_split_hash", "split", "prompt_hash", "generation", "frames", "context")


@dataclass
class PredictConfig:
    """What `vmeta predict` runs (validated before any model loads)."""

    data: Path
    out: Path
    model: str | None = None
    run: Path | None = None
    adapter: Path | None = None
    split: str = "test"
    prompt: str | None = None  # None: the thesis prompt
    batch_size: int = 1
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    frames: FrameSettings | None = None  # None: the model family's defaults
    frame_overrides: dict[str, Any] = field(default_factory=dict)  # applied on top (e.g. {"fps": 1.0})
    context: list[str] | None = None  # None: what the run was trained with (else none); [] turns it off
    limit: int | None = None
    force_new: bool = False
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        self.data = Path(self.data).expanduser()
        self.out = Path(self.out).expanduser()
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size!r}: must be a whole number >= 1.")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit!r}: must be >= 1 (or left out for the whole split).")
        if self.frame_overrides:
            _apply_overrides(self.frames or FrameSettings(), self.frame_overrides)  # fail before loading a model
        if self.context is not None:
            from vmeta.dataset.context import check_kinds

            self.context = list(check_kinds(self.context, "--context"))
        if self.prompt is not None and not self.prompt.strip():
            raise UserError("the prompt is empty; leave --prompt out to use the thesis prompt.")

    @property
    def prompt_text(self) -> str:
        from vmeta.dataset.prompts import DEFAULT_PROMPT, VIDEO_TOKEN

        text = self.prompt if self.prompt is not None else DEFAULT_PROMPT
        # LLaMA-Factory's "<video>" placeholder marks where frames go; here the video is its own message part.
        return text[len(VIDEO_TOKEN) :] if text.startswith(VIDEO_TOKEN) else text


@dataclass
class PredictSummary:
    out: Path
    model: str
    adapter: str | None
    total: int  # records in the split (after --limit)
    skipped: int  # already in the file
    written: int  # lines appended now
    errors: int  # error lines in the file (all runs)
    error_ids: list[str]
    seconds: float
    mean_ttft_s: float | None
    mean_tokens_per_s: float | None
    mean_output_chars: float | None

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["out"] = str(self.out)
        return d


def _apply_overrides(fs: FrameSettings, overrides: dict[str, Any]) -> FrameSettings:
    from dataclasses import replace

    if not overrides:
        return fs
    try:
        return replace(fs, **overrides)
    except (TypeError, ValueError) as exc:
        raise UserError(f"frame settings: {exc}") from None


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + META_SUFFIX)


def select_records(data: Path, split: str, limit: int | None = None):  # type: ignore[no-untyped-def]
    """(Dataset, records of the split in file order). Clear errors for a missing dataset or split."""
    from vmeta.dataset.records import Dataset

    ds = Dataset(data).require()
    records = ds.load()
    if not any(r.split for r in records):
        raise UserError(
            f"{data}: the records have no split yet. Run `vmeta data split {data}` first, then predict on --split {split}."
        )
    chosen = [r for r in records if r.split == split]
    if not chosen:
        have = sorted({r.split for r in records if r.split})
        raise UserError(
            f"{data}: no records in split {split!r} (splits present: {', '.join(have)}). "
            f"Use one of those, or re-run `vmeta data split {data}`."
        )
    if limit is not None:
        chosen = chosen[:limit]
    return ds, chosen


def split_hash(records) -> str:  # type: ignore[no-untyped-def]
    """Hash of what predictions depend on: each record's id, video, category and reference label."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.id):
        h.update(json.dumps([r.id, r.video, r.category, r.label], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _versions() -> dict[str, str | None]:
    import vmeta

    out: dict[str, str | None] = {"vmeta": vmeta.__version__}
    for name in ("torch", "transformers", "peft", "av"):
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", None))
        except ImportError:
            out[name] = None
    return out


def _check_meta(path: Path, meta: dict[str, Any], out: Path) -> None:
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise UserError(
            f"{path}: cannot be read, so it is unclear how {out.name} was produced; "
            "delete it together with the predictions, or use --force-new."
        ) from None
    diffs = [k for k in COMPARED if old.get(k) != meta.get(k)]
    if "dataset_split_hash" in diffs and old.get("dataset_split_hash") is None:
        diffs.remove("dataset_split_hash")
    if diffs:
        parts = []
        for k in diffs:
            a, b = old.get(k), meta.get(k)
            if isinstance(a, dict) and isinstance(b, dict):
                parts += [
                    f"{k}.{s}: file {_short(a.get(s))} vs now {_short(b.get(s))}"
                    for s in sorted(set(a) | set(b))
                    if a.get(s) != b.get(s)
                ]
            else:
                parts.append(f"{k}: file {_short(a)} vs now {_short(b)}")
        detail = "; ".join(parts)
        raise UserError(
            f"{out} was written with different settings ({detail}). Resuming would mix two configurations: "
            "use the same settings, choose another --out, or pass --force-new to start the file over."
        )


def _short(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= 80 else text[:77] + "..."


def _read_done(out: Path) -> tuple[set[str], list[dict]]:
    rows = list(iter_jsonl(out, tolerate_torn_tail=True))
    return {str(r.get("id")) for r in rows}, rows


def _start_new(out: Path) -> None:
    """--force-new: keep the old file as FILE.N.bak (nothing already written is lost), start empty."""
    for p in (out, meta_path(out)):
        if p.exists():
            n = 1
            while p.with_name(f"{p.name}.{n}.bak").exists():
                n += 1
            p.rename(p.with_name(f"{p.name}.{n}.bak"))


def _record_line(
    record,
    prompt: str,
    block: str,
    p_hash: str,
    loaded,
    res: Result | None,
    error: str | None,
    fs: FrameSettings,
    gen: GenerationSettings,
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    stats = res.stats if res is not None else None
    frames = stats.frames[0] if stats and stats.frames else {}
    return {
        "id": record.id,
        "category": record.category,
        "prompt": prompt,
        "context": block,
        "prompt_hash": p_hash,
        "reference": record.label,
        "output": res.text if res is not None else "",
        "error": error,
        "model": loaded.name,
        "adapter": loaded.adapter,
        "video": record.video,
        "frames": fs.to_dict(),
        "frame_indices": frames.get("indices"),
        "frame_size": [frames["height"], frames["width"]] if "height" in frames else None,
        "sample_fps": frames.get("sample_fps"),
        "timings": {
            "ttft_s": _r(stats.ttft_s) if stats else None,
            "total_s": _r(stats.total_s) if stats else None,
            "tokens_per_s": _r(stats.tokens_per_s) if stats else None,
            "prompt_tokens": stats.prompt_tokens if stats else None,
            "new_tokens": stats.new_tokens if stats else None,
            "finish_reason": stats.finish_reason if stats else None,
        },
        "generation": gen.to_dict(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def predict(
    cfg: PredictConfig,
    *,
    settings: Settings | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    show_progress: bool = False,
    console: Any = None,
) -> PredictSummary:
    """Run the prediction described by ``cfg`` (see the module docstring). ``on_progress(done, total)`` is called
    after each batch; ``show_progress`` draws a rich progress bar with ETA on ``console``."""
    from vmeta.dataset.context import ContextSettings, context_block, context_values, record_context, with_context
    from vmeta.dataset.prompts import prompt_hash
    from vmeta.models.load import load_model, plan_load
    from vmeta.video.decode import load_video

    settings = settings or get_settings()
    t_start = time.perf_counter()
    if cfg.out.is_dir() or cfg.out.suffix != ".jsonl":
        raise UserError(f"--out {cfg.out}: give a .jsonl file name (one prediction per line).")
    ds, records = select_records(cfg.data, cfg.split, cfg.limit)
    if cfg.force_new:
        _start_new(cfg.out)
    done, old_rows = _read_done(cfg.out)
    todo = [r for r in records if r.id not in done]

    # Check the file's settings before loading anything (a refusal should not cost a model load).
    resolved, adapter_dir = plan_load(cfg.model, run_dir=cfg.run, adapter=cfg.adapter, settings=settings)
    model_name, adapter_name = resolved.spec.name, (str(adapter_dir) if adapter_dir is not None else None)
    trained = _run_inputs(cfg.run)
    # What the model sees: what was given, else what the run was trained with, else the defaults.
    if cfg.frames is not None:
        base_fs, fs_source = cfg.frames, "given"
    elif "frames" in trained:
        base_fs, fs_source = trained["frames"], "run"
    else:
        base_fs, fs_source = frame_settings_for(resolved.spec), "model"
    fs = _apply_overrides(base_fs, cfg.frame_overrides)
    if cfg.prompt is None and "prompt" in trained:
        prompt, prompt_source = trained["prompt"], "run"
    else:
        prompt, prompt_source = cfg.prompt_text, "given" if cfg.prompt is not None else "default"
    if cfg.context is not None:
        ctx, ctx_source = ContextSettings(kinds=tuple(cfg.context)), "given"
    else:
        ctx, ctx_source = trained.get("context", ContextSettings()), "run" if "context" in trained else "default"
    gen = cfg.generation
    p_hash = prompt_hash(prompt)
    meta = {
        "format": FORMAT,
        "model": model_name,
        "adapter": adapter_name,
        "run": str(Path(cfg.run).resolve()) if cfg.run else None,
        "dataset": str(cfg.data.resolve()),
        "dataset_hash": ds.content_hash(),
        "dataset_split_hash": split_hash(records if cfg.limit is None else _whole_split(ds, cfg.split)),
        "split": cfg.split,
        "limit": cfg.limit,
        "prompt": prompt,
        "prompt_hash": p_hash,
        "generation": gen.to_dict(),
        "frames": fs.to_dict(),
        "context": ctx.to_dict() if ctx.enabled else None,
        # given (flags / the caller), run (its run.json), default (the thesis prompt), model (the family's frames)
        "sources": {
            "prompt": prompt_source,
            "frames": fs_source,
            "frame_overrides": sorted(cfg.frame_overrides),
            "context": ctx_source,
        },
        "batch_size": cfg.batch_size,
        "versions": _versions(),
    }
    mp = meta_path(cfg.out)
    if mp.exists():
        _check_meta(mp, meta, cfg.out)
    elif old_rows:
        raise UserError(
            f"{cfg.out} already holds {len(old_rows)} lines but no {mp.name} says how they were made; "
            "choose another --out, or pass --force-new to start over (the old file is kept as .bak)."
        )
    loaded = load_model(
        cfg.model, run_dir=cfg.run, adapter=cfg.adapter, device=cfg.device, dtype=cfg.dtype, settings=settings
    )
    if not mp.exists():
        created = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(mp, meta | {"model_info": loaded.describe(), "created": created})

    progress = None
    task = None
    if show_progress:
        from vmeta.progress import progress_bar

        progress = progress_bar(console=console)
        progress.start()
        task = progress.add_task(f"predict {loaded.name}", total=len(records), completed=len(records) - len(todo))

    written = 0
    new_rows: list[dict] = []
    try:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            convs, ok = [], []
            for rec in batch:
                path = ds.video_path(rec)
                block = ""
                try:
                    video = load_video(path, fs)
                    values = context_values(
                        ctx, path, stored=record_context(rec), cache_dir=settings.resolved_cache_dir
                    )
                    block = context_block(values, max_chars=ctx.max_chars)
                except UserError as exc:
                    row = _record_line(rec, prompt, block, p_hash, loaded, None, str(exc), fs, gen)
                    append_jsonl(cfg.out, row)
                    new_rows.append(row)
                    written += 1
                    continue
                text = with_context(prompt, block)
                convs.append(
                    [{"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": text}]}]
                )
                ok.append((rec, path, block))
            if convs:
                results = generate_batch(loaded, convs, gen, fs)
                for (rec, path, block), res in zip(ok, results, strict=True):
                    res.stats.frames[0]["source"] = str(path)
                    row = _record_line(rec, prompt, block, p_hash, loaded, res, None, fs, gen)
                    append_jsonl(cfg.out, row)
                    new_rows.append(row)
                    written += 1
            if progress is not None:
                progress.update(task, advance=len(batch))
            if on_progress is not None:
                on_progress(len(records) - len(todo) + start + len(batch), len(records))
    finally:
        if progress is not None:
            progress.stop()

    rows = old_rows + new_rows
    in_split = {r.id for r in records}
    rows = [r for r in rows if str(r.get("id")) in in_split]
    errors = [str(r["id"]) for r in rows if r.get("error")]
    good = [r for r in rows if not r.get("error")]
    return PredictSummary(
        out=cfg.out,
        model=loaded.name,
        adapter=loaded.adapter,
        total=len(records),
        skipped=len(records) - len(todo),
        written=written,
        errors=len(errors),
        error_ids=errors,
        seconds=time.perf_counter() - t_start,
        mean_ttft_s=_mean(r["timings"].get("ttft_s") for r in good),
        mean_tokens_per_s=_mean(r["timings"].get("tokens_per_s") for r in good),
        mean_output_chars=_mean(len(r.get("output") or "") for r in good),
    )


def _run_inputs(run: Path | None) -> dict[str, Any]:
    """The prompt, frame settings and context a training run recorded in its run.json (what its model was trained
    to see); empty without --run or without them (a bare adapter folder, a merged export)."""
    if run is None:
        return {}
    manifest = runs.read_run(Path(run).expanduser())
    if manifest is None:
        return {}
    out: dict[str, Any] = {}
    if manifest.prompt and manifest.prompt.strip():
        out["prompt"] = manifest.prompt
    try:
        frames = manifest.frame_settings(runs.run_json(Path(run).expanduser()))
    except UserError as exc:
        raise UserError(f"{exc} Or predict with --model and --adapter instead of --run.") from None
    if frames is not None:
        out["frames"] = frames
    if manifest.context and manifest.context.get("kinds"):  # a run trained with context (on-screen text, speech)
        from vmeta.dataset.context import ContextSettings

        out["context"] = ContextSettings.from_dict(manifest.context)
    return out


def _whole_split(ds, split: str):  # type: ignore[no-untyped-def]
    """All records of a split (the split hash covers the whole split even when --limit is used)."""
    return [r for r in ds.load() if r.split == split]


def _mean(values) -> float | None:  # type: ignore[no-untyped-def]
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def model_file_name(model: str, taken: set[str]) -> str:
    """A file-system-safe, unique stem for a model name, hub id or folder."""
    p = Path(model)
    base = p.name if (p.is_dir() or ("/" in model and p.exists())) else model.replace("/", "--")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "model"
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}-{n}", n + 1
    taken.add(name)
    return name


def compare_models(
    models: list[str],
    out_dir: Path,
    cfg: PredictConfig,
    *,
    settings: Settings | None = None,
    show_progress: bool = False,
    console: Any = None,
) -> list[PredictSummary]:
    """Zero-shot comparison: each model over the same split into ``out_dir/<model>.jsonl`` (``cfg.out``, ``model``,
    ``run`` and ``adapter`` are ignored). Frame settings: each model's own defaults unless ``cfg.frames``."""
    from dataclasses import replace

    from vmeta.models.load import clear_model_cache

    if not models:
        raise UserError("--models: give at least one model name (comma-separated).")
    if len(set(models)) != len(models):
        raise UserError(f"--models lists a model twice: {', '.join(models)}.")
    out_dir = Path(out_dir).expanduser()
    if out_dir.suffix == ".jsonl" or out_dir.is_file():
        raise UserError(f"--out {out_dir}: with --models give a folder; each model writes FOLDER/<model>.jsonl.")
    select_records(cfg.data, cfg.split, cfg.limit)  # fail early on a missing split
    taken: set[str] = set()
    summaries = []
    for m in models:
        sub = replace(cfg, model=m, run=None, adapter=None, out=out_dir / f"{model_file_name(m, taken)}.jsonl")
        summaries.append(predict(sub, settings=settings, show_progress=show_progress, console=console))
        clear_model_cache()
    return summaries


__all__ = [
    "PredictConfig",
    "PredictSummary",
    "compare_models",
    "meta_path",
    "predict",
    "select_records",
    "split_hash",
]
