import json
import os
from pathlib import Path

import pytest

from vmeta.dataset.prompts import DEFAULT_PROMPT, prompt_hash
from vmeta.dataset.records import Dataset, Record, ReviewStatus, SourceRef
from vmeta.dataset.sharegpt import export_sharegpt
from vmeta.dataset.sharegpt_import import import_sharegpt
from vmeta.dataset.split import split_dataset
from vmeta.errors import UserError
from vmeta.video.meta import VideoMeta

THESIS_PROMPT = (
    "理解视频的隐喻内容，由以下格式回答：本视频讲述了 [视频内容]。[核心概念] 出自 [出处]，其因为 [特征/新含义/事件]，"
    "表达出了 [情绪/态度]。将 [] 内的内容替换成视频理解的内容。"
)


def label(i: int) -> str:
    return f"本视频讲述了猫{i}。哈基米{i}出自日语，其因为走红，表达出了喜爱。"


def build(root: Path, counts: dict[str, int]) -> Dataset:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    recs = []
    for c, n in counts.items():
        for i in range(n):
            rid = f"{c}_{i}"
            (root / "videos" / f"{rid}.mp4").write_bytes(b"\x00")
            r = Record(
                id=rid,
                video=f"videos/{rid}.mp4",
                category=c,
                raw_label="x",
                label=label(i),
                source=SourceRef(sheet="s.csv", row=i + 2),
                video_meta=VideoMeta(readable=True),
            )
            r.set_label(label(i) + "（说明：这是注释）" if i == 0 else label(i), "rewrite")
            recs.append(r)
    ds = Dataset(root)
    ds.save(recs)
    return ds


def test_default_prompt_is_thesis_text():
    assert DEFAULT_PROMPT == THESIS_PROMPT
    assert prompt_hash(DEFAULT_PROMPT) == prompt_hash(THESIS_PROMPT) and len(prompt_hash("x")) == 12


def test_export_unsplit_writes_all_json(tmp_path):
    ds = build(tmp_path / "ds", {"诙谐类": 3})
    rep = export_sharegpt(ds)
    assert set(rep.files) == {"all"} and rep.counts == {"all": 3}
    info = json.loads((rep.out_dir / "dataset_info.json").read_text(encoding="utf-8"))
    assert "vmeta_all" in info


def test_export_format_and_paths_resolve(tmp_path):
    ds = build(tmp_path / "ds", {"诙谐类": 6, "讽刺类": 5})
    ds.save(
        [
            *ds.load(),
            Record(
                id="rej",
                video="videos/rej.mp4",
                category="诙谐类",
                raw_label="x",
                label=label(9),
                source=SourceRef(sheet="s.csv", row=99),
                video_meta=VideoMeta(readable=True),
                review={"status": "rejected"},
            ),
        ]
    )
    split_dataset(ds, test_per_category=2, val_fraction=0.2)
    rep = export_sharegpt(ds)
    out = rep.out_dir
    assert out == tmp_path / "ds" / "export" / "sharegpt"
    assert set(rep.files) == {"train", "val", "test"}
    assert rep.skipped["rejected"] == ["rej"]
    total = 0
    for name in ("train", "val", "test"):
        data = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        total += len(data)
        for s in data:
            assert set(s) == {"messages", "videos"}
            assert [m["role"] for m in s["messages"]] == ["user", "assistant"]
            assert all(set(m) == {"role", "content"} for m in s["messages"])
            assert s["messages"][0]["content"] == "<video>" + THESIS_PROMPT
            assert s["messages"][0]["content"].count("<video>") == 1
            assert len(s["videos"]) == 1 and not os.path.isabs(s["videos"][0])
            # LLaMA-Factory: os.path.join(media_dir (= dataset_dir), path) must be the file.
            assert (out / s["videos"][0]).resolve().is_file()
            assert "说明" not in s["messages"][1]["content"]  # notes stripped
    assert total == 11
    test_ids = json.loads((out / "vmeta_index.json").read_text(encoding="utf-8"))["test.json"]
    assert len(test_ids) == 4
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(info) == {"vmeta_train", "vmeta_val", "vmeta_test"}
    assert info["vmeta_train"] == {
        "file_name": "train.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "videos": "videos"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }
    manifest = json.loads((out / "vmeta_export.json").read_text(encoding="utf-8"))
    assert manifest["prompt_hash"] == prompt_hash(THESIS_PROMPT)


def test_export_absolute_paths_custom_prompt_and_keeps_other_entries(tmp_path):
    ds = build(tmp_path / "ds", {"诙谐类": 2})
    out = tmp_path / "lf_data"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"mllm_demo": {"file_name": "mllm_demo.json"}}), encoding="utf-8")
    rep = export_sharegpt(ds, out, prompt="说说隐喻。", video_paths="absolute", strip_notes=False)
    data = json.loads(rep.files["all"].read_text(encoding="utf-8"))
    assert all(os.path.isabs(s["videos"][0]) and Path(s["videos"][0]).is_file() for s in data)
    assert data[0]["messages"][0]["content"] == "<video>说说隐喻。"
    assert any("说明" in s["messages"][1]["content"] for s in data)
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert {"mllm_demo", "vmeta_all"} <= set(info)
    # After splitting, a new export replaces all.json by per-split files.
    split_dataset(ds, test_per_category=1, val_fraction=0.0)
    export_sharegpt(ds, out)
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert "vmeta_all" not in info and not (out / "all.json").exists() and "mllm_demo" in info
    with pytest.raises(UserError, match="video-paths"):
        export_sharegpt(ds, out, video_paths="weird")


