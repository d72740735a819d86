"""The records a prediction covers: a dataset split (clear errors for a missing dataset or split) and the
hash of what predictions depend on, recorded in the file's meta."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vmeta.errors import UserError


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


def whole_split(ds, split: str):  # type: ignore[no-untyped-def]
    """All records of a split (the split hash covers the whole split even when --limit is used)."""
    return [r for r in ds.load() if r.split == split]
