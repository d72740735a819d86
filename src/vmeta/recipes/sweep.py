"""`vmeta sweep GRID.yaml`: a grid of training runs over any config field, then ONE comparison table.

A grid file::

    base: configs/qwen2-vl-2b/lora.yaml        # the config every run starts from (optional: the defaults)
    out_dir: runs/sweeps/thesis_lora           # each run goes to out_dir/<name made of its varied values>
    fixed:                                     # dotted overrides applied to every run
      data.path: dataset
    grid:                                      # the product of these values (or `grids:`, a list of such mappings,
      training.epochs: [1, 4, 8]               #   each its own table — thesis tables 4.4, 4.5, 4.6 — with runs
      training.lr: [3e-5, 5e-5]                #   that appear in several grids trained once)
      [lora.r, lora.alpha]: [[8, 16], [16, 32]]    # paired keys vary together
    eval:                                      # optional: predict + eval each finished run on a split
      split: test

Every combination is validated (unknown keys, bad values) before anything runs. Runs go one after another in this
process, or with ``gpus=[0, 1, ...]`` one per GPU in parallel (a worker process per run with
``CUDA_VISIBLE_DEVICES``). Finished runs are skipped, unfinished ones resumed, evaluations already written kept, so
running the same command again continues a sweep. ``out_dir/sweep.md`` (+ ``sweep.csv``, ``sweep.json``) holds the
table: rows = the varied values, columns BERTScore F1 / BLEU-4 / ROUGE-L with 95% CIs, best per column in bold
(rendered by :mod:`vmeta.evaluate.compare`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vmeta.errors import UserError
from vmeta.jsonio import atomic_write_text, read_json, write_json
from vmeta.models.load import free_memory
from vmeta.runs import FINISHED, RunManifest, read_run

SWEEP_MD = "sweep.md"
SWEEP_CSV = "sweep.csv"
SWEEP_JSON = "sweep.json"
JOBS_DIR = ".sweep"
GRID_KEYS = {"base", "out_dir", "fixed", "grid", "grids", "eval", "name", "description"}
EVAL_KEYS = {"split", "limit", "metrics", "bert_model", "bert_layer", "no_bertscore", "bootstrap", "max_new_tokens",
             "batch_size", "device"}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The grid file


class _GridLoader(yaml.SafeLoader):
    """SafeLoader that accepts a flow sequence as a mapping key (``[lora.r, lora.alpha]: [...]``) as a tuple."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    out = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list):
            key = tuple(key)
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_GridLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class Axis:
    """One grid dimension: a key (or paired keys) and its values (one tuple per step, one entry per key)."""

    keys: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]


@dataclass
class Grid:
    title: str
    axes: list[Axis]

    @property
    def keys(self) -> list[str]:
        return [k for a in self.axes for k in a.keys]

    @property
    def table_keys(self) -> list[str]:
        """The keys whose values differ between this grid's runs (single-value axes only set the context)."""
        return [k for a in self.axes if len(a.values) > 1 for k in a.keys] or self.keys


@dataclass
class EvalSettings:
    split: str = "test"
    limit: int | None = None
    metrics: list[str] | None = None
    bert_model: str = "bert-base-chinese"
    bert_layer: int = 8
    no_bertscore: bool = False
    bootstrap: int = 1000
    max_new_tokens: int = 512
    batch_size: int = 1
    device: str | None = None

    def bert_config(self, settings: Any = None) -> Any:
        """BERTScore for the evaluation (None with no_bertscore), found where the settings say models live."""
        if self.no_bertscore:
            return None
        from vmeta.config import get_settings
        from vmeta.evaluate.bertscore import BertScoreConfig

        return BertScoreConfig.from_settings(
            settings or get_settings(), model=self.bert_model, num_layers=self.bert_layer
        )

    def __post_init__(self) -> None:
        """An unknown metric is refused when the sweep is read, not after its first run has trained."""
        if self.metrics is not None:
            from vmeta.evaluate.metrics import METRICS

            unknown = [m for m in self.metrics if m not in METRICS]
            if unknown:
                raise UserError(
                    f"eval.metrics: unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}."
                )


@dataclass
class PlannedRun:
    name: str
    path: Path
    overrides: dict[str, Any]  # fixed + this combination + out (what load_config gets)
    varied: dict[str, Any]  # every key varied anywhere in the sweep -> its value in this run
    grids: list[int]  # which grids (tables) this run belongs to
    status: str = "new"  # new | finished | resume | restart (see plan_status)


