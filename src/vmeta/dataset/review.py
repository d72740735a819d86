"""Stage 3 (thesis §3.3, Fig. 3.4): a person accepts, edits or rejects each label.

Pure logic, shared by the review page (`vmeta.dataset.review_app`) and the scriptable CLI mode:

- `queue(records, filter)` — which records a reviewer walks through, ordered by id;
- `analyze(text)` — the template parser's view of a label plus the character spans / segments of
  its five slots, so the page can highlight them (one parser, in Python);
- `decide(dataset, record_id, action, ...)` — applies one decision under the dataset's file lock
  (a rewrite job may write concurrently), with optimistic concurrency on the label the reviewer saw,
  and appends exactly one entry to the append-only audit log `review_log.jsonl`.
"""

from __future__ import annotations

import getpass
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vmeta.dataset.records import Dataset, Record, Review, ReviewStatus, now_iso
from vmeta.dataset.template import SLOT_LABELS_ZH, SLOT_NAMES, parse, split_note
from vmeta.errors import UserError

ACTIONS: tuple[str, ...] = ("accept", "edit", "reject", "reset")
FILTERS: tuple[str, ...] = ("pending", "flagged", "rejected", "accepted", "edited", "reviewed", "all")
DEFAULT_FILTER = "pending"
SLOT_LABELS_EN = {
    "content": "video content",
    "concept": "core concept",
    "source": "source",
    "feature": "feature / new meaning / event",
    "emotion": "emotion / attitude",
}
# Flags a decision settles: the reviewer has now looked at the (changed) raw label.
CLEARED_BY_DECISION: tuple[str, ...] = ("raw_label_changed",)
_ACTION_STATUS = {
    "accept": ReviewStatus.accepted,
    "edit": ReviewStatus.edited,
    "reject": ReviewStatus.rejected,
    "reset": ReviewStatus.pending,
}


class ReviewConflict(UserError):
    """The label changed since the reviewer loaded it; nothing was written (HTTP 409)."""


class UnknownRecord(UserError):
    """No record with that id (HTTP 404)."""


def default_reviewer(configured: str | None = None) -> str:
    """The name recorded in the audit log: the explicit/configured one, else $USER, else the login name."""
    if configured and configured.strip():
        return configured.strip()
    for var in ("USER", "USERNAME", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers)
        return "unknown"


# ---------------------------------------------------------------------------------------------- queue
def is_flagged(record: Record) -> bool:
    """Needs a closer look: a flag from build/rewrite (raw label changed, rewrite failed, ...) or a label
    that does not fit the template."""
    return bool(record.flags) or not record.conforms


def matches(record: Record, filter: str) -> bool:
    status = record.review.status
    if filter == "all":
        return True
    if filter == "flagged":
        return is_flagged(record)
    if filter == "reviewed":
        return status != ReviewStatus.pending
    return status == filter


def check_filter(filter: str) -> str:
    filter = (filter or DEFAULT_FILTER).strip().lower()
    if filter not in FILTERS:
        raise UserError(f"unknown review filter {filter!r}; use one of: {', '.join(FILTERS)}.")
    return filter


def queue(records: Iterable[Record], filter: str = DEFAULT_FILTER) -> list[Record]:
    """The records a reviewer walks through for `filter`, ordered by id."""
    filter = check_filter(filter)
    return sorted((r for r in records if matches(r, filter)), key=lambda r: r.id)


def counts(records: Iterable[Record]) -> dict[str, int]:
    """Records per review status, plus `flagged` and `total`."""
    records = list(records)
    by_status = Counter(r.review.status.value for r in records)
    out = {s.value: by_status.get(s.value, 0) for s in ReviewStatus}
    out["flagged"] = sum(1 for r in records if is_flagged(r))
    out["total"] = len(records)
    return out


def find(records: Iterable[Record], record_id: str, dataset: Dataset | None = None) -> Record:
    for r in records:
        if r.id == record_id:
            return r
    where = f" in {dataset.records_path}" if dataset is not None else ""
    raise UnknownRecord(
        f"no record with id {record_id!r}{where}; check the id (the review page with --filter all lists them all)."
    )


# -------------------------------------------------------------------------------------------- analyze
def _locate(haystack: str, needle: str, start: int) -> tuple[int, int] | None:
    """Where `needle` occurs in `haystack` at or after `start` (whitespace runs may differ), as (start, end)."""
    if not needle:
        return None
    at = haystack.find(needle, start)
    if at >= 0:
        return at, at + len(needle)
    # The parser folds whitespace runs; allow any run of whitespace where the slot text has some.
    pattern = r"\s+".join(re.escape(part) for part in needle.split())
    m = re.compile(pattern).search(haystack, start)
    return (m.start(), m.end()) if m else None


