"""Read a predictions JSONL: `vmeta predict`'s rows, or LLaMA-Factory's generated_predictions.jsonl."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vmeta.dataset.categories import canonical_category
from vmeta.dataset.prompts import prompt_hash as hash_prompt
from vmeta.errors import UserError

ALL = "all"


@dataclass
class Prediction:
    id: str
    category: str
    reference: str
    output: str
    prompt: str = ""
    model: str | None = None
    adapter: str | None = None
    error: str | None = None  # `vmeta predict` could not produce an output (e.g. unreadable video)
    given_prompt_hash: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def prompt_hash(self) -> str:
        return self.given_prompt_hash or hash_prompt(self.prompt)


def _first(row: dict, keys: tuple[str, ...]) -> tuple[str | None, object]:
    for k in keys:
        if k in row:
            return k, row[k]
    return None, None


def load_predictions(path: str | Path) -> tuple[list[Prediction], str]:
    """Rows and the detected format ("vmeta" or "llamafactory"). Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: predictions file not found.")
    rows: list[Prediction] = []
    fmt = "vmeta"
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        lines = fh.readlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: line {n} is not valid JSON ({exc.msg}); fix or delete that line.") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {n} is not a JSON object.")
        out_key, output = _first(row, ("output", "predict", "prediction"))
        ref_key, reference = _first(row, ("reference", "label", "target"))
        if out_key == "predict" or ref_key == "label":
            fmt = "llamafactory"
        if out_key is None or ref_key is None:
            missing = " and ".join(
                name
                for name, key in (("'output' (or 'predict')", out_key), ("'reference' (or 'label')", ref_key))
                if key is None
            )
            raise UserError(f"{path}: line {n} has no {missing}; every row needs a model output and a reference.")
        for name, value in ((out_key, output), (ref_key, reference)):
            if value is None:
                raise UserError(f"{path}: line {n}: '{name}' is null; write \"\" for an empty output.")
            if not isinstance(value, str):
                raise UserError(f"{path}: line {n}: '{name}' must be a string, got {type(value).__name__}.")
        rid = str(row["id"]) if row.get("id") not in (None, "") else str(n)
        if rid in seen:
            raise UserError(f"{path}: line {n} repeats id '{rid}' (first on line {seen[rid]}); ids must be unique.")
        seen[rid] = n
        raw_cat = row.get("category")
        category = ALL if raw_cat in (None, "") else (canonical_category(str(raw_cat)) or str(raw_cat))
        known = {"id", "category", "prompt", "prompt_hash", "model", "adapter", "error", out_key, ref_key}
        rows.append(
            Prediction(
                id=rid,
                category=category,
                reference=reference,
                output=output,
                prompt=str(row.get("prompt") or ""),
                model=row.get("model"),
                adapter=row.get("adapter"),
                error=str(row["error"]) if row.get("error") else None,
                given_prompt_hash=row.get("prompt_hash") or None,
                extra={k: v for k, v in row.items() if k not in known},
            )
        )
    if not rows:
        raise UserError(f"{path}: no predictions in the file.")
    return rows, fmt


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
