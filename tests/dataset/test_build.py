import csv
import json
import shutil

import pytest

from vmeta.dataset.build import build_dataset
from vmeta.dataset.records import Dataset, ReviewStatus, Rewrite
from vmeta.jsonio import read_jsonl

LABEL_A = "本视频讲述了一只猫躺在沙发上。“躺平”出自网络流行语，其因为年轻人不想内卷，表达出了无奈与自嘲。"
LABEL_B = "本视频讲述了一个人排队。“内卷”出自教育领域，其因为竞争过度，表达出了讽刺。"
HEADERS = ["短视频文件名", "类别", "隐喻解释"]


def write_csv(path, rows, headers=HEADERS, encoding="utf-8"):
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh)
        if headers:
            w.writerow(headers)
        w.writerows(rows)
    return path


@pytest.fixture
def videos(tmp_path, clips_dir, bad_videos):
    d = tmp_path / "videos"
    (d / "sub").mkdir(parents=True)
    shutil.copy2(clips_dir / "portrait.mp4", d / "cat.mp4")
    shutil.copy2(clips_dir / "landscape.mp4", d / "Queue.MP4")
    shutil.copy2(clips_dir / "rotated.mp4", d / "sub" / "phone.mov")
    shutil.copy2(clips_dir / "landscape.mp4", d / "dance.mp4")
    shutil.copy2(clips_dir / "landscape.mp4", d / "twin.mp4")
    shutil.copy2(clips_dir / "landscape.mp4", d / "sub" / "twin.mkv")
    for kind in ("zero_byte", "not_video", "corrupt", "audio_only"):
        shutil.copy2(bad_videos[kind], d / f"{kind}.mp4")
    (d / "notes.txt").write_text("not indexed")
    return d


def rejects_by_row(out):
    return {r["row"]: r for r in read_jsonl(out / "rejects.jsonl")}


def test_valid_rows_and_every_reject_class(tmp_path, videos):
    sheet = write_csv(
        tmp_path / "s.csv",
        [
            ["cat.mp4", "自嘲幽默类", LABEL_A],  # 2 ok
            ["ｑｕｅｕｅ", "讽刺", LABEL_B],  # 3 ok: full-width, case, no extension, alias category
            ["phone", "生活态度类", "本视频讲述了手机。"],  # 4 ok: rotated, in a subfolder
            ["missing.mp4", "诙谐类", "x"],  # 5 missing_video
            ["zero_byte.mp4", "诙谐类", "x"],  # 6 unreadable zero_byte
            ["not_video", "诙谐类", "x"],  # 7 unreadable not_video
            ["corrupt.mp4", "诙谐类", "x"],  # 8 unreadable corrupt
            ["audio_only.mp4", "诙谐类", "x"],  # 9 unreadable audio_only
            ["cat.mp4", "怪异类", "x"],  # 10 unknown_category
            ["dance.mp4", "诙谐类", "   "],  # 11 empty_label
            ["dance.mp4", "诙谐类", "label one"],  # 12 conflicting_duplicate
            ["dance", "诙谐类", "label two"],  # 13 conflicting_duplicate
            ["twin", "诙谐类", "x"],  # 14 ambiguous_video (twin.mp4 and sub/twin.mkv)
            ["", "诙谐类", "x"],  # 15 missing_video (empty cell)
            ["cat.mp4", "自嘲幽默类", LABEL_A + " "],  # 16 same video, same label: merged, not rejected
            ["", "", ""],  # empty row: skipped silently
        ],
    )
    out = tmp_path / "ds"
    report = build_dataset([sheet], videos, out)
    assert report.rows_per_sheet == {"s.csv": 15}
    assert report.new == 3 and report.total_records == 3

    records = {r.id: r for r in Dataset(out).load()}
    assert set(records) == {"cat", "queue", "phone"}
    cat = records["cat"]
    assert cat.video == "../videos/cat.mp4" and (out / cat.video).exists()
    assert cat.category == "自嘲幽默类" and cat.raw_label == LABEL_A and cat.label == LABEL_A
    assert cat.conforms and cat.slots["concept"] == "躺平"
    assert (cat.source.sheet, cat.source.row) == ("s.csv", 2)
    assert cat.video_meta.readable and cat.video_meta.display_height == 1280 and cat.video_meta.has_audio
    assert records["queue"].category == "讽刺类" and records["queue"].video == "../videos/Queue.MP4"
    phone = records["phone"].video_meta
    assert (phone.rotation, phone.display_width, phone.display_height) == (90, 720, 1280)
    assert report.duplicates == [{"video": "cat.mp4", "kept": "s.csv:2", "also": ["s.csv:16"]}]

    rej = rejects_by_row(out)
    expected = {
        5: ("missing_video", None),
        6: ("unreadable_video", "zero_byte"),
        7: ("unreadable_video", "not_video"),
        8: ("unreadable_video", "corrupt"),
        9: ("unreadable_video", "audio_only"),
        10: ("unknown_category", None),
        11: ("empty_label", None),
        12: ("conflicting_duplicate", None),
        13: ("conflicting_duplicate", None),
        14: ("ambiguous_video", None),
        15: ("missing_video", None),
    }
    assert {row: (r["reason"], r.get("kind")) for row, r in rej.items()} == expected
    for row, r in rej.items():
        assert r["sheet"] == "s.csv"
        assert f"row {row}" in r["message"]  # every message names its row
    assert "讽刺类" in rej[10]["message"] and "自嘲幽默类" in rej[10]["message"]  # lists the accepted ones
    assert "s.csv:13" in rej[12]["message"] and "s.csv:12" in rej[13]["message"]  # names the other rows
    assert "twin.mp4" in rej[14]["message"] and "sub/twin.mkv" in rej[14]["message"]
    assert "re-export" in rej[8]["message"]
    assert report.rejected_by_reason()["unreadable_video"] == 4


