"""What the user typed -> what to load: a registered name, a Hugging Face hub id ("org/name") or a local
folder becomes a :class:`ResolvedModel` (the spec, where its weights are, what to pass to ``from_pretrained``).

A folder or cached snapshot that is not registered is described from its config.json (family, class, remote
code). No network, no torch/transformers; only the tiny model is built, on first use.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from vmeta.config import Settings, get_settings
from vmeta.errors import UserError
from vmeta.models.local_weights import Source, complete_folder, hf_cache_snapshot, locate, tiny_path
from vmeta.models.registry import (
    DEMO_NOTES,
    INTERNVL_QUIRKS,
    MODELS,
    QWEN2_5_VL_QUIRKS,
    QWEN2_VL_QUIRKS,
    TINY_KINDS,
    VIDEOLLAMA3_QUIRKS,
    Family,
    ModelSpec,
    lookup_hub_id,
    lookup_name,
    registered_names,
)
from vmeta.models.tiny import read_tiny_info


@dataclass(frozen=True)
class ResolvedModel:
    """What to load and from where. ``pretrained_id`` is what to pass to ``from_pretrained``."""

    spec: ModelSpec
    source: Source
    path: Path | None  # local folder (a models dir, a user folder, the data dir or an HF-cache snapshot)
    hub_id: str | None
    registered: bool  # spec comes from the table (not synthesised for an ad-hoc hub id / folder)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def family(self) -> Family:
        return self.spec.family

    @property
    def trust_remote_code(self) -> bool:
        return self.spec.trust_remote_code

    @property
    def pretrained_id(self) -> str:
        """A local folder when the weights are on disk (loads without network), else the hub id."""
        if self.path is not None:
            return str(self.path)
        if self.hub_id is None:
            raise UserError(f"model {self.name!r} has no local folder and no hub id.")
        return self.hub_id

    @property
    def where(self) -> str:
        if self.source == "hub":
            return f"would download {self.hub_id}"
        if self.source == "build":
            return f"would build into {self.path}"
        return f"{self.source}: {self.path}"


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

_MODEL_TYPE_FAMILY: dict[str, tuple[Family, bool]] = {
    # config.json model_type -> (family, needs trust_remote_code)
    "qwen2_vl": ("qwen2_vl", False),
    "qwen2_5_vl": ("qwen2_5_vl", False),
    "internvl": ("internvl", False),
    "internvl_chat": ("internvl", True),
    "video_llama_3": ("videollama3", False),
    "videollama3_qwen2": ("videollama3", True),
}
_FAMILY_CLASS = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "internvl": "InternVLForConditionalGeneration",
    "videollama3": "VideoLlama3ForConditionalGeneration",
}
_FAMILY_QUIRKS = {
    "qwen2_vl": QWEN2_VL_QUIRKS,
    "qwen2_5_vl": QWEN2_5_VL_QUIRKS,
    "internvl": INTERNVL_QUIRKS,
    "videollama3": VIDEOLLAMA3_QUIRKS,
}


def spec_for_folder(folder: Path, *, hub_id: str | None = None) -> ModelSpec:
    """Describe a checkpoint folder from its config.json (and vmeta.json for the tiny model)."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        if (folder / "adapter_config.json").is_file():
            raise UserError(
                f"{folder} holds a PEFT adapter, not a full model: load it together with its base model "
                "(use the run folder, e.g. --run DIR), or merge it first with `vmeta export`."
            )
        raise UserError(f"{folder}: no config.json, so this is not a transformers model folder.")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{cfg_path}: cannot read it as JSON ({exc}).") from None
    model_type = str(cfg.get("model_type", ""))
    label = hub_id or folder.name
    vmeta_info = read_tiny_info(folder)
    if vmeta_info and vmeta_info.get("kind") in TINY_KINDS:
        notes = MODELS["tiny"].notes if vmeta_info["kind"] == "tiny-random" else DEMO_NOTES
        return replace(
            MODELS["tiny"], name=label, parameters=vmeta_info.get("parameters"), aliases=(), default=False, notes=notes
        )
    if model_type in _MODEL_TYPE_FAMILY:
        family, remote = _MODEL_TYPE_FAMILY[model_type]
        if family == "videollama3" and remote:
            model_class = "AutoModelForCausalLM"
        elif remote:
            model_class = "AutoModel"
        else:
            model_class = _FAMILY_CLASS[family]
        return ModelSpec(
            name=label,
            hub_id=hub_id,
            family=family,
            model_class=model_class,
            model_type=model_type,
            trust_remote_code=remote,
            quirks=_FAMILY_QUIRKS[family],
            notes=f"detected from {cfg_path.name} (model_type {model_type!r})",
        )
    archs = cfg.get("architectures") or []
    return ModelSpec(
        name=label,
        hub_id=hub_id,
        family="other",
        model_class=archs[0] if archs else "AutoModelForImageTextToText",
        model_type=model_type or None,
        trust_remote_code=bool(cfg.get("auto_map")),
        notes=f"model_type {model_type!r} is not one vmeta knows; loaded with transformers' Auto classes as-is",
    )


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1 or text.endswith("/")