@dataclass
class SweepSpec:
    source: Path
    base: Path | None
    out_dir: Path
    fixed: dict[str, Any]
    grids: list[Grid]
    eval: EvalSettings | None
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def varied_keys(self) -> list[str]:
        keys: list[str] = []
        for g in self.grids:
            for k in g.keys:
                if k not in keys:
                    keys.append(k)
        return keys


def _parse_key(key: Any, where: str) -> tuple[str, ...]:
    if isinstance(key, tuple):
        keys = key
    elif isinstance(key, str):
        text = key.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        keys = tuple(k.strip() for k in text.split(","))
    else:
        raise UserError(f"{where}: grid key {key!r} must be a dotted config field like training.lr.")
    if not keys or any(not isinstance(k, str) or not k.strip() for k in keys):
        raise UserError(f"{where}: grid key {key!r} must be a dotted config field like training.lr.")
    return tuple(k.strip() for k in keys)


_SCI = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _number(v: Any) -> Any:
    """YAML 1.1 reads 5e-5 (no dot) as a string; take it as the number it is meant to be."""
    if isinstance(v, str) and _SCI.fullmatch(v.strip()):
        return float(v)
    if isinstance(v, list | tuple):
        return type(v)(_number(x) for x in v)
    return v


def _parse_axis(key: Any, raw: Any, where: str) -> Axis:
    keys = _parse_key(key, where)
    label = keys[0] if len(keys) == 1 else "[" + ", ".join(keys) + "]"
    values = [_number(v) for v in (raw if isinstance(raw, list) else [raw])]
    if not values:
        raise UserError(f"{where}: grid key {label} has no values; give a list like [1, 4, 8].")
    steps = []
    for v in values:
        if len(keys) == 1:
            steps.append((v,))
        else:
            if not isinstance(v, list | tuple) or len(v) != len(keys):
                raise UserError(
                    f"{where}: paired grid key {label}: each value must be a list of {len(keys)} "
                    f"(one per key), got {v!r}."
                )
            steps.append(tuple(v))
    return Axis(keys, tuple(steps))


def _config_fields() -> dict[str, Any]:
    from vmeta.train.config import TrainConfig

    return TrainConfig.model_fields


def check_key(key: str, where: str) -> None:
    """A dotted key must name a field of TrainConfig (``lora.r``, ``training.lr``, ``data.frames.fps`` ...)."""
    from pydantic import BaseModel

    fields = _config_fields()
    parts = key.split(".")
    path: list[str] = []
    for i, part in enumerate(parts):
        if part not in fields:
            group = ".".join(path) or "the config"
            known = ", ".join(sorted(fields))
            raise UserError(
                f"{where}: '{key}' is not a training config field ({group} has no '{part}'; it has: {known})."
            )
        path.append(part)
        ann = fields[part].annotation
        if i < len(parts) - 1:
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                fields = ann.model_fields
            elif ann in (dict, dict[str, Any]) or str(ann).startswith("dict"):
                return  # free-form mapping (data.frames): its keys are checked when the config validates
            else:
                raise UserError(f"{where}: '{key}': {'.'.join(path)} is a value, not a group of settings.")


def _resolve_path(text: str | Path, grid_file: Path) -> Path:
    p = Path(text).expanduser()
    if p.is_absolute() or p.exists():
        return p
    beside = grid_file.parent / p
    return beside if beside.exists() else p