def analyze(text: str) -> dict[str, Any]:
    """Parse a label and say where each slot lies in `text`.

    Returns the parser's verdict (`ok`, `strict`, `missing`, `placeholders`, `note`, `extra`), the slots as
    a list of {name, label_zh, label_en, text, start, end} (offsets in Unicode code points into `text`;
    None when a slot was not found), and `segments`: `text` cut into consecutive pieces, each tagged with
    the slot it belongs to ("note"/"extra" for appended parts, None for template words). Concatenating the
    segments gives `text` back, so a page can highlight without offset arithmetic (JavaScript strings
    count UTF-16 units, not code points).
    """
    text = text or ""
    parsed = parse(text)
    slots_out: list[dict[str, Any]] = []
    marks: list[tuple[int, int, str]] = []
    cursor = 0
    for name in SLOT_NAMES:
        value = (parsed.slots or {}).get(name, "")
        span = _locate(text, value, cursor)
        if span:
            cursor = span[1]
            marks.append((span[0], span[1], name))
        slots_out.append(
            {
                "name": name,
                "label_zh": SLOT_LABELS_ZH[name],
                "label_en": SLOT_LABELS_EN[name],
                "text": value,
                "start": span[0] if span else None,
                "end": span[1] if span else None,
            }
        )
    for kind, value in (("extra", parsed.extra), ("note", parsed.note)):
        span = _locate(text, value, cursor)
        if span:
            cursor = span[1]
            marks.append((span[0], span[1], kind))

    segments: list[dict[str, Any]] = []
    pos = 0
    for start, end, kind in marks:
        if start > pos:
            segments.append({"text": text[pos:start], "slot": None})
        segments.append({"text": text[start:end], "slot": kind})
        pos = end
    if pos < len(text):
        segments.append({"text": text[pos:], "slot": None})

    return {
        "ok": parsed.ok,
        "strict": parsed.strict,
        "missing": parsed.missing,
        "placeholders": parsed.placeholders,
        "note": parsed.note,
        "extra": parsed.extra,
        "slots": slots_out,
        "segments": segments,
    }


def stripped_note(record: Record) -> str:
    """The note an LLM appended to its answer and the rewrite stage cut off (Fig. 3.4 a), if any."""
    if record.rewrite is None or not record.rewrite.raw:
        return ""
    return split_note(record.rewrite.raw)[1]


# -------------------------------------------------------------------------------------------- decide
@dataclass
class Decision:
    record: Record  # the record after the decision
    entry: dict[str, Any]  # the audit entry appended


def _snapshot(record: Record) -> dict[str, Any]:
    return {"label": record.label, "status": record.review.status.value, "note": record.review.note}


def decide(
    dataset: Dataset,
    record_id: str,
    action: str,
    text: str | None = None,
    note: str = "",
    reviewer: str | None = None,
    expected_label: str | None = None,
) -> Decision:
    """Apply one review decision and append one audit entry; both under the dataset lock.

    accept: status accepted, label kept (slots re-parsed). edit: the label becomes `text` (origin "review",
    slots re-parsed), status edited. reject: status rejected, label kept. reset: back to pending.
    `raw_label` and `rewrite` are never touched. If `expected_label` is given and the stored label differs
    (a rewrite job or another reviewer changed it since the page loaded), `ReviewConflict` is raised and
    nothing is written.
    """
    action = (action or "").strip().lower()
    if action not in ACTIONS:
        raise UserError(f"unknown review action {action!r}; use one of: {', '.join(ACTIONS)}.")
    if action == "edit":
        text = (text or "").replace("\r\n", "\n").strip()
        if not text:
            raise UserError(f"record {record_id!r}: an edit needs the new label text; it was empty.")
    elif text is not None and text.strip():
        raise UserError(f"record {record_id!r}: label text is only used with the 'edit' action, not {action!r}.")
    note = (note or "").strip()
    who = default_reviewer(reviewer)
    dataset.require()

    with dataset.locked():
        records = dataset.load()
        record = find(records, record_id, dataset)
        if expected_label is not None and expected_label != record.label:
            raise ReviewConflict(
                f"record {record_id!r} changed since you loaded it (its label is now different, perhaps a rewrite "
                "job or another reviewer changed it); nothing was saved. Reload the item and decide again."
            )
        before = _snapshot(record)
        at = now_iso()
        if action == "edit":
            record.set_label(text, "review")
        else:
            record.set_label(record.label, record.label_origin)  # re-parse with the current parser
        record.review = Review(status=_ACTION_STATUS[action], note=note, reviewer=who, at=at)
        record.flags = [f for f in record.flags if f not in CLEARED_BY_DECISION]
        after = _snapshot(record)
        dataset.save(records)
        entry = {
            "at": at,
            "reviewer": who,
            "id": record.id,
            "action": action,
            "before": before,
            "after": after,
            "note": note,
        }
        dataset.audit(entry)
    return Decision(record=record, entry=entry)


def audit_entries(dataset: Dataset, record_id: str | None = None) -> list[dict[str, Any]]:
    """The audit log (oldest first), optionally for one record."""
    from vmeta.jsonio import iter_jsonl

    return [e for e in iter_jsonl(dataset.audit_path) if record_id is None or e.get("id") == record_id]
