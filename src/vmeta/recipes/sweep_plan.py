"""What a sweep will do, decided before anything runs: the grid file read and validated, every run planned.

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

Every combination is built into a validated training config here (unknown keys, bad values), so a typo fails
before the first run trains; each planned run knows whether its folder is new, finished, unfinished or a stub.
The plan is written to ``out_dir/sweep.json``. Running it is :mod:`vmeta.recipes.sweep`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vmeta.errors import UserError
from vmeta.jsonio import write_json
from vmeta.recipes.sweep_names import last_part, run_name, short_names
from vmeta.runs import FINISHED, RunManifest, read_run

SWEEP_JSON = "sweep.json"
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
    return ", ".join(last_part(k) for k in a.keys)


# ---------------------------------------------------------------------------------------------------------------
# Expansion


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
    info = run_info(path)
    if info is None:
        return "restart"
    return FINISHED if info.is_finished else "resume"


def run_info(path: Path) -> RunManifest | None:
    """The run folder's manifest, or None where it has no readable run.json."""
    try:
        return read_run(path)
    except UserError:  # a run.json that cannot be read: the run starts again
        return None


def write_plan(spec: SweepSpec) -> None:
    """out_dir/sweep.json: the grids and every planned run, so the folder says what made it."""
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


__all__ = [
    "Axis",
    "EvalSettings",
    "Grid",
    "PlannedRun",
    "SweepSpec",
    "check_key",
    "expand",
    "load_grid",
    "plan_status",
    "run_info",
    "write_plan",
]
