"""The model registry: short name -> where the weights live, which family, which quirks.

One table (``MODELS``), filled with :func:`register`. :func:`resolve` turns whatever a user typed — a
registered name, a Hugging Face hub id ("org/name") or a local folder — into a :class:`ResolvedModel`
that says what to load and from where. Nothing here touches the network or imports torch/transformers:
local availability is checked in the user's folders and the Hugging Face cache only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from vmeta.config import Settings, get_settings
from vmeta.errors import UserError

Family = Literal["qwen2_vl", "qwen2_5_vl", "internvl", "videollama3", "tiny", "other"]
# The families on the Qwen-VL code path: their processor keeps vmeta.video's frame sizes, the prompt cache knows them.
QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "tiny")
Source = Literal["local", "hf-cache", "hub", "build"]  # build: the tiny model, built on first use

# qwen-vl-utils 0.0.14 defaults, in pixels for a 14-pixel patch and 2x2 merge (factor 28).
_QWEN_FACTOR = 28


@dataclass(frozen=True)
class ProcessorQuirks:
    """How frames must be chosen and sized for a family (what the model saw in training)."""

    fps: float | None = 2.0  # frames per second sampled from the video (None: fixed num_frames)
    num_frames: int | None = None  # fixed frame count (InternVL style); None: derived from fps
    min_frames: int = 4
    max_frames: int = 768
    frame_factor: int = 2  # frame count rounded to a multiple of this (Qwen: temporal patch 2)
    size_factor: int = _QWEN_FACTOR  # height/width rounded to multiples of this
    image_min_pixels: int = 4 * _QWEN_FACTOR**2
    image_max_pixels: int = 16384 * _QWEN_FACTOR**2
    video_min_pixels: int = 128 * _QWEN_FACTOR**2  # per frame
    video_max_pixels: int = 768 * _QWEN_FACTOR**2  # per frame
    video_total_pixels: int | None = int(128000 * _QWEN_FACTOR**2 * 0.9)  # per video (qwen-vl-utils budget)
    fixed_size: tuple[int, int] | None = None  # (height, width) every frame is resized to, if the family does so
    passes_fps_to_processor: bool = False  # Qwen2.5-VL: absolute-time mRoPE needs the sampling fps
    index_rule: str = "qwen"  # vmeta.video.sampling.INDEX_RULES: how the frames are spread over the video

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


QWEN2_VL_QUIRKS = ProcessorQuirks()
QWEN2_5_VL_QUIRKS = replace(QWEN2_VL_QUIRKS, passes_fps_to_processor=True)
INTERNVL_QUIRKS = ProcessorQuirks(
    fps=None,
    num_frames=8,
    min_frames=1,
    max_frames=64,
    frame_factor=1,
    size_factor=448,
    image_min_pixels=448 * 448,
    image_max_pixels=12 * 448 * 448,  # dynamic tiling: up to 12 tiles + a thumbnail
    video_min_pixels=448 * 448,
    video_max_pixels=448 * 448,  # one 448x448 tile per frame
    video_total_pixels=None,
    fixed_size=(448, 448),
    index_rule="segment_middle",
)
VIDEOLLAMA3_QUIRKS = ProcessorQuirks(
    fps=1.0,
    min_frames=1,
    max_frames=180,
    frame_factor=1,
    size_factor=14,
    image_min_pixels=14 * 14,
    image_max_pixels=16384 * 14 * 14,
    video_min_pixels=14 * 14,
    video_max_pixels=16384 * 14 * 14,
    video_total_pixels=None,
)
# The tiny model's processor caps frames at 224x224 (see vmeta.models.tiny) so tests stay fast.
TINY_QUIRKS = replace(
    QWEN2_VL_QUIRKS,
    video_min_pixels=56 * 56,
    video_max_pixels=224 * 224,
    image_min_pixels=56 * 56,
    image_max_pixels=224 * 224,
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hub_id: str | None  # None: built locally (tiny)
    family: Family
    model_class: str  # transformers class that loads it ("Auto..." for remote code)
    processor_class: str = "AutoProcessor"
    model_type: str | None = None  # config.json "model_type" of the checkpoint
    trust_remote_code: bool = False
    parameters: int | None = None  # approximate, for the table
    quirks: ProcessorQuirks = QWEN2_VL_QUIRKS
    chat_template: str = ""  # notes on the chat template / placeholders
    notes: str = ""
    aliases: tuple[str, ...] = ()
    default: bool = False
    modelscope_id: str | None = None  # alternative source (not used automatically)

    @property
    def built_locally(self) -> bool:
        return self.hub_id is None

    @property
    def size_label(self) -> str:
        if not self.parameters:
            return "?"
        n = self.parameters
        return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the table (names and aliases are case-insensitive and must be unique)."""
    for key in (spec.name, *spec.aliases):
        if _lookup_name(key) is not None:
            raise ValueError(f"model name {key!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def _lookup_name(name: str) -> ModelSpec | None:
    key = name.strip().lower()
    for spec in MODELS.values():
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    return None


def _lookup_hub_id(hub_id: str) -> ModelSpec | None:
    key = hub_id.strip().lower()
    for spec in MODELS.values():
        if spec.hub_id and spec.hub_id.lower() == key:
            return spec
    return None


QWEN_TEMPLATE_NOTE = (
    "ChatML (<|im_start|>role ... <|im_end|>); a default system turn 'You are a helpful assistant.' is added when "
    "none is given; a video part renders as <|vision_start|><|video_pad|><|vision_end|>, which the processor expands "
    "to one <|video_pad|> per merged 2x2 patch per temporal pair of frames."
)

register(
    ModelSpec(
        name="qwen2-vl-2b-instruct",
        hub_id="Qwen/Qwen2-VL-2B-Instruct",
        family="qwen2_vl",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessor",
        model_type="qwen2_vl",
        parameters=2_208_985_600,
        quirks=QWEN2_VL_QUIRKS,
        chat_template=QWEN_TEMPLATE_NOTE,
        notes="Default base model (thesis §4). Tied embeddings. bf16 on CUDA, float32 on CPU.",
        aliases=("qwen2-vl-2b", "qwen2-vl"),
        default=True,
        modelscope_id="Qwen/Qwen2-VL-2B-Instruct",
    )
)
register(
    ModelSpec(
        name="qwen2.5-vl-3b-instruct",
        hub_id="Qwen/Qwen2.5-VL-3B-Instruct",
        family="qwen2_5_vl",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor",
        model_type="qwen2_5_vl",
        parameters=3_754_622_976,
        quirks=QWEN2_5_VL_QUIRKS,
        chat_template=QWEN_TEMPLATE_NOTE,
        notes="Absolute-time mRoPE: pass the sampling fps to the processor (second_per_grid_ts). Window attention ViT.",
        aliases=("qwen2.5-vl-3b", "qwen2.5-vl"),
        modelscope_id="Qwen/Qwen2.5-VL-3B-Instruct",
    )
)
register(
    ModelSpec(
        name="internvl2.5-2b",
        hub_id="OpenGVLab/InternVL2_5-2B-MPO-hf",
        family="internvl",
        model_class="InternVLForConditionalGeneration",
        processor_class="InternVLProcessor",
        model_type="internvl",
        parameters=2_205_754_368,
        quirks=INTERNVL_QUIRKS,
        chat_template=(
            "ChatML; a video part renders as '<video>', which the processor expands to "
            "'Frame1: <img><IMG_CONTEXT>x256</img>' per frame (448x448, pixel shuffle 0.5)."
        ),
        notes=(
            "The transformers-native ('-hf') conversion of InternVL2.5-2B: the MPO-trained checkpoint, which is the "
            "only official -hf InternVL2.5 at 2B (OpenGVLab/InternVL2_5-2B itself needs trust_remote_code). "
            "Fixed frame count (8) rather than fps."
        ),
        aliases=("internvl2_5-2b", "internvl2.5"),
    )
)
register(
    ModelSpec(
        name="videollama3-2b",
        hub_id="DAMO-NLP-SG/VideoLLaMA3-2B",
        family="videollama3",
        model_class="AutoModelForCausalLM",
        processor_class="AutoProcessor",
        model_type="videollama3_qwen2",
        trust_remote_code=True,
        parameters=1_990_000_000,
        quirks=VIDEOLLAMA3_QUIRKS,
        chat_template=(
            "Own processor API: processor(conversation=[...]) with content parts "
            "{'type': 'video', 'video': {'video_path': ..., 'fps': 1, 'max_frames': 180}}; Qwen2.5 ChatML underneath."
        ),
        notes=(
            "Zero-shot comparison only (thesis §4.2). Remote code (trust_remote_code=True); the upstream card "
            "uses fps 1, max 180 frames. transformers also has a native VideoLlama3 port (lkhl/VideoLLaMA3-2B-Image-HF, "
            "an image-stage conversion), not registered here."
        ),
        aliases=("videollama3",),
    )
)
register(
    ModelSpec(
        name="tiny",
        hub_id=None,
        family="tiny",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessor",
        model_type="qwen2_vl",
        parameters=None,  # read from the built folder's vmeta.json
        quirks=TINY_QUIRKS,
        chat_template=QWEN_TEMPLATE_NOTE,
        notes="Random weights, built offline by `vmeta models build-tiny` into DATA_DIR/models/tiny on first use. "
        "For tests and offline demos; NOT a real model.",
        aliases=("tiny-qwen2-vl",),
    )
)


# vmeta.json kinds of the tiny architecture: random weights (build-tiny) or trained on the sample (build-demo).
TINY_KINDS = ("tiny-random", "tiny-demo")
DEMO_NOTES = (
    "The tiny architecture trained on the sample labels by `vmeta models build-demo`: it recites them in the "
    "template's shape, for offline demos; NOT a real model."
)


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


# ---------------------------------------------------------------------------------------------------------------
# Local availability (no network)

_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


def _complete_folder(folder: Path) -> bool:
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
        return snapshot if _complete_folder(snapshot) else None
    if revision is not None:
        return None
    snapshots = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    if not snapshots.is_dir():
        return None
    complete = [d for d in snapshots.iterdir() if d.is_dir() and _complete_folder(d)]
    return max(complete, key=lambda d: d.stat().st_mtime) if complete else None


def locate(spec: ModelSpec, settings: Settings | None = None) -> tuple[Source, Path | None]:
    """Where the model is: ("local", folder), ("hf-cache", snapshot) or ("hub", None). No network."""
    settings = settings or get_settings()
    for folder in _candidate_folders(spec, settings):
        if _complete_folder(folder):
            return "local", folder
    if spec.hub_id:
        snap = hf_cache_snapshot(spec.hub_id)
        if snap is not None:
            return "hf-cache", snap
    return "hub", None


def is_available_locally(spec: ModelSpec, settings: Settings | None = None) -> bool:
    """True when the weights are on disk (a local folder, the models dir or the HF cache). No network."""
    return locate(spec, settings)[0] != "hub"


# ---------------------------------------------------------------------------------------------------------------
# Resolution

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


def registered_names() -> list[str]:
    return list(MODELS)


def default_spec() -> ModelSpec:
    return next(s for s in MODELS.values() if s.default)


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
    vmeta_info = _read_json(folder / "vmeta.json")
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


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


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

    spec = _lookup_name(text) if not isinstance(name_or_path, Path) else None
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
        spec = _lookup_hub_id(text)
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
    if not _complete_folder(folder):
        if not build:
            return ResolvedModel(spec=spec, source="build", path=folder, hub_id=None, registered=True)
        from vmeta.models.tiny import build_tiny

        # An empty or missing folder is built; a broken one (e.g. an interrupted copy) is rebuilt.
        broken = folder.is_dir() and any(folder.iterdir())
        build_tiny(folder, force=broken)
    info = _read_json(folder / "vmeta.json") or {}
    if info.get("parameters"):
        spec = replace(spec, parameters=info["parameters"])
    return ResolvedModel(spec=spec, source="local", path=folder, hub_id=None, registered=True)
