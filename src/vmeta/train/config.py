"""The training configuration: one pydantic model per argument group, validated before any model loads.

YAML files mirror :class:`TrainConfig` (``configs/qwen2-vl-2b/*.yaml``); CLI flags and ``--set key=value``
become dotted overrides (``"lora.r": 16``, ``"training.lr": 3e-5``) applied on top by :func:`load_config`.
Impossible combinations (GaLore + DeepSpeed, layer-wise GaLore + gradient accumulation, PiSSA on a quantised
model, ...) are refused here with one sentence naming the fields, so a run never dies after loading a model.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from vmeta.errors import UserError
from vmeta.train.methods import METHODS

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)

# Linear layers of a Qwen2 decoder layer (the language model of Qwen2-VL / Qwen2.5-VL).
LLM_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _launcher_uses(backend: str) -> bool:
    """Whether `accelerate launch` turned on DEEPSPEED / FSDP through its config file (it passes that to the
    processes in the environment, where training.deepspeed / training.fsdp do not see it)."""
    if os.environ.get(f"ACCELERATE_USE_{backend}", "").strip().lower() in ("1", "true", "yes"):
        return True
    return backend == "DEEPSPEED" and bool(os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"))


def _sharded_weights(deepspeed: str | None, fsdp: str | None) -> str | None:
    """What shards the model's weights across processes (ZeRO-3, FSDP), named for an error message; None when
    every process holds whole weights (DDP, ZeRO-1/2)."""
    if fsdp:
        return f"FSDP (training.fsdp={fsdp!r})"
    if _launcher_uses("FSDP"):
        return "FSDP (the accelerate launch config)"
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "").strip() == "3":
        return "DeepSpeed ZeRO-3 (the accelerate launch config)"
    path = deepspeed or os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if path:
        try:
            stage = json.loads(Path(path).read_text(encoding="utf-8")).get("zero_optimization", {}).get("stage")
        except (OSError, ValueError, AttributeError):
            return None  # a missing or broken file gets its own error when DeepSpeed reads it
        if stage == 3:
            return f"DeepSpeed ZeRO-3 ({path})"
    return None


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Group):
    name: str = Field("qwen2-vl-2b-instruct", description="Registered name, hub id (org/name) or local folder.")
    device: str | None = Field(None, description="cuda / cpu / cuda:1; None = CUDA when available.")
    quantization: Literal["4bit", "8bit"] | None = Field(
        None, description="Load the base in 4/8 bit (QLoRA, bitsandbytes; LoRA methods only)."
    )


class LoraConfig(_Group):
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(LLM_LINEAR))
    use_dora: bool = False
    use_rslora: bool = False
    init: Literal["default", "gaussian", "pissa"] = "default"
    pissa_niter: int | None = Field(
        16, ge=1, description="Fast-SVD iterations for PiSSA init (None = exact SVD, slow on big layers)."
    )
    loraplus_lr_ratio: float = Field(16.0, gt=0, description="LoRA+: learning rate of B = ratio x learning rate of A.")
    loraplus_lr_embedding: float = Field(1e-6, gt=0)


class FreezeConfig(_Group):
    trainable_layers: int = Field(
        6, description="Last N decoder layers trainable; a negative N trains the first |N| layers instead."
    )
    extra_modules: list[str] = Field(
        default_factory=list,
        description="Other language-model modules to train too, by name (e.g. embed_tokens, norm, lm_head).",
    )

    @field_validator("trainable_layers")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("freeze.trainable_layers=0 would train nothing; use N > 0 (last N) or N < 0 (first N)")
        return v


class GaloreConfig(_Group):
    rank: int = Field(8, ge=1)
    update_proj_gap: int = Field(50, ge=1, description="Steps between projection (SVD) updates.")
    scale: float = Field(2.0, gt=0, description="GaLore update scale (LLaMA-Factory's default 2.0).")
    proj_type: Literal["std", "reverse_std", "right", "left", "full"] = "std"
    target_modules: list[str] = Field(default_factory=lambda: list(LLM_LINEAR))
    layerwise: bool = Field(False, description="Per-layer optimizer steps in the backward pass (saves memory).")


class DataConfig(_Group):
    path: Path | None = Field(None, description="Dataset folder (records.jsonl with splits).")
    train_split: str = "train"
    val_split: str | None = "val"
    prompt: str | None = Field(None, description="User instruction; None = the thesis prompt (§4.2).")
    frames: dict[str, Any] = Field(
        default_factory=dict,
        description="FrameSettings overrides on top of the model family's defaults (fps, max_pixels, ...).",
    )
    cutoff_len: int = Field(4096, ge=16, description="Longest training sequence in tokens, vision tokens included.")
    frame_cache: Literal["disk", "memory", "off"] = Field(
        "disk", description="Keep decoded frames so later epochs do not decode again."
    )
    num_workers: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=1, description="Use only the first N training samples (smoke tests).")
    context: list[str] = Field(
        default_factory=list,
        description="Text put before the instruction in every sample: screen_text (the on-screen text, by OCR), "
        "speech (what is said, by offline ASR). Recorded in run.json; predict --run and vmeta serve then add it too.",
    )
    context_max_chars: int = Field(200, ge=10, description="Longest context text per kind, in characters.")
    screen_text: dict[str, Any] = Field(
        default_factory=dict, description="How on-screen text is read (ScreenTextSettings overrides: fps, ...)."
    )
    speech: dict[str, Any] = Field(
        default_factory=dict, description="How speech is transcribed (SpeechSettings overrides: language, ...)."
    )

    @field_validator("context")
    @classmethod
    def _context(cls, v: list[str]) -> list[str]:
        from vmeta.dataset.context import check_kinds

        try:
            return list(check_kinds(v, "data.context"))
        except UserError as exc:  # pydantic names the field itself
            raise ValueError(str(exc).removeprefix("data.context: ")) from None

    @field_validator("screen_text", "speech")
    @classmethod
    def _reader_settings(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """The overrides must build the reader's settings (checked here, before any model loads)."""
        from vmeta.dataset.context import ContextSettings

        ctx = ContextSettings(**{info.field_name: v})  # type: ignore[arg-type]
        try:
            ctx.screen_text_settings() if info.field_name == "screen_text" else ctx.speech_settings()
        except UserError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return v

    def context_settings(self) -> Any:
        """The run's `vmeta.dataset.context.ContextSettings`."""
        from vmeta.dataset.context import ContextSettings

        return ContextSettings(
            kinds=tuple(self.context),
            max_chars=self.context_max_chars,
            screen_text=dict(self.screen_text),
            speech=dict(self.speech),
        )

    @field_validator("frames")
    @classmethod
    def _frames(cls, v: dict[str, Any]) -> dict[str, Any]:
        from vmeta.video.sampling import FrameSettings

        try:
            FrameSettings.from_dict(v)
        except (ValueError, TypeError) as exc:
            raise ValueError(str(exc)) from None
        return v


