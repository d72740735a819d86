"""Import LLaMA-Factory / ms-swift ShareGPT JSON (``vmeta data import FILE --out DS``) back into records: each
sample's video, category (from its path or --category) and answer; labels already reviewed are kept and the
difference flagged, never overwritten."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmeta.dataset.categories import canonical_category, category_lookup
from vmeta.dataset.records import Dataset, Record, SourceRef, now_iso
from vmeta.dataset.sharegpt import INDEX_FILE
from vmeta.dataset.split import SPLITS
from vmeta.errors import UserError
from vmeta.jsonio import read_json
from vmeta.video.meta import VideoMeta


@dataclass
class ImportReport:
    file: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # unreviewed label replaced by the imported one
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # reviewed label differs: kept, flagged
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"row", "reason"}

    @property
    def counts(self) -> dict[str, int]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "conflicts": len(self.conflicts),
            "skipped": len(self.skipped),
        }


_ROLE_ALIASES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}


def _turns(sample: dict[str, Any]) -> list[tuple[str, str]] | None:
    msgs = sample.get("messages")
    if msgs is None:
        msgs = sample.get("conversations")
    if not isinstance(msgs, list):
        return None
    out = []
    for m in msgs:
        if not isinstance(m, dict):
            return None
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if not isinstance(content, str):
            return None
        out.append((_ROLE_ALIASES.get(str(role).lower(), str(role)), content))
    return out


def _read_samples(path: Path) -> list[Any]:
    if path.suffix == ".jsonl":
        from vmeta.jsonio import read_jsonl

        return read_jsonl(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of samples (ShareGPT format), found {type(data).__name__}.")
    return data


def _category_from_path(video: str, lookup: dict[str, str]) -> str | None:
    p = Path(video)
    candidates = [*reversed(p.parent.parts), p.stem]
    stem = p.stem
    for sep in ("_", "-", " "):
        if sep in stem:
            candidates.append(stem.split(sep)[0])
    for c in candidates:
        found = canonical_category(c, lookup)
        if found:
            return found
    return None


def _probe(path: Path) -> VideoMeta:
    try:
        from vmeta.video.probe import ProbeError, probe, unreadable_meta
    except ImportError:  # pragma: no cover - probe module not installed
        return VideoMeta(readable=path.exists(), error=None if path.exists() else "missing")
    try:
        return probe(path)
    except ProbeError as exc:
        return unreadable_meta(path, exc)


def import_sharegpt(
    file: str | Path,
    dataset: Dataset,
    *,
    category: str | None = None,
    category_from: Literal["path", "field"] = "path",
    probe_videos: bool = True,
) -> ImportReport:
    """Read a ShareGPT file (ours or anyone's with one video per sample) into `dataset`'s records.

    Id = video file stem (or the id recorded in a sibling vmeta_index.json). The assistant turn becomes the
    label (origin "import"). Merge: a new id is added; an unreviewed record whose label differs takes the
    imported label (old one kept in history); a reviewed record's label is never overwritten — the difference
    is flagged ("import_differs") and the imported text kept in history. Samples of train/val/test.json get
    that split when they are new.
    """
    path = Path(file)
    if not path.exists():
        raise UserError(f"{path}: file not found.")
    if category_from not in ("path", "field"):
        raise UserError(f"--category-from must be 'path' or 'field', not {category_from!r}.")
    lookup = category_lookup()
    fixed_category = None
    if category:
        fixed_category = canonical_category(category, lookup)
        if not fixed_category:
            raise UserError(f"unknown category {category!r}; use one of: {', '.join(sorted(set(lookup.values())))}.")
    samples = _read_samples(path)
    index_path = path.parent / INDEX_FILE
    index_rows: list[dict[str, str]] = []
    if index_path.exists():
        try:
            index_rows = read_json(index_path).get(path.name, []) or []
        except (UserError, AttributeError):
            index_rows = []
    by_video = {row.get("video"): row for row in index_rows if isinstance(row, dict)}
    split_name = path.stem if path.stem in SPLITS else None
    report = ImportReport(file=path)
    root_abs = dataset.root.resolve()

    incoming: list[Record] = []
    for n, sample in enumerate(samples, 1):
        if not isinstance(sample, dict):
            report.skipped.append({"row": n, "reason": "not a JSON object"})
            continue
        turns = _turns(sample)
        if not turns:
            report.skipped.append({"row": n, "reason": "no messages/conversations list of role+content turns"})
            continue
        answers = [c for role, c in turns if role == "assistant"]
        if not answers or not answers[-1].strip():
            report.skipped.append({"row": n, "reason": "no assistant turn (the label)"})
            continue
        videos = sample.get("videos", sample.get("video"))
        if isinstance(videos, str):
            videos = [videos]
        if not isinstance(videos, list) or len(videos) != 1 or not isinstance(videos[0], str):
            report.skipped.append({"row": n, "reason": "needs exactly one entry in 'videos'"})
            continue
        video = videos[0]
        meta_row = by_video.get(video, {})
        vpath = Path(video)
        vabs = (vpath if vpath.is_absolute() else path.parent / vpath).resolve()
        try:
            stored_video = str(vabs.relative_to(root_abs))
        except ValueError:
            stored_video = str(vabs)
        rid = meta_row.get("id") or vpath.stem
        if fixed_category:
            cat = fixed_category
        elif category_from == "field":
            raw = sample.get("category") or meta_row.get("category")
            cat = canonical_category(raw, lookup) if raw else None
        else:
            cat = (canonical_category(meta_row["category"], lookup) if meta_row.get("category") else None) or (
                _category_from_path(video, lookup)
            )
        if not cat:
            report.skipped.append(
                {"row": n, "reason": f"no category for {video!r}; pass --category or put the category in the path"}
            )
            continue
        label = answers[-1].strip()
        rec = Record(
            id=rid,
            video=stored_video,
            category=cat,
            raw_label=label,
            label=label,
            source=SourceRef(sheet=path.name, row=n),
            split=split_name,
            video_meta=_probe(vabs) if probe_videos else VideoMeta(),
        )
        rec.set_label(label, "import")
        incoming.append(rec)

    def merge(records: list[Record]) -> None:
        existing = {r.id: r for r in records}
        for rec in incoming:
            old = existing.get(rec.id)
            if old is None:
                records.append(rec)
                existing[rec.id] = rec
                report.added.append(rec.id)
            elif old.label.strip() == rec.label.strip():
                report.unchanged.append(rec.id)
            elif old.reviewed:
                old.add_flag("import_differs")
                old.history.append({"at": now_iso(), "event": "import_differs", "file": str(path), "label": rec.label})
                report.conflicts.append(rec.id)
            else:
                old.history.append({"at": now_iso(), "event": "import", "file": str(path), "previous": old.label})
                old.set_label(rec.label, "import")
                report.updated.append(rec.id)

    dataset.update(merge)
    return report
