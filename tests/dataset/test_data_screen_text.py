"""On-screen text in the dataset stage (issue #15): `vmeta data build --screen-text`, `vmeta data screen-text`,
its numbers in `vmeta data stats`, and `vmeta data export --context screen_text`.

Clips are short 360x640 videos with burned-in Chinese captions over a still picture, read by the real rapidocr
(a still picture is OCR'd once per caption change, so the OCR calls per video are known exactly)."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import pytest
from typer.testing import CliRunner

from vmeta.dataset.build import build_dataset
from vmeta.dataset.records import Dataset, Record, ScreenTextInfo, SourceRef
from vmeta.errors import UserError
from vmeta.testing.captions import Caption, cer, make_caption_clip, require_cjk_font
from vmeta.testing.needs import require_ocr
from vmeta.video.meta import VideoMeta

runner = CliRunner()

CAPTIONS = [
    Caption("作者配文阴阳两隔", 0.0, 2.0, size=30, x=0.06, y=0.75),
    Caption("上班第一天", 2.0, 3.0, size=30, x=0.06, y=0.15),
]
LABEL = "本视频讲述了一只猫躺在沙发上。“躺平”出自网络流行语，其因为年轻人不想内卷，表达出了无奈与自嘲。"
FPS1 = {"fps": 1.0}


class Counting:
    """The real engine, counting detections; `stop_at` raises KeyboardInterrupt on that detection (Ctrl-C),
    `on_detect(n)` runs before detection n (a reviewer working meanwhile)."""

    def __init__(self, stop_at: int | None = None, on_detect=None) -> None:
        from vmeta.video.ocr_engine import default_engine

        self.inner = default_engine()
        self.detect_calls = 0
        self.recognize_calls = 0
        self.stop_at = stop_at
        self.on_detect = on_detect

    def detect(self, image):
        self.detect_calls += 1
        if self.on_detect:
            self.on_detect(self.detect_calls)
        if self.stop_at is not None and self.detect_calls >= self.stop_at:
            raise KeyboardInterrupt
        return self.inner.detect(image)

    def crop(self, image, quad):
        return self.inner.crop(image, quad)

    def recognize(self, crops):
        self.recognize_calls += 1
        return self.inner.recognize(crops)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    require_ocr()
    font = require_cjk_font()
    d = tmp_path_factory.mktemp("st_clips")
    kw = dict(width=360, height=640, fps=5, moving_background=False, font=font)
    return {
        "caption": make_caption_clip(d / "caption.mp4", CAPTIONS, 3.0, **kw),  # 3 frames at 1 fps, 2 pictures
        "blank": make_caption_clip(d / "blank.mp4", [], 2.0, **kw),  # 2 frames, 1 picture
    }


def write_sheet(path, names):
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["短视频文件名", "类别", "隐喻解释"])
        for n in names:
            w.writerow([n, "自嘲幽默类", LABEL])
    return path


def make_dataset(tmp_path, clips, layout: dict[str, str]) -> Dataset:
    """A built dataset (no OCR yet) whose videos are copies: record id -> clip kind."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for rid, kind in layout.items():
        shutil.copy2(clips[kind], videos / f"{rid}.mp4")
    sheet = write_sheet(tmp_path / "s.csv", [f"{rid}.mp4" for rid in layout])
    out = tmp_path / "ds"
    report = build_dataset([sheet], videos, out)
    assert report.new == len(layout), report.rejects
    return Dataset(out)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """The OCR cache of the CLI (VMETA_CACHE_DIR) in this test's folder."""
    from vmeta.config import get_settings

    monkeypatch.setenv("VMETA_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    yield tmp_path / "cache"
    get_settings.cache_clear()


def by_id(ds: Dataset) -> dict[str, Record]:
    return {r.id: r for r in ds.load()}


# ---------------------------------------------------------------------------------------------- reading


def test_build_with_screen_text_stores_each_records_text(tmp_path, clips, cache_dir):
    from vmeta.cli import app

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy2(clips["caption"], videos / "cat.mp4")
    shutil.copy2(clips["blank"], videos / "plain.mp4")
    sheet = write_sheet(tmp_path / "s.csv", ["cat.mp4", "plain.mp4"])
    out = tmp_path / "ds"
    res = runner.invoke(app, ["data", "build", str(sheet), "--videos", str(videos), "--out", str(out), "--screen-text"])
    assert res.exit_code == 0, res.output
    records = by_id(Dataset(out))
    cat, plain = records["cat"].screen_text, records["plain"].screen_text
    assert cat is not None and plain is not None
    lines = cat.text.split("\n")
    assert len(lines) == 2 and cer(CAPTIONS[0].text, lines[0]) <= 0.15 and cer(CAPTIONS[1].text, lines[1]) <= 0.15
    first, second = cat.lines  # times of the sampled frames (0, 1.4, 2.8 s) that showed each caption
    assert first["start"] == 0.0 and 1.0 <= first["end"] < 2.0 and 2.0 <= second["start"] == second["end"] <= 3.0
    assert set(cat.lines[0]) == {"text", "start", "end"}
    assert cat.settings["fps"] == 1.0 and cat.at
    assert plain.text == "" and plain.lines == []  # no text is an answer, not an error
    # the summary, and progress as lines (the output is not a terminal)
    assert "reading on-screen text: 2/2" in res.output
    rows = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in res.output.splitlines() if ln.count("│") == 3}
    assert rows["videos read"] == "2" and rows["with text"] == "1" and rows["failed"] == "0", res.output
    assert list(cache_dir.joinpath("screen_text").rglob("*.json")), "read through the OCR cache"

    # the standalone command: everything is done already
    res = runner.invoke(app, ["data", "screen-text", str(out)])
    assert res.exit_code == 0, res.output
    rows = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in res.output.splitlines() if ln.count("│") == 3}
    assert rows["videos read"] == "0" and rows["skipped: already read with these settings"] == "2", res.output