def test_missing_column_rejects_the_sheet_but_others_come_through(tmp_path, videos):
    good = write_csv(tmp_path / "good.csv", [["cat", "诙谐类", LABEL_A]])
    bad = write_csv(tmp_path / "bad.csv", [["queue", LABEL_B]], headers=["视频文件名", "隐喻解释"])
    out = tmp_path / "ds"
    report = build_dataset([good, bad], videos, out)
    assert report.new == 1
    (rej,) = read_jsonl(out / "rejects.jsonl")
    assert rej["sheet"] == "bad.csv" and rej["reason"] == "missing_column" and rej["row"] == 1
    assert "--column category=" in rej["message"] and "视频文件名" in rej["message"]


def test_xlsx_title_row_merged_cells_and_fullwidth_names(tmp_path, videos):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["短视频隐喻标注表（第一批）"])
    ws.merge_cells("A1:C1")
    ws.append(HEADERS)
    ws.append(["ＣＡＴ．ＭＰ４ ", "诙谐类", LABEL_A])  # full-width letters and dot, trailing space
    ws.append(["queue.mp4", None, LABEL_B])  # category merged from the row above
    ws.merge_cells("B3:B4")
    wb.save(tmp_path / "s.xlsx")
    out = tmp_path / "ds"
    report = build_dataset([tmp_path / "s.xlsx"], videos, out)
    assert report.rejects == []
    recs = {r.id: r for r in Dataset(out).load()}
    assert recs["cat"].source.row == 3 and recs["queue"].source.row == 4
    assert recs["queue"].category == "诙谐类"


def test_gbk_csv_and_english_headers_and_override(tmp_path, videos):
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(("短视频文件名,类别,隐喻解释\ncat.mp4,诙谐类," + LABEL_A + "\n").encode("gbk"))
    eng = write_csv(tmp_path / "en.csv", [["queue", "satire", LABEL_B]], headers=["File", "Category", "Explanation"])
    odd = write_csv(tmp_path / "odd.csv", [["phone", "硬核类", "x"]], headers=["片名", "类别", "备注"])
    out = tmp_path / "ds"
    report = build_dataset([gbk, eng, odd], videos, out, column_map={"video": "片名", "label": "备注"})
    assert report.rejects == [] and report.new == 3


