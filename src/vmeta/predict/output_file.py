"""The predictions file and its ``FILE.meta.json``: what was already written (a torn last line is cut), the
settings a re-run must share to append to it, and --force-new keeping the old file as .bak.

The meta records the model, adapter, versions, dataset and split hashes, prompt, generation and frame settings,
and where the prompt and frames came from. A re-run whose settings differ is refused (rather than mixing outputs
of two configurations in one file) unless ``force_new`` starts the file over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.jsonio import iter_jsonl

META_SUFFIX = ".meta.json"
FORMAT = "vmeta-predictions/1"
# Settings that must match between a file and a re-run that appends to it.
COMPARED = ("model", "adapter", "dataset_split_hash", "split", "prompt_hash", "generation", "frames", "context")


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + META_SUFFIX)


def versions() -> dict[str, str | None]:
    import vmeta

    out: dict[str, str | None] = {"vmeta": vmeta.__version__}
    for name in ("torch", "transformers", "peft", "av"):
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", None))
        except ImportError:
            out[name] = None
    return out


def check_meta(path: Path, meta: dict[str, Any], out: Path) -> None:
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


def read_done(out: Path) -> tuple[set[str], list[dict]]:
    rows = list(iter_jsonl(out, tolerate_torn_tail=True))
    return {str(r.get("id")) for r in rows}, rows


def start_new(out: Path) -> None:
    """--force-new: keep the old file as FILE.N.bak (nothing already written is lost), start empty."""
    for p in (out, meta_path(out)):
        if p.exists():
            n = 1
            while p.with_name(f"{p.name}.{n}.bak").exists():
                n += 1
            p.rename(p.with_name(f"{p.name}.{n}.bak"))