def test_broken_video_warns_keeps_its_record_and_is_retried(tmp_path, clips):
    from vmeta.dataset.screen_text import add_screen_text

    ds = make_dataset(tmp_path, clips, {"a": "caption", "b": "blank", "c": "blank"})
    broken = tmp_path / "videos" / "b.mp4"
    good = broken.read_bytes()
    broken.write_bytes(good[:600])  # truncated after the build probed it
    rejects = ds.rejects_path.read_bytes()
    warned = []
    report = add_screen_text(ds, cache=False, warn=warned.append)
    assert report.read == 2 and report.failed == 1 and report.missing == 1
    [failure] = report.failures
    assert warned == [failure] and failure.id == "b" and failure.video.endswith("b.mp4") and failure.reason
    assert not failure.reason.startswith(str(broken))  # the file is named once, by the failure
    records = by_id(ds)
    assert set(records) == {"a", "b", "c"} and records["b"].screen_text is None
    assert records["c"].screen_text is not None and ds.rejects_path.read_bytes() == rejects  # no reject

    broken.write_bytes(good)  # fixed: the next run reads only it
    engine = Counting()
    again = add_screen_text(ds, cache=False, engine=engine)
    assert (again.selected, again.read, again.skipped_done, again.failed) == (1, 1, 2, 0)
    assert engine.detect_calls == 1  # one still picture
    assert by_id(ds)["b"].screen_text.text == ""


def test_cli_warning_names_record_file_and_reason(tmp_path, clips, cache_dir):
    from vmeta.cli import app

    ds = make_dataset(tmp_path, clips, {"a": "blank", "bad": "blank"})
    (tmp_path / "videos" / "bad.mp4").write_bytes(b"not a video any more")
    res = runner.invoke(app, ["data", "screen-text", str(ds.root)])
    assert res.exit_code == 0, res.output
    warning = next(ln for ln in res.output.splitlines() if ln.startswith("warning:"))
    assert "record bad (" in warning and "bad.mp4" in warning and "kept" in warning, warning
    assert "1 video(s) could not be read" in res.output


