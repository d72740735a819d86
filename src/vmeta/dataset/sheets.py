"""Read annotators' sheets (.xlsx / .csv / .tsv) shaped like thesis table 3.1.

Three fields are needed: the video file name, the category and the metaphor explanation (the label).
Chinese and English headers are recognised (see `HEADER_ALIASES`); the header row is the first row
with at least two recognised headers, so a title row above it is fine. A `column_map`
({"video": "短视频文件名", ...}, from `--column field=Header`) overrides recognition; a header can also be
named by its column letter ("A") or 1-based number.

Cells are trimmed (spaces, NBSP, ideographic spaces, zero-width characters); matching uses NFKC +
casefold, but the annotator's text is kept as written. Row numbers are what a spreadsheet program shows.
Merged cells read as their top-left value. Empty rows are skipped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vmeta.errors import UserError

FIELDS: tuple[str, ...] = ("video", "category", "label")
FIELD_HELP = {"video": "video file name", "category": "category", "label": "metaphor explanation (label)"}
# fmt: off
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "video": (
        "短视频文件名", "视频文件名", "文件名", "视频", "视频名称", "视频名", "短视频", "短视频名称", "文件名称",
        "视频文件", "视频编号", "文件", "video", "videos", "file", "filename", "file name", "video_file",
        "video file", "video name", "video_name", "videoname", "video_path", "path", "name", "clip",
    ),
    "category": (
        "类别", "分类", "隐喻类别", "类型", "视频类别", "隐喻类型", "种类", "category", "categories", "type",
        "class", "metaphor type", "metaphor_type", "metaphor category", "genre",
    ),
    "label": (
        "隐喻解释", "解释", "隐喻标签", "标签", "隐喻含义", "含义", "隐喻", "隐喻说明", "说明", "标注", "描述",
        "label", "labels", "explanation", "metaphor", "annotation", "metaphor explanation", "description",
        "caption", "text",
    ),
}
# fmt: on
# A .txt is not read: it is as often notes as a table, and read as CSV it gave a confusing "missing column".
SUPPORTED_SUFFIXES = (".xlsx", ".xlsm", ".csv", ".tsv")
CSV_ENCODINGS = ("utf-8-sig", "utf-8", "gb18030")
_HEADER_SCAN_ROWS = 30
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_HEADER_JUNK = re.compile(r"[\s_\-:：*＊()（）\[\]【】]+")


def clean_cell(value: object) -> str:
    """A cell as text: numbers without a spurious '.0', trimmed of spaces, NBSP and zero-width characters."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    text = text.strip(_ZERO_WIDTH + " \t\r\n\u00a0\u3000")
    return text.strip().strip(_ZERO_WIDTH).strip()


def norm_header(text: str) -> str:
    return _HEADER_JUNK.sub("", unicodedata.normalize("NFKC", text).casefold())


_ALIAS_TO_FIELD = {norm_header(a): f for f, aliases in HEADER_ALIASES.items() for a in aliases}


@dataclass
class SheetRow:
    sheet: str
    row: int
    video: str
    category: str
    label: str


@dataclass
class SheetTable:
    """One sheet's rows, after the header row was found and the three columns mapped."""

    sheet: str  # display name: file name, plus "#SheetName" in workbooks with several sheets
    path: Path
    header_row: int
    headers: list[str]
    columns: dict[str, int]  # field -> 0-based column index
    rows: list[SheetRow] = field(default_factory=list)


class MissingColumnError(UserError):
    """A sheet lacks a required column; the build records it as a whole-sheet reject and goes on."""

    def __init__(self, sheet: str, missing: list[str], headers: list[str], header_row: int | None):
        self.sheet = sheet
        self.missing = missing
        self.headers = headers
        self.header_row = header_row
        found = ", ".join(repr(h) for h in headers if h) or "none"
        where = f"row {header_row}" if header_row else f"the first {_HEADER_SCAN_ROWS} rows"
        flags = " ".join(f"--column {m}=HEADER" for m in missing)
        names = ", ".join(f"{m} ({FIELD_HELP[m]})" for m in missing)
        super().__init__(
            f"{sheet}: no column recognised for {names}; headers found in {where}: {found}. "
            f"Name the column with {flags} (the header text, or a column letter such as B)."
        )


@dataclass
class RawSheet:
    name: str
    path: Path
    grid: list[tuple[int, list[str]]]  # (1-based row number, cells)


