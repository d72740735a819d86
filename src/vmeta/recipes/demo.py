"""A demo Qwen2-VL: the tiny architecture trained for a minute on the sample labels, so offline demos answer in words.

The tiny model (:mod:`vmeta.models.tiny`) has random weights and answers blank lines; a newcomer who opens the
chat page offline sees an empty bubble and thinks the page is broken. This module trains that same checkpoint
on the ten good rows of ``examples/sample`` until it recites their labels in the five-slot template
(``本视频讲述了…。…出自…，其因为…，表达出了…。``), picking the label by the video it sees. It is still NOT a real
model: it knows ten sentences, and a new video gets one of them (or a blend).

Inputs go through the real pipeline: ``vmeta.dataset.build`` reads the sheet and probes the videos,
``vmeta.video`` decodes the frames with the tiny model's frame settings (those predict and the chat page use),
and ``vmeta.train.collate`` builds the chat-template samples with the loss masked on the prompt. Labels that do
not follow the template yet are rewritten by the deterministic template mode of the offline stand-in LLM
(:func:`vmeta.testing.fake_openai.template_answer`, what the worked example's stage 2 runs).

Training is a short plain PyTorch loop instead of ``vmeta.train.run_training``: with the real Qwen2
vocabulary (151,669 tokens) the output layer dominates every step — ``run_training`` with method ``full`` took
~1.5 s per step of two samples on 2 CPU cores and had not learned the template after 100 steps. The loop scores
only the tokens that occur in the answers (a few hundred; the others keep their small random logits, so greedy
decoding never picks them) and runs all ten samples as one batch: ~0.15 s per step.

Each sample is trained under the thesis prompt and under what people type in the chat page (nothing, or a short
question), so a sample video gets its label in the chat too.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmeta.errors import UserError

DEFAULT_STEPS = 200
LEARNING_RATE = 5e-3
KIND = "tiny-demo"
# Besides the thesis prompt, what people type in the chat page: nothing (a video alone) or a short question.
CHAT_PROMPTS = ("", "这个视频是什么意思？")
# Called with (phase, steps done, steps in all, last loss or None): "prepare", "train", "check", "save".
Progress = Callable[[str, int, int, float | None], None]


@dataclass(frozen=True)
class DemoInfo:
    path: Path
    parameters: int
    samples: int
    steps: int
    final_loss: float
    seed: int
    sample_answer: str
    seconds: float


def default_sample_dir() -> Path | None:
    """``examples/sample`` of the source checkout this vmeta runs from (an editable install), or None."""
    import vmeta

    folder = Path(vmeta.__file__).resolve().parents[2] / "examples" / "sample"
    return folder if folder.is_dir() else None


def sample_sheet(sample: Path) -> Path:
    """The sheet of a sample folder shaped like ``examples/sample`` (sheet.csv or sheet.xlsx next to videos/)."""
    if not sample.is_dir():
        raise UserError(f"--sample {sample}: no such folder.")
    sheet = next((sample / n for n in ("sheet.csv", "sheet.xlsx") if (sample / n).is_file()), None)
    if sheet is None or not (sample / "videos").is_dir():
        raise UserError(
            f"{sample} has no sheet.csv (or sheet.xlsx) next to a videos/ folder: pass --sample DIR, a folder "
            "shaped like examples/sample."
        )
    return sheet


def sample_items(sample: Path, work: Path) -> list[tuple[str, Path, str]]:
    """(id, video file, template label) for every good row of the sample, read by ``vmeta data build``."""
    from vmeta.dataset.build import build_dataset
    from vmeta.dataset.records import Dataset
    from vmeta.dataset.rewrite_prompt import user_message
    from vmeta.dataset.template import conforms
    from vmeta.testing.fake_openai import template_answer

    build_dataset([sample_sheet(sample)], sample / "videos", work)
    items = []
    for r in Dataset(work).load():
        label = r.raw_label
        if not conforms(label):
            label = template_answer({"messages": [{"role": "user", "content": user_message(r)}]})
        items.append((r.id, work / r.video, label))
    if not items:
        raise UserError(
            f"{sample}: no row of its sheet has a readable video and a label, so there is nothing to learn."
        )
    return items


def dataset_items(data: Path, split: str) -> list[tuple[str, Path, str]]:
    """(id, video file, current label) for the records of one split of a vmeta dataset (e.g. its train split, so
    the test split stays unseen)."""
    from vmeta.train.data import split_records

    records = split_records(data, split)
    return [(r.id, Path(r.video) if Path(r.video).is_absolute() else data / r.video, r.label) for r in records]


def _batches(loaded: Any, items: list[tuple[str, Path, str]], prompts: tuple[str, ...]) -> list[dict[str, Any]]:
    """One right-padded batch of all samples per prompt: chat template + frames, labels -100 except the answers."""
    from vmeta.models.generate import frame_settings_for
    from vmeta.train.collate import SupervisedCollator, encode_sample
    from vmeta.train.data import FrameCache

    fs = frame_settings_for(loaded.spec)
    cache = FrameCache("off")
    frames = [cache.load(video, fs) for _, video, _ in items]
    tok = loaded.processor.tokenizer
    collate = SupervisedCollator(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    batches = []
    for prompt in prompts:
        feats = [
            encode_sample(
                loaded.processor, fr.frames, fr.metadata, prompt, label, cutoff_len=8192, sample_id=i
            ).features
            for (i, _, label), fr in zip(items, frames, strict=True)
        ]
        batches.append(collate(feats))
    return batches


def train(
    model: Any, batches: list[dict[str, Any]], steps: int, *, on_step: Callable[[int, float], None] | None = None
) -> float:
    """AdamW (one-cycle schedule) on every weight, one batch per step in turn; cross-entropy over the answers'
    own tokens only. Returns the last loss. Deterministic for a given model and batches on the same machine."""
    import torch
    import torch.nn.functional as F

    vocab = torch.unique(torch.cat([b["labels"][b["labels"] != -100] for b in batches]))  # sorted token ids
    prepared = []
    for b in batches:
        targets = b["labels"][:, 1:]
        mask = targets != -100
        inputs = {k: v for k, v in b.items() if k != "labels"}
        prepared.append((inputs, mask, torch.searchsorted(vocab, targets[mask])))
    out_weight = model.get_output_embeddings().weight
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=steps, pct_start=0.1)
    model.train()
    loss_value = float("nan")
    for step in range(steps):
        inputs, mask, y = prepared[step % len(prepared)]
        hidden = model.model(**inputs).last_hidden_state[:, :-1][mask]
        loss = F.cross_entropy(hidden @ out_weight[vocab].T, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if on_step is not None:
            on_step(step + 1, loss_value)
    model.eval()
    return loss_value


def _readme(info: dict[str, Any]) -> str:
    return f"""# demo-qwen2-vl — a demo trained on the sample labels, NOT a real model

