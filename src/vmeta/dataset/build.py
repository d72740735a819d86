"""`vmeta data build`: annotators' sheets + a folder of videos -> DATASET/records.jsonl + rejects.jsonl.

Every sheet row either becomes (part of) a record or a line in rejects.jsonl with its sheet, row, reason
code and what to do — bad rows never vanish, and valid rows always come through. Re-running merges into
the existing records: new videos are added, unchanged ones refreshed, changed raw labels replace the label
unless a person reviewed it or the rewrite stage already changed it (then the label is kept, the record is
flagged and the old raw label goes to its history). Records not in the new sheets are kept.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmeta.dataset.categories import CATEGORIES, canonical_category, category_lookup, fold
from vmeta.dataset.records import Dataset, Record, SourceRef, now_iso
from vmeta.dataset.sheets import MissingColumnError, SheetRow, check_sheet_file, read_sheet_tables
from vmeta.dataset.video_index import VideoIndex
from vmeta.errors import UserError
from vmeta.jsonio import iter_jsonl, write_jsonl
from vmeta.video.meta import VideoMeta

PROBE_CACHE = ".probe_cache.jsonl"

REJECT_REASONS: dict[str, str] = {
    "missing_column": "the sheet lacks a required column",
    "missing_video": "no video file with that name",
    "ambiguous_video": "several video files match the name",
    "unreadable_video": "the video file cannot be used",
    "unknown_category": "the category is not one of the accepted ones",
    "empty_label": "the metaphor explanation is empty",
    "conflicting_duplicate": "the same video appears in several rows with different labels",
}


@dataclass
class Reject:
    sheet: str
    row: int | None
    video: str
    reason: str
    message: str
    kind: str | None = None  # sub-kind, e.g. zero_byte / corrupt / not_video / audio_only for unreadable_video

    def to_json(self) -> dict[str, Any]:
        d = {"sheet": self.sheet, "row": self.row, "video": self.video, "reason": self.reason}
        if self.kind:
            d["kind"] = self.kind
        d["message"] = self.message
        return d

    def line(self) -> str:
        """The terminal summary line: sheet:row — video — reason — what to do."""
        where = f"{self.sheet}:{self.row}" if self.row is not None else self.sheet
        message = self.message
        prefix = f"{self.sheet} row {self.row}: "
        if message.startswith(prefix):
            message = message[len(prefix) :]
        return f"{where} — {self.video or '-'} — {self.reason}{f' ({self.kind})' if self.kind else ''} — {message}"


@dataclass
class BuildReport:
    out: Path
    rows_per_sheet: dict[str, int] = field(default_factory=dict)
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    flagged: int = 0
    total_records: int = 0
    rejects: list[Reject] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # same video + same label in several rows
    probes_run: int = 0
    cache_hits: int = 0
    videos_indexed: int = 0
    seconds: float = 0.0
    kept: bool = True  # False: no valid row, and the folder this build had created was removed again

    @property
    def rows_read(self) -> int:
        return sum(self.rows_per_sheet.values())

    @property
    def valid(self) -> int:
        return self.new + self.updated + self.unchanged + self.flagged

    @property
    def rejects_path(self) -> Path:
        return self.out / "rejects.jsonl"

    def rejected_by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejects))

    def summary(self) -> dict[str, Any]:
        return {
            "rows_per_sheet": self.rows_per_sheet,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "flagged": self.flagged,
            "records": self.total_records,
            "rejected": len(self.rejects),
            "rejected_by_reason": self.rejected_by_reason(),
            "duplicate_rows_merged": len(self.duplicates),
            "probes_run": self.probes_run,
            "probe_cache_hits": self.cache_hits,
        }


# --------------------------------------------------------------------------- build


def _label_key(text: str) -> str:
    return re.sub(r"\s+", "", fold(text))


def _accepted_categories(categories: dict | None) -> str:
    table = categories or CATEGORIES
    return ", ".join(f"{name} ({english})" for name, (english, _aliases) in table.items())


def _dataset_relpath(video: Path, out_resolved: str) -> str:
    try:
        return Path(os.path.relpath(os.path.abspath(video), out_resolved)).as_posix()
    except ValueError:  # another drive (Windows)
        return os.path.abspath(video)


def build_dataset(
    sheets: Iterable[str | Path],
    videos_dir: str | Path,
    out: str | Path,
    column_map: dict[str, str] | None = None,
    categories: dict[str, tuple[str, tuple[str, ...]]] | None = None,
    sheet_name: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Read the sheets, match and probe the videos, merge into OUT/records.jsonl, write OUT/rejects.jsonl."""
    import time

    from vmeta.video.probe import ProbeCache, ProbeError

    t0 = time.perf_counter()
    sheets = [Path(s) for s in sheets]
    if not sheets:
        raise UserError(
            "no sheet given; pass one or more .xlsx/.csv files: vmeta data build SHEET... --videos DIR --out DATASET"
        )
    for path in sheets:  # every sheet's type before anything is read or written
        check_sheet_file(path)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out.")
    report = BuildReport(out=out)
    lookup = category_lookup(categories)
    index = VideoIndex(videos_dir)
    report.videos_indexed = index.count

    # 1. read every sheet; a missing column rejects that sheet only
    rows: list[SheetRow] = []
    sheet_names: list[str] = []
    for path in sheets:
        for table in read_sheet_tables(path, column_map, sheet_name):
            if isinstance(table, MissingColumnError):
                sheet_names.append(table.sheet)
                report.rows_per_sheet[table.sheet] = 0
                report.rejects.append(Reject(table.sheet, table.header_row, "", "missing_column", str(table)))
                continue
            sheet_names.append(table.sheet)
            report.rows_per_sheet[table.sheet] = len(table.rows)
            rows.extend(table.rows)

    # 2. per-row checks: names a video, category known, label present, exactly one file matches
    candidates: list[tuple[SheetRow, Path, str]] = []  # row, video file, canonical category
    for row in rows:
        where = f"{row.sheet} row {row.row}"
        if not row.video:
            report.rejects.append(
                Reject(
                    row.sheet,
                    row.row,
                    "",
                    "missing_video",
                    f"{where}: the video file name cell is empty; fill in the file name.",
                )
            )
            continue
        category = canonical_category(row.category, lookup) if row.category else None
        if category is None:
            shown = repr(row.category) if row.category else "empty"
            report.rejects.append(
                Reject(
                    row.sheet,
                    row.row,
                    row.video,
                    "unknown_category",
                    f"{where}: category {shown} is not accepted; use one of: {_accepted_categories(categories)}.",
                )
            )
            continue
        if not row.label:
            report.rejects.append(
                Reject(
                    row.sheet,
                    row.row,
                    row.video,
                    "empty_label",
                    f"{where}: the metaphor explanation is empty; write the label or delete the row.",
                )
            )
            continue
        hits = index.match(row.video)
        if not hits:
            report.rejects.append(
                Reject(
                    row.sheet,
                    row.row,
                    row.video,
                    "missing_video",
                    f"{where}: no video named {row.video!r} in {index.root}; check the spelling or add the file.",
                )
            )
            continue
        if len(hits) > 1:
            listed = ", ".join(index.relative(h) for h in hits)
            report.rejects.append(
                Reject(
                    row.sheet,
                    row.row,
                    row.video,
                    "ambiguous_video",
                    f"{where}: {row.video!r} matches several files ({listed}); write the full file name with its extension, or rename one.",
                )
            )
            continue
        candidates.append((row, hits[0], category))

    # 3. group by video: the same video with different labels (or categories) rejects all those rows
    groups: dict[Path, list[tuple[SheetRow, Path, str]]] = defaultdict(list)
    for cand in candidates:
        groups[cand[1]].append(cand)
    unique: list[tuple[SheetRow, Path, str]] = []
    for video, group in groups.items():
        if len({(_label_key(r.label), cat) for r, _v, cat in group}) > 1:
            for r, _v, _cat in group:
                others = ", ".join(f"{o.sheet}:{o.row}" for o, _ov, _oc in group if o is not r)
                report.rejects.append(
                    Reject(
                        r.sheet,
                        r.row,
                        r.video,
                        "conflicting_duplicate",
                        f"{r.sheet} row {r.row}: video {index.relative(video)} also appears in {others} with a different label or category; keep one row and delete or fix the others.",
                    )
                )
            continue
        unique.append(group[0])
        if len(group) > 1:
            report.duplicates.append(
                {
                    "video": index.relative(video),
                    "kept": f"{group[0][0].sheet}:{group[0][0].row}",
                    "also": [f"{r.sheet}:{r.row}" for r, _v, _c in group[1:]],
                }
            )

    # 4-6 write; a build that fails, or finds no valid row, leaves no folder it created behind
    created = not out.exists()
    try:
        # 4. probe (cached by inode / size+mtime+content hash)
        out.mkdir(parents=True, exist_ok=True)
        cache = ProbeCache(out / PROBE_CACHE)
        probed: list[tuple[SheetRow, Path, str, VideoMeta]] = []
        total = len(unique)
        for n, (row, video, category) in enumerate(unique, 1):
            try:
                meta = cache.probe(video)
            except ProbeError as exc:
                report.rejects.append(
                    Reject(
                        row.sheet, row.row, row.video, "unreadable_video", f"{row.sheet} row {row.row}: {exc}", exc.kind
                    )
                )
                continue
            finally:
                if on_progress is not None:
                    on_progress(n, total)
            probed.append((row, video, category, meta))
        report.probes_run, report.cache_hits = cache.misses, cache.hits

        # 5. merge into records.jsonl under the lock
        ds = Dataset(out)
        stamp = now_iso()
        out_resolved = os.path.abspath(out)

        def merge(records: list[Record]) -> None:
            by_id = {r.id: r for r in records}
            id_of_video = {r.video: r.id for r in records}
            taken: set[str] = set(by_id)
            claimed: set[str] = set()  # video paths given a record in this build
            for row, video, category, meta in probed:
                rel = _dataset_relpath(video, out_resolved)
                rid = id_of_video.get(rel)
                if rid is None:
                    rid = fold(video.stem)
                    holder = by_id.get(rid)
                    moved = holder is not None and holder.video not in claimed and not ds.video_path(holder).exists()
                    if rid in taken and not moved:  # another video has this stem: use the relative path
                        base, k = fold(index.relative(video)), 2
                        rid = base
                        while rid in taken:
                            rid, k = f"{base}~{k}", k + 1
                    taken.add(rid)
                    id_of_video[rel] = rid
                claimed.add(rel)
                source = SourceRef(sheet=row.sheet, row=row.row)
                old = by_id.get(rid)
                if old is None:
                    rec = Record(
                        id=rid,
                        video=rel,
                        category=category,
                        raw_label=row.label,
                        label=row.label,
                        source=source,
                        video_meta=meta,
                    )
                    rec.set_label(row.label, "raw")
                    records.append(rec)
                    by_id[rid] = rec
                    report.new += 1
                    continue
                before = old.model_dump(mode="json")
                protected = old.reviewed or old.rewrite is not None
                flagged = False
                old.video, old.source, old.video_meta = rel, source, meta
                if old.raw_label != row.label:
                    old.history.append(
                        {
                            "at": stamp,
                            "event": "raw_label_changed",
                            "raw_label": old.raw_label,
                            "source": before["source"],
                        }
                    )
                    old.raw_label = row.label
                    if protected:
                        old.add_flag("raw_label_changed")
                        flagged = True
                    else:
                        old.set_label(row.label, "raw")
                seen = next(
                    (h.get("sheet_category") for h in reversed(old.history) if h.get("event") == "category_changed"),
                    None,
                )
                if old.category != category and not (protected and seen == category):  # not already flagged
                    old.history.append(
                        {
                            "at": stamp,
                            "event": "category_changed",
                            "category": old.category,
                            "sheet_category": category,
                            "source": before["source"],
                        }
                    )
                    if protected:
                        old.add_flag("category_changed")
                        flagged = True
                    else:
                        old.category = category
                if flagged:
                    report.flagged += 1
                elif _changed(before, old.model_dump(mode="json")):
                    report.updated += 1
                else:
                    report.unchanged += 1
            report.total_records = len(records)

        ds.update(merge)

        order = {name: i for i, name in enumerate(sheet_names)}
        report.rejects.sort(key=lambda r: (order.get(r.sheet, len(order)), r.row or 0))

        # 6. rejects: this build's, plus earlier ones from sheets not read this time
        this_run = set(sheet_names)
        kept = (
            [r for r in iter_jsonl(ds.rejects_path) if r.get("sheet") not in this_run]
            if ds.rejects_path.exists()
            else []
        )
        write_jsonl(ds.rejects_path, [*kept, *(r.to_json() | {"at": stamp} for r in report.rejects)])

        report.seconds = time.perf_counter() - t0
        manifest = ds.manifest()
        builds = [
            *manifest.get("builds", []),
            {
                "at": stamp,
                "sheets": [str(p) for p in sheets],
                "videos_dir": str(Path(videos_dir)),
                "seconds": round(report.seconds, 3),
                **report.summary(),
            },
        ]
        known_sheets = list(dict.fromkeys([*manifest.get("sheets", []), *(str(p) for p in sheets)]))
        ds.write_manifest(
            sheets=known_sheets,
            videos_dir=str(Path(videos_dir)),
            built=stamp,
            builds=builds[-50:],
            counts=report.summary(),
        )
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if created and report.valid == 0:
        shutil.rmtree(out, ignore_errors=True)
        report.kept = False
    return report


_VOLATILE = ("mtime",)


def _changed(before: dict, after: dict) -> bool:
    b = dict(before, video_meta={k: v for k, v in before["video_meta"].items() if k not in _VOLATILE})
    a = dict(after, video_meta={k: v for k, v in after["video_meta"].items() if k not in _VOLATILE})
    return a != b