def parse_column_map(items: list[str] | None) -> dict[str, str]:
    """`["video=短视频文件名", "label=解释"]` -> {"video": "短视频文件名", "label": "解释"}."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in FIELDS or not value.strip():
            raise UserError(
                f"--column {item!r}: expected FIELD=HEADER with FIELD one of {', '.join(FIELDS)}, e.g. --column video=短视频文件名."
            )
        out[key] = value.strip()
    return out


# --------------------------------------------------------------------------- reading files


def check_sheet_file(path: str | Path) -> Path:
    """`path` as a Path when it names an existing sheet of a supported type, else a UserError saying what to do.
    Called for every sheet before a build starts, so a wrong file fails before anything is written."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: sheet file not found; check the path.")
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise UserError(f"{path}: old Excel .xls files are not read; open it and save as .xlsx (or .csv UTF-8).")
    if suffix == ".txt":
        raise UserError(
            f"{path}: a .txt file is not read as a sheet; save the sheet as .xlsx or .csv "
            "(a tab-separated .txt: rename it to .tsv)."
        )
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserError(f"{path}: unsupported sheet type {suffix!r}; use .xlsx, .csv or .tsv.")
    return path


def read_raw_sheets(path: str | Path, sheet_name: str | None = None) -> list[RawSheet]:
    path = check_sheet_file(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_xlsx(path, sheet_name)
    return [RawSheet(path.name, path, list(_read_delimited(path)))]


def _read_xlsx(path: Path, sheet_name: str | None) -> list[RawSheet]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, data_only=True)  # not read_only: merged cell ranges are needed
    except Exception as exc:
        raise UserError(f"{path}: cannot read the workbook ({exc}); open and re-save it as .xlsx.") from None
    try:
        names = wb.sheetnames
        if sheet_name is not None:
            chosen = [n for n in names if n == sheet_name] or [
                n
                for n in names
                if unicodedata.normalize("NFKC", n).casefold().strip()
                == unicodedata.normalize("NFKC", sheet_name).casefold().strip()
            ]
            if not chosen:
                raise UserError(f"{path}: no sheet named {sheet_name!r}; sheets: {', '.join(names)}.")
            names = chosen[:1]
        multi = len(wb.sheetnames) > 1
        out = []
        for name in names:
            ws = wb[name]
            fill: dict[tuple[int, int], object] = {}
            for rng in ws.merged_cells.ranges:
                value = ws.cell(rng.min_row, rng.min_col).value
                for r in range(rng.min_row, rng.max_row + 1):
                    for c in range(rng.min_col, rng.max_col + 1):
                        fill[(r, c)] = value
            grid = []
            for r, row in enumerate(ws.iter_rows(min_row=1, values_only=True), 1):
                cells = list(row)
                if fill:
                    for c in range(len(cells)):
                        if (r, c + 1) in fill:
                            cells[c] = fill[(r, c + 1)]
                texts = [clean_cell(v) for v in cells]
                if any(texts):
                    grid.append((r, texts))
            out.append(RawSheet(f"{path.name}#{name}" if multi else path.name, path, grid))
        return out
    finally:
        wb.close()


def decode_text(path: Path) -> str:
    data = path.read_bytes()
    for enc in CSV_ENCODINGS:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise UserError(f"{path}: cannot decode the text as UTF-8 or GBK/GB18030; save the sheet as 'CSV UTF-8'.")


def _read_delimited(path: Path) -> Iterator[tuple[int, list[str]]]:
    text = decode_text(path).lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_choose_delimiter(text, path))
    for n, row in enumerate(reader, 1):
        texts = [clean_cell(v) for v in row]
        if any(texts):
            yield n, texts


def _choose_delimiter(text: str, path: Path) -> str:
    """The delimiter under which a header row is recognised best; ties go to the sniffed one, then the default."""
    default = "\t" if path.suffix.lower() == ".tsv" else ","
    sniffed = default
    sample = text[:16384]
    with contextlib.suppress(csv.Error):
        sniffed = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    head = sample.splitlines()[:_HEADER_SCAN_ROWS]
    best, best_score = sniffed, -1
    for delim in dict.fromkeys((sniffed, default, ",", "\t", ";", "|")):
        try:
            rows = list(csv.reader(head, delimiter=delim))
        except csv.Error:
            continue
        score = max((sum(1 for c in row if norm_header(clean_cell(c)) in _ALIAS_TO_FIELD) for row in rows), default=0)
        if score > best_score:
            best, best_score = delim, score
    return best