class TrainingConfig(_Group):
    epochs: float = Field(4.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(1, ge=1, description="Samples per device per step.")
    grad_accum: int = Field(8, ge=1)
    warmup: float = Field(0.1, ge=0, description="< 1: share of the steps; >= 1: a number of steps.")
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seed: int = 42
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="auto: bf16 on CUDA, fp32 on CPU.")
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps; None = every epoch.")
    save_total_limit: int | None = Field(2, ge=1)
    save_checkpoints: bool = Field(True, description="Write resumable checkpoints (false: only the final output).")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate on the val split every N steps.")
    eval_each_epoch: bool = Field(False, description="Evaluate on the val split at the end of each epoch.")
    eval_limit: int | None = Field(None, ge=1, description="Generate for at most N val samples per evaluation.")
    eval_batch_size: int = Field(4, ge=1)
    eval_max_new_tokens: int = Field(256, ge=1)
    eval_metrics: list[str] = Field(default_factory=lambda: ["bleu4", "rougeL"])

    @field_validator("eval_metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        """Refused when the config is read, not at the first evaluation after hours of training."""
        from vmeta.evaluate import METRICS  # the registry, every metric registered

        unknown = [m for m in v if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
        return v

    bertscore_model: str | None = Field(None, description="Add BERTScore with this encoder (e.g. bert-base-chinese).")
    best_metric: str = Field("rougeL", description="Metric that picks the best checkpoint (higher is better).")
    deepspeed: str | None = Field(None, description="DeepSpeed JSON config file.")
    fsdp: str | None = Field(None, description="transformers' fsdp option string, e.g. 'full_shard auto_wrap'.")

    @property
    def evaluates(self) -> bool:
        return self.eval_steps is not None or self.eval_each_epoch


class TrainConfig(_Group):
    """Everything a run needs. ``method`` picks the row of :data:`vmeta.train.methods.METHODS`."""

    method: str = Field("lora", description="A row of vmeta.train.methods.METHODS: " + ", ".join(METHODS) + ".")
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    galore: GaloreConfig = Field(default_factory=GaloreConfig)
    train_vision_tower: bool = Field(False, description="Also train the vision tower (LoRA methods: LoRA on it).")
    train_merger: bool = Field(False, description="Also train the vision-language merger (projector).")
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    out: Path | None = Field(None, description="Run folder (runs/NAME).")

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in METHODS:
            raise ValueError(f"unknown method {v!r}; choose one of {', '.join(METHODS)}")
        return v

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        spec = METHODS[self.method]
        # What the method implies is written into the config (dora -> lora.use_dora ...), so the resolved config
        # (config.yaml, --print-config) shows what runs.
        for key, value in spec.lora_overrides.items():
            setattr(self.lora, key, value)
        t = self.training
        if self.method == "galore":
            if t.deepspeed:
                raise ValueError(
                    "method galore cannot run under DeepSpeed (training.deepspeed): GaLore's projected optimizer "
                    "states do not shard; drop training.deepspeed or pick another method"
                )
            if _launcher_uses("DEEPSPEED"):
                raise ValueError(
                    "method galore cannot run under DeepSpeed, which the accelerate launch config turns on "
                    "(ACCELERATE_USE_DEEPSPEED / ACCELERATE_DEEPSPEED_CONFIG_FILE): GaLore's projected optimizer "
                    "states do not shard; launch with configs/accelerate/ddp.yaml or pick another method"
                )
            if self.galore.layerwise and t.grad_accum > 1:
                raise ValueError(
                    f"layer-wise GaLore (galore.layerwise=true) steps each layer inside the backward pass, so it "
                    f"cannot accumulate gradients: set training.grad_accum=1 (now {t.grad_accum}) or galore.layerwise=false"
                )
            if self.galore.layerwise and (t.fsdp or _launcher_uses("FSDP")):
                raise ValueError(
                    "layer-wise GaLore (galore.layerwise=true) does not work with FSDP (training.fsdp or the "
                    "accelerate launch config)"
                )
        if self.model.quantization is not None:
            if spec.kind != "lora":
                raise ValueError(
                    f"method {self.method} trains the base weights, which cannot be trained in "
                    f"{self.model.quantization}: drop model.quantization or use a LoRA method (QLoRA)"
                )
            if self.method == "pissa" or self.lora.init == "pissa":
                raise ValueError(
                    "PiSSA initialises the adapter from an SVD of the base weights and rewrites them, which a "
                    "quantised base (model.quantization) cannot hold: drop model.quantization or use method lora"
                )
            if t.precision == "fp32":
                raise ValueError("model.quantization needs training.precision bf16/fp16/auto (4/8-bit compute is half)")
        if t.best_metric not in ("loss", "eval_loss") and t.evaluates:
            from vmeta.evaluate import METRICS

            names = [*t.eval_metrics, *(["bertscore"] if t.bertscore_model else [])]
            known = {col for name in names for col in METRICS[name].columns}  # every column those metrics write
            if t.best_metric not in known:
                raise ValueError(
                    f"training.best_metric={t.best_metric!r} is not computed during evaluation; choose one of "
                    f"{sorted(known)} or add it to training.eval_metrics"
                )
        if t.evaluates and not self.data.val_split:
            raise ValueError("evaluation is on (training.eval_steps / eval_each_epoch) but data.val_split is empty")
        if t.evaluates and (sharded := _sharded_weights(t.deepspeed, t.fsdp)):
            raise ValueError(
                f"evaluation during training (training.eval_steps / eval_each_epoch) generates on the main process "
                f"alone, which cannot run while {sharded} shards the weights across processes: turn it off and "
                "evaluate the saved run afterwards (vmeta predict --run RUN, then vmeta eval), or train with DDP / ZeRO-2"
            )
        return self

    # ------------------------------------------------------------------ derived settings
    @property
    def lora_options(self) -> dict[str, Any]:
        """The LoRA options, the method's own included (validation sets dora -> use_dora, rslora -> use_rslora,
        pissa -> init)."""
        return self.lora.model_dump()

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------------------------
# Loading


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        elif not isinstance(nxt, dict):
            raise UserError(f"override {key}={value!r}: {p} is a value, not a group")
        node = nxt
    node[parts[-1]] = value


def parse_set_values(items: list[str] | None) -> dict[str, Any]:
    """``["lora.r=16", "training.lr=3e-5"]`` -> dotted overrides; values are parsed as YAML (numbers, lists...)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set {item!r}: write it as key=value, e.g. --set lora.r=16")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UserError(f"--set {item!r}: the key is empty")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    return out


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(config)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a known setting (check the spelling; see configs/qwen2-vl-2b/lora.yaml)"
        elif err["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be")
        got = err.get("input")
        shown = (
            f" (got {got!r})"
            if err["type"] not in ("extra_forbidden", "value_error") and not isinstance(got, dict)
            else ""
        )
        lines.append(f"{loc}: {msg}{shown}")
    return f"invalid training config ({source}): " + "; ".join(lines)


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML (or none: the defaults), apply dotted overrides, validate. Errors name the field and the file."""
    import yaml

    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"config file {p} does not exist.")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{p}: not valid YAML ({str(exc).splitlines()[0]}).") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{p}: the top level must be a mapping of settings (method:, lora:, training:, ...).")
        data = copy.deepcopy(loaded or {})
        source = str(p)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    if overrides:
        source += " + overrides"
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(_format_errors(exc, source)) from None


def dump_config(cfg: TrainConfig, path: str | Path, header: str | None = None) -> None:
    import yaml

    from vmeta.jsonio import atomic_write_text

    text = yaml.safe_dump(cfg.to_yaml_dict(), sort_keys=False, allow_unicode=True)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    atomic_write_text(path, text)


__all__ = [
    "LLM_LINEAR",
    "METHOD_NAMES",
    "DataConfig",
    "FreezeConfig",
    "GaloreConfig",
    "LoraConfig",
    "ModelConfig",
    "TrainConfig",
    "TrainingConfig",
    "dump_config",
    "load_config",
    "parse_set_values",
]