def test_interrupted_run_resumes_without_reading_done_videos_again(tmp_path, clips):
    from vmeta.dataset.screen_text import add_screen_text

    ds = make_dataset(tmp_path, clips, {f"v{i}": "caption" for i in range(4)})  # 2 detections per video
    with pytest.raises(KeyboardInterrupt):
        add_screen_text(ds, cache=False, engine=Counting(stop_at=5))  # Ctrl-C while reading the third video
    records = by_id(ds)
    assert [rid for rid, r in sorted(records.items()) if r.screen_text is not None] == ["v0", "v1"]

    engine = Counting()
    report = add_screen_text(ds, cache=False, engine=engine)
    assert (report.skipped_done, report.read) == (2, 2)
    assert engine.detect_calls == 4  # v2 and v3 only; reading all four would take 8
    assert all(r.screen_text is not None and "上班" in r.screen_text.text for r in by_id(ds).values())


def test_batches_are_saved_as_they_go(tmp_path, clips, monkeypatch):
    from vmeta.dataset.screen_text import add_screen_text

    ds = make_dataset(tmp_path, clips, {f"v{i}": "blank" for i in range(5)})
    saves = []
    real_update = Dataset.update

    def counting_update(self, fn):
        saves.append(1)
        return real_update(self, fn)

    monkeypatch.setattr(Dataset, "update", counting_update)
    report = add_screen_text(ds, cache=False, engine=Counting(), save_every=2)
    assert report.read == 5 and len(saves) == 3  # 2 + 2 + the last one


def test_label_edited_on_the_review_page_meanwhile_survives(tmp_path, clips):
    from vmeta.dataset.review import decide
    from vmeta.dataset.screen_text import add_screen_text

    ds = make_dataset(tmp_path, clips, {"a": "blank", "b": "blank", "c": "blank"})
    edited = LABEL.replace("沙发", "床")

    def reviewer(n: int) -> None:
        if n == 2:  # while the second video is read, after `a` was read, before anything is saved
            decide(ds, "a", "edit", text=edited, reviewer="tester")

    report = add_screen_text(ds, cache=False, engine=Counting(on_detect=reviewer))
    assert report.read == 3
    a = by_id(ds)["a"]
    assert a.label == edited and a.review.status == "edited" and a.review.reviewer == "tester"
    assert a.screen_text is not None and a.screen_text.text == ""


def test_other_settings_read_again_redo_reads_all(tmp_path, clips):
    from vmeta.dataset.screen_text import add_screen_text
    from vmeta.video.screen_text import ScreenTextSettings

    ds = make_dataset(tmp_path, clips, {"a": "blank", "b": "blank"})
    add_screen_text(ds, cache=False, engine=Counting())
    engine = Counting()
    same = add_screen_text(ds, ScreenTextSettings(fps=1.0), cache=False, engine=engine)
    assert (same.selected, same.skipped_done, engine.detect_calls) == (0, 2, 0)
    engine = Counting()
    other = add_screen_text(ds, ScreenTextSettings(fps=2.0), cache=False, engine=engine)
    assert other.read == 2 and engine.detect_calls == 2
    assert {r.screen_text.settings["fps"] for r in ds.load()} == {2.0}
    engine = Counting()
    redo = add_screen_text(ds, ScreenTextSettings(fps=2.0), redo=True, cache=False, engine=engine)
    assert redo.read == 2 and redo.skipped_done == 0 and engine.detect_calls == 2


def test_missing_ocr_extra_stops_before_any_work(tmp_path, clips, monkeypatch, cache_dir):
    from vmeta.cli import app
    from vmeta.dataset.screen_text import add_screen_text
    from vmeta.video import ocr_engine

    ds = make_dataset(tmp_path, clips, {"a": "blank"})
    before = ds.records_path.read_bytes()
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # import fails as if not installed
    monkeypatch.setattr(ocr_engine, "_ENGINES", {})
    with pytest.raises(UserError, match=r"vmeta\[ocr\]"):
        add_screen_text(ds, cache=False)
    assert ds.records_path.read_bytes() == before
    sheet = write_sheet(tmp_path / "t.csv", ["a.mp4"])
    out = tmp_path / "new"
    res = runner.invoke(
        app, ["data", "build", str(sheet), "--videos", str(tmp_path / "videos"), "--out", str(out), "--screen-text"]
    )
    assert isinstance(res.exception, UserError) and "vmeta[ocr]" in str(res.exception)
    assert not out.exists()  # not built first and failed after
    res = runner.invoke(
        app, ["data", "build", str(sheet), "--videos", ".", "--out", str(out), "--screen-text-fps", "2"]
    )
    assert isinstance(res.exception, UserError) and "--screen-text" in str(res.exception)
    res = runner.invoke(app, ["data", "screen-text", str(ds.root), "--fps", "0"])
    assert isinstance(res.exception, UserError) and "--fps" in str(res.exception)


