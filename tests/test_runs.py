"""The run manifest (vmeta.runs): today's shape round-trips, older shapes migrate in one place, bad files are
named. The manifest as `vmeta train` really writes it is checked with every reader in tests/train/test_runs_readers.py."""

from __future__ import annotations

import json

import pytest
import yaml

from vmeta import runs
from vmeta.errors import UserError
from vmeta.video.sampling import FrameSettings


def _write(folder, data, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    if config is not None:
        (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


def test_update_merges_writes_atomically_and_keeps_unknown_keys(tmp_path):
    frames = FrameSettings(fps=2.0, min_pixels=3136, max_pixels=65536).to_dict()
    runs.update_run(tmp_path, format=runs.RUN_FORMAT, method="dora", base_model="tiny", frames=frames,
                    model={"name": "tiny", "resolved": "/m/tiny"}, status="running", libraries={"torch": "2"})  # fmt: skip
    m = runs.update_run(tmp_path, status="finished", global_step=6)
    assert m.is_finished and m.method == "dora" and m.global_step == 6 and m.updated
    again = runs.read_run(tmp_path)
    assert again.base_name == "tiny" and again.base_resolved == "/m/tiny"
    assert again.get("libraries") == {"torch": "2"}  # a key the model does not name survives
    assert again.frame_settings() == FrameSettings.from_dict(frames)
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_folder_without_run_json_has_no_manifest(tmp_path):
    assert runs.read_run(tmp_path) is None


@pytest.mark.parametrize(
    ("data", "config", "expect"),
    [
        ({"model": "tiny", "method": "LoRA"}, None, {"base_name": "tiny", "method": "lora", "status": None}),
        (
            {"base_model": {"name": "qwen2-vl-2b-instruct", "resolved": "/data/Qwen2-VL"}, "state": "completed"},
            {"method": "dora"},
            {
                "base_name": "qwen2-vl-2b-instruct",
                "base_resolved": "/data/Qwen2-VL",
                "status": "finished",
                "method": "dora",
            },
        ),
        (
            {"model": {"name_or_path": "tiny", "pretrained_id": "/m/t"}, "status": {"state": "done"}},
            {"training": {"method": "pissa"}},
            {"base_name": "tiny", "base_resolved": "/m/t", "status": "finished", "method": "pissa"},
        ),
        ({"status": "running"}, {"model": {"name": "tiny"}}, {"base_name": "tiny", "status": "running"}),
        (
            {"prompt": {"text": "解释隐喻。", "hash": "abc"}, "dataset": "/d/ds", "dataset_hash": "h1"},
            None,
            {"prompt": "解释隐喻。", "prompt_hash": "abc"},
        ),
    ],
)
def test_older_shapes_migrate(tmp_path, data, config, expect):
    m = runs.read_run(_write(tmp_path / "run", data, config))
    for key, value in expect.items():
        assert getattr(m, key) == value, key
    if "dataset" in data:
        assert m.dataset.path == "/d/ds" and m.dataset.content_hash == "h1"


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad/run\.json: not valid JSON"):
        runs.read_run(bad)
    with pytest.raises(UserError, match=r"run\.json: 'global_step' .*integer"):
        runs.read_run(_write(tmp_path / "types", {"global_step": "many"}))
    with pytest.raises(UserError, match=r"expected a JSON object"):
        runs.read_run(_write(tmp_path / "list", [1, 2]))
    with pytest.raises(UserError, match=r"frame settings cannot be used.*fix 'frames'"):
        runs.read_run(_write(tmp_path / "frames", {"frames": {"fps": "fast"}})).frame_settings()
