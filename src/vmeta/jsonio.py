"""Atomic, UTF-8, human-readable JSON/JSONL files: nothing half-written survives a crash."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from vmeta.errors import UserError


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    atomic_write_bytes(path, text.replace("\r\n", "\n").encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; give the result the mode a plain open() would (0666 minus umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found.") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}.") from None


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in rows))


def iter_jsonl(path: str | Path, *, tolerate_torn_tail: bool = True) -> Iterator[dict]:
    """Yield rows; a torn last line (a writer killed mid-append) is skipped, any other bad line is an error."""
    path = Path(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        lines = fh.readlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if tolerate_torn_tail and n == len(lines) and not line.endswith("\n"):
                return
            raise UserError(f"{path}: line {n} is not valid JSON; fix or delete that line.") from None


def read_jsonl(path: str | Path) -> list[dict]:
    return list(iter_jsonl(path))


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one line and fsync: used for append-only logs and resumable outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (dumps(row) + "\n").encode("utf-8")
    _drop_torn_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_torn_tail(path: Path) -> None:
    """A writer killed mid-line leaves an incomplete last record: cut it so the log stays parseable."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        size = fh.seek(0, os.SEEK_END)
        pos = max(0, size - (1 << 16))
        while True:
            fh.seek(pos)
            at = fh.read(size - pos).rfind(b"\n")
            if at >= 0 or pos == 0:
                fh.truncate(pos + at + 1 if at >= 0 else 0)
                return
            pos = max(0, pos - (1 << 16))