def test_rerun_merges_flags_and_keeps_reviewed_work(tmp_path, videos):
    out = tmp_path / "ds"
    first = write_csv(
        tmp_path / "batch1.csv",
        [["cat", "诙谐类", LABEL_A], ["queue", "讽刺类", LABEL_B], ["phone", "硬核类", "old phone label"]],
    )
    build_dataset([first], videos, out)
    ds = Dataset(out)

    def review(records):
        for r in records:
            if r.id == "cat":
                r.review.status = ReviewStatus.edited
                r.set_label("reviewed text", "review")
            if r.id == "queue":
                r.rewrite = Rewrite(model="m", text="rewritten")
                r.set_label("rewritten", "rewrite")

    ds.update(review)

    second = write_csv(
        tmp_path / "batch1.csv",
        [
            ["cat", "诙谐类", "a new raw label"],  # reviewed: label kept, flagged
            ["queue", "自嘲幽默类", LABEL_B],  # rewritten, category changed: kept, flagged
            ["phone", "硬核类", "new phone label"],  # pending: replaced
            ["dance", "诙谐类", "a new video"],  # new
        ],
    )
    report = build_dataset([second], videos, out)
    assert (report.new, report.updated, report.flagged, report.unchanged) == (1, 1, 2, 0)
    recs = {r.id: r for r in ds.load()}
    cat = recs["cat"]
    assert cat.label == "reviewed text" and cat.raw_label == "a new raw label"
    assert cat.review.status == ReviewStatus.edited and "raw_label_changed" in cat.flags
    assert cat.history[-1]["raw_label"] == LABEL_A
    queue = recs["queue"]
    assert queue.category == "讽刺类" and "category_changed" in queue.flags and queue.label == "rewritten"
    assert queue.history[-1]["sheet_category"] == "自嘲幽默类"
    assert recs["phone"].label == "new phone label" and recs["phone"].raw_label == "new phone label"
    assert recs["phone"].history[-1]["raw_label"] == "old phone label" and not recs["phone"].flags
    assert recs["dance"].label == "a new video"

    # a third run with only another sheet keeps every record, and an identical re-run changes nothing
    other = write_csv(tmp_path / "batch2.csv", [["twin.mp4", "诙谐类", "twin label"]])
    report = build_dataset([other], videos, out)
    assert report.new == 1 and report.total_records == 5
    report = build_dataset([second], videos, out)
    assert (report.new, report.updated, report.flagged, report.unchanged) == (0, 0, 0, 4)
    assert report.probes_run == 0 and report.cache_hits == 4
    assert {r.id for r in ds.load()} == {"cat", "queue", "phone", "dance", "twin"}
    assert ds.load()[0].label == "reviewed text"
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["records"] == 5 and len(manifest["builds"]) == 4 and manifest["videos_dir"] == str(videos)


def test_rejects_of_sheets_not_rebuilt_are_kept(tmp_path, videos):
    out = tmp_path / "ds"
    a = write_csv(tmp_path / "a.csv", [["nope", "诙谐类", "x"], ["cat", "诙谐类", "y"]])
    b = write_csv(tmp_path / "b.csv", [["nope2", "诙谐类", "x"], ["queue", "诙谐类", "y"]])
    build_dataset([a], videos, out)
    build_dataset([b], videos, out)
    assert sorted((r["sheet"], r["row"]) for r in read_jsonl(out / "rejects.jsonl")) == [("a.csv", 2), ("b.csv", 2)]
    build_dataset([a], videos, out)
    assert sorted((r["sheet"], r["row"]) for r in read_jsonl(out / "rejects.jsonl")) == [("a.csv", 2), ("b.csv", 2)]


def test_same_stem_different_files_get_distinct_ids(tmp_path, videos):
    out = tmp_path / "ds"
    s = write_csv(tmp_path / "s.csv", [["twin.mp4", "诙谐类", "x"], ["sub/twin.mkv", "诙谐类", "y"]])
    build_dataset([s], videos, out)
    # "sub/twin.mkv" is matched by its file name twin.mkv (unique), the ids stay distinct and stable
    first = {r.id: r.video for r in Dataset(out).load()}
    assert first == {"twin": "../videos/twin.mp4", "sub/twin.mkv": "../videos/sub/twin.mkv"}
    build_dataset([s], videos, out)
    assert {r.id: r.video for r in Dataset(out).load()} == first


def test_mpeg_ts_videos_are_matched_probed_and_sampled(tmp_path, videos):
    """Stream recordings come as .ts: found by stem, probed, and their frames decode (the seek steps back)."""
    from vmeta.testing.media import make_clip
    from vmeta.video.decode import load_video
    from vmeta.video.sampling import FrameSettings

    make_clip(videos / "stream.ts", 160, 96, 30, 2.0, gop=20)
    out = tmp_path / "ds"
    build_dataset([write_csv(tmp_path / "s.csv", [["stream", "诙谐类", LABEL_A]])], videos, out)
    (rec,) = Dataset(out).load()
    assert rec.video == "../videos/stream.ts"
    v = load_video(videos / "stream.ts", FrameSettings(nframes=4))
    assert v.indices == [0, 20, 39, 59] and v.frames.shape[0] == 4


def test_no_sheets_or_missing_videos_dir(tmp_path, videos):
    from vmeta.errors import UserError

    with pytest.raises(UserError, match="no sheet"):
        build_dataset([], videos, tmp_path / "ds")
    s = write_csv(tmp_path / "s.csv", [["cat", "诙谐类", "x"]])
    with pytest.raises(UserError, match="--videos"):
        build_dataset([s], tmp_path / "nope", tmp_path / "ds")


# --------------------------------------------------------------------------- CLI


