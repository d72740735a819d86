"""`vmeta sweep`: grid expansion (product, paired keys, several grids, naming), validation before anything runs,
the scheduler (sequential with an injected train function, parallel per GPU with stub workers), resume, the table,
and a real 2-run sweep of the tiny model through run_training + predict + eval."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from vmeta.errors import UserError
from vmeta.recipes import sweep as sw
from vmeta.recipes.sweep_names import format_value, short_names
from vmeta.recipes.sweep_plan import EvalSettings, load_grid

REPO = Path(__file__).resolve().parents[2]


def _grid(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def _results(bert: float, bleu: float, rouge: float) -> dict:
    def m(v: float) -> dict:
        return {"mean": v, "ci95": [v - 1, v + 1], "n": 3}

    return {"metrics": {"bertscore": m(bert), "bleu4": m(bleu), "rougeL": m(rouge)}}


class StubTrainer:
    """Stands in for run_training: writes the run folder's run.json (+ eval/results.json) and records the calls."""

    def __init__(self, scores=None, fail: set[str] | None = None):
        self.calls: list[tuple[str, bool, object]] = []
        self.scores = scores or (lambda cfg: (70.0, 11.0, 30.0))
        self.fail = fail or set()

    def __call__(self, cfg, resume: bool) -> Path:
        out = Path(cfg.out)
        self.calls.append((out.name, resume, cfg))
        if out.name in self.fail:
            raise RuntimeError("boom")
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(
            json.dumps({"status": "finished", "global_step": 3, "final": {"train_loss": 1.5}})
        )
        (out / "eval").mkdir(exist_ok=True)
        (out / "eval" / "results.json").write_text(json.dumps(_results(*self.scores(cfg))))
        return out


# ------------------------------------------------------------------------------------------------ expansion


def test_product_grid_names_and_overrides(tmp_path):
    g = _grid(
        tmp_path,
        """
        out_dir: OUT
        fixed:
          data.path: /data/ds
          training.max_steps: 1
        grid:
          training.epochs: [1, 4]
          training.lr: [1e-5, 5.0e-5]
        """,
    )
    spec = load_grid(g, out_dir=tmp_path / "out")
    names = [r.name for r in spec.runs]
    assert names == ["epochs1_lr1e-5", "epochs1_lr5e-5", "epochs4_lr1e-5", "epochs4_lr5e-5"]
    r = spec.runs[2]
    assert r.overrides == {"data.path": "/data/ds", "training.max_steps": 1, "training.epochs": 4,
                           "training.lr": 1e-5, "out": str(tmp_path / "out" / "epochs4_lr1e-5")}  # fmt: skip
    assert r.varied == {"training.epochs": 4, "training.lr": 1e-5}
    assert r.path == tmp_path / "out" / "epochs4_lr1e-5" and r.status == "new"
    assert not (tmp_path / "out").exists()  # planning writes nothing


def test_paired_keys_both_spellings_and_method_values(tmp_path):
    g = _grid(
        tmp_path,
        """
        grid:
          [lora.r, lora.alpha]: [[8, 16], [16, 32]]
          "training.lr": [3e-5]
          method: [lora, rslora]
        """,
    )
    spec = load_grid(g, out_dir=tmp_path / "o")
    assert [r.name for r in spec.runs] == [
        "r8_alpha16_lr3e-5_method-lora",
        "r8_alpha16_lr3e-5_method-rslora",
        "r16_alpha32_lr3e-5_method-lora",
        "r16_alpha32_lr3e-5_method-rslora",
    ]
    assert spec.runs[3].overrides["lora.r"] == 16 and spec.runs[3].overrides["lora.alpha"] == 32
    g2 = _grid(tmp_path, 'grid:\n  "lora.r, lora.alpha": [[8, 16]]\n', "g2.yaml")
    assert load_grid(g2, out_dir=tmp_path / "o").runs[0].overrides["lora.alpha"] == 16


