"""Discovery of servable variants: base identity, --adapter options, runs/ and exports/."""

from __future__ import annotations

import json
import shutil

import pytest

from vmeta.errors import UserError
from vmeta.serve import model_catalog as mc


def test_same_base_understands_the_ways_a_base_is_named(engine_settings, engine_data_dir, tmp_path):
    tiny_dir = engine_data_dir / "models" / "tiny"
    assert mc.same_base("tiny", str(tiny_dir), engine_settings)
    assert mc.same_base("qwen2-vl-2b-instruct", "Qwen/Qwen2-VL-2B-Instruct", engine_settings)
    assert mc.same_base("qwen2-vl-2b-instruct", "/data/models/Qwen2-VL-2B-Instruct", engine_settings)
    assert not mc.same_base("tiny", "qwen2-vl-2b-instruct", engine_settings)
    other = tmp_path / "tiny"
    shutil.copytree(tiny_dir, other)
    assert not mc.same_base(str(tiny_dir), str(other), engine_settings), "two folders are two models"
    assert mc.base_model_id("tiny", engine_settings) == "tiny"
    assert mc.base_model_id("Qwen/Qwen2-VL-2B-Instruct", engine_settings) == "qwen2-vl-2b-instruct"


def test_adapter_option_parsing():
    assert mc.parse_adapter_option("lora-r16=runs/x") == ("lora-r16", "runs/x")
    assert mc.parse_adapter_option("runs/dora/adapter") == ("dora", "runs/dora/adapter")
    assert mc.parse_adapter_option("runs/dora") == ("dora", "runs/dora")
    with pytest.raises(UserError):
        mc.parse_adapter_option("a:b=runs/x")


def test_discover(engine_settings, adapters, runs_dir, exports_dir, tmp_path):
    entries = mc.discover(
        "tiny",
        engine_settings,
        {"A": adapters["A"], "gone": tmp_path / "nope", "dup": adapters["A"]},
        runs_dir=runs_dir,
        exports_dir=exports_dir,
    )
    by_id = {e.id: e for e in entries}
    assert entries[0].kind == "base" and entries[0].id == "tiny"
    assert by_id["tiny:A"].available and by_id["tiny:A"].origin == "option"
    assert "tiny:dup" not in by_id, "the same adapter folder is listed once"
    assert not by_id["tiny:gone"].available and "does not exist" in by_id["tiny:gone"].reason
    assert by_id["tiny:good"].available and by_id["tiny:good"].info.adapter == "good"
    assert not by_id["tiny:wrongbase"].available
    assert by_id["tiny:wrongbase"].info.description.startswith("unavailable: trained on qwen2-vl-2b-instruct")
    assert by_id["merged-a"].kind == "merged" and by_id["merged-a"].available
    assert by_id["fullrun"].kind == "merged" and by_id["fullrun"].path == runs_dir / "fullrun" / "model"
    assert not by_id["broken"].available


def test_adapter_without_weights_or_base_record(engine_settings, adapters, tmp_path):
    half = tmp_path / "runs" / "half" / "adapter"
    half.mkdir(parents=True)
    shutil.copy(adapters["A"] / "adapter_config.json", half)
    noinfo = tmp_path / "runs" / "noinfo"
    shutil.copytree(adapters["A"], noinfo / "adapter")
    cfg = json.loads((noinfo / "adapter" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = None
    (noinfo / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    by_id = {e.id: e for e in mc.discover("tiny", engine_settings, runs_dir=tmp_path / "runs")}
    assert not by_id["tiny:half"].available and "no adapter weights" in by_id["tiny:half"].reason
    assert by_id["tiny:noinfo"].available and by_id["tiny:noinfo"].trained_on is None
