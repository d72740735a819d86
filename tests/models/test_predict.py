"""`vmeta predict`: per-sample JSONL over a split, resumable after a hard kill, refuses mixed settings, --models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmeta.config import Settings
from vmeta.dataset.prompts import DEFAULT_PROMPT, prompt_hash
from vmeta.dataset.records import Dataset, Record, SourceRef
from vmeta.errors import UserError
from vmeta.jsonio import read_jsonl
from vmeta.models.generate import GenerationSettings
from vmeta.predict import PredictConfig, meta_path, predict
from vmeta.testing.media import make_clip, make_not_video

GEN = GenerationSettings(max_new_tokens=8, repetition_penalty=3.0)
CATS = ["网络热词", "社会现象", "影视作品", "历史典故", "其他"]


def _dataset(root: Path, n_test: int = 10, n_train: int = 2, bad: set[int] = frozenset()) -> Path:
    videos = root / "videos"
    videos.mkdir(parents=True)
    records = []
    for i in range(n_test + n_train):
        name = f"v{i:02d}.mp4"
        if i in bad:
            make_not_video(videos / name)
        else:
            make_clip(videos / name, 64, 64, 10, 1.0, audio=False, seed=i)
        records.append(
            Record(
                id=f"r{i:02d}",
                video=f"videos/{name}",
                category=CATS[i % len(CATS)],
                raw_label=f"本视频讲述了第{i}个故事。",
                label=f"本视频讲述了第{i}个故事。",
                source=SourceRef(sheet="sheet.xlsx", row=i + 2),
                split="test" if i < n_test else "train",
            )
        )
    Dataset(root).save(records)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("pred-data") / "ds")


@pytest.fixture
def settings(tiny_data_dir) -> Settings:
    return Settings(data_dir=tiny_data_dir)


def test_predict_writes_one_line_per_record_with_the_fields(dataset, tiny_model_dir, settings, tmp_path):
    out = tmp_path / "pred.jsonl"
    cfg = PredictConfig(data=dataset, out=out, model=str(tiny_model_dir), generation=GEN, batch_size=4)
    summary = predict(cfg, settings=settings)
    assert (summary.total, summary.written, summary.skipped, summary.errors) == (10, 10, 0, 0)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [f"r{i:02d}" for i in range(10)]
    row = rows[3]
    for key in (
        "id",
        "category",
        "prompt",
        "prompt_hash",
        "reference",
        "output",
        "model",
        "adapter",
        "frames",
        "frame_indices",
        "timings",
        "generation",
    ):
        assert key in row, key
    assert row["prompt"] == DEFAULT_PROMPT and row["prompt_hash"] == prompt_hash(DEFAULT_PROMPT)
    assert row["reference"] == "本视频讲述了第3个故事。" and row["category"] == CATS[3]
    assert isinstance(row["output"], str) and row["error"] is None
    assert row["frame_indices"] == [0, 3, 6, 9] and row["frames"]["fps"] == 2.0
    assert row["timings"]["ttft_s"] > 0 and row["timings"]["tokens_per_s"] > 0 and row["timings"]["new_tokens"] == 8
    assert row["generation"]["max_new_tokens"] == 8
    assert "本视频" in out.read_text(encoding="utf-8")  # ensure_ascii=False
    meta = json.loads(meta_path(out).read_text(encoding="utf-8"))
    assert meta["split"] == "test" and meta["prompt_hash"] == row["prompt_hash"]
    assert meta["dataset_hash"] == Dataset(dataset).content_hash() and meta["versions"]["transformers"]

    # batch size does not change greedy outputs
    out1 = tmp_path / "pred-b1.jsonl"
    predict(PredictConfig(data=dataset, out=out1, model=str(tiny_model_dir), generation=GEN), settings=settings)
    assert [r["output"] for r in read_jsonl(out1)] == [r["output"] for r in rows]

    # a second run has nothing left to do
    again = predict(cfg, settings=settings)
    assert (again.written, again.skipped) == (0, 10) and len(read_jsonl(out)) == 10


def test_mismatched_rerun_is_refused_and_force_new_starts_over(dataset, tiny_model_dir, settings, tmp_path):
    out = tmp_path / "p.jsonl"
    base = {"data": dataset, "out": out, "model": str(tiny_model_dir), "limit": 3}
    predict(PredictConfig(**base, generation=GEN), settings=settings)
    with pytest.raises(UserError, match=r"max_new_tokens|generation"):
        predict(PredictConfig(**base, generation=GenerationSettings(max_new_tokens=9)), settings=settings)
    with pytest.raises(UserError, match="prompt"):
        predict(PredictConfig(**base, generation=GEN, prompt="说说这个视频。"), settings=settings)
    with pytest.raises(UserError, match="frames"):
        predict(PredictConfig(**base, generation=GEN, frame_overrides={"fps": 1.0}), settings=settings)
    assert len(read_jsonl(out)) == 3  # nothing was mixed in
    # a larger --limit with the same settings continues the same file
    s = predict(PredictConfig(**{**base, "limit": 5}, generation=GEN), settings=settings)
    assert (s.skipped, s.written) == (3, 2)
    s = predict(
        PredictConfig(**base, generation=GenerationSettings(max_new_tokens=9), force_new=True), settings=settings
    )
    assert (
        s.written == 3 and (tmp_path / "p.jsonl.1.bak").is_file() and (tmp_path / "p.jsonl.meta.json.1.bak").is_file()
    )


def test_missing_split_and_unreadable_video(tmp_path, tiny_model_dir, settings):
    ds = _dataset(tmp_path / "nosplit", n_test=2, n_train=0)
    Dataset(ds).update(lambda recs: [setattr(r, "split", None) for r in recs])
    with pytest.raises(UserError, match="vmeta data split"):
        predict(PredictConfig(data=ds, out=tmp_path / "a.jsonl", model=str(tiny_model_dir)), settings=settings)
    with pytest.raises(UserError, match="val"):
        predict(
            PredictConfig(
                data=_dataset(tmp_path / "s", 2, 1), out=tmp_path / "b.jsonl", split="val", model=str(tiny_model_dir)
            ),
            settings=settings,
        )

    bad = _dataset(tmp_path / "bad", n_test=3, n_train=0, bad={1})
    out = tmp_path / "bad.jsonl"
    s = predict(
        PredictConfig(data=bad, out=out, model=str(tiny_model_dir), generation=GEN, batch_size=2), settings=settings
    )
    assert (s.written, s.errors, s.error_ids) == (3, 1, ["r01"])
    rows = {r["id"]: r for r in read_jsonl(out)}
    assert rows["r01"]["error"] and "v01.mp4" in rows["r01"]["error"] and rows["r01"]["output"] == ""
    assert rows["r00"]["error"] is None and rows["r02"]["error"] is None


def _cli_env(tiny_data_dir) -> dict[str, str]:
    env = dict(os.environ)
    env["VMETA_DATA_DIR"] = str(tiny_data_dir)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.mark.slow
def test_killed_half_way_then_resumed_without_duplicates(dataset, tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "killed.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "vmeta",
        "predict",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(dataset),
        "--split",
        "test",
        "--out",
        str(out),
        "--max-new-tokens",
        "24",
        "--repetition-penalty",
        "3",
        "--no-progress",
    ]
    env = _cli_env(tiny_data_dir)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        n = 0
        while time.monotonic() < deadline and proc.poll() is None:
            n = out.read_bytes().count(b"\n") if out.exists() else 0
            if n >= 5:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    first = read_jsonl(out)
    assert 5 <= len(first) < 10, f"killed after {len(first)} lines"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_jsonl(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert set(ids) == {f"r{i:02d}" for i in range(10)}
    assert rows[: len(first)] == first  # what was written before the kill is untouched


def test_models_comparison_writes_one_file_per_model(dataset, tiny_data_dir, tmp_path, monkeypatch):
    from vmeta.cli import app
    from vmeta.config import get_settings
    from vmeta.models.tiny import build_tiny

    a = build_tiny(tmp_path / "models" / "tiny-a", seed=1)
    b = build_tiny(tmp_path / "models" / "tiny-b", seed=2)
    monkeypatch.setenv("VMETA_DATA_DIR", str(tiny_data_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app,
            [
                "predict",
                "--models",
                f"{a},{b}",
                "--data",
                str(dataset),
                "--out",
                str(tmp_path / "cmp"),
                "--max-new-tokens",
                "6",
                "--repetition-penalty",
                "3",
                "--limit",
                "4",
                "--batch-size",
                "2",
                "--no-progress",
            ],
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output + repr(result.exception)
    files = sorted(p.name for p in (tmp_path / "cmp").glob("*.jsonl"))
    assert files == ["tiny-a.jsonl", "tiny-b.jsonl"]
    ra, rb = (read_jsonl(tmp_path / "cmp" / f) for f in files)
    assert [r["id"] for r in ra] == [r["id"] for r in rb] == ["r00", "r01", "r02", "r03"]
    assert {r["model"] for r in ra} == {"tiny-a"} and {r["model"] for r in rb} == {"tiny-b"}
    assert [r["output"] for r in ra] != [r["output"] for r in rb]  # different weights, different text
    assert "tiny-a" in result.output and "tiny-b" in result.output  # the summary table


def test_torn_last_line_is_cut_on_resume(dataset, tiny_model_dir, settings, tmp_path):
    out = tmp_path / "torn.jsonl"
    base = {"data": dataset, "out": out, "model": str(tiny_model_dir), "generation": GEN}
    predict(PredictConfig(**base, limit=2), settings=settings)
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "r02", "output": "半行')  # a writer killed mid-line
    s = predict(PredictConfig(**base, limit=4), settings=settings)
    assert (s.skipped, s.written) == (2, 2)
    assert [r["id"] for r in read_jsonl(out)] == ["r00", "r01", "r02", "r03"]


def test_model_file_names_are_safe_and_unique(tmp_path):
    from vmeta.predict.compare import model_file_name

    taken: set[str] = set()
    assert model_file_name("Qwen/Qwen2-VL-2B-Instruct", taken) == "Qwen--Qwen2-VL-2B-Instruct"
    (tmp_path / "a" / "tiny").mkdir(parents=True)
    (tmp_path / "b" / "tiny").mkdir(parents=True)
    assert model_file_name(str(tmp_path / "a" / "tiny"), taken) == "tiny"
    assert model_file_name(str(tmp_path / "b" / "tiny"), taken) == "tiny-2"


def test_predict_with_a_run_folder_records_the_adapter(dataset, tiny_model_dir, settings, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    run = tmp_path / "runs" / "lora"
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_model_dir))
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(str(run / "adapter"))
    (run / "run.json").write_text(json.dumps({"model": str(tiny_model_dir)}))
    out = tmp_path / "run.jsonl"
    s = predict(PredictConfig(data=dataset, out=out, run=run, generation=GEN, limit=2), settings=settings)
    assert s.adapter == str((run / "adapter").resolve()) and s.written == 2
    rows = read_jsonl(out)
    assert {r["adapter"] for r in rows} == {s.adapter} and {r["model"] for r in rows} == {tiny_model_dir.name}
    meta = json.loads(meta_path(out).read_text(encoding="utf-8"))
    assert meta["adapter"] == s.adapter and meta["run"] == str(run.resolve())
    assert meta["model_info"]["adapter"] == s.adapter


def test_a_run_folder_lends_its_prompt_and_frame_settings(dataset, tiny_model_dir, settings, tmp_path):
    """The model sees what it saw in training: run.json's frames and prompt are the defaults with --run."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    from vmeta.video.sampling import FrameSettings

    run = tmp_path / "runs" / "lora"
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_model_dir))
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(str(run / "adapter"))
    trained = FrameSettings(fps=1.0, min_frames=2, min_pixels=28 * 28, max_pixels=28 * 28)
    prompt = "用一句话解释这个视频的隐喻。"
    run_json = {"model": {"name": str(tiny_model_dir)}, "prompt": prompt, "prompt_hash": prompt_hash(prompt),
                "frames": trained.to_dict()}  # fmt: skip
    (run / "run.json").write_text(json.dumps(run_json, ensure_ascii=False), encoding="utf-8")

    out = tmp_path / "from-run.jsonl"
    predict(PredictConfig(data=dataset, out=out, run=run, generation=GEN, limit=2), settings=settings)
    rows = read_jsonl(out)
    for row in rows:
        assert row["prompt"] == prompt and row["prompt_hash"] == prompt_hash(prompt)
        assert row["frames"] == trained.to_dict()
        assert row["frame_indices"] == [0, 9] and row["frame_size"] == [28, 28]  # 1 s at 1 fps -> 2; 28x28
    meta = json.loads(meta_path(out).read_text(encoding="utf-8"))
    assert meta["prompt"] == prompt and meta["frames"] == trained.to_dict()
    assert meta["sources"] == {"prompt": "run", "frames": "run", "frame_overrides": [], "context": "default"}

    # explicit settings still win, and the file says which came from where
    out2 = tmp_path / "overridden.jsonl"
    cfg = PredictConfig(
        data=dataset, out=out2, run=run, generation=GEN, limit=1, prompt="说说。", frame_overrides={"fps": 4.0}
    )
    predict(cfg, settings=settings)
    (row,) = read_jsonl(out2)
    assert row["prompt"] == "说说。" and row["frames"]["fps"] == 4.0 and row["frames"]["max_pixels"] == 28 * 28
    assert row["frame_indices"] == [0, 3, 6, 9]  # 1 s at 4 fps
    meta = json.loads(meta_path(out2).read_text(encoding="utf-8"))
    assert meta["sources"] == {"prompt": "given", "frames": "run", "frame_overrides": ["fps"], "context": "default"}

    # without --run: the thesis prompt and the model family's frames, as before
    out3 = tmp_path / "plain.jsonl"
    predict(
        PredictConfig(data=dataset, out=out3, model=str(tiny_model_dir), generation=GEN, limit=1), settings=settings
    )
    assert json.loads(meta_path(out3).read_text(encoding="utf-8"))["sources"] == {
        "prompt": "default", "frames": "model", "frame_overrides": [], "context": "default",
    }  # fmt: skip