def unknown_model_message(name: str) -> str:
    names = ", ".join(registered_names())
    return (
        f"unknown model {name!r}. Registered models: {names}. "
        "You can also give a Hugging Face hub id (org/name) or a local model folder."
    )


def resolve(name_or_path: str | Path, settings: Settings | None = None, *, build_tiny: bool = True) -> ResolvedModel:
    """A registered name, a hub id ("org/name") or a local folder -> :class:`ResolvedModel`. No network.

    The ``tiny`` model is built into ``DATA_DIR/models/tiny`` the first time it is resolved (``build_tiny=False``
    only reports where it would be).
    """
    settings = settings or get_settings()
    text = str(name_or_path).strip()
    if not text:
        raise UserError(f"no model given. Registered models: {', '.join(registered_names())}.")

    spec = lookup_name(text) if not isinstance(name_or_path, Path) else None
    if spec is not None:
        if spec.built_locally:
            return _resolve_tiny(spec, settings, build=build_tiny)
        source, path = locate(spec, settings)
        return ResolvedModel(spec=spec, source=source, path=path, hub_id=spec.hub_id, registered=True)

    folder = Path(text).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        return ResolvedModel(spec=spec_for_folder(folder), source="local", path=folder, hub_id=None, registered=False)
    if isinstance(name_or_path, Path) or _looks_like_path(text) or folder.exists():
        raise UserError(f"model folder {text} does not exist (or is not a folder).")

    if _HUB_ID.match(text):
        spec = lookup_hub_id(text)
        if spec is not None:
            source, path = locate(spec, settings)
            return ResolvedModel(spec=spec, source=source, path=path, hub_id=spec.hub_id, registered=True)
        snap = hf_cache_snapshot(text)
        if snap is not None:
            return ResolvedModel(
                spec=spec_for_folder(snap, hub_id=text), source="hf-cache", path=snap, hub_id=text, registered=False
            )
        adhoc = ModelSpec(
            name=text,
            hub_id=text,
            family="other",
            model_class="AutoModelForImageTextToText",
            notes="not registered; family is detected from config.json once downloaded",
        )
        return ResolvedModel(spec=adhoc, source="hub", path=None, hub_id=text, registered=False)

    raise UserError(unknown_model_message(text))


def _resolve_tiny(spec: ModelSpec, settings: Settings, *, build: bool) -> ResolvedModel:
    folder = tiny_path(settings)
    if not complete_folder(folder):
        if not build:
            return ResolvedModel(spec=spec, source="build", path=folder, hub_id=None, registered=True)
        from vmeta.models.tiny import build_tiny

        # An empty or missing folder is built; a broken one (e.g. an interrupted copy) is rebuilt.
        broken = folder.is_dir() and any(folder.iterdir())
        build_tiny(folder, force=broken)
    info = read_tiny_info(folder) or {}
    if info.get("parameters"):
        spec = replace(spec, parameters=info["parameters"])
    return ResolvedModel(spec=spec, source="local", path=folder, hub_id=None, registered=True)


__all__ = ["ResolvedModel", "resolve", "spec_for_folder", "unknown_model_message"]
