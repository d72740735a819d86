"""Ratings in and out of a study as CSV or JSONL, so a study run elsewhere (a spreadsheet) can be reported too.

Columns (CSV) / keys (JSONL): `id, rater, model_a, model_b, winner` are required; `winner` is a model's name (one
of model_a / model_b; `a` / `b` also work), `tie` or `both_wrong`. Optional: `time` (ISO 8601), `seconds`, `note`,
per-slot judgements as `a_core_concept, a_source, a_emotion, b_core_concept, ...` (0/1, empty = not judged) or,
in JSONL, `slots` keyed by model name or by a/b. Model names are the names the study gave its prediction files.
Import keeps going past bad rows (each is named by line and field) and skips duplicates (same rater, id and pair).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from vmeta.errors import UserError
from vmeta.jsonio import atomic_write_text, dumps
from vmeta.rating.study import SLOTS, Study, check_rater

REQUIRED = ("id", "rater", "model_a", "model_b", "winner")
SLOT_COLUMNS = [f"{side}_{s}" for side in ("a", "b") for s in SLOTS]
EXPORT_COLUMNS = ["item", "id", "category", "rater", "time", "model_a", "model_b", "winner", *SLOT_COLUMNS]
EXPORT_COLUMNS += ["note", "seconds", "source"]
FORMATS = ("csv", "jsonl")


@dataclass
class ImportResult:
    imported: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)  # "FILE line N, field 'x': what is wrong"
    rows: int = 0


class RowError(Exception):
    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise UserError(f"--format '{fmt}' is not known; choose {' or '.join(FORMATS)}.")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".txt", ""):
        return "csv"
    raise UserError(f"{path}: cannot tell the format from '{suffix}'; pass --format csv or --format jsonl.")


def _read_rows(path: Path, fmt: str) -> list[tuple[int, dict | None, str | None]]:
    """(line number, row or None, why it could not be read)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheet programs often add a BOM
    except FileNotFoundError:
        raise UserError(f"{path}: file not found.") from None
    except UnicodeDecodeError:
        raise UserError(
            f"{path} is not UTF-8 text; save it as 'CSV UTF-8' (or JSONL in UTF-8) and import again."
        ) from None
    out: list[tuple[int, dict | None, str | None]] = []
    if fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append((n, None, f"not valid JSON ({exc.msg})"))
                continue
            out.append((n, row, None) if isinstance(row, dict) else (n, None, "not a JSON object"))
        return out
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UserError(
            f"{path}: line 1 (the header) lacks the column(s) {', '.join(missing)}; "
            f"the columns are at least {', '.join(REQUIRED)}."
        )
    reader.fieldnames = header
    line = 1
    for row in reader:
        start = line + 1
        line = reader.line_num
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue
        out.append((start, {k: v for k, v in row.items() if k is not None}, None))
    return out


def _text(row: dict, key: str) -> str:
    v = row.get(key)
    return "" if v is None else str(v).strip()


def _bit(value, column: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "y", "1.0"):
        return 1
    if s in ("0", "false", "no", "n", "0.0"):
        return 0
    raise RowError(column, f"must be 0 or 1 (or empty), got {value!r}")


def _slots(row: dict, model_a: str, model_b: str) -> dict | None:
    """{"a": {...}, "b": {...}} from flat a_/b_ columns or a 'slots' object keyed by a/b or model name."""
    out: dict[str, dict] = {"a": {}, "b": {}}
    raw = row.get("slots")
    if isinstance(raw, str) and raw.strip():
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise RowError("slots", "is not valid JSON") from None
    if isinstance(raw, dict):
        side_of = {"a": "a", "b": "b", model_a: "a", model_b: "b"}
        for key, judged in raw.items():
            if key not in side_of:
                raise RowError("slots", f"is keyed by {key!r}; use a / b or the names {model_a} / {model_b}")
            if not isinstance(judged, dict):
                raise RowError("slots", f"of {key!r} must be an object of slot -> 0/1")
            for slot, v in judged.items():
                if slot not in SLOTS:
                    raise RowError("slots", f"names an unknown slot {slot!r} (slots: {', '.join(SLOTS)})")
                bit = _bit(v, "slots")
                if bit is not None:
                    out[side_of[key]][slot] = bit
    elif raw not in (None, ""):
        raise RowError("slots", "must be an object keyed by a / b")
    for col in SLOT_COLUMNS:
        bit = _bit(row.get(col), col)
        if bit is not None:
            out[col[0]][col[2:]] = bit
    return {k: v for k, v in out.items() if v} or None


