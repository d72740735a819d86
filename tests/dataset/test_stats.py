import json
import random
import time

import pytest

from vmeta.dataset.near_duplicates import near_duplicates, shingles
from vmeta.dataset.records import Dataset, Record, SourceRef
from vmeta.dataset.stats import compute_stats, describe
from vmeta.dataset.stats_report import write_report
from vmeta.video.meta import VideoMeta

OK = "本视频讲述了一个人在地铁上跳舞。沙发舞出自抖音，其因为动作夸张走红，表达出了对生活的热爱。"
DUP = "本视频讲述了一个人在地铁上跳舞。沙发舞出自抖音，其因为动作夸张走红，表达出了对生活的热爱！"
NOTE = "本视频讲述了猫咪打架。哈基米出自日语，其因为可爱走红，表达出了喜爱。（说明：哈基米是网络用语）"
EXTRA = "本视频讲述了老板画饼。画大饼出自职场，其因为空头承诺，表达出了讽刺。这也反映了职场现状。"
PLACEHOLDER = "本视频讲述了[视频内容]。[核心概念]出自[出处]，其因为[特征/新含义/事件]，表达出了[情绪/态度]。"
FREE = "一个人在地铁上跳舞很好笑"


def rec(rid, category, label, *, meta=None, status="pending", split=None, flags=()):
    return Record(
        id=rid,
        video=f"videos/{rid}.mp4",
        category=category,
        raw_label=label,
        label=label,
        source=SourceRef(sheet="s.csv", row=2),
        video_meta=meta or VideoMeta(),
        review={"status": status},
        split=split,
        flags=list(flags),
    )


def portrait(d):
    return VideoMeta(
        readable=True,
        duration_s=d,
        width=1280,
        height=720,
        rotation=90,
        display_width=720,
        display_height=1280,
        fps=30.0,
        has_audio=True,
    )


def landscape(d):
    return VideoMeta(
        readable=True, duration_s=d, width=640, height=360, display_width=640, display_height=360, fps=25.0
    )


@pytest.fixture
def small(tmp_path):
    (tmp_path / "videos").mkdir()
    records = [
        rec("a", "讽刺类", OK, meta=portrait(10.0), split="train"),
        rec("b", "讽刺类", DUP, meta=portrait(20.0), split="test", status="accepted"),
        rec("c", "诙谐类", NOTE, meta=landscape(30.0), split="val", flags=["raw_label_changed"]),
        rec("d", "诙谐类", EXTRA, meta=landscape(40.0), status="rejected"),
        rec("e", "硬核类", PLACEHOLDER, meta=VideoMeta(readable=False, error="corrupt: cannot decode")),
        rec("f", "硬核类", FREE, meta=portrait(60.0)),
    ]
    for r in records[:-1]:  # f's file is missing on disk
        (tmp_path / r.video).write_bytes(b"\x00")
    ds = Dataset(tmp_path)
    ds.save(records)
    return ds


