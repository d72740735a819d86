"""On-screen text as context (issue #15) through training and prediction: the block reaches the model's prompt
for a run trained with it (labels stay masked), is recorded in run.json, and is absent for a run without it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vmeta.dataset.records import Dataset, ScreenTextInfo
from vmeta.errors import UserError
from vmeta.train.run import run_training

CAPTION = "作者配文：阴阳两隔"
BLOCK = f"画面文字：{CAPTION}"


@pytest.fixture(scope="module")
def captioned_dataset(train_dataset, tmp_path_factory) -> Path:
    """The training dataset with stored on-screen text: s0 shows the caption, s1 shows none, s2 (val) shows it."""
    root = tmp_path_factory.mktemp("captioned") / "ds"
    shutil.copytree(train_dataset, root)
    texts = {"s0": CAPTION, "s1": "", "s2": CAPTION}

    def add(records):
        for r in records:
            r.screen_text = ScreenTextInfo(text=texts[r.id])

    Dataset(root).update(add)
    return root


@pytest.fixture
def seen_prompts(monkeypatch) -> dict[str, str]:
    """sample id -> the user text each training sample was encoded with."""
    import vmeta.train.collate as collate

    seen: dict[str, str] = {}
    real = collate.encode_sample

    def spy(processor, video, metadata, prompt, answer, **kw):
        seen[kw.get("sample_id", "?")] = prompt
        return real(processor, video, metadata, prompt, answer, **kw)

    monkeypatch.setattr(collate, "encode_sample", spy)
    return seen


def _cfg(make_cfg, data: Path, out: Path, context: list[str]):
    return make_cfg("lora", out, **{"data.path": str(data), "data.context": context, "training.max_steps": 1})


def test_a_run_trained_with_screen_text_sees_the_block_and_records_it(
    make_cfg, train_settings, captioned_dataset, seen_prompts, tmp_path
):
    run = run_training(
        _cfg(make_cfg, captioned_dataset, tmp_path / "with", ["screen_text"]), settings=train_settings, progress=False
    )
    assert seen_prompts["s0"] == f"{BLOCK}\n解释视频的隐喻。"
    assert seen_prompts["s1"] == "解释视频的隐喻。"  # no text on screen: nothing added
    info = json.loads((run / "run.json").read_text())
    assert info["context"]["kinds"] == ["screen_text"]
    assert info["context_samples"] == 1  # of the two training samples, s0 shows text
    assert info["prompt"] == "解释视频的隐喻。"  # the instruction itself is unchanged (same prompt_hash)


def test_a_run_without_context_sees_only_the_instruction(
    make_cfg, train_settings, captioned_dataset, seen_prompts, tmp_path
):
    run = run_training(
        _cfg(make_cfg, captioned_dataset, tmp_path / "without", []), settings=train_settings, progress=False
    )
    assert set(seen_prompts.values()) == {"解释视频的隐喻。"}
    assert json.loads((run / "run.json").read_text())["context"]["kinds"] == []


def test_the_block_is_in_the_inputs_and_masked_in_the_labels(train_settings, captioned_dataset):
    from transformers import AutoProcessor

    from vmeta.dataset.context import ContextSettings, record_blocks
    from vmeta.models.resolution import resolve
    from vmeta.train.collate import SupervisedCollator
    from vmeta.train.data import FrameCache, SupervisedDataset, split_records
    from vmeta.video.sampling import FrameSettings

    proc = AutoProcessor.from_pretrained(resolve("tiny", train_settings).pretrained_id)
    recs = split_records(captioned_dataset, "train")
    blocks = record_blocks(ContextSettings(kinds=("screen_text",)), recs, captioned_dataset)
    fs = FrameSettings(fps=2.0, min_pixels=56 * 56, max_pixels=56 * 56)
    ds = SupervisedDataset(recs, captioned_dataset, proc, fs, "解释。", 512, FrameCache("off"), blocks=blocks)
    batch = SupervisedCollator(proc.tokenizer.pad_token_id)([ds[0]])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    tok = proc.tokenizer
    assert CAPTION in tok.decode(ids)
    trained = tok.decode(ids[labels != -100])
    assert CAPTION not in trained and recs[0].label[:8] in trained  # only the answer is learned


def test_a_sample_whose_text_cannot_be_read_is_named_before_training(
    make_cfg, train_settings, captioned_dataset, tmp_path
):
    broken = tmp_path / "ds"
    shutil.copytree(captioned_dataset, broken)

    def forget(records):
        records[1].screen_text = None  # s1 must now be read from its video ...

    Dataset(broken).update(forget)
    (broken / "videos" / "v1.mp4").write_bytes(b"not a video")  # ... which cannot be decoded
    with pytest.raises(UserError, match="sample s1: reading its screen_text context failed"):
        run_training(_cfg(make_cfg, broken, tmp_path / "run", ["screen_text"]), settings=train_settings, progress=False)
    assert not (tmp_path / "run" / "run.json").exists()


def test_predict_with_the_run_adds_the_block_and_without_does_not(
    make_cfg, train_settings, captioned_dataset, tmp_path, monkeypatch
):
    import vmeta.predict.loop as predict_mod
    from vmeta.models.generate import GenerationSettings
    from vmeta.predict import PredictConfig, predict

    def split_val_as_test(records):
        for r in records:
            r.split = "test" if r.id in ("s1", "s2") else "train"

    Dataset(captioned_dataset).update(split_val_as_test)
    texts: list[str] = []
    real = predict_mod.generate_batch

    def spy(loaded, convs, gen, fs):
        texts.extend(c[0]["content"][1]["text"] for c in convs)
        return real(loaded, convs, gen, fs)

    monkeypatch.setattr(predict_mod, "generate_batch", spy)
    gen = GenerationSettings(max_new_tokens=2)
    runs = {}
    for name, ctx in (("with", ["screen_text"]), ("without", [])):
        runs[name] = run_training(
            _cfg(make_cfg, captioned_dataset, tmp_path / name, ctx), settings=train_settings, progress=False
        )

    out = tmp_path / "with.jsonl"
    predict(PredictConfig(data=captioned_dataset, out=out, run=runs["with"], generation=gen), settings=train_settings)
    assert texts == ["解释视频的隐喻。", f"{BLOCK}\n解释视频的隐喻。"]  # s1 shows no text, s2 shows the caption
    lines = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert lines["s2"]["context"] == BLOCK and lines["s1"]["context"] == ""
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["context"]["kinds"] == ["screen_text"] and meta["sources"]["context"] == "run"

    texts.clear()
    out2 = tmp_path / "without.jsonl"
    predict(
        PredictConfig(data=captioned_dataset, out=out2, run=runs["without"], generation=gen), settings=train_settings
    )
    assert texts == ["解释视频的隐喻。", "解释视频的隐喻。"]

    # the file made with context is not resumed without it
    with pytest.raises(UserError, match="context"):
        predict(
            PredictConfig(data=captioned_dataset, out=out, run=runs["with"], generation=gen, context=[]),
            settings=train_settings,
        )


def test_predict_reads_text_the_dataset_does_not_store(captioned_dataset, train_settings, tmp_path):
    """`--context screen_text` on a dataset without stored text: the video is read by OCR (real rapidocr) once,
    and a second prediction reads the cache instead."""
    from vmeta.models.generate import GenerationSettings
    from vmeta.predict import PredictConfig, predict
    from vmeta.testing.captions import Caption, make_caption_clip, require_cjk_font

    pytest.importorskip("rapidocr")
    root = tmp_path / "ds"
    shutil.copytree(captioned_dataset, root)
    make_caption_clip(
        root / "videos" / "v2.mp4",
        [Caption("上班第一天", 0.0, 2.0, size=40)],
        2.0,
        width=360,
        height=640,
        fps=4,
        moving_background=False,
        font=require_cjk_font(),
    )

    def unread(records):
        for r in records:
            r.screen_text = None
            r.split = "test" if r.id == "s2" else "train"

    Dataset(root).update(unread)
    cfg = dict(data=root, model="tiny", generation=GenerationSettings(max_new_tokens=2), context=["screen_text"])
    predict(PredictConfig(out=tmp_path / "a.jsonl", **cfg), settings=train_settings)
    line = json.loads((tmp_path / "a.jsonl").read_text())
    assert line["context"] == "画面文字：上班第一天"
    cached = list((train_settings.resolved_cache_dir / "screen_text").rglob("*.json"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    predict(PredictConfig(out=tmp_path / "b.jsonl", **cfg), settings=train_settings)
    assert json.loads((tmp_path / "b.jsonl").read_text())["context"] == line["context"]
    assert cached[0].stat().st_mtime_ns == mtime  # read from the cache, not written again