# --------------------------------------------------------------------------- header + columns


def _resolve_override(value: str, headers: list[str]) -> int | None:
    target = norm_header(value)
    for i, h in enumerate(headers):
        if h and norm_header(h) == target:
            return i
    if re.fullmatch(r"[A-Za-z]{1,3}", value):
        idx = 0
        for ch in value.upper():
            idx = idx * 26 + (ord(ch) - 64)
        return idx - 1
    if value.isdigit() and int(value) >= 1:
        return int(value) - 1
    return None


def map_columns(headers: list[str], column_map: dict[str, str] | None = None, fuzzy: bool = True) -> dict[str, int]:
    """Field -> column index for one header row: overrides first, then exact aliases, then (if `fuzzy`)
    headers that contain an alias."""
    columns: dict[str, int] = {}
    for fld, value in (column_map or {}).items():
        idx = _resolve_override(value, headers)
        if idx is not None:
            columns[fld] = idx
    used = set(columns.values())
    normed = [norm_header(h) if h else "" for h in headers]
    for i, h in enumerate(normed):
        fld = _ALIAS_TO_FIELD.get(h)
        if fld and fld not in columns and i not in used:
            columns[fld] = i
            used.add(i)
    # Fallback, only on the chosen header row: a header that contains an alias ("短视频文件名称",
    # "video file (mp4)"). Longer aliases win.
    for fld in FIELDS:
        if not fuzzy or fld in columns:
            continue
        aliases = sorted((norm_header(a) for a in HEADER_ALIASES[fld]), key=len, reverse=True)
        for alias in aliases:
            if len(alias) < 2:
                continue
            hit = next((i for i, h in enumerate(normed) if h and i not in used and alias in h), None)
            if hit is not None:
                columns[fld] = hit
                used.add(hit)
                break
    return columns


def parse_sheet(raw: RawSheet, column_map: dict[str, str] | None = None) -> SheetTable:
    """Find the header row, map the columns, return the data rows. Raises MissingColumnError."""
    best: tuple[int, list[str], dict[str, int]] | None = None
    for r, cells in raw.grid[:_HEADER_SCAN_ROWS]:
        cols = map_columns(cells, column_map, fuzzy=False)
        if len(cols) >= 2:
            best = (r, cells, map_columns(cells, column_map))
            break
    if best is None:  # no row with two exact headers: take the first row where fuzzy matching finds two
        for r, cells in raw.grid[:_HEADER_SCAN_ROWS]:
            cols = map_columns(cells, column_map)
            if len(cols) >= 2:
                best = (r, cells, cols)
                break
    if best is None:
        first = raw.grid[0][1] if raw.grid else []
        raise MissingColumnError(raw.name, list(FIELDS), first, raw.grid[0][0] if raw.grid else None)
    header_row, headers, columns = best
    missing = [f for f in FIELDS if f not in columns]
    if missing:
        raise MissingColumnError(raw.name, missing, headers, header_row)
    table = SheetTable(raw.name, raw.path, header_row, headers, columns)
    for r, cells in raw.grid:
        if r <= header_row:
            continue

        def cell(fld: str, cells: list[str] = cells) -> str:
            i = columns[fld]
            return cells[i] if i < len(cells) else ""

        video, category, label = cell("video"), cell("category"), cell("label")
        if not (video or category or label):
            continue  # empty in the three columns that matter
        table.rows.append(SheetRow(raw.name, r, video, category, label))
    return table


def read_sheet_tables(
    path: str | Path, column_map: dict[str, str] | None = None, sheet_name: str | None = None
) -> list[SheetTable | MissingColumnError]:
    """Every sheet of a file (or the chosen one) as a SheetTable, or the MissingColumnError explaining why not."""
    out: list[SheetTable | MissingColumnError] = []
    for raw in read_raw_sheets(path, sheet_name):
        if not raw.grid:
            continue  # an empty sheet (e.g. an unused tab) is not an error
        try:
            out.append(parse_sheet(raw, column_map))
        except MissingColumnError as exc:
            out.append(exc)
    return out


def read_sheet(
    path: str | Path, column_map: dict[str, str] | None = None, sheet_name: str | None = None
) -> list[SheetRow]:
    """All data rows of a file; raises MissingColumnError for the first sheet that lacks a column."""
    rows: list[SheetRow] = []
    for t in read_sheet_tables(path, column_map, sheet_name):
        if isinstance(t, MissingColumnError):
            raise t
        rows.extend(t.rows)
    return rows
