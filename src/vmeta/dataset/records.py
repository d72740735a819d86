"""The canonical store: DATASET/records.jsonl, one record per video, plus its manifest and lock.

Every stage (build, rewrite, review, split) reads and writes through `Dataset`, which holds an
exclusive file lock for read-modify-write so the review page and a rewrite job cannot lose each
other's work, and writes atomically so a crash never leaves a half-written store.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from vmeta.errors import UserError
from vmeta.jsonio import append_jsonl, iter_jsonl, read_json, write_json, write_jsonl
from vmeta.video.meta import VideoMeta

RECORDS = "records.jsonl"
REJECTS = "rejects.jsonl"
MANIFEST = "dataset.json"
AUDIT_LOG = "review_log.jsonl"
SCHEMA_VERSION = 1


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ReviewStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    edited = "edited"
    rejected = "rejected"


class SourceRef(BaseModel):
    sheet: str  # file name, plus "#SheetName" for workbooks with several sheets
    row: int  # 1-based row number as a spreadsheet program shows it


class Review(BaseModel):
    status: ReviewStatus = ReviewStatus.pending
    note: str = ""
    reviewer: str | None = None
    at: str | None = None


class Rewrite(BaseModel):
    model: str
    text: str  # the cleaned answer
    raw: str = ""  # what the endpoint returned, before cleaning
    attempts: int = 1
    ok: bool = True
    error: str | None = None
    at: str = Field(default_factory=now_iso)


class ScreenTextInfo(BaseModel):
    """The on-screen text stored with a record (`vmeta data build --screen-text`, `vmeta data screen-text`)."""

    text: str = ""  # the distinct lines in order, one per line (ScreenText.text); "" when the video shows none
    lines: list[dict[str, Any]] = Field(default_factory=list)  # {"text", "start", "end"} in seconds
    settings: dict[str, Any] = Field(default_factory=dict)  # the ScreenTextSettings it was read with
    at: str = Field(default_factory=now_iso)


class Record(BaseModel):
    id: str
    video: str  # path relative to the dataset folder (or absolute if on another drive)
    category: str
    raw_label: str
    label: str  # the current label: raw, then rewritten, then as reviewed
    label_origin: str = "raw"  # raw | rewrite | review | import
    slots: dict[str, str] | None = None
    conforms: bool = False
    source: SourceRef
    review: Review = Field(default_factory=Review)
    rewrite: Rewrite | None = None
    flags: list[str] = Field(default_factory=list)
    split: str | None = None
    video_meta: VideoMeta = Field(default_factory=VideoMeta)
    screen_text: ScreenTextInfo | None = None  # None: not read yet
    history: list[dict[str, Any]] = Field(default_factory=list)  # earlier raw labels, merges

    @property
    def reviewed(self) -> bool:
        return self.review.status != ReviewStatus.pending

    def set_label(self, text: str, origin: str) -> None:
        from vmeta.dataset.template import parse

        parsed = parse(text)
        self.label = text
        self.label_origin = origin
        self.slots = parsed.slots
        self.conforms = parsed.ok

    def add_flag(self, flag: str) -> None:
        if flag not in self.flags:
            self.flags.append(flag)


class Dataset:
    """A dataset folder. Use `with ds.locked(): ...` around read-modify-write."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # paths
    @property
    def records_path(self) -> Path:
        return self.root / RECORDS

    @property
    def rejects_path(self) -> Path:
        return self.root / REJECTS

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def audit_path(self) -> Path:
        return self.root / AUDIT_LOG

    def exists(self) -> bool:
        return self.records_path.exists()

    def require(self) -> Dataset:
        if not self.exists():
            raise UserError(
                f"{self.root}: no {RECORDS} here. Build a dataset first: vmeta data build SHEET --videos DIR --out {self.root}"
            )
        return self

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # records
    def load(self) -> list[Record]:
        out = []
        for n, row in enumerate(iter_jsonl(self.records_path, tolerate_torn_tail=False), 1):
            try:
                out.append(Record.model_validate(row))
            except Exception as exc:  # pydantic ValidationError: name the line
                raise UserError(f"{self.records_path}: line {n} is not a valid record: {exc}") from None
        return out

    def save(self, records: list[Record]) -> None:
        write_jsonl(self.records_path, (r.model_dump(mode="json") for r in records))
        manifest = self.manifest() | {"updated": now_iso(), "records": len(records), "schema": SCHEMA_VERSION}
        write_json(self.manifest_path, manifest)

    def update(self, fn: Callable[[list[Record]], Any]) -> Any:
        """Load, let `fn` change the list in place, save — all under the lock."""
        with self.locked():
            records = self.load()
            result = fn(records)
            self.save(records)
            return result

    def manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path) if self.manifest_path.exists() else {}

    def write_manifest(self, **fields: Any) -> None:
        with self.locked():
            write_json(self.manifest_path, self.manifest() | fields)

    def video_path(self, record: Record) -> Path:
        p = Path(record.video)
        return p if p.is_absolute() else (self.root / p)

    def audit(self, entry: dict[str, Any]) -> None:
        append_jsonl(self.audit_path, {"at": now_iso(), **entry})

    def content_hash(self) -> str:
        """Hash of the records file: runs record it so results name the exact data they saw."""
        h = hashlib.sha256()
        with self.records_path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:16]