def test_several_grids_share_runs_and_colliding_short_names(tmp_path):
    g = _grid(
        tmp_path,
        """
        grids:
          - title: epochs
            training.epochs: [1, 4]
          - title: lr
            training.epochs: [1]
            training.lr: [1.0e-5, 5.0e-5]
          - galore.rank: [4]
            lora.r: [8]
        """,
    )
    spec = load_grid(g, out_dir=tmp_path / "o")
    # The defaults fill in keys a grid does not vary: epochs1/lr 5e-5 is in grids 0 and 1 and trained once.
    by_name = {r.name: r for r in spec.runs}
    assert {n: r.grids for n, r in by_name.items()} == {
        "epochs1_lr5e-5_rank8_r8": [0, 1],
        "epochs4_lr5e-5_rank8_r8": [0],
        "epochs1_lr1e-5_rank8_r8": [1],
        "epochs4_lr5e-5_rank4_r8": [2],  # epochs 4: the config's default where a grid does not set it
    }
    shared = [r for r in spec.runs if len(r.grids) > 1]
    assert len(shared) == 1 and shared[0].grids == [0, 1]
    assert spec.grids[1].table_keys == ["training.lr"]
    assert short_names(["galore.rank", "lora.r", "training.lr"]) == {
        "galore.rank": "rank",
        "lora.r": "r",
        "training.lr": "lr",
    }
    assert short_names(["galore.rank", "freeze.rank"]) == {
        "galore.rank": "galore-rank",
        "freeze.rank": "freeze-rank",
    }


def test_format_value():
    assert [format_value(v) for v in (5e-05, 1e-4, 3.0e-5, 4.0, 4, 0.5, True, "full", [1, 2], -6, None)] == [
        "5e-5", "1e-4", "3e-5", "4", "4", "0.5", "true", "full", "1+2", "-6", "none",
    ]  # fmt: skip
    assert format_value([]) == "none"  # an empty list (e.g. no context) still names its run


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("grid:\n  lora.rr: [1, 2]\n", r"'lora.rr' is not a training config field \(lora has no 'rr'"),
        ("grid:\n  trainingg.lr: [1.0e-5]\n", r"'trainingg.lr' is not a training config field"),
        ("grid:\n  training.lr.x: [1]\n", r"'training.lr.x': training.lr is a value, not a group"),
        ("fixed:\n  data.pathh: x\ngrid:\n  training.lr: [1.0e-5]\n", r"fixed: 'data.pathh' is not"),
        ("grid:\n  training.lr: [-1.0]\n", r"the run with training.lr=-1.0 is invalid: .*training.lr"),
        ("grid:\n  [lora.r, lora.alpha]: [[8, 16], [4]]\n", r"paired grid key \[lora.r, lora.alpha\].*\[4\]"),
        ("grid:\n  training.lr: []\n", r"training.lr has no values"),
        ("grid:\n  method: [lora, qlora]\n", r"method"),
        ("grid:\n  training.lr: [1.0e-5]\nfixed:\n  training.lr: 1.0e-5\n", r"both fixed and varied"),
        ("grid:\n  training.lr: [1.0e-5]\ngrids: []\n", r"exactly one of grid"),
        ("gird:\n  training.lr: [1.0e-5]\n", r"unknown top-level key\(s\) gird"),
        ("grid:\n  training.lr: [1.0e-5]\neval:\n  splitt: test\n", r"unknown eval key\(s\) splitt"),
        (
            "grid:\n  training.lr: [1.0e-5]\neval:\n  metrics: [bleu4, blue4]\n",
            r"eval.metrics: unknown metric\(s\) blue4",
        ),
        ("base: nowhere.yaml\ngrid:\n  training.lr: [1.0e-5]\n", r"base config nowhere.yaml does not exist"),
    ],
)
def test_invalid_grids_fail_before_anything_runs(tmp_path, text, match):
    g = _grid(tmp_path, text)
    trainer = StubTrainer()
    with pytest.raises(UserError, match=match):
        spec = load_grid(g, out_dir=tmp_path / "out")
        sw.run_sweep(spec, train_fn=trainer)
    assert trainer.calls == [] and not (tmp_path / "out").exists()