def load_grid(
    path: str | Path,
    *,
    out_dir: str | Path | None = None,
    fixed: dict[str, Any] | None = None,
    eval_override: bool | None = None,
) -> SweepSpec:
    """Read and fully validate a grid file: every run's config is built (and validated) here, nothing runs."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise UserError(f"grid file {source} does not exist.")
    try:
        data = yaml.load(source.read_text(encoding="utf-8"), Loader=_GridLoader)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise UserError(f"{source}: the top level must be a mapping (base:, out_dir:, fixed:, grid: ...).")
    unknown = [k for k in data if k not in GRID_KEYS]
    if unknown:
        raise UserError(
            f"{source}: unknown top-level key(s) {', '.join(map(str, unknown))}; use {', '.join(sorted(GRID_KEYS))}."
        )
    if ("grid" in data) == ("grids" in data):
        raise UserError(f"{source}: give exactly one of grid: (a mapping of key -> values) or grids: (a list of them).")

    base = _resolve_path(data["base"], source) if data.get("base") else None
    if base is not None and not base.is_file():
        raise UserError(
            f"{source}: base config {data['base']} does not exist (looked in the current folder and beside the grid file)."
        )
    out = Path(out_dir or data.get("out_dir") or Path("runs") / "sweeps" / source.stem).expanduser()
    if not isinstance(data.get("fixed") or {}, dict):
        raise UserError(f"{source}: fixed: must be a mapping of dotted keys to values.")
    fixed_all = {str(k): _number(v) for k, v in (data.get("fixed") or {}).items()}
    fixed_all.update(fixed or {})
    for k in fixed_all:
        check_key(str(k), f"{source} fixed")

    raw_grids = [data["grid"]] if "grid" in data else data["grids"]
    if not isinstance(raw_grids, list) or not raw_grids:
        raise UserError(f"{source}: grids: must be a non-empty list of mappings.")
    grids: list[Grid] = []
    for gi, raw in enumerate(raw_grids):
        where = f"{source} grid" if "grid" in data else f"{source} grids[{gi}]"
        if not isinstance(raw, dict) or not raw:
            raise UserError(f"{where}: must be a mapping of config keys to lists of values.")
        raw = dict(raw)
        title = str(raw.pop("title", "")) or None
        axes = [_parse_axis(k, v, where) for k, v in raw.items()]
        seen: set[str] = set()
        for a in axes:
            for k in a.keys:
                check_key(k, where)
                if k in seen:
                    raise UserError(f"{where}: '{k}' appears twice in one grid.")
                if k in fixed_all:
                    raise UserError(f"{where}: '{k}' is both fixed and varied; drop it from fixed:.")
                if k == "out":
                    raise UserError(f"{where}: 'out' cannot be varied; each run's folder is named from its values.")
                seen.add(k)
        grids.append(Grid(title or " × ".join(_axis_label(a) for a in axes), axes))

    ev = None
    raw_eval = data.get("eval")
    if raw_eval not in (None, False) and eval_override is not False:
        raw_eval = {} if raw_eval is True else raw_eval
        if not isinstance(raw_eval, dict):
            raise UserError(f"{source}: eval: must be a mapping (split:, limit:, bert_model: ...) or true.")
        bad = [k for k in raw_eval if k not in EVAL_KEYS]
        if bad:
            raise UserError(f"{source}: unknown eval key(s) {', '.join(bad)}; use {', '.join(sorted(EVAL_KEYS))}.")
        ev = EvalSettings(**raw_eval)
    elif eval_override:
        ev = EvalSettings()

    spec = SweepSpec(source=source, base=base, out_dir=out, fixed=fixed_all, grids=grids, eval=ev)
    spec.runs = expand(spec)
    return spec


def _axis_label(a: Axis) -> str:
    return ", ".join(_short(k) for k in a.keys)


# ---------------------------------------------------------------------------------------------------------------
# Expansion and naming


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, or more of it where two keys would read the same."""
    out = {}
    for k in keys:
        parts = k.split(".")
        n = 1
        while n < len(parts) and sum(1 for o in keys if o.split(".")[-n:] == parts[-n:]) > 1:
            n += 1
        out[k] = "-".join(parts[-n:])
    return out