def test_cli_end_to_end(tmp_path, videos):
    from typer.testing import CliRunner

    from vmeta.cli import app

    s = write_csv(tmp_path / "s.csv", [["cat", "诙谐类", LABEL_A], ["missing", "诙谐类", "x"], ["queue", "怪类", "y"]])
    out = tmp_path / "ds"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", str(s), "--videos", str(videos), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "s.csv:3 — missing — missing_video" in text
    assert "s.csv:4 — queue — unknown_category" in text
    assert "rejects.jsonl" in text and "new records" in text
    assert len(Dataset(out).load()) == 1

    result = runner.invoke(app, ["data", "build", str(s), "--videos", str(videos), "--out", str(out), "--strict"])
    assert result.exit_code == 1
    assert "unchanged" in result.output

    only_bad = write_csv(tmp_path / "bad.csv", [["missing", "诙谐类", "x"]])
    result = runner.invoke(
        app, ["data", "build", str(only_bad), "--videos", str(videos), "--out", str(tmp_path / "ds2")]
    )
    assert result.exit_code == 1

    odd = write_csv(tmp_path / "odd.csv", [["cat", "诙谐类", "x"]], headers=["片名", "类别", "备注"])
    result = runner.invoke(
        app,
        [
            "data",
            "build",
            str(odd),
            "--videos",
            str(videos),
            "--out",
            str(tmp_path / "ds3"),
            "--column",
            "video=片名",
            "--column",
            "label=备注",
        ],
    )
    assert result.exit_code == 0, result.output


def test_cli_subprocess_user_error(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmeta",
            "data",
            "build",
            str(tmp_path / "nope.csv"),
            "--videos",
            str(tmp_path),
            "--out",
            str(tmp_path / "ds"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "nope.csv" in proc.stderr and "not found" in proc.stderr


def test_unsupported_sheet_refused_up_front_exit_2_nothing_created(tmp_path, videos):
    """A .txt (notes, not a sheet) is refused before anything is read: exit 2, no dataset folder left behind."""
    import subprocess
    import sys

    from vmeta.errors import UserError

    notes = tmp_path / "notes.txt"
    notes.write_text("video,category,label\ncat,诙谐类,x\n", encoding="utf-8")
    good = write_csv(tmp_path / "s.csv", [["cat", "诙谐类", LABEL_A]])
    out = tmp_path / "ds"
    with pytest.raises(UserError, match=r"notes\.txt.*\.csv"):
        build_dataset([good, notes], videos, out)  # the good sheet first: still nothing written
    assert not out.exists()
    proc = subprocess.run(
        [sys.executable, "-m", "vmeta", "data", "build", str(notes), "--videos", str(videos), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "notes.txt" in proc.stderr and not out.exists()


def test_build_without_a_valid_row_removes_the_folder_it_created(tmp_path, videos):
    from typer.testing import CliRunner

    from vmeta.cli import app

    bad = write_csv(tmp_path / "bad.csv", [["missing", "诙谐类", "x"]])
    out = tmp_path / "new" / "ds"
    result = CliRunner().invoke(app, ["data", "build", str(bad), "--videos", str(videos), "--out", str(out)])
    assert result.exit_code == 1
    assert "missing_video" in result.output and "nothing was written" in " ".join(result.output.split())
    assert not out.exists()
    # an existing dataset folder is kept (its rejects.jsonl records the failed rows)
    good = write_csv(tmp_path / "s.csv", [["cat", "诙谐类", LABEL_A]])
    assert build_dataset([good], videos, out).kept
    report = build_dataset([bad], videos, out)
    assert report.kept and report.valid == 0 and rejects_by_row(out)[2]["reason"] == "missing_video"


def test_shipped_sample_builds_with_three_rejects(tmp_path):
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "examples" / "sample"
    if not (sample / "sheet.xlsx").exists():
        pytest.skip("examples/sample not present")
    for sheet in ("sheet.xlsx", "sheet.csv"):
        out = tmp_path / sheet
        report = build_dataset([sample / sheet], sample / "videos", out)
        assert report.new == 10 and len(Dataset(out).load()) == 10
        assert {r.category for r in Dataset(out).load()} == {"讽刺类", "诙谐类", "生活态度类", "硬核类", "自嘲幽默类"}
        assert [(r.row, r.reason) for r in report.rejects] == [
            (13, "missing_video"),
            (14, "unknown_category"),
            (15, "empty_label"),
        ]


def test_symlinked_folders_followed_without_looping(tmp_path, videos):
    (videos / "sub" / "loop").symlink_to(videos, target_is_directory=True)
    s = write_csv(tmp_path / "s.csv", [["cat", "诙谐类", "x"]])
    report = build_dataset([s], videos, tmp_path / "ds")
    assert report.new == 1 and report.rejects == []