def test_thesis_grid_file(monkeypatch):
    import itertools

    grid = REPO / "configs" / "sweeps" / "thesis_lora.yaml"
    monkeypatch.chdir(REPO)  # the grid names its base config relative to the repository
    spec = load_grid(grid, out_dir="/tmp/never-written")
    assert [len(list(itertools.product(*(a.values for a in g.axes)))) for g in spec.grids] == [3, 4, 4]
    assert len(spec.runs) == 9  # 3 + 4 + 4 with the shared (1 epoch, 5e-5, r8/16) run trained once
    shared = [r for r in spec.runs if r.grids == [0, 1, 2]]
    assert [r.name for r in shared] == ["epochs1_lr5e-5_r8_alpha16"]
    assert [g.table_keys for g in spec.grids] == [["training.epochs"], ["training.lr"], ["lora.r", "lora.alpha"]]
    assert spec.eval is not None and spec.eval.split == "test"


SHIPPED_GRIDS = sorted(p.name for p in (REPO / "configs" / "sweeps").glob("*.yaml"))


def test_the_shipped_grids_are_there():
    assert {"thesis_lora.yaml", "thesis_freeze.yaml", "thesis_galore.yaml", "screen_text.yaml"} <= set(SHIPPED_GRIDS)


@pytest.mark.parametrize("grid", SHIPPED_GRIDS)
def test_every_shipped_grid_expands(grid, monkeypatch):
    text = (REPO / "configs" / "sweeps" / grid).read_text(encoding="utf-8")
    base = yaml.safe_load(text).get("base")
    assert not base or (REPO / base).is_file(), f"{grid} names {base}, which is not in the repository"
    monkeypatch.chdir(REPO)
    spec = load_grid(REPO / "configs" / "sweeps" / grid, out_dir="/tmp/never-written")
    assert spec.runs and len({r.name for r in spec.runs}) == len(spec.runs)
    assert "vmeta sweep configs/sweeps/" + grid in text  # the header says how to run it