def test_round_trip_export_import(tmp_path):
    ds = build(tmp_path / "ds", {"诙谐类": 5, "硬核类": 4})
    split_dataset(ds, test_per_category=1, val_fraction=0.25)
    rep = export_sharegpt(ds)
    original = {r.id: r for r in ds.load()}
    fresh = Dataset(tmp_path / "fresh")
    for f in rep.files.values():
        import_sharegpt(f, fresh, probe_videos=False)
    got = {r.id: r for r in fresh.load()}
    assert set(got) == set(original)
    for rid, r in got.items():
        assert r.label == original[rid].label.split("（说明")[0]
        assert r.label_origin == "import" and r.conforms
        assert r.category == original[rid].category and r.split == original[rid].split
        assert (fresh.video_path(r)).resolve() == ds.video_path(original[rid]).resolve()


def test_import_merge_never_overwrites_reviewed_label(tmp_path):
    ds = build(tmp_path / "ds", {"讽刺类": 3})
    rep = export_sharegpt(ds)
    data = json.loads(rep.files["all"].read_text(encoding="utf-8"))
    for s in data:
        s["messages"][1]["content"] = "本视频讲述了狗。新概念出自网络，其因为变化，表达出了惊讶。"
    f = tmp_path / "edited.json"
    f.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    # Rewrite the paths relative to the new file location.
    for s in data:
        s["videos"] = [str((rep.out_dir / s["videos"][0]).resolve())]
    f.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    def review_first(records):
        records[0].review.status = ReviewStatus.accepted

    ds.update(review_first)
    reviewed_id = ds.load()[0].id
    report = import_sharegpt(f, ds, probe_videos=False)
    assert report.conflicts == [reviewed_id]
    assert len(report.updated) == 2
    after = {r.id: r for r in ds.load()}
    assert "狗" not in after[reviewed_id].label and "import_differs" in after[reviewed_id].flags
    assert after[reviewed_id].history[-1]["label"].startswith("本视频讲述了狗")
    assert all("狗" in r.label for rid, r in after.items() if rid != reviewed_id)


def test_import_category_and_bad_samples(tmp_path):
    f = tmp_path / "mine.json"
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a1.mp4").write_bytes(b"\x00")
    (tmp_path / "硬核类").mkdir()
    (tmp_path / "硬核类" / "b1.mp4").write_bytes(b"\x00")
    f.write_text(
        json.dumps(
            [
                {
                    "conversations": [{"from": "human", "value": "<video>hi"}, {"from": "gpt", "value": label(1)}],
                    "videos": ["v/a1.mp4"],
                },
                {
                    "messages": [{"role": "user", "content": "<video>hi"}, {"role": "assistant", "content": label(2)}],
                    "videos": ["硬核类/b1.mp4"],
                },
                {"messages": [{"role": "user", "content": "<video>hi"}], "videos": ["v/a1.mp4"]},
                {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}], "videos": []},
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    ds = Dataset(tmp_path / "ds")
    rep = import_sharegpt(f, ds, probe_videos=False)
    assert rep.added == ["b1"] and {s["row"] for s in rep.skipped} == {1, 3, 4}
    rep = import_sharegpt(f, ds, category="satire", probe_videos=False)
    assert rep.added == ["a1"] and rep.unchanged == ["b1"] and rep.updated == []
    got = {r.id: r for r in ds.load()}
    assert got["a1"].category == "讽刺类"
    with pytest.raises(UserError, match="unknown category"):
        import_sharegpt(f, ds, category="nope")


def test_cli_export_and_import(tmp_path):
    from typer.testing import CliRunner

    from vmeta.cli import app

    ds = build(tmp_path / "ds", {"诙谐类": 4, "讽刺类": 4})
    runner = CliRunner()
    assert runner.invoke(app, ["data", "split", str(ds.root), "--test-per-category", "1"]).exit_code == 0
    pf = tmp_path / "prompt.txt"
    pf.write_text("请解释视频中的隐喻。\n", encoding="utf-8")
    out = tmp_path / "exp"
    res = runner.invoke(
        app,
        [
            "data",
            "export",
            str(ds.root),
            "--format",
            "sharegpt",
            "--out",
            str(out),
            "--prompt-file",
            str(pf),
            "--video-paths",
            "absolute",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "vmeta_train" in res.output
    data = json.loads((out / "test.json").read_text(encoding="utf-8"))
    assert len(data) == 2 and data[0]["messages"][0]["content"] == "<video>请解释视频中的隐喻。"
    res = runner.invoke(app, ["data", "export", str(ds.root), "--format", "alpaca"])
    assert isinstance(res.exception, UserError)
    res = runner.invoke(app, ["data", "import", str(out / "train.json"), "--out", str(tmp_path / "new"), "--no-probe"])
    assert res.exit_code == 0, res.output
    assert len(Dataset(tmp_path / "new").load()) == 5  # 8 - 2 test - round(0.149 * 6) val


def test_export_skips_unreadable_videos(tmp_path):
    ds = build(tmp_path / "ds", {"诙谐类": 3})

    def break_one(records):
        records[0].video_meta = VideoMeta(readable=False, error="corrupt: cannot decode")

    ds.update(break_one)
    rep = export_sharegpt(ds)
    assert rep.skipped == {"unreadable": [ds.load()[0].id]} and rep.counts == {"all": 2}
