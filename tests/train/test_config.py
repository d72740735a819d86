"""Config validation: clear errors before any model loads; YAML files and dotted overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vmeta.errors import UserError
from vmeta.train.config import load_config, parse_set_values
from vmeta.train.methods import METHODS

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "qwen2-vl-2b"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"method": "galore", "training.deepspeed": "ds.json"}, "galore cannot run under DeepSpeed"),
        ({"method": "galore", "galore.layerwise": True, "training.grad_accum": 4}, "training.grad_accum=1"),
        ({"method": "pissa", "model.quantization": "4bit"}, "PiSSA"),
        ({"method": "full", "model.quantization": "8bit"}, "use a LoRA method"),
        ({"method": "freeze", "freeze.trainable_layers": 0}, "freeze.trainable_layers=0"),
        ({"method": "qlora"}, "method: unknown method 'qlora'; choose one of lora, loraplus, dora"),
        ({"lora.rank": 8}, "lora.rank: is not a known setting"),
        ({"training.eval_metrics": ["bleu4", "blue"]}, "training.eval_metrics: unknown metric(s) blue; choose from"),
        ({"training.lr": -1}, "training.lr"),
        ({"data.frames": {"fps": 0}}, "fps"),
        ({"training.eval_steps": 5, "training.best_metric": "bleu9"}, "training.best_metric='bleu9'"),
        ({"training.eval_steps": 5, "data.val_split": None}, "data.val_split is empty"),
    ],
)
def test_invalid_configs_are_refused_with_one_clear_sentence(overrides, needle):
    with pytest.raises(UserError) as exc:
        load_config(None, overrides)
    assert needle in str(exc.value), str(exc.value)
    assert "Traceback" not in str(exc.value)


@pytest.mark.parametrize(
    ("env", "overrides", "needle"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, {"method": "galore"}, "ACCELERATE_USE_DEEPSPEED"),
        ({"ACCELERATE_DEEPSPEED_CONFIG_FILE": "ds.json"}, {"method": "galore"}, "accelerate launch config"),
        ({"ACCELERATE_USE_FSDP": "true"}, {"method": "galore", "galore.layerwise": True, "training.grad_accum": 1},
         "does not work with FSDP"),
    ],
)  # fmt: skip
def test_galore_refuses_deepspeed_and_fsdp_turned_on_by_the_launcher(monkeypatch, env, overrides, needle):
    """`accelerate launch --config_file deepspeed_zero2.yaml` turns DeepSpeed on through the environment only."""
    for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_CONFIG_FILE", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(key, raising=False)
    load_config(None, overrides)  # without the launcher's environment: fine
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError) as exc:
        load_config(None, overrides)
    assert needle in str(exc.value), str(exc.value)
    load_config(None, {**overrides, "method": "lora"})  # other methods run under DeepSpeed / FSDP


@pytest.mark.parametrize(("method", "key", "value"), [("dora", "use_dora", True), ("rslora", "use_rslora", True),
                                                       ("pissa", "init", "pissa")])  # fmt: skip
def test_the_resolved_config_shows_what_the_method_implies(tmp_path, method, key, value):
    from typer.testing import CliRunner

    from vmeta.cli import app
    from vmeta.train.config import dump_config

    cfg = load_config(None, {"method": method})
    assert getattr(cfg.lora, key) == value and cfg.to_yaml_dict()["lora"][key] == value
    dump_config(cfg, tmp_path / "config.yaml")  # what a run folder holds
    assert getattr(load_config(tmp_path / "config.yaml", {}).lora, key) == value
    res = CliRunner().invoke(app, ["train", "--method", method, "--print-config"])
    assert res.exit_code == 0, res.output
    shown = yaml.safe_load(res.output)
    assert shown["lora"][key] == value and shown["method"] == method
    assert load_config(None, {"method": "lora"}).lora.use_dora is False


def test_method_table_and_lora_options():
    assert set(METHODS) == {"lora", "loraplus", "dora", "rslora", "pissa", "freeze", "galore", "full"}
    assert load_config(None, {"method": "dora"}).lora_options["use_dora"] is True
    assert load_config(None, {"method": "rslora"}).lora_options["use_rslora"] is True
    assert load_config(None, {"method": "pissa"}).lora_options["init"] == "pissa"
    assert load_config(None, {"method": "lora"}).lora_options["use_dora"] is False


def test_dotted_overrides_and_set_values():
    sets = parse_set_values(
        ["lora.r=16", "training.lr=3e-5", "lora.target_modules=[q_proj, v_proj]", "data.frames.fps=1"]
    )
    cfg = load_config(CONFIGS / "lora.yaml", sets)
    assert cfg.lora.r == 16 and cfg.training.lr == 3e-5 and cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.data.frames["fps"] == 1 and cfg.data.frames["max_pixels"] == 65536  # merged into the YAML's group
    with pytest.raises(UserError, match="key=value"):
        parse_set_values(["lora.r"])


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load_and_name_their_command(path):
    cfg = load_config(path, {})
    assert cfg.method == path.stem
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# vmeta train --config configs/qwen2-vl-2b/{path.stem}.yaml ")


def test_thesis_best_settings_are_the_defaults_of_the_files():
    lora = load_config(CONFIGS / "lora.yaml", {})
    assert (lora.training.epochs, lora.training.lr, lora.lora.r, lora.lora.alpha) == (4, 5e-5, 8, 16)
    rs = load_config(CONFIGS / "rslora.yaml", {})
    assert (rs.lora.r, rs.training.lr) == (16, 3e-5)
    fr = load_config(CONFIGS / "freeze.yaml", {})
    assert (fr.freeze.trainable_layers, fr.training.lr) == (6, 5e-5)
    ga = load_config(CONFIGS / "galore.yaml", {})
    assert (ga.galore.rank, ga.galore.update_proj_gap, ga.training.lr) == (8, 50, 3e-5)


def test_evaluation_during_training_is_refused_where_weights_are_sharded(monkeypatch):
    """Eval-during-training generates on the main process alone: under ZeRO-3 / FSDP it would hang."""
    for key in ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_CONFIG_FILE", "ACCELERATE_USE_FSDP",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE"):  # fmt: skip
        monkeypatch.delenv(key, raising=False)
    deepspeed = CONFIGS.parents[1] / "configs" / "deepspeed"
    ev = {"training.eval_steps": 10}
    load_config(None, {**ev, "training.deepspeed": str(deepspeed / "zero2.json")})  # whole weights per process
    load_config(None, {"training.deepspeed": str(deepspeed / "zero3.json")})  # no evaluation: fine
    cases = [
        ({"training.deepspeed": str(deepspeed / "zero3.json")}, {}, "DeepSpeed ZeRO-3 ("),
        ({"training.fsdp": "full_shard auto_wrap"}, {}, "FSDP (training.fsdp="),
        ({}, {"ACCELERATE_USE_FSDP": "true"}, "FSDP (the accelerate launch config)"),
        ({}, {"ACCELERATE_DEEPSPEED_CONFIG_FILE": str(deepspeed / "zero3.json")}, "DeepSpeed ZeRO-3"),
    ]
    for overrides, env, needle in cases:
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            with pytest.raises(UserError) as exc:
                load_config(None, {**ev, **overrides})
        assert needle in str(exc.value) and "vmeta predict --run" in str(exc.value), str(exc.value)