def test_the_screen_text_grid_runs_the_best_lora_with_and_without_it(monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_grid(REPO / "configs" / "sweeps" / "screen_text.yaml", out_dir="/tmp/never-written")
    assert [r.name for r in spec.runs] == ["context-none", "context-screen_text"]
    assert [r.overrides["data.context"] for r in spec.runs] == [[], ["screen_text"]]
    assert spec.base is not None and spec.base.name == "lora.yaml"  # the thesis' best LoRA config
    text = (REPO / "configs" / "sweeps" / "screen_text.yaml").read_text(encoding="utf-8")
    assert all(f"runs/sweeps/screen_text/{r.name}" in text for r in spec.runs)  # the compare command names them


# ------------------------------------------------------------------------------------------------ scheduling


def test_sequential_sweep_resume_and_table(tmp_path):
    g = _grid(
        tmp_path,
        """
        grids:
          - training.epochs: [1, 4]
          - training.epochs: [1]
            [lora.r, lora.alpha]: [[8, 16], [16, 32]]
        """,
    )
    scores = {("1", 8): (69.0, 11.4, 27.6), ("4", 8): (70.5, 12.3, 31.4), ("1", 16): (70.3, 11.8, 30.7)}
    trainer = StubTrainer(lambda cfg: scores[(f"{cfg.training.epochs:g}", cfg.lora.r)])
    spec = load_grid(g, out_dir=tmp_path / "out")
    assert len(spec.runs) == 3
    result = sw.run_sweep(spec, train_fn=trainer)
    assert [o.status for o in result.outcomes] == ["finished"] * 3
    assert [(n, resume) for n, resume, _ in trainer.calls] == [
        ("epochs1_r8_alpha16", False), ("epochs4_r8_alpha16", False), ("epochs1_r16_alpha32", False),
    ]  # fmt: skip
    md = (tmp_path / "out" / "sweep.md").read_text(encoding="utf-8")
    # One table per grid, rows = the varied values, the best per column in bold (compare's renderer).
    assert "| epochs |" in md and "| r, alpha |" in md
    assert "| epochs=4 | **70.50**" in md
    assert "| r=16, alpha=32 | **70.30**" in md
    assert "## Training" in md
    rows = list(__import__("csv").reader((tmp_path / "out" / "sweep.csv").open(encoding="utf-8")))
    assert rows[0][:4] == ["training.epochs", "lora.r", "lora.alpha", "run"] and len(rows) == 4
    plan = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [r["name"] for r in plan["runs"]] == [r.name for r in spec.runs]

    # Again: everything finished -> nothing trained. Mark one unfinished and leave a stub folder: resumed/restarted.
    trainer.calls.clear()
    info = tmp_path / "out" / "epochs4_r8_alpha16" / "run.json"
    info.write_text(json.dumps({"status": "interrupted"}))
    stub = tmp_path / "out" / "epochs1_r16_alpha32"
    __import__("shutil").rmtree(stub)
    (stub / "logs").mkdir(parents=True)
    spec = load_grid(g, out_dir=tmp_path / "out")
    assert [r.status for r in spec.runs] == ["finished", "resume", "restart"]
    result = sw.run_sweep(spec, train_fn=trainer)
    assert [(n, resume) for n, resume, _ in trainer.calls] == [
        ("epochs4_r8_alpha16", True),
        ("epochs1_r16_alpha32", False),
    ]
    assert [o.status for o in result.outcomes] == ["skipped", "finished", "finished"]


def test_a_failed_run_does_not_stop_the_sweep(tmp_path):
    g = _grid(tmp_path, "grid:\n  training.epochs: [1, 2, 3]\n")
    trainer = StubTrainer(fail={"epochs2"})
    result = sw.run_sweep(load_grid(g, out_dir=tmp_path / "out"), train_fn=trainer)
    assert [o.status for o in result.outcomes] == ["finished", "failed", "finished"]
    assert "RuntimeError: boom" in result.failed[0].error
    md = (tmp_path / "out" / "sweep.md").read_text(encoding="utf-8")
    assert "## Failed runs" in md and "epochs2" in md


STUB_WORKER = """
import json, os, sys, time
from pathlib import Path
job = json.loads(Path(sys.argv[1]).read_text())
out = Path(job["path"]); out.mkdir(parents=True, exist_ok=True)
t0 = time.time(); time.sleep(0.5)
(out / "run.json").write_text(json.dumps({"status": "finished", "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                          "start": t0, "end": time.time()}))
Path(sys.argv[1]).with_name(job["name"] + ".result.json").write_text(
    json.dumps({"name": job["name"], "status": "finished", "seconds": 0.5, "error": None, "evaluated": False}))
"""


def test_parallel_one_run_per_gpu(tmp_path, monkeypatch):
    worker = tmp_path / "worker.py"
    worker.write_text(STUB_WORKER)
    monkeypatch.setattr(sw, "worker_command", lambda job: [sys.executable, str(worker), str(job)])
    g = _grid(tmp_path, "grid:\n  training.lr: [1.0e-5, 2.0e-5, 3.0e-5, 4.0e-5]\n")
    spec = load_grid(g, out_dir=tmp_path / "out")
    result = sw.run_sweep(spec, gpus=["0", "1"])
    assert [o.status for o in result.outcomes] == ["finished"] * 4
    infos = [json.loads((r.path / "run.json").read_text()) for r in spec.runs]
    assert {i["gpu"] for i in infos} == {"0", "1"}
    # Two at a time: the first two runs overlap in time.
    assert infos[0]["start"] < infos[1]["end"] and infos[1]["start"] < infos[0]["end"]
    jobs = json.loads((tmp_path / "out" / ".sweep" / f"{spec.runs[0].name}.json").read_text())
    assert jobs["overrides"]["training.lr"] == 1e-5


def test_cli_dry_run_lists_runs(tmp_path):
    from typer.testing import CliRunner

    from vmeta.cli import app

    g = _grid(tmp_path, "grid:\n  training.epochs: [1, 4]\n  [lora.r, lora.alpha]: [[8, 16], [16, 32]]\n")
    res = CliRunner().invoke(app, ["sweep", str(g), "--dry-run", "--out-dir", str(tmp_path / "out"),
                                   "--set", "training.max_steps=1"])  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    for name in ("epochs1_r8_alpha16", "epochs4_r16_alpha32", "will run", "4 run(s)"):
        assert name in res.output
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(app, ["sweep", str(g), "--dry-run", "--set", "lora.rank=3"])
    assert isinstance(res.exception, UserError) and "lora.rank" in str(res.exception)


# ------------------------------------------------------------------------------------------------ real training


@pytest.mark.slow
def test_two_run_sweep_on_the_tiny_model(tmp_path, train_dataset, train_settings):
    """run_training for real (max_steps 1), then predict + eval on the val split, then the table; again: skipped."""
    fixed = {
        "model.name": "tiny",
        "data.path": str(train_dataset),
        "data.frame_cache": "memory",
        "data.cutoff_len": 256,
        "training.batch_size": 2,
        "training.grad_accum": 1,
        "training.max_steps": 1,
        "training.warmup": 0,
        "training.save_steps": 1000,
        "lora.alpha": 8,
    }
    g = _grid(
        tmp_path,
        yaml.safe_dump(
            {
                "fixed": fixed,
                "grid": {"lora.r": [2, 4]},
                "eval": {"split": "val", "no_bertscore": True, "bootstrap": 0, "max_new_tokens": 4},
            }
        ),
    )
    spec = load_grid(g, out_dir=tmp_path / "sweep")
    assert [r.name for r in spec.runs] == ["r2", "r4"]
    result = sw.run_sweep(spec, settings=train_settings)
    assert [o.status for o in result.outcomes] == ["finished", "finished"], [o.error for o in result.outcomes]
    for r in spec.runs:
        info = json.loads((r.path / "run.json").read_text())
        assert info["status"] == "finished" and info["global_step"] == 1
        assert (r.path / "adapter" / "adapter_config.json").is_file()
        assert json.loads((r.path / "adapter" / "adapter_config.json").read_text())["r"] == int(r.name[1:])
        assert (r.path / "eval" / "results.json").is_file()
    md = (tmp_path / "sweep" / "sweep.md").read_text(encoding="utf-8")
    assert "| r |" in md and "| r=2 |" in md and "| r=4 |" in md and "BLEU-4" in md
    mtimes = {r.name: (r.path / "run.json").stat().st_mtime_ns for r in spec.runs}

    spec = load_grid(g, out_dir=tmp_path / "sweep")
    assert [r.status for r in spec.runs] == ["finished", "finished"]
    result = sw.run_sweep(spec, settings=train_settings)
    assert [o.status for o in result.outcomes] == ["skipped", "skipped"]
    assert {r.name: (r.path / "run.json").stat().st_mtime_ns for r in spec.runs} == mtimes


def test_the_evaluation_scores_bertscore_with_the_sweep_s_encoder_and_layer(tmp_path):
    """eval.bert_model / bert_layer reach BERTScore (they once raised TypeError: BertScoreConfig has no 'layer')."""
    from vmeta.config import Settings

    settings = Settings(data_dir=tmp_path, models_dir=tmp_path / "models", hf_offline=True)
    bert = EvalSettings(bert_model="my-bert", bert_layer=5).bert_config(settings)
    assert (bert.model, bert.num_layers, bert.models_dir, bert.offline) == (
        "my-bert",
        5,
        str(tmp_path / "models"),
        True,
    )
    assert EvalSettings(no_bertscore=True).bert_config(settings) is None
