"""Several base models over the same split (thesis §4.2's zero-shot comparison), one predictions file per model
in an output folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.predict.config import PredictConfig, PredictSummary
from vmeta.predict.loop import predict
from vmeta.predict.records import select_records


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