def format_value(v: Any) -> str:
    """Compact, filesystem-safe text for a value: 5e-05 -> 5e-5, 4.0 -> 4, True -> true, [a, b] -> a+b."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e6:
            return str(int(v))
        text = f"{v:.6e}" if v != 0 and abs(v) < 1e-3 else f"{v:g}"
        m = re.fullmatch(r"(-?[\d.]+)e([+-])0*(\d+)", text)
        if m:
            mantissa = m.group(1).rstrip("0").rstrip(".") if "." in m.group(1) else m.group(1)
            text = f"{mantissa}e{'-' if m.group(2) == '-' else ''}{m.group(3)}"
        return text
    if isinstance(v, list | tuple):
        return "+".join(format_value(x) for x in v)
    if v is None:
        return "none"
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(v)).strip("-") or "x"


def run_name(varied: dict[str, Any], shorts: dict[str, str]) -> str:
    parts = []
    for k, v in varied.items():
        text = format_value(v)
        sep = "-" if text[:1].isalpha() else ""
        parts.append(f"{shorts[k]}{sep}{text}")
    return "_".join(parts) or "run"


def _config_value(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return node


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """Every combination of every grid -> a validated run; runs equal in all varied values are merged."""
    from vmeta.train.config import load_config

    keys = spec.varied_keys
    shorts = short_names(keys)
    runs: dict[str, PlannedRun] = {}
    for gi, grid in enumerate(spec.grids):
        for combo in itertools.product(*(a.values for a in grid.axes)):
            overrides = dict(spec.fixed)
            for axis, step in zip(grid.axes, combo, strict=True):
                overrides.update(dict(zip(axis.keys, step, strict=True)))
            shown = ", ".join(f"{k}={v!r}" for k, v in overrides.items() if k in grid.keys)
            try:
                cfg = load_config(spec.base, overrides)
            except UserError as exc:
                raise UserError(f"{spec.source}: the run with {shown} is invalid: {exc}") from None
            # The run's value of EVERY varied key (from its config when this grid does not vary it), so a run
            # shared by several grids gets the same name in each.
            varied = {k: overrides[k] if k in overrides else _config_value(cfg, k) for k in keys}
            name = run_name(varied, shorts)
            if name in runs:
                if gi not in runs[name].grids:
                    runs[name].grids.append(gi)
                continue
            path = spec.out_dir / name
            runs[name] = PlannedRun(name, path, {**overrides, "out": str(path)}, varied, [gi])
    planned = list(runs.values())
    for r in planned:
        r.status = plan_status(r.path)
    return planned


def plan_status(path: Path) -> str:
    """new (no folder) | finished (skipped) | resume (an unfinished run) | restart (a folder without run.json)."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return "new"
    info = _run_info(path)
    if info is None:
        return "restart"
    return FINISHED if info.is_finished else "resume"


def _run_info(path: Path) -> RunManifest | None:
    try:
        return read_run(path)
    except UserError:  # a run.json that cannot be read: the run starts again
        return None


# ---------------------------------------------------------------------------------------------------------------
# Running


TrainFn = Callable[[Any, bool], Path]  # (TrainConfig, resume) -> run folder


def _default_train(cfg: Any, resume: bool, settings: Any = None, progress: bool = False) -> Path:
    from vmeta.train.run import run_training

    return run_training(cfg, resume=resume, progress=progress, settings=settings)


@dataclass
class RunOutcome:
    name: str
    status: str  # finished | skipped | failed
    seconds: float = 0.0
    error: str | None = None
    evaluated: bool = False