def _parse(study: Study, row: dict) -> dict:
    """Validate one row: the keyword arguments for Study.record (raises RowError naming the field)."""
    for key in REQUIRED:
        if not _text(row, key):
            raise RowError(key, "is empty")
    test_id = _text(row, "id")
    if test_id not in study.predictions[study.models[0]]:
        raise RowError("id", f"{test_id!r} is not a test id of this study")
    try:
        rater = check_rater(_text(row, "rater"))
    except UserError as exc:
        raise RowError("rater", str(exc)) from None
    a, b = _text(row, "model_a"), _text(row, "model_b")
    for col, name in (("model_a", a), ("model_b", b)):
        if name not in study.models:
            raise RowError(col, f"{name!r} is not a model of this study ({', '.join(study.models)})")
    if a == b:
        raise RowError("model_b", f"is the same model as model_a ({a!r})")
    item = study.find_item(test_id, a, b)
    if item is None:
        raise RowError("id", f"{test_id!r} is not rated on {a} vs {b} in this study's design")
    winner = _text(row, "winner")
    choice = {a: "a", b: "b", "a": "a", "b": "b", "tie": "tie", "both_wrong": "both_wrong"}.get(winner)
    if choice is None:
        raise RowError("winner", f"{winner!r} is not {a}, {b}, tie or both_wrong")
    time = _text(row, "time") or None
    if time is not None:
        try:
            datetime.fromisoformat(time)
        except ValueError:
            raise RowError("time", f"{time!r} is not an ISO 8601 time (e.g. 2026-12-07T10:00:00Z)") from None
    seconds = _text(row, "seconds") or None
    if seconds is not None:
        try:
            seconds = float(seconds)
        except ValueError:
            raise RowError("seconds", f"{seconds!r} is not a number") from None
    return {
        "rater": rater,
        "item": item["item"],
        "choice": choice,
        "slots": _slots(row, a, b),
        "note": _text(row, "note"),
        "seconds": seconds,
        "order": (a, b),
        "time": time,
    }


def import_ratings(study: Study, path: Path, fmt: str | None = None) -> ImportResult:
    """Append the file's good rows to the study's ratings; bad rows are reported, duplicates counted."""
    path = Path(path)
    fmt = _format_of(path, fmt)
    result = ImportResult()
    rows: list[dict] = []
    for line, row, problem in _read_rows(path, fmt):
        result.rows += 1
        if row is None:
            result.errors.append(f"{path.name} line {line}: {problem}")
            continue
        try:
            kw = _parse(study, row)
            rows.append(study.rating_row(source=f"import:{path.name}", **kw))
        except RowError as exc:
            result.errors.append(f"{path.name} line {line}, field '{exc.column}': {exc}")
        except UserError as exc:
            result.errors.append(f"{path.name} line {line}: {exc}")
    # one read of the stored ratings for the whole file; a rater's item stored before (or twice here) is a duplicate
    result.imported = len(study.store(rows))
    result.duplicates = len(rows) - result.imported
    return result


def export_rows(study: Study) -> list[dict]:
    """The stored ratings as flat rows (slots as a_/b_ columns of the answers as shown)."""
    out = []
    for r in study.ratings():
        row = {
            "item": r["item"],
            "id": r["id"],
            "category": study.category(r["id"]) if r["id"] in study.predictions[study.models[0]] else "",
            "rater": r["rater"],
            "time": r.get("time", ""),
            "model_a": r["model_a"],
            "model_b": r["model_b"],
            "winner": r["winner"],
        }
        slots = r.get("slots") or {}
        for side, model in (("a", r["model_a"]), ("b", r["model_b"])):
            for s in SLOTS:
                v = (slots.get(model) or {}).get(s)
                row[f"{side}_{s}"] = "" if v is None else int(v)
        row.update(note=r.get("note", ""), seconds="" if r.get("seconds") is None else r["seconds"])
        row["source"] = r.get("source", "")
        out.append(row)
    return out


def export_ratings(study: Study, out: Path | None = None, fmt: str | None = None) -> tuple[Path, int]:
    """Write every stored rating to `out` (default STUDY/export/ratings.<fmt>); returns (path, rows)."""
    if out is None:
        fmt = fmt or "csv"
        out = study.root / "export" / f"ratings.{fmt}"
    out = Path(out)
    fmt = _format_of(out, fmt)
    if fmt == "jsonl":
        ratings = study.ratings()
        atomic_write_text(out, "".join(dumps(r) + "\n" for r in ratings))
        return out, len(ratings)
    rows = export_rows(study)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    # a BOM so spreadsheet programs open the Chinese text as UTF-8
    atomic_write_text(out, "\ufeff" + buf.getvalue())
    return out, len(rows)