# ---------------------------------------------------------------------------------------------- stats, export


def record(rid: str, text: str | None, *, split: str | None = None) -> Record:
    r = Record(
        id=rid,
        video=f"videos/{rid}.mp4",
        category="诙谐类",
        raw_label=LABEL,
        label=LABEL,
        source=SourceRef(sheet="s.csv", row=2),
        video_meta=VideoMeta(readable=True),
        split=split,
    )
    if text is not None:
        r.screen_text = ScreenTextInfo(
            text=text, lines=[{"text": t, "start": 0.0, "end": 1.0} for t in text.splitlines()], settings=FPS1
        )
    return r


def stored(root, texts: dict[str, str | None]) -> Dataset:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for rid in texts:
        (root / "videos" / f"{rid}.mp4").write_bytes(b"\x00")
    ds = Dataset(root)
    ds.save([record(rid, t) for rid, t in texts.items()])
    return ds


def test_stats_count_videos_with_text_and_its_length(tmp_path):
    from vmeta.dataset.stats import compute_stats
    from vmeta.dataset.stats_report import report_sections, write_report

    long_text = "字" * 250
    ds = stored(
        tmp_path / "ds",
        {"a": "第一行\n第二行字", "b": "一二三四五", "c": "", "d": long_text, "e": None},
    )
    st = compute_stats(ds)["screen_text"]
    assert (st["read"], st["not_read"], st["with_text"]) == (4, 1, 3)
    assert st["share"] == 0.75
    assert st["length"]["n"] == 3 and st["length"]["min"] == 5 and st["length"]["median"] == 7
    assert st["length"]["max"] == 250 and st["length"]["mean"] == round((7 + 5 + 250) / 3, 3)
    assert st["over_prompt_limit"] == 1 and st["prompt_limit"] == 200
    assert st["fps"] == {"1.0": 4}
    [(_, _, rows, _)] = [s for s in report_sections(compute_stats(ds)) if s[0] == "On-screen text"]
    table = dict(rows)
    assert table["videos read / not read yet"] == "4 / 1"
    assert table["with text (share of read)"] == "3 (75.0%)"
    assert table["characters (min / median / mean / p90 / max)"].startswith("5 / 7 / 87.3 / ")
    paths = write_report(compute_stats(ds), tmp_path / "report")
    md = paths["md"].read_text(encoding="utf-8")
    assert "## On-screen text" in md and "| with text (share of read) | 3 (75.0%) |" in md
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["screen_text"]["with_text"] == 3


def test_stats_of_a_dataset_never_read(tmp_path):
    from vmeta.dataset.stats import compute_stats

    st = compute_stats(stored(tmp_path / "ds", {"a": None, "b": None}))["screen_text"]
    assert (st["read"], st["not_read"], st["with_text"], st["share"], st["length"]["n"]) == (0, 2, 0, None, 0)


