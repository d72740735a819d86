import pytest

from vmeta.dataset.sheets import (
    MissingColumnError,
    clean_cell,
    parse_column_map,
    read_sheet,
    read_sheet_tables,
)
from vmeta.errors import UserError

openpyxl = pytest.importorskip("openpyxl")

HEADERS = ["短视频文件名", "类别", "隐喻解释"]


def write_xlsx(path, rows, merges=(), title=None, sheets=None):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title or "Sheet1"
    for row in rows:
        ws.append(row)
    for rng in merges:
        ws.merge_cells(rng)
    for name, extra_rows in (sheets or {}).items():
        other = wb.create_sheet(name)
        for row in extra_rows:
            other.append(row)
    wb.save(path)
    return path


def test_xlsx_chinese_headers_and_row_numbers(tmp_path):
    p = write_xlsx(
        tmp_path / "s.xlsx", [HEADERS, ["a.mp4", "诙谐类", "标签一"], [None, None, None], ["b", "讽刺类", "标签二"]]
    )
    rows = read_sheet(p)
    assert [(r.sheet, r.row, r.video, r.category, r.label) for r in rows] == [
        ("s.xlsx", 2, "a.mp4", "诙谐类", "标签一"),
        ("s.xlsx", 4, "b", "讽刺类", "标签二"),  # the empty row 3 is skipped, numbering follows the sheet
    ]


def test_title_row_above_header(tmp_path):
    p = write_xlsx(
        tmp_path / "s.xlsx",
        [["表3.1 短视频隐喻数据集示例"], [], HEADERS, ["a", "诙谐类", "x"]],
        merges=["A1:C1"],
    )
    (table,) = read_sheet_tables(p)
    assert table.header_row == 3
    assert [(r.row, r.video) for r in table.rows] == [(4, "a")]


def test_merged_cells_fill_with_top_left_value(tmp_path):
    p = write_xlsx(
        tmp_path / "s.xlsx",
        [HEADERS, ["a", "诙谐类", "x"], ["b", None, "y"], ["c", None, "z"]],
        merges=["B2:B4"],
    )
    assert [r.category for r in read_sheet(p)] == ["诙谐类"] * 3


def test_every_sheet_or_a_chosen_one(tmp_path):
    p = write_xlsx(
        tmp_path / "s.xlsx",
        [HEADERS, ["a", "诙谐类", "x"]],
        title="第一批",
        sheets={"第二批": [HEADERS, ["b", "硬核类", "y"]], "说明": []},
    )
    rows = read_sheet(p)
    assert [(r.sheet, r.video) for r in rows] == [("s.xlsx#第一批", "a"), ("s.xlsx#第二批", "b")]
    assert [r.video for r in read_sheet(p, sheet_name="第二批")] == ["b"]
    with pytest.raises(UserError, match="no sheet named"):
        read_sheet(p, sheet_name="nope")


def test_csv_with_bom(tmp_path):
    p = tmp_path / "s.csv"
    p.write_bytes("\ufeff短视频文件名,类别,隐喻解释\na.mp4,诙谐类,标签\n".encode())
    (row,) = read_sheet(p)
    assert (row.row, row.video, row.label) == (2, "a.mp4", "标签")


def test_csv_gbk_encoded(tmp_path):
    p = tmp_path / "s.csv"
    p.write_bytes("短视频文件名,类别,隐喻解释\n视频一.mp4,生活态度类,躺平出自网络\n".encode("gbk"))
    (row,) = read_sheet(p)
    assert (row.video, row.category, row.label) == ("视频一.mp4", "生活态度类", "躺平出自网络")


def test_tsv_and_semicolon_sniffed(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_text("video\tcategory\tlabel\na\thumor\tx, y\n", encoding="utf-8")
    assert [(r.video, r.label) for r in read_sheet(p)] == [("a", "x, y")]
    q = tmp_path / "s2.csv"
    q.write_text("video;category;label\na;humor;x, y\nb;satire;z\n", encoding="utf-8")
    assert [(r.video, r.label) for r in read_sheet(q)] == [("a", "x, y"), ("b", "z")]


def test_trailing_spaces_and_nbsp_trimmed_text_kept(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("短视频文件名 ,类别\u00a0,隐喻解释\n a.mp4\u00a0 ,诙谐类 , 本视频讲述了ＡＢＣ。 \n", encoding="utf-8")
    (row,) = read_sheet(p)
    assert (row.video, row.category, row.label) == ("a.mp4", "诙谐类", "本视频讲述了ＡＢＣ。")  # width kept as written


def test_english_headers(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("Title: batch 1,,\nFile Name,Type,Explanation\na,humor,x\n", encoding="utf-8")
    (table,) = read_sheet_tables(p)
    assert table.header_row == 2
    assert [(r.row, r.video, r.category, r.label) for r in table.rows] == [(3, "a", "humor", "x")]


def test_column_override_by_header_and_letter(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("编号,片名,类别,标注内容\n1,a.mp4,诙谐类,x\n", encoding="utf-8")
    with pytest.raises(MissingColumnError):
        read_sheet(p)
    rows = read_sheet(p, column_map=parse_column_map(["video=片名", "label=标注内容"]))
    assert [(r.video, r.label) for r in rows] == [("a.mp4", "x")]
    rows = read_sheet(p, column_map=parse_column_map(["video=B", "label=D"]))
    assert [(r.video, r.label) for r in rows] == [("a.mp4", "x")]


def test_missing_column_names_sheet_headers_and_flag(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("短视频文件名,隐喻解释\na,x\n", encoding="utf-8")
    with pytest.raises(MissingColumnError) as info:
        read_sheet(p)
    msg = str(info.value)
    assert "s.csv" in msg and "category" in msg and "'短视频文件名'" in msg and "--column category=" in msg
    assert info.value.missing == ["category"]


def test_bad_column_flag():
    with pytest.raises(UserError, match="FIELD=HEADER"):
        parse_column_map(["video"])
    with pytest.raises(UserError):
        parse_column_map(["colour=x"])


def test_numbers_in_cells():
    assert clean_cell(123.0) == "123"
    assert clean_cell(None) == ""
    assert clean_cell("\u200b a \u3000") == "a"


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_sheet(tmp_path / "nope.csv")
    (tmp_path / "s.xls").write_bytes(b"x")
    with pytest.raises(UserError, match=r"save as \.xlsx"):
        read_sheet(tmp_path / "s.xls")


def test_delimiter_chosen_by_the_header_not_fooled_by_label_text(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("短视频文件名,类别,隐喻解释\na,诙谐类,x; y; z\nb,讽刺类,p; q; r\n", encoding="utf-8")
    assert [(r.video, r.label) for r in read_sheet(p)] == [("a", "x; y; z"), ("b", "p; q; r")]
