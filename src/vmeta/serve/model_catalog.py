"""Which model variants one server can offer: the base, its LoRA adapters, merged exports.

:func:`discover` lists, without loading anything:

- the **base** model from configuration (a registered name, a hub id or a local folder);
- **adapters** given as ``--adapter NAME=PATH`` (PATH: an adapter folder or a run folder);
- **run folders** under ``runs/`` written by ``vmeta train``: ``runs/NAME/run.json`` plus ``adapter/`` (a PEFT
  adapter, served beside the base as ``BASE:NAME``) or ``model/`` (full weights, served as its own model ``NAME``);
- **exports** under ``exports/``: folders with ``config.json`` + ``*.safetensors`` (merged models, served as
  ``NAME``).

Each :class:`CatalogEntry` says whether it can be served and, when not, why (an adapter trained on another base
model, a folder without weights, ...): such entries are listed, never served silently on the wrong base.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from vmeta import runs
from vmeta.config import Settings
from vmeta.errors import UserError
from vmeta.runs import RunManifest
from vmeta.serve.engine_api import ModelInfo
from vmeta.video.sampling import FrameSettings

log = logging.getLogger(__name__)

Kind = Literal["base", "adapter", "merged"]
Origin = Literal["config", "option", "runs", "exports"]

_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@dataclass(frozen=True)
class CatalogEntry:
    info: ModelInfo
    kind: Kind
    origin: Origin
    path: Path | None = None  # adapter folder (kind adapter) or full-model folder (kind merged); None for the base
    trained_on: str | None = None  # the base model an adapter says it was trained on
    available: bool = True
    reason: str = ""  # why not available
    run: RunManifest | None = field(default=None, compare=False, hash=False)  # the run's manifest, when it has one

    @property
    def id(self) -> str:
        return self.info.id

    def unavailable(self, reason: str) -> CatalogEntry:
        desc = f"unavailable: {reason}"
        return replace(self, available=False, reason=reason, info=replace(self.info, description=desc))


# ---------------------------------------------------------------------------------------------------------------
# Base-model identity


def base_model_id(base: str | Path, settings: Settings) -> str:
    """The id clients use for the base: the registered name, the hub id, or the folder name."""
    from vmeta.models.resolution import resolve

    try:
        return resolve(base, settings, build_tiny=False).spec.name
    except Exception:
        text = str(base).rstrip("/\\")
        return Path(text).name if ("/" in text and Path(text).expanduser().exists()) else text


def _identity(name: str | Path, settings: Settings) -> set[str]:
    """Keys under which a base model is known: registered name, hub id, real path, and name tails."""
    from vmeta.models.resolution import resolve

    text = str(name).strip()
    keys: set[str] = set()
    try:
        r = resolve(text, settings, build_tiny=False)
    except Exception:
        r = None
    if r is None:
        tail = text.rstrip("/\\").replace("\\", "/").split("/")[-1].lower()
        keys.add(f"tail:{tail}")
        keys.add(f"raw:{text.lower()}")
        return keys
    if r.registered:
        keys.add(f"name:{r.spec.name.lower()}")
        keys.add(f"tail:{r.spec.name.lower()}")
        keys.update(f"tail:{a.lower()}" for a in r.spec.aliases)
    if r.hub_id:
        keys.add(f"hub:{r.hub_id.lower()}")
        keys.add(f"tail:{r.hub_id.split('/')[-1].lower()}")
    if r.path is not None:
        keys.add(f"path:{os.path.realpath(r.path)}")
    return keys


def same_base(a: str | Path, b: str | Path, settings: Settings) -> bool:
    """Whether two ways of naming a base model name the same model (``tiny`` and its folder, a registered
    name and its hub id, a training machine's ``/data/Qwen2-VL-2B-Instruct`` and ``qwen2-vl-2b-instruct``)."""
    ka, kb = _identity(a, settings), _identity(b, settings)
    if ka & kb:
        # Two distinct local folders are distinct models even when their names agree.
        pa = {k for k in ka if k.startswith("path:")}
        pb = {k for k in kb if k.startswith("path:")}
        return not (pa and pb and not pa & pb and not {k for k in ka if k.startswith(("hub:", "name:"))} & kb)
    return False


# ---------------------------------------------------------------------------------------------------------------
# Folders


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _manifest(folder: Path) -> RunManifest | None:
    """The run's manifest (vmeta.runs); None for folders without one, or with one that cannot be read (the
    variant is then listed from its weights alone, as a bare adapter or model folder)."""
    try:
        return runs.read_run(folder)
    except UserError:
        return None


def _adapter_dir(folder: Path) -> Path | None:
    for cand in (folder, folder / "adapter"):
        if (cand / "adapter_config.json").is_file():
            return cand
    return None


def _adapter_problem(adapter: Path) -> str | None:
    cfg = _read_json(adapter / "adapter_config.json")
    if cfg is None:
        return f"{adapter / 'adapter_config.json'} cannot be read as JSON"
    if not any((adapter / w).is_file() for w in _ADAPTER_WEIGHTS):
        return f"{adapter} has adapter_config.json but no adapter weights (adapter_model.safetensors)"
    return None


def _full_model_problem(folder: Path) -> str | None:
    """None when the folder holds a loadable full model (config.json, safetensors weights, tokenizer)."""
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index) or {}
        shards = set((data.get("weight_map") or {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if not shards or missing:
            return f"{folder} is incomplete: missing weight shards {', '.join(missing[:3]) or '(empty index)'}"
    elif not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        return f"{folder} has config.json but no weights (*.safetensors)"
    if not any((folder / t).is_file() for t in _TOKENIZER_FILES):
        return f"{folder} has weights but no tokenizer/processor files; re-export it with `vmeta export`"
    return None


def _adapter_trained_on(adapter: Path, run: RunManifest | None) -> str | None:
    if run is not None and run.base_name:
        return run.base_name
    cfg = _read_json(adapter / "adapter_config.json") or {}
    value = cfg.get("base_model_name_or_path")
    return str(value) if value else None


# ---------------------------------------------------------------------------------------------------------------
# Discovery


def parse_adapter_option(text: str) -> tuple[str, str]:
    """``NAME=PATH`` (or a bare PATH, named after its folder) -> (name, path)."""

    if "=" in text:
        name, path = text.split("=", 1)
        name, path = name.strip(), path.strip()
    else:
        path = text.strip()
        p = Path(path.rstrip("/\\"))
        name = p.parent.name if p.name == "adapter" else p.name
    if not name or not path:
        raise UserError(f"--adapter {text!r}: write it as NAME=PATH (PATH: an adapter folder or a run folder).")
    if ":" in name or "/" in name:
        raise UserError(f"--adapter {text!r}: the name must not contain ':' or '/'.")
    return name, path


def discover(
    base: str | Path,
    settings: Settings,
    adapters: dict[str, str | Path] | None = None,
    runs_dir: str | Path | None = None,
    exports_dir: str | Path | None = None,
) -> list[CatalogEntry]:
    """Every servable variant (and every one that is listed but cannot be served, with the reason)."""
    bid = base_model_id(base, settings)
    entries: list[CatalogEntry] = [
        CatalogEntry(
            info=ModelInfo(id=bid, base=bid, adapter=None, kind="base", description="base model"),
            kind="base",
            origin="config",
        )
    ]
    taken = {bid}
    seen_adapters: set[str] = set()

    def add_adapter(name: str, folder: Path, origin: Origin, run_cfg: RunManifest | None) -> None:
        mid = f"{bid}:{name}"
        if mid in taken:
            mid = f"{bid}:{origin}/{name}"
        adapter = _adapter_dir(folder)
        info = ModelInfo(
            id=mid,
            base=bid,
            adapter=name,
            kind="adapter",
            description=f"LoRA adapter {name} on {bid} (switched per request, no reload)",
        )
        entry = CatalogEntry(info=info, kind="adapter", origin=origin, path=adapter or folder, run=run_cfg)
        if adapter is None:
            entry = entry.unavailable(f"{folder} holds no adapter_config.json (nor adapter/adapter_config.json)")
        else:
            key = os.path.realpath(adapter)
            if key in seen_adapters:
                return
            seen_adapters.add(key)
            trained_on = _adapter_trained_on(adapter, run_cfg)
            entry = replace(entry, trained_on=trained_on)
            problem = _adapter_problem(adapter)
            if problem:
                entry = entry.unavailable(problem)
            elif trained_on and not same_base(trained_on, base, settings):
                entry = entry.unavailable(f"trained on {trained_on}, but this server's base model is {bid}")
        taken.add(mid)
        entries.append(entry)

    def add_full(name: str, folder: Path, origin: Origin, run_cfg: RunManifest | None) -> None:
        mid = name if name not in taken else f"{origin}/{name}"
        info = ModelInfo(
            id=mid,
            base=(run_cfg.base_name if run_cfg else None) or mid,
            adapter=None,
            kind="merged",
            description="merged model (full weights; loaded on demand, replacing the previously loaded full model)",
        )
        entry = CatalogEntry(info=info, kind="merged", origin=origin, path=folder, run=run_cfg)
        problem = _full_model_problem(folder)
        if problem:
            entry = entry.unavailable(problem)
        taken.add(mid)
        entries.append(entry)

    for name, path in (adapters or {}).items():
        folder = Path(path).expanduser()
        run_cfg = _manifest(folder) or (_manifest(folder.parent) if folder.name == "adapter" else None)
        if not folder.is_dir():
            info = ModelInfo(id=f"{bid}:{name}", base=bid, adapter=name, kind="adapter")
            entries.append(
                CatalogEntry(info=info, kind="adapter", origin="option", path=folder).unavailable(
                    f"adapter folder {folder} does not exist"
                )
            )
            taken.add(info.id)
            continue
        add_adapter(name, folder, "option", run_cfg)

    if runs_dir is not None and Path(runs_dir).is_dir():
        for folder in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
            run_cfg = _manifest(folder)
            if _adapter_dir(folder) is not None:
                add_adapter(folder.name, folder, "runs", run_cfg)
            elif (folder / "model" / "config.json").is_file():
                add_full(folder.name, folder / "model", "runs", run_cfg)
            elif (folder / "config.json").is_file():
                add_full(folder.name, folder, "runs", run_cfg)
            elif run_cfg is not None:
                info = ModelInfo(id=f"{bid}:{folder.name}", base=bid, adapter=folder.name, kind="adapter")
                entries.append(
                    CatalogEntry(info=info, kind="adapter", origin="runs", path=folder, run=run_cfg).unavailable(
                        f"run {folder.name} has no adapter/ or model/ yet (training not finished, or it failed)"
                    )
                )

    if exports_dir is not None and Path(exports_dir).is_dir():
        for folder in sorted(p for p in Path(exports_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (folder / "config.json").is_file():
                add_full(folder.name, folder, "exports", _manifest(folder))
            elif _adapter_dir(folder) is not None:
                add_adapter(folder.name, folder, "exports", _manifest(folder))
    return entries


# ---------------------------------------------------------------------------------------------------------------
# Frames each variant reads

CPU_MIN_PIXELS = 56 * 56  # the training configs' min_pixels (configs/qwen2-vl-2b/*.yaml)


def base_frames(spec, device: str, settings: Settings) -> tuple[FrameSettings, str]:  # type: ignore[no-untyped-def]
    """The base model's frames: the family's defaults on a GPU; on a CPU the training budget
    (``VMETA_CPU_VIDEO_MAX_PIXELS`` per frame), since the defaults (up to 602k pixels a frame, ~10k visual tokens
    for a 15 s clip) take minutes per answer there."""
    from dataclasses import replace as dc_replace

    from vmeta.models.generate import frame_settings_for
    from vmeta.models.registry import QWEN_FAMILIES

    fs = frame_settings_for(spec)
    if not device.startswith("cpu") or spec.family not in QWEN_FAMILIES:  # fixed sizes (InternVL) or own reader
        return fs, "model defaults"
    budget = int(settings.cpu_video_max_pixels)
    if fs.max_pixels is not None and fs.max_pixels <= budget:
        return fs, "model defaults"
    lo = min(fs.effective_min_pixels, CPU_MIN_PIXELS, budget)
    return dc_replace(fs, max_pixels=budget, min_pixels=lo), "CPU budget: VMETA_CPU_VIDEO_MAX_PIXELS"


def recorded_frames(entry: CatalogEntry) -> FrameSettings | None:
    """The frames a fine-tuned variant was trained on: its run.json, or the export manifest of a merged model.
    None when the folder does not say (a bare adapter folder): it then reads the base model's frames."""
    if entry.kind == "base" or entry.path is None:
        return None
    frames = entry.run.frames if entry.run is not None else None
    if not isinstance(frames, dict) and entry.kind == "merged":
        frames = (_read_json(entry.path / "vmeta_export.json") or {}).get("frames")
    if not isinstance(frames, dict):
        return None
    try:
        return FrameSettings.from_dict(frames)
    except (TypeError, ValueError):
        return None


def recorded_context(entry: CatalogEntry) -> Any:
    """The context (`vmeta.dataset.context.ContextSettings`) a variant was trained with — its run.json, or the
    export manifest of a merged model; none for the base model and for folders that do not say."""
    from vmeta.dataset.context import ContextSettings

    if entry.kind == "base" or entry.path is None:
        return ContextSettings()
    ctx = entry.run.context if entry.run is not None else None
    if not isinstance(ctx, dict) and entry.kind == "merged":
        ctx = (_read_json(entry.path / "vmeta_export.json") or {}).get("context")
    try:
        return ContextSettings.from_dict(ctx if isinstance(ctx, dict) else None)
    except UserError as exc:  # a newer writer's kind: serve without it rather than refuse the variant
        log.warning("%s: its context cannot be used (%s); answers will not add it.", entry.path, exc)
        return ContextSettings()


def frames_summary(fs: FrameSettings, source: str) -> dict:
    """What a client is told about a variant's frames (GET /api/models, /v1/models)."""
    out: dict = {"source": source, "index_rule": fs.index_rule}
    if fs.nframes is not None:
        out["nframes"] = fs.nframes
    else:
        out.update(fps=fs.fps, min_frames=fs.min_frames, max_frames=fs.max_frames)
    if fs.resized_height is not None:
        out.update(height=fs.resized_height, width=fs.resized_width)
    else:
        out.update(min_pixels=fs.min_pixels, max_pixels=fs.max_pixels, total_pixels=fs.total_pixels)
    return out


__all__ = [
    "CatalogEntry",
    "base_frames",
    "base_model_id",
    "discover",
    "frames_summary",
    "parse_adapter_option",
    "recorded_context",
    "recorded_frames",
    "same_base",
]