def test_export_puts_the_block_before_the_instruction(tmp_path):
    from vmeta.dataset.context import ContextSettings
    from vmeta.dataset.prompts import DEFAULT_PROMPT
    from vmeta.dataset.sharegpt import export_sharegpt
    from vmeta.dataset.sharegpt_import import import_sharegpt

    ds = stored(tmp_path / "ds", {"a": "作者配文：阴阳两隔\n上班第一天", "b": ""})
    out = tmp_path / "exp"
    rep = export_sharegpt(ds, out, context=ContextSettings(kinds=("screen_text",)))
    samples = {s["videos"][0].rsplit("/", 1)[-1]: s for s in json.loads((out / "all.json").read_text("utf-8"))}
    user_a = samples["a.mp4"]["messages"][0]["content"]
    assert user_a == f"<video>画面文字：作者配文：阴阳两隔 / 上班第一天\n{DEFAULT_PROMPT}"
    assert samples["b.mp4"]["messages"][0]["content"] == f"<video>{DEFAULT_PROMPT}"  # no text, no block
    manifest = json.loads((out / "vmeta_export.json").read_text("utf-8"))
    assert manifest["context"] == {"kinds": ["screen_text"], "max_chars": 200, "screen_text": {}}
    assert manifest["screen_text_settings"] == [FPS1]
    assert rep.context == manifest["context"] and rep.warnings == []
    assert ContextSettings.from_dict(manifest["context"]).kinds == ("screen_text",)  # a run can take it as is

    # a prompt that already starts with the video token, and a shorter limit
    export_sharegpt(ds, out, prompt="<video>说说隐喻。", context=ContextSettings(kinds=("screen_text",), max_chars=10))
    first = json.loads((out / "all.json").read_text("utf-8"))[0]["messages"][0]["content"]
    assert first.startswith("<video>画面文字：") and first.endswith("…\n说说隐喻。") and first.count("<video>") == 1

    # without --context the export is as before
    export_sharegpt(ds, out)
    assert json.loads((out / "all.json").read_text("utf-8"))[0]["messages"][0]["content"] == f"<video>{DEFAULT_PROMPT}"
    assert json.loads((out / "vmeta_export.json").read_text("utf-8"))["context"] is None

    # importing a context export reads the labels back and leaves the prompt alone
    export_sharegpt(ds, out, context=ContextSettings(kinds=("screen_text",)))
    back = import_sharegpt(out / "all.json", Dataset(tmp_path / "back"), category="诙谐类", probe_videos=False)
    assert back.counts["added"] == 2 and back.skipped == []
    assert {r.label for r in Dataset(tmp_path / "back").load()} == {LABEL}


def test_export_refuses_records_without_text_before_writing(tmp_path):
    from vmeta.cli import app
    from vmeta.dataset.context import ContextSettings
    from vmeta.dataset.sharegpt import export_sharegpt

    ds = stored(tmp_path / "ds", {"a": "有字", "b": None, "c": None})
    out = tmp_path / "exp"
    with pytest.raises(UserError, match=r"2 of the 3 record\(s\).*b, c.*vmeta data screen-text"):
        export_sharegpt(ds, out, context=ContextSettings(kinds=("screen_text",)))
    assert not out.exists()
    res = runner.invoke(app, ["data", "export", str(ds.root), "--out", str(out), "--context", "screen_text"])
    assert isinstance(res.exception, UserError) and "vmeta data screen-text" in str(res.exception)
    res = runner.invoke(app, ["data", "export", str(ds.root), "--out", str(out), "--context", "subtitles"])
    assert isinstance(res.exception, UserError) and "screen_text" in str(res.exception)  # names the known kinds
    # the CLI with text everywhere, records read with two settings: exported, with a warning
    ds.update(lambda recs: [setattr(r, "screen_text", record(r.id, "字幕").screen_text) for r in recs])
    ds.update(lambda recs: recs[0].screen_text.settings.update(fps=2.0))
    res = runner.invoke(app, ["data", "export", str(ds.root), "--out", str(out), "--context", "screen_text"])
    assert res.exit_code == 0, res.output
    assert "context screen_text" in res.output and "2 different settings" in res.output
    samples = json.loads((out / "all.json").read_text("utf-8"))
    assert all(s["messages"][0]["content"].startswith("<video>画面文字：字幕\n") for s in samples)


def test_export_refuses_speech_which_datasets_do_not_store(tmp_path):
    from vmeta.dataset.context import ContextSettings
    from vmeta.dataset.sharegpt import export_sharegpt

    ds = stored(tmp_path / "ds", {"a": "有字"})
    with pytest.raises(UserError, match=r"--context speech: a dataset does not store it.*data.context: \[speech\]"):
        export_sharegpt(ds, tmp_path / "exp", context=ContextSettings(kinds=("screen_text", "speech")))
    assert not (tmp_path / "exp").exists()