def test_stats_numbers_on_a_known_dataset(small):
    s = compute_stats(small)
    assert s["records"] == 6
    assert s["categories"] == {
        "讽刺类": {"count": 2, "share": 0.3333},
        "诙谐类": {"count": 2, "share": 0.3333},
        "硬核类": {"count": 2, "share": 0.3333},
    }
    lengths = sorted(len(x) for x in (OK, DUP, NOTE, EXTRA, PLACEHOLDER, FREE))
    assert s["label_length"]["all"]["min"] == lengths[0] and s["label_length"]["all"]["max"] == lengths[-1]
    assert s["label_length"]["per_category"]["讽刺类"]["n"] == 2
    t = s["template"]
    assert (t["ok"], t["strict"], t["with_note"], t["with_extra"], t["placeholders"]) == (4, 2, 1, 1, 1)
    assert t["rate"] == round(4 / 6, 4)
    assert {x["id"] for x in t["nonconforming"]} == {"e", "f"}
    pairs = s["duplicates"]["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [("a", "b")] and pairs[0]["jaccard"] >= 0.8
    assert s["duplicates"]["groups"] == [["a", "b"]]
    v = s["videos"]
    assert v["readable"] == 5 and v["unreadable_count"] == 1
    assert v["unreadable"] == [{"id": "e", "video": "videos/e.mp4", "error": "corrupt: cannot decode"}]
    assert v["missing"] == [{"id": "f", "video": "videos/f.mp4"}]
    assert v["orientation"] == {"portrait": 3, "landscape": 2}
    assert v["resolutions"] == {"720x1280": 3, "640x360": 2}
    assert v["duration_s"]["min"] == 10.0 and v["duration_s"]["max"] == 60.0 and v["duration_s"]["median"] == 30.0
    assert s["review"] == {"pending": 4, "accepted": 1, "edited": 0, "rejected": 1}
    assert s["flags"] == {"raw_label_changed": 1}
    assert s["splits"]["totals"] == {"train": 1, "val": 1, "test": 1} and s["splits"]["unsplit"] == 3


def test_report_files_written(small, tmp_path):
    s = compute_stats(small)
    paths = write_report(s, tmp_path / "report")
    for key in ("json", "md", "html", "categories", "label_lengths", "durations", "resolutions"):
        assert paths[key].exists() and paths[key].stat().st_size > 0, key
    for key in ("categories", "label_lengths", "durations", "resolutions"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[key].stat().st_size > 2000
    html = paths["html"].read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 4 and "src='http" not in html  # self-contained
    assert "videos/e.mp4" in html and "corrupt" in html
    md = paths["md"].read_text(encoding="utf-8")
    assert "![Videos per" not in md and "categories.png" in md and "| a | b |" in md
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["records"] == 6


def test_stats_on_dataset_without_video_metadata(tmp_path):
    ds = Dataset(tmp_path)
    ds.save([rec("x", "诙谐类", OK)])
    s = compute_stats(ds)
    assert s["videos"]["readable"] == 0 and s["videos"]["duration_s"]["n"] == 0
    paths = write_report(s, tmp_path / "r")
    assert paths["durations"].stat().st_size > 0


def test_describe():
    d = describe([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert d == {"n": 10, "min": 1, "median": 5.5, "mean": 5.5, "p90": 9.1, "max": 10}


def test_near_duplicates_scale_and_match_brute_force():
    rng = random.Random(0)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    texts = {}
    for i in range(10_000):
        b = "".join(rng.choice(chars) for _ in range(40))
        texts[f"r{i:05d}"] = f"本视频讲述了{b[:20]}。{b[20:25]}出自{b[25:30]}，其因为{b[30:36]}，表达出了{b[36:]}。"
    texts["planted"] = texts["r00042"][:-3] + "喜悦。"
    start = time.perf_counter()
    pairs = near_duplicates(texts)
    assert time.perf_counter() - start < 10
    assert [(p["a"], p["b"]) for p in pairs] == [("planted", "r00042")]

    small = {f"t{i}": "".join(rng.choice("abcde") for _ in range(rng.randint(3, 12))) for i in range(200)}
    from itertools import combinations

    sh = {k: shingles(v) for k, v in small.items()}
    brute = {
        tuple(sorted((a, b))) for a, b in combinations(sh, 2) if len(sh[a] & sh[b]) / len(sh[a] | sh[b]) >= 0.6 - 1e-9
    }
    assert {(p["a"], p["b"]) for p in near_duplicates(small, 0.6)} == brute


def test_cli_stats(small):
    from typer.testing import CliRunner

    from vmeta.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["data", "stats", str(small.root)])
    assert res.exit_code == 0, res.output
    assert "Template conformance" in res.output and "stats.html" in res.output
    assert (small.root / "report" / "stats.html").exists()
    res = runner.invoke(app, ["data", "stats", str(small.root), "--json", "--no-report"])
    assert res.exit_code == 0 and json.loads(res.output)["records"] == 6
