"""A training run folder's manifest, ``run.json``: written and read only here.

``vmeta train`` writes it as the run goes (:func:`update_run`); export, prediction, the chat server's catalogue,
model loading and sweeps read it (:func:`read_run`) as a typed :class:`RunManifest`, so a key changes in one
place. Run folders written by earlier versions, or by hand, still load: :func:`_migrate` maps the older shapes
(``model`` as a string, ``base_model`` as a dict, ``state`` for ``status``, ``completed`` for ``finished``, the method
only in ``config.yaml``, ...) onto today's, and nothing else in the package knows them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from vmeta.errors import UserError
from vmeta.jsonio import read_json, write_json

RUN_JSON = "run.json"
RUN_FORMAT = "vmeta-run/1"
STATUSES = ("running", "finished", "interrupted", "failed")
FINISHED = "finished"
# Spellings of "finished" found in run folders written by hand or by older scripts.
_FINISHED_ALIASES = {"completed", "complete", "done", "success", "succeeded", "ok"}


class ModelRecord(BaseModel):
    """The base model: as the user named it, and what training actually loaded."""

    model_config = ConfigDict(extra="allow")
    name: str | None = None
    resolved: str | None = None  # the local folder or hub id loaded
    hub_id: str | None = None
    family: str | None = None
    source: str | None = None
    model_class: str | None = None


class DatasetRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    path: str | None = None
    content_hash: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    train_samples: int | None = None
    val_samples: int | None = None
    train_ids_hash: str | None = None


class RunManifest(BaseModel):
    """What a run folder says about itself. Unknown keys are kept (``extra``), so a newer writer loses nothing."""

    model_config = ConfigDict(extra="allow")
    format: str | None = None
    name: str | None = None
    method: str | None = None
    base_model: str | None = None  # the base model as the user named it (registered name, hub id, folder)
    model: ModelRecord = ModelRecord()
    dataset: DatasetRecord | None = None
    prompt: str | None = None
    prompt_hash: str | None = None
    frames: dict[str, Any] | None = None  # vmeta.video.sampling.FrameSettings.to_dict()
    context: dict[str, Any] | None = None  # vmeta.dataset.context.ContextSettings.to_dict(); None: no context
    status: str | None = None  # running | finished | interrupted | failed
    started: str | None = None
    finished: str | None = None
    updated: str | None = None
    adapter: str | None = None  # "adapter" when the run saves a PEFT adapter
    weights: str | None = None  # "model" when it saves full weights
    global_step: int | None = None
    samples_per_s: float | None = None
    trainable_parameters: int | None = None
    final: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    last_eval: dict[str, Any] | None = None

    @property
    def is_finished(self) -> bool:
        return self.status == FINISHED

    @property
    def base_name(self) -> str | None:
        """The base model as named in training (what a registry lookup starts from)."""
        return self.base_model or self.model.name

    @property
    def base_resolved(self) -> str | None:
        return self.model.resolved

    def frame_settings(self, where: Path | str = RUN_JSON):  # type: ignore[no-untyped-def]
        """The frames the run was trained on (a FrameSettings), or None where it did not record them."""
        if not self.frames:
            return None
        from vmeta.video.sampling import FrameSettings

        try:
            return FrameSettings.from_dict(self.frames)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: its frame settings cannot be used ({exc}); fix 'frames' there.") from None

    def get(self, key: str, default: Any = None) -> Any:
        """A top-level value by name, the recorded extra keys included (e.g. ``libraries``, ``precision``)."""
        return self.model_dump().get(key, default)


def run_json(folder: str | Path) -> Path:
    return Path(folder) / RUN_JSON


def read_run(folder: str | Path) -> RunManifest | None:
    """The manifest of a run folder; None where it has no run.json (a bare adapter folder, an export). A run.json
    that is not JSON, or not an object, is a UserError naming the file."""
    path = run_json(folder)
    if not path.is_file():
        return None
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object; this folder's run.json was overwritten by something else.")
    # config.yaml only for what run.json leaves out (older runs): the catalogue re-reads every run every few seconds
    complete = all(raw.get(k) for k in ("method", "dataset", "frames")) and (raw.get("base_model") or raw.get("model"))
    return _validate(_migrate(raw, {} if complete else read_config(folder)), path)


def update_run(folder: str | Path, **fields: Any) -> RunManifest:
    """Merge `fields` into run.json (atomically; ``updated`` set to now) -> the manifest as written."""
    path = run_json(folder)
    raw = read_json(path) if path.is_file() else {}
    if not isinstance(raw, dict):
        raw = {}
    merged = raw | fields | {"updated": now()}
    manifest = _validate(merged, path)
    write_json(path, merged)
    return manifest


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _validate(raw: dict[str, Any], path: Path) -> RunManifest:
    try:
        return RunManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{path}: '{where}' {first['msg'].lower()}; fix that key or remove it.") from None


def read_config(folder: str | Path) -> dict[str, Any]:
    """config.yaml, the resolved training config beside run.json ({} where absent): the method's parameters, and
    where older run folders kept the method itself."""
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: cannot read it as YAML ({exc}).") from None
    return data if isinstance(data, dict) else {}


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that should hold an object ({} where it does not): adapter_config.json and the like."""
    try:
        data = read_json(path)
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def lookup(d: Any, dotted: str) -> Any:
    """``d["a"]["b"]`` for "a.b"; None where a part is missing or the value is empty."""
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return None if d in ("", {}) else d


