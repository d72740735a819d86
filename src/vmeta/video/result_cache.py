"""What reading a video produced (its on-screen text, its speech) kept on disk, so the same video read with the
same settings again runs no model.

An entry's name is the file's content key (a copied or touched file still hits) plus a hash of everything that
decides the result — the settings, the model, the library versions — so a change to any of them misses instead of
returning what another reader produced. Entries are JSON written atomically; a damaged one is only a miss.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vmeta.errors import UserError

T = TypeVar("T")


@functools.cache  # a process's packages do not change; the chat asks this on every turn with a video
def reader_versions(algorithm: str, dists: tuple[str, ...]) -> dict[str, str]:
    """What decides a reader's result beside its settings: its algorithm's version and its libraries' versions."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"vmeta": algorithm}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


class ResultCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def entry(self, path: str | Path, key: dict[str, Any]) -> Path:
        from vmeta.video.cache import file_content_key

        blob = json.dumps(key, sort_keys=True)
        name = f"{file_content_key(path)}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"
        return self.root / name[:2] / f"{name}.json"

    def load(self, path: str | Path, key: dict[str, Any], parse: Callable[[dict[str, Any]], T]) -> T | None:
        from vmeta.jsonio import read_json

        entry = self.entry(path, key)
        if not entry.exists():
            self.misses += 1
            return None
        try:
            result = parse(read_json(entry))
        except (UserError, OSError, ValueError, KeyError, TypeError):
            self.misses += 1  # a damaged entry only costs reading the video again
            return None
        self.hits += 1
        return result

    def store(self, path: str | Path, key: dict[str, Any], data: dict[str, Any]) -> None:
        from vmeta.jsonio import write_json

        entry = self.entry(path, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_json(entry, data)


__all__ = ["ResultCache", "reader_versions"]