def run_one(
    spec_base: Path | None,
    planned: PlannedRun,
    eval_settings: EvalSettings | None,
    *,
    train_fn: TrainFn | None = None,
    settings: Any = None,
    progress: bool = False,
) -> RunOutcome:
    """Train (or resume, or skip) one run, then evaluate it when asked. Errors are returned, not raised."""
    from vmeta.train.config import load_config

    t0 = time.perf_counter()
    status = plan_status(planned.path)
    try:
        if status != FINISHED:
            if status == "restart":
                _clear_stub(planned.path)
            cfg = load_config(spec_base, planned.overrides)
            if train_fn is not None:
                train_fn(cfg, status == "resume")
            else:
                _default_train(cfg, status == "resume", settings, progress)
            info = _run_info(planned.path)
            if info is None or not info.is_finished:
                raise RuntimeError(f"training ended with status {info.status if info else None!r}")
        evaluated = False
        if eval_settings is not None:
            try:
                evaluated = evaluate_run(planned.path, eval_settings, settings=settings)
            except Exception as exc:
                raise RuntimeError(f"trained, but the evaluation failed: {type(exc).__name__}: {exc}") from exc
        return RunOutcome(planned.name, "skipped" if status == FINISHED else "finished",
                          time.perf_counter() - t0, evaluated=evaluated)  # fmt: skip
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one failed run does not stop the sweep; it is reported at the end
        return RunOutcome(planned.name, "failed", time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")


def _clear_stub(path: Path) -> None:
    """A folder without run.json: a run interrupted before it wrote anything worth keeping (only logs/config)."""
    leftovers = {p.name for p in path.iterdir()}
    if leftovers <= {"logs", "config.yaml", "checkpoints"}:
        shutil.rmtree(path)
    else:
        raise UserError(
            f"{path} exists but holds no run.json and other files ({', '.join(sorted(leftovers))}); "
            "move it away or delete it, then run the sweep again."
        )


def evaluate_run(run: Path, ev: EvalSettings, *, settings: Any = None) -> bool:
    """predict + eval on ``ev.split`` into run/eval/ (resumable; skipped when results.json exists)."""
    out = run / "eval"
    if (out / "results.json").is_file():
        return True
    try:
        from vmeta.evaluate.report import EvalConfig, run_eval
        from vmeta.models.generate import GenerationSettings
        from vmeta.predict import PredictConfig, predict
    except ImportError as exc:  # pragma: no cover - the modules ship together
        raise UserError(f"evaluation needs vmeta's predict and evaluate modules ({exc}).") from None
    import yaml as _yaml

    cfg = _yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    info = _run_info(run) or RunManifest()
    data = (info.dataset.path if info.dataset else None) or (cfg.get("data") or {}).get("path")
    if not data:
        raise UserError(f"{run / 'config.yaml'}: no data.path, so the {ev.split} split cannot be predicted.")
    # Predict with what the model saw in training: the run's frame settings and prompt.
    frames = info.frame_settings(run / "run.json")
    prompt = info.prompt or (cfg.get("data") or {}).get("prompt")
    out.mkdir(parents=True, exist_ok=True)
    preds = out / "predictions.jsonl"
    pc = PredictConfig(
        data=Path(data),
        out=preds,
        run=run,
        split=ev.split,
        limit=ev.limit,
        batch_size=ev.batch_size,
        generation=GenerationSettings(max_new_tokens=ev.max_new_tokens),
        frames=frames,
        device=ev.device,
        prompt=prompt,
    )
    summary = predict(pc, settings=settings)
    if summary.errors:
        raise RuntimeError(f"{summary.errors} prediction(s) failed in {preds} (ids {summary.error_ids[:5]})")
    run_eval(preds, out, EvalConfig(metrics=ev.metrics, bert=ev.bert_config(settings), n_boot=ev.bootstrap))
    from vmeta.models.load import clear_model_cache

    clear_model_cache()
    return True


def _job_file(spec: SweepSpec, planned: PlannedRun) -> Path:
    path = spec.out_dir / JOBS_DIR / f"{planned.name}.json"
    write_json(
        path,
        {
            "base": str(spec.base) if spec.base else None,
            "name": planned.name,
            "path": str(planned.path),
            "overrides": planned.overrides,
            "varied": planned.varied,
            "eval": spec.eval.__dict__ if spec.eval else None,
        },
    )
    return path


def worker_command(job: Path) -> list[str]:
    """The process that runs one job on one GPU (the same code as the sequential path)."""
    return [sys.executable, "-m", "vmeta.recipes.sweep", str(job)]


def _run_parallel(
    spec: SweepSpec, todo: list[PlannedRun], gpus: list[str], log: Callable[[str], None]
) -> list[RunOutcome]:
    """One worker process per GPU slot; each slot takes the next run when its previous one ends."""
    logs = spec.out_dir / JOBS_DIR
    queue = list(todo)
    active: dict[str, tuple[subprocess.Popen, PlannedRun, float, Any]] = {}
    outcomes: list[RunOutcome] = []
    try:
        while queue or active:
            for gpu in gpus:
                if gpu not in active and queue:
                    planned = queue.pop(0)
                    job = _job_file(spec, planned)
                    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
                    fh = open(logs / f"{planned.name}.log", "ab")  # noqa: SIM115 - closed when the process ends
                    proc = subprocess.Popen(worker_command(job), env=env, stdout=fh, stderr=subprocess.STDOUT)
                    active[gpu] = (proc, planned, time.perf_counter(), fh)
                    log(f"[gpu {gpu}] started {planned.name}")
            time.sleep(0.2)
            for gpu, (proc, planned, t0, fh) in list(active.items()):
                if proc.poll() is None:
                    continue
                fh.close()
                del active[gpu]
                result_path = logs / f"{planned.name}.result.json"
                if result_path.is_file():
                    r = read_json(result_path)
                    outcome = RunOutcome(**r)
                    result_path.unlink()
                else:
                    outcome = RunOutcome(planned.name, "failed", time.perf_counter() - t0,
                                         error=f"worker exited with code {proc.returncode}; see {logs / (planned.name + '.log')}")  # fmt: skip
                outcomes.append(outcome)
                log(f"[gpu {gpu}] {outcome.status} {planned.name}" + (f": {outcome.error}" if outcome.error else ""))
    except BaseException:
        for proc, *_ in active.values():
            proc.terminate()
        for proc, _, _, fh in active.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            fh.close()
        raise
    return outcomes


@dataclass
class SweepResult:
    spec: SweepSpec
    outcomes: list[RunOutcome]
    table_md: Path | None
    table_csv: Path | None

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def run_sweep(
    spec: SweepSpec,
    *,
    gpus: list[str] | None = None,
    train_fn: TrainFn | None = None,
    settings: Any = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run every planned run (skipping finished ones), evaluate if asked, then write the comparison table."""
    say = log or (lambda _m: None)
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    (spec.out_dir / JOBS_DIR).mkdir(exist_ok=True)
    _write_plan(spec)
    outcomes: list[RunOutcome] = []
    if gpus:
        if train_fn is not None:
            raise ValueError("train_fn only applies to sequential sweeps (the GPU workers run vmeta's training)")
        outcomes = _run_parallel(spec, spec.runs, gpus, say)
    else:
        for i, planned in enumerate(spec.runs, 1):
            say(f"[{i}/{len(spec.runs)}] {planned.name} ({plan_status(planned.path)})")
            outcome = run_one(spec.base, planned, spec.eval, train_fn=train_fn, settings=settings, progress=progress)
            outcomes.append(outcome)
            say(
                f"[{i}/{len(spec.runs)}] {outcome.status} {planned.name}"
                + (f": {outcome.error}" if outcome.error else "")
            )
            free_memory()
    order = {r.name: i for i, r in enumerate(spec.runs)}
    outcomes.sort(key=lambda o: order.get(o.name, 0))
    md, csv_path = write_tables(spec, outcomes)
    return SweepResult(spec, outcomes, md, csv_path)


def _write_plan(spec: SweepSpec) -> None:
    write_json(
        spec.out_dir / SWEEP_JSON,
        {
            "format": "vmeta-sweep/1",
            "grid_file": str(spec.source.resolve()),
            "base": str(spec.base) if spec.base else None,
            "fixed": spec.fixed,
            "grids": [
                {
                    "title": g.title,
                    "keys": g.keys,
                    "axes": [{"keys": list(a.keys), "values": [list(v) for v in a.values]} for a in g.axes],
                }
                for g in spec.grids
            ],
            "eval": spec.eval.__dict__ if spec.eval else None,
            "runs": [
                {"name": r.name, "path": str(r.path), "varied": r.varied, "overrides": r.overrides, "grids": r.grids}
                for r in spec.runs
            ],
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# The table


def _row_label(run: PlannedRun, keys: list[str], shorts: dict[str, str]) -> str:
    return ", ".join(f"{shorts[k]}={format_value(run.varied[k])}" for k in keys)


def _training_table(spec: SweepSpec, runs: list[PlannedRun], keys: list[str], outcomes: dict[str, RunOutcome]) -> str:
    shorts = short_names(keys)
    head = [*(shorts[k] for k in keys), "status", "steps", "train loss", "samples/s", "peak memory (MB)", "run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in runs:
        info = _run_info(r.path) or RunManifest()
        o = outcomes.get(r.name)
        status = info.status or (o.status if o else "not run")
        if o and o.status == "failed":
            status = "failed"
        final = info.final or {}
        mem = info.get("memory") or {}
        peak = mem.get("peak_cuda_allocated_mb") or mem.get("peak_rss_mb")
        loss = final.get("train_loss")
        cells = [
            *(format_value(r.varied[k]) for k in keys),
            str(status),
            str(info.global_step if info.global_step is not None else "–"),
            f"{loss:.4f}" if isinstance(loss, int | float) else "–",
            f"{info.samples_per_s:.3g}" if info.samples_per_s is not None else "–",
            f"{peak:,.0f}" if isinstance(peak, int | float) else "–",
            f"`{r.path}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _metrics_table(runs: list[PlannedRun], keys: list[str]) -> tuple[str, str] | None:
    """(markdown, csv) from vmeta.evaluate.compare for the runs with eval/results.json; None when there are none."""
    have = [r for r in runs if (r.path / "eval" / "results.json").is_file()]
    if not have:
        return None
    from vmeta.evaluate.compare import compare, to_csv, to_markdown

    shorts = short_names(keys)
    labels = [_row_label(r, keys, shorts) for r in have]
    try:
        cmp = compare([r.path for r in have], names=labels, paired=False)
    except UserError as exc:  # e.g. results that share no metric: say so in the table file instead of failing
        return f"The evaluated runs cannot be put in one table: {exc}\n", ""
    md = to_markdown(cmp)
    first_col = ", ".join(shorts[k] for k in keys)
    md = md.replace("| run |", f"| {first_col} |", 1)
    # CSV: the varied values as their own columns in front of compare's columns.
    rows = list(csv.reader(io.StringIO(to_csv(cmp))))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*keys, *rows[0]])
    by_label = dict(zip(labels, have, strict=True))
    for row in rows[1:]:
        r = by_label[row[0]]
        w.writerow([*(r.varied[k] for k in keys), *row])
    return md, buf.getvalue()


def write_tables(spec: SweepSpec, outcomes: list[RunOutcome]) -> tuple[Path, Path | None]:
    """out_dir/sweep.md: one table per grid (rows = varied values; BERTScore F1 / BLEU-4 / ROUGE-L, best in bold)
    and the training summary; out_dir/sweep.csv: every evaluated run with its varied values as columns."""
    by_name = {o.name: o for o in outcomes}
    lines = [f"# Sweep `{spec.source.name}`", ""]
    lines.append(f"Base config: `{spec.base or 'defaults'}`; fixed: `{json.dumps(spec.fixed, ensure_ascii=False)}`; "
                 f"runs in `{spec.out_dir}`.")  # fmt: skip
    lines.append("")
    csv_text = None
    all_keys = spec.varied_keys
    for gi, grid in enumerate(spec.grids):
        runs = [r for r in spec.runs if gi in r.grids]
        if len(spec.grids) > 1:
            lines += [f"## {grid.title}", ""]
        metrics = _metrics_table(runs, grid.table_keys)
        if metrics is not None:
            lines += [metrics[0].rstrip(), ""]
            missing = [r.name for r in runs if not (r.path / "eval" / "results.json").is_file()]
            if missing:
                lines += [f"Not evaluated (yet): {', '.join(missing)}.", ""]
        elif spec.eval is None:
            lines += [
                "No evaluation configured (add `eval:` to the grid file to predict + score each run on the test split).",
                "",
            ]
        else:
            lines += ["No run has been evaluated yet.", ""]
    all_metrics = _metrics_table(spec.runs, all_keys)
    if all_metrics is not None and all_metrics[1]:
        csv_text = all_metrics[1]
    lines += ["## Training", "", _training_table(spec, spec.runs, all_keys, by_name).rstrip(), ""]
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{o.name}`: {o.error}" for o in failed] + [""]
    md_path = spec.out_dir / SWEEP_MD
    atomic_write_text(md_path, "\n".join(lines))
    csv_path = None
    if csv_text is not None:
        csv_path = spec.out_dir / SWEEP_CSV
        atomic_write_text(csv_path, csv_text)
    return md_path, csv_path


# ---------------------------------------------------------------------------------------------------------------
# Worker entry point: python -m vmeta.recipes.sweep JOB.json (one run on the GPU CUDA_VISIBLE_DEVICES names)


def _worker(job_path: str) -> int:
    job = read_json(job_path)
    planned = PlannedRun(job["name"], Path(job["path"]), job["overrides"], job["varied"], [])
    ev = EvalSettings(**job["eval"]) if job.get("eval") else None
    outcome = run_one(Path(job["base"]) if job.get("base") else None, planned, ev)
    write_json(Path(job_path).with_name(f"{planned.name}.result.json"), outcome.__dict__)
    if outcome.error:
        print(outcome.error, file=sys.stderr)
    return 0 if outcome.status != "failed" else 1


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    raise SystemExit(_worker(sys.argv[1]))


__all__ = [
    "Axis",
    "EvalSettings",
    "Grid",
    "PlannedRun",
    "RunOutcome",
    "SweepResult",
    "SweepSpec",
    "check_key",
    "expand",
    "format_value",
    "load_grid",
    "plan_status",
    "run_name",
    "run_one",
    "run_sweep",
    "short_names",
    "write_tables",
]