def _first(sources: list[dict], keys: tuple[str, ...]) -> Any:
    for src in sources:
        for key in keys:
            if (value := lookup(src, key)) is not None:
                return value
    return None


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | Path | int | float) and not isinstance(value, bool) else None


def _migrate(raw: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Today's shape from any shape a run.json has had (plus config.yaml for what older ones left out)."""
    out = dict(raw)
    sources = [raw, config]
    status = _first([raw], ("status", "state"))
    if isinstance(status, dict):
        status = status.get("state") or status.get("status")
    if status is not None:
        status = str(status).lower()
        out["status"] = FINISHED if status in _FINISHED_ALIASES else status
    out.pop("state", None)
    method = _first(sources, ("method", "training.method", "train.method", "finetuning.method"))
    out["method"] = str(method).lower() if method else None

    model = raw.get("model")
    record = dict(model) if isinstance(model, dict) else {}
    base = raw.get("base_model")
    if isinstance(base, dict):  # {"name": ..., "resolved": ...}
        for key in ("resolved", "resolved_id", "path"):
            record.setdefault("resolved", base.get(key))
        base = base.get("name")
    name = _text(base) or _text(model) or _first([record], ("name", "name_or_path", "base"))
    if name is None:
        name = _text(_first([config], ("model.name", "model.base", "model.name_or_path", "model")))
    record["name"] = record.get("name") or name
    resolved = _first(
        [record, raw],
        ("resolved", "resolved_id", "pretrained_id", "path", "base_model_resolved", "resolved_model"),
    )
    record["resolved"] = _text(resolved)
    for key in ("resolved_id", "pretrained_id", "path", "name_or_path", "base"):
        record.pop(key, None)
    out["model"] = record
    out["base_model"] = name
    for key in ("base_model_resolved", "resolved_model"):
        out.pop(key, None)

    prompt = raw.get("prompt")
    if isinstance(prompt, dict):  # {"text": ..., "hash": ...}
        out["prompt"] = prompt.get("text")
        out.setdefault("prompt_hash", prompt.get("hash"))
    dataset = _first(sources, ("dataset", "data"))
    if isinstance(dataset, str | Path):
        dataset = {"path": str(dataset)}
    if isinstance(dataset, dict):
        dataset = dict(dataset)
        dataset.setdefault("content_hash", dataset.get("hash") or raw.get("dataset_hash"))
        dataset.pop("hash", None)
        out["dataset"] = dataset
    else:
        out["dataset"] = None
    out.pop("data", None)
    if not isinstance(out.get("frames"), dict):
        frames = _first([config], ("frames", "frame_settings", "video"))
        out["frames"] = frames if isinstance(frames, dict) else None
    return out


__all__ = [
    "FINISHED",
    "RUN_FORMAT",
    "RUN_JSON",
    "STATUSES",
    "DatasetRecord",
    "ModelRecord",
    "RunManifest",
    "lookup",
    "now",
    "read_config",
    "read_json_object",
    "read_run",
    "run_json",
    "update_run",
]
