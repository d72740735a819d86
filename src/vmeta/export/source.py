"""What an export starts from: the run folder (what it says about itself, which weights it holds) and the base
model it fine-tuned, found on this machine (export merges offline, so it never downloads).

Every problem is found here, before a model loads: a missing, unfinished or weightless run, a base model that is
not on disk, a run without processor files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmeta import runs
from vmeta.config import Settings
from vmeta.errors import UserError

# Processor files: where they are found, the run's own processor wins over the base model's.
_PROCESSOR_MARKERS = ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json")


@dataclass
class RunInfo:
    """What a run folder says about itself (run.json + config.yaml + which weights it holds)."""

    path: Path
    name: str
    method: str
    manifest: runs.RunManifest
    config: dict[str, Any]  # config.yaml: the training config (method parameters for the model card)
    adapter_dir: Path | None
    model_dir: Path | None
    base_name: str | None  # registered name / hub id / folder as the user gave it
    base_resolved: str | None  # the local folder or hub id training actually loaded
    status: str | None

    @property
    def is_adapter(self) -> bool:
        return self.adapter_dir is not None


def read_run(run_dir: str | Path) -> RunInfo:
    """Describe a finished run folder; a clear error when it is missing, unfinished or holds no weights."""
    path = Path(run_dir).expanduser()
    if not path.exists():
        raise UserError(f"run folder {path} does not exist; give the folder `vmeta train --out` wrote.")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run folder; give the folder `vmeta train --out` wrote.")
    manifest = runs.read_run(path)
    if manifest is None:
        raise UserError(
            f"{path} has no run.json, so it is not a (finished) `vmeta train` run folder. "
            "If training was interrupted, finish it with `vmeta train ... --resume` first."
        )
    config = runs.read_config(path)
    status = manifest.status
    if status is not None and not manifest.is_finished:
        raise UserError(
            f"run {path} is not finished (run.json status: {status!r}); resume it with "
            f"`vmeta train --config {path / 'config.yaml'} --resume` (or wait for it) before exporting."
        )
    method = manifest.method or ""
    adapter_dir = path / "adapter" if (path / "adapter" / "adapter_config.json").is_file() else None
    model_dir = path / "model" if (path / "model" / "config.json").is_file() else None
    if adapter_dir is None and model_dir is None:
        if (path / "adapter_config.json").is_file():
            adapter_dir = path
        else:
            raise UserError(
                f"run {path} holds no final weights (neither adapter/adapter_config.json nor model/config.json); "
                "was training stopped before it saved? Resume it with `vmeta train ... --resume`."
            )
    if not method:
        method = "lora" if adapter_dir is not None else "full"
    base_name = manifest.base_name
    if adapter_dir is not None and not base_name:
        base_name = runs.read_json_object(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
    return RunInfo(
        path=path,
        name=path.resolve().name,
        method=method,
        manifest=manifest,
        config=config,
        adapter_dir=adapter_dir,
        model_dir=model_dir,
        base_name=str(base_name) if isinstance(base_name, str | Path) else None,
        base_resolved=manifest.base_resolved,
        status=status,
    )


def locate_base(info: RunInfo, override: str | None, settings: Settings) -> str:
    """A local folder (or registered name on disk) for the run's base model; never downloads.

    Order: ``--base``; the folder training resolved (when it still exists); the recorded name through the registry.
    """
    from vmeta.models.resolution import resolve

    if override:
        folder = Path(override).expanduser()
        if folder.is_dir():
            if not (folder / "config.json").is_file():
                raise UserError(f"--base {folder}: no config.json there, so it is not a model folder.")
            return str(folder.resolve())
        r = resolve(override, settings)
        if r.source == "hub":
            raise UserError(f"--base {override}: {r.name} is not on this machine either ({r.where}); give a folder.")
        return r.pretrained_id
    if info.base_resolved and Path(info.base_resolved).expanduser().is_dir():
        return str(Path(info.base_resolved).expanduser().resolve())
    name = info.base_name or info.base_resolved
    if not name:
        raise UserError(
            f"{info.path / 'run.json'} does not say which base model the run fine-tuned; pass --base DIR "
            "(the model folder training started from)."
        )
    try:
        r = resolve(name, settings)
    except UserError as exc:
        raise UserError(
            f"the base model of run {info.path} ({name!r}) cannot be found: {exc} Pass --base DIR to point at it."
        ) from None
    if r.source == "hub":
        hub = r.hub_id or name
        recorded = f" (training loaded it from {info.base_resolved})" if info.base_resolved else ""
        raise UserError(
            f"the base model {name!r}{recorded} is not available locally, and export needs it to merge the adapter. "
            f"Download it (huggingface-cli download {hub} --local-dir DIR) and pass --base DIR, "
            f"or put it under VMETA_MODELS_DIR as {hub.split('/')[-1]}."
        )
    return r.pretrained_id


def base_dtype(folder: str) -> str:
    cfg = runs.read_json_object(Path(folder) / "config.json")
    value = cfg.get("dtype") or cfg.get("torch_dtype") or (cfg.get("text_config") or {}).get("dtype")
    return value if value in ("bfloat16", "float16", "float32") else "float32"


def processor_dir(info: RunInfo, base_dir: str) -> Path:
    for cand in (info.path, info.model_dir, Path(base_dir)):
        if cand is not None and any((cand / m).is_file() for m in _PROCESSOR_MARKERS):
            return cand
    raise UserError(
        f"no processor files ({', '.join(_PROCESSOR_MARKERS)}) in {info.path} nor in the base model {base_dir}."
    )


def base_marker(info: RunInfo, base_dir: str | None) -> Path | None:
    """The base model's vmeta.json (written by `vmeta models build-tiny`), if the base folder is known."""
    for folder in (base_dir, info.base_resolved):
        if folder and (Path(folder) / "vmeta.json").is_file():
            return Path(folder) / "vmeta.json"
    return None


__all__ = ["RunInfo", "base_dtype", "base_marker", "locate_base", "processor_dir", "read_run"]
