"""How a sweep names things: a varied value as compact, filesystem-safe text, dotted keys shortened.

The same text names a run's folder (``epochs4_lr5e-5``) and labels its row and columns in the tables and the CLI,
so a folder can be found from the table and the other way round.
"""

from __future__ import annotations

import math
import re
from typing import Any


def last_part(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, or more of it where two keys would read the same."""
    out = {}
    for k in keys:
        parts = k.split(".")
        n = 1
        while n < len(parts) and sum(1 for o in keys if o.split(".")[-n:] == parts[-n:]) > 1:
            n += 1
        out[k] = "-".join(parts[-n:])
    return out


def format_value(v: Any) -> str:
    """Compact, filesystem-safe text for a value: 5e-05 -> 5e-5, 4.0 -> 4, True -> true, [a, b] -> a+b."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e6:
            return str(int(v))
        text = f"{v:.6e}" if v != 0 and abs(v) < 1e-3 else f"{v:g}"
        m = re.fullmatch(r"(-?[\d.]+)e([+-])0*(\d+)", text)
        if m:
            mantissa = m.group(1).rstrip("0").rstrip(".") if "." in m.group(1) else m.group(1)
            text = f"{mantissa}e{'-' if m.group(2) == '-' else ''}{m.group(3)}"
        return text
    if isinstance(v, list | tuple):
        return "+".join(format_value(x) for x in v) or "none"
    if v is None:
        return "none"
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(v)).strip("-") or "x"


def run_name(varied: dict[str, Any], shorts: dict[str, str]) -> str:
    parts = []
    for k, v in varied.items():
        text = format_value(v)
        sep = "-" if text[:1].isalpha() else ""
        parts.append(f"{shorts[k]}{sep}{text}")
    return "_".join(parts) or "run"


__all__ = ["format_value", "last_part", "run_name", "short_names"]
