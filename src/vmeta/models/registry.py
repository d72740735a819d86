"""The model registry: short name -> which checkpoint, which family, which quirks.

One table (``MODELS``), filled with :func:`register`; a model is added here and nowhere else. What a name
means at run time — a registered name, a hub id or a folder, and where its weights are — is
:mod:`vmeta.models.resolution` (with :mod:`vmeta.models.local_weights`). Nothing here touches the disk, the
network or torch/transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Family = Literal["qwen2_vl", "qwen2_5_vl", "internvl", "videollama3", "tiny", "other"]
# The families on the Qwen-VL code path: their processor keeps vmeta.video's frame sizes, the prompt cache knows them.
QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "tiny")

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
        if lookup_name(key) is not None:
            raise ValueError(f"model name {key!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def lookup_name(name: str) -> ModelSpec | None:
    key = name.strip().lower()
    for spec in MODELS.values():
        if key == spec.name.lower() or key in (a.lower() for a in spec.aliases):
            return spec
    return None


def lookup_hub_id(hub_id: str) -> ModelSpec | None:
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


def registered_names() -> list[str]:
    return list(MODELS)


def default_spec() -> ModelSpec:
    return next(s for s in MODELS.values() if s.default)


__all__ = [
    "DEMO_NOTES",
    "INTERNVL_QUIRKS",
    "MODELS",
    "QWEN2_5_VL_QUIRKS",
    "QWEN2_VL_QUIRKS",
    "QWEN_FAMILIES",
    "QWEN_TEMPLATE_NOTE",
    "TINY_KINDS",
    "TINY_QUIRKS",
    "VIDEOLLAMA3_QUIRKS",
    "Family",
    "ModelSpec",
    "ProcessorQuirks",
    "default_spec",
    "lookup_hub_id",
    "lookup_name",
    "register",
    "registered_names",
]
