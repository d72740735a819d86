"""Whether a model's weights are on this machine, and where: the user's models folders, the data dir, the
Hugging Face cache. Reads the disk only — never the network — so `vmeta models list` and config checks work
offline and say "would download" before anything is fetched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from vmeta.config import Settings, get_settings
from vmeta.models.registry import ModelSpec

Source = Literal["local", "hf-cache", "hub", "build"]  # build: the tiny model, built on first use

_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


def complete_folder(folder: Path) -> bool:
    """A folder holds a loadable checkpoint: config.json plus weights (every shard an index names)."""
    if not (folder / "config.json").is_file():
        return False
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
            except (OSError, json.JSONDecodeError):
                return False
            return bool(shards) and all((folder / s).is_file() for s in shards)
    return any(p.is_file() for g in _WEIGHT_GLOBS for p in folder.glob(g))


def tiny_path(settings: Settings) -> Path:
    return settings.data_dir / "models" / "tiny"


def _candidate_folders(spec: ModelSpec, settings: Settings) -> list[Path]:
    if spec.built_locally:
        return [tiny_path(settings)]
    roots = [r for r in (settings.models_dir, settings.data_dir / "models") if r is not None]
    names = [spec.name]
    if spec.hub_id:
        names += [spec.hub_id, spec.hub_id.split("/")[-1], spec.hub_id.replace("/", "--")]
    return [Path(root).expanduser() / n for root in roots for n in names]


def hf_cache_snapshot(hub_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder of ``hub_id`` when config.json and all weights are cached; None otherwise.

    Reads the local Hugging Face cache only (``try_to_load_from_cache``, then the snapshots folder when no
    ``refs/main`` was recorded, e.g. after a download by commit hash), never the network.
    """
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        cfg = try_to_load_from_cache(hub_id, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:  # malformed ids and the like: simply not cached
        return None
    if isinstance(cfg, str):
        snapshot = Path(cfg).parent
        return snapshot if complete_folder(snapshot) else None
    if revision is not None:
        return None
    snapshots = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    complete = [d for d in snapshots.iterdir() if d.is_dir() and complete_folder(d)]
    return max(complete, key=lambda d: d.stat().st_mtime) if complete else None


def locate(spec: ModelSpec, settings: Settings | None = None) -> tuple[Source, Path | None]:
    """Where the model is: ("local", folder), ("hf-cache", snapshot) or ("hub", None). No network."""
    settings = settings or get_settings()
    for folder in _candidate_folders(spec, settings):
        if complete_folder(folder):
            return "local", folder
    if spec.hub_id:
        snap = hf_cache_snapshot(spec.hub_id)
        if snap is not None:
            return "hf-cache", snap
    return "hub", None


def is_available_locally(spec: ModelSpec, settings: Settings | None = None) -> bool:
    """True when the weights are on disk (a local folder, the models dir or the HF cache). No network."""
    return locate(spec, settings)[0] != "hub"


__all__ = ["Source", "complete_folder", "hf_cache_snapshot", "is_available_locally", "locate", "tiny_path"]