Built by `vmeta models build-demo` (vmeta {info["vmeta_version"]}, transformers {info["transformers_version"]}).
The tiny Qwen2-VL of `vmeta models build-tiny` (same architecture, processor, tokenizer and chat template),
trained for {info["steps"]} steps (seed {info["seed"]}, final loss {info["final_loss"]:.4f}) on the
{info["trained_on"]["samples"]} labels of {info["trained_on"]["source"]}, in the five-slot template.

It recites those sentences — choosing one by the video it sees — so offline demos (the chat page, the worked
example) show Chinese answers in the template's shape. It understands nothing: a new video gets one of the
labels or a blend of them, and its scores on the videos it was trained on are memorisation, not a measurement.

- parameters: {info["parameters"]:,}
- tokenizer: {info["tokenizer_source"]} — vocabulary {info["vocab_size"]}
- answer to the thesis prompt for `{info["sample_video"]}`: {info["sample_answer"]}

Load it like any checkpoint (`vmeta.models.load.load_model(DIR)`, or transformers' `AutoProcessor` /
`Qwen2VLForConditionalGeneration.from_pretrained(DIR)`).
"""


def build_demo(
    out_dir: str | Path,
    *,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    sample: str | Path | None = None,
    data: str | Path | None = None,
    split: str = "train",
    force: bool = False,
    progress: Progress | None = None,
) -> DemoInfo:
    """Build the tiny model, train it on the sample labels and write it to ``out_dir`` (see the module docstring).

    ``sample``: a folder shaped like ``examples/sample`` (default: the repository's). ``data`` instead: a vmeta
    dataset whose ``split`` records (with their current labels) are learnt, e.g. only the train split so that
    the test split stays unseen. Like :func:`vmeta.models.tiny.build_tiny`: ``out_dir`` must be missing or empty unless ``force``, and the
    folder is assembled next to it and renamed into place, so a crash never leaves half a model behind.
    """
    import torch
    import transformers

    import vmeta
    from vmeta.dataset.prompts import DEFAULT_PROMPT
    from vmeta.jsonio import write_json
    from vmeta.models.generate import GenerationSettings, generate
    from vmeta.models.load import load_model
    from vmeta.models.tiny import (
        _move_into_place,
        _normal_permissions,
        _quiet_transformers,
        build_tiny_info,
        check_target,
        read_tiny_info,
    )

    t0 = time.perf_counter()
    out = Path(out_dir).expanduser()
    check_target(out, force=force, what="the demo model")
    if steps < 1:
        raise UserError(
            f"--steps {steps}: train for at least 1 step (the default, {DEFAULT_STEPS}, learns the template)."
        )
    if sample is not None and data is not None:
        raise UserError("give either --sample (a sheet + videos) or --data (a vmeta dataset), not both.")
    data_dir = Path(data).expanduser() if data is not None else None
    sample_dir = Path(sample).expanduser() if sample is not None else default_sample_dir()
    if data_dir is not None:
        from vmeta.dataset.records import Dataset

        Dataset(data_dir).require()
        source = f"{data_dir} (split {split})"
    elif sample_dir is None:
        raise UserError("examples/sample is not next to this vmeta install: pass --sample DIR (sheet.csv + videos/).")
    else:
        sample_sheet(sample_dir)
        source = "examples/sample" if sample is None else str(sample_dir)

    def report(phase: str, done: int, loss: float | None = None) -> None:
        if progress is not None:
            progress(phase, done, steps, loss)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building.", dir=out.parent))
    try:
        report("prepare", 0)
        if data_dir is not None:
            items = dataset_items(data_dir, split)
        else:
            items = sample_items(sample_dir, staging / "sample-dataset")  # type: ignore[arg-type]
        target = staging / "model"
        tiny = build_tiny_info(target, seed=seed)
        loaded = load_model(target, device="cpu", dtype=torch.float32, cache=False)
        thesis, *chat = _batches(loaded, items, (DEFAULT_PROMPT, *CHAT_PROMPTS))
        batches = [b for c in chat for b in (thesis, c)]  # the thesis prompt every other step
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loss = train(loaded.model, batches, steps, on_step=lambda i, v: report("train", i, v))

        report("check", steps, loss)
        first_video = items[0][1]
        video_part = {"type": "video", "video": str(first_video)}
        conv = [{"role": "user", "content": [video_part, {"type": "text", "text": DEFAULT_PROMPT}]}]
        answer = generate(loaded, conv, GenerationSettings(max_new_tokens=256)).text

        report("save", steps, loss)
        with _quiet_transformers():
            loaded.model.save_pretrained(str(target))
        info = {
            **(read_tiny_info(target) or {}),
            "kind": KIND,
            "name": "demo-qwen2-vl",
            "not_a_real_model": True,
            "random_weights": False,
            "note": f"a demo model trained on the labels of {source}, not a real model: it recites them",
            "trained_on": {"source": source, "samples": len(items), "ids": [i for i, _, _ in items]},
            "prompts": [DEFAULT_PROMPT, *CHAT_PROMPTS],
            "steps": steps,
            "learning_rate": LEARNING_RATE,
            "final_loss": round(loss, 6),
            "seed": seed,
            "parameters": tiny.parameters,
            "sample_video": first_video.name,
            "sample_answer": answer,
            "vmeta_version": vmeta.__version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__.split("+")[0],
        }
        write_json(target / "vmeta.json", info)
        (target / "README.md").write_text(_readme(info), encoding="utf-8")
        _normal_permissions(target)
        _move_into_place(target, out, force=force, what="the demo model")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DemoInfo(
        path=out,
        parameters=tiny.parameters,
        samples=len(items),
        steps=steps,
        final_loss=loss,
        seed=seed,
        sample_answer=answer,
        seconds=time.perf_counter() - t0,
    )


__all__ = [
    "DEFAULT_STEPS",
    "DemoInfo",
    "build_demo",
    "dataset_items",
    "default_sample_dir",
    "sample_items",
    "sample_sheet",
    "train",
]
