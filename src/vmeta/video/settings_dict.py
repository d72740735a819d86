"""Settings dataclasses (frames, on-screen text, speech) read back from a dict — run.json, a config, a cache entry."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def settings_from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """`cls(**data)`, refusing unknown keys by name (a typo must not silently fall back to a default); the
    dataclass's own checks then say what is wrong with a value. Raises ValueError."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)


__all__ = ["settings_from_dict"]
