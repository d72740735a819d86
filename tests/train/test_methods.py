"""Every method on the tiny model, table-driven: the loss falls on a fixed batch, exactly the expected
parameters train, the vision tower is untouched bit-for-bit, and the saved adapter/weights reload to the same
logits (PiSSA: its converted plain-LoRA delta on the ORIGINAL base)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import TrainerCallback

from vmeta.train.methods import is_vision_tower
from vmeta.train.run import run_training

LAYER = re.compile(r"language_model\.layers\.(\d+)\.")
N_LAYERS = 2  # vmeta.models.tiny.TEXT_LAYERS

# method -> (learning rate for the overfit check, predicate every trainable parameter name must satisfy)
CASES = {
    "lora": (5e-3, lambda n: "lora_" in n and "language_model" in n),
    "loraplus": (5e-3, lambda n: "lora_" in n and "language_model" in n),
    "dora": (5e-3, lambda n: "lora_" in n and "language_model" in n),
    "rslora": (5e-3, lambda n: "lora_" in n and "language_model" in n),
    "pissa": (2e-3, lambda n: "lora_" in n and "language_model" in n),
    "freeze": (1e-3, lambda n: int(LAYER.search(n).group(1)) == N_LAYERS - 1 if LAYER.search(n) else False),
    "galore": (1e-3, lambda n: "visual" not in n),
    "full": (1e-3, lambda n: "visual" not in n),
}


class Capture(TrainerCallback):
    """Snapshots the vision tower at the start; at the end: trainable names, the optimizer, logits on a batch."""

    def __init__(self, batch):
        self.batch = batch

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.vision_before = {n: p.detach().clone() for n, p in model.named_parameters() if "visual" in n}

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kw):
        self.trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        self.vision_after = {n: p.detach().clone() for n, p in model.named_parameters() if "visual" in n}
        self.optimizer = optimizer
        model.eval()
        with torch.no_grad():
            self.logits = model(**self.batch).logits.detach().clone()
        self.losses = [h["loss"] for h in state.log_history if "loss" in h]


@pytest.fixture(scope="module")
def fixed_batch(train_settings, train_dataset):
    """The two training samples encoded and collated once (for logits comparisons)."""
    from transformers import AutoProcessor

    from vmeta.models.resolution import resolve
    from vmeta.train.base_model import frame_settings, prompt_text
    from vmeta.train.collate import SupervisedCollator
    from vmeta.train.config import load_config
    from vmeta.train.data import FrameCache, SupervisedDataset, split_records

    resolved = resolve("tiny", train_settings)
    proc = AutoProcessor.from_pretrained(resolved.pretrained_id)
    cfg = load_config(None, {"model.name": "tiny", "data.path": str(train_dataset), "data.prompt": "解释视频的隐喻。"})
    recs = split_records(train_dataset, "train")
    ds = SupervisedDataset(
        recs, train_dataset, proc, frame_settings(cfg, resolved.spec), prompt_text(cfg), 512, FrameCache("off")
    )
    batch = SupervisedCollator(proc.tokenizer.pad_token_id)([ds[0], ds[1]])
    batch.pop("labels")
    return batch


def _reload_logits(run_dir, settings, batch):
    from vmeta.models.load import load_model

    info = json.loads((run_dir / "run.json").read_text())
    if info["saves"] == "adapter":
        loaded = load_model(run_dir=run_dir, device="cpu", dtype="float32", settings=settings, cache=False)
    else:
        loaded = load_model(str(run_dir / "model"), device="cpu", dtype="float32", settings=settings, cache=False)
    with torch.no_grad():
        return loaded.model(**batch).logits


@pytest.mark.parametrize("method", list(CASES))
def test_method_trains_expected_parameters_and_reloads(method, make_cfg, train_settings, fixed_batch, tmp_path):
    lr, allowed = CASES[method]
    cfg = make_cfg(method, tmp_path / method, **{"training.max_steps": 20, "training.lr": lr, "data.val_split": None})
    cap = Capture(fixed_batch)
    run = run_training(cfg, settings=train_settings, progress=False, callbacks=[cap])

    # the loss falls on the fixed batch (both train samples in every step)
    first, last = sum(cap.losses[:3]) / 3, sum(cap.losses[-3:]) / 3
    assert len(cap.losses) == 20
    assert last < first - 0.05, f"{method}: loss did not fall ({first:.4f} -> {last:.4f}): {cap.losses}"

    # exactly the expected parameters trained
    assert cap.trainable, method
    bad = [n for n in cap.trainable if not allowed(n)]
    assert not bad, f"{method}: unexpected trainable parameters {bad[:5]}"
    if method in ("lora", "loraplus", "dora", "rslora", "pissa"):
        wrapped = {n.split(".lora_")[0] for n in cap.trainable if ".lora_A." in n}
        assert len(wrapped) == 7 * N_LAYERS  # q,k,v,o,gate,up,down in every decoder layer
    if method == "freeze":
        assert {int(LAYER.search(n).group(1)) for n in cap.trainable} == {N_LAYERS - 1}
    if method in ("galore", "full"):
        assert any("embed_tokens" in n for n in cap.trainable)
        assert any(n.endswith("language_model.norm.weight") for n in cap.trainable)
        assert {int(m.group(1)) for n in cap.trainable if (m := LAYER.search(n))} == set(range(N_LAYERS))

    # the vision tower (and merger) are untouched, bit for bit
    assert cap.vision_before.keys() == cap.vision_after.keys() and cap.vision_before
    for n, before in cap.vision_before.items():
        assert torch.equal(before, cap.vision_after[n]), f"{method}: {n} changed"
    assert not any(is_vision_tower(n) for n in cap.trainable)

    # GaLore: transformers built a GaLoreAdamW whose target group carries the projection settings
    if method == "galore":
        from galore_torch import GaLoreAdamW

        inner = getattr(cap.optimizer, "optimizer", cap.optimizer)
        assert isinstance(inner, GaLoreAdamW)
        galore_groups = [g for g in inner.param_groups if "rank" in g]
        assert galore_groups and galore_groups[0]["rank"] == 4 and galore_groups[0]["update_proj_gap"] == 5
        projected = [s for s in inner.state.values() if "projector" in s]
        assert projected, "no parameter got a GaLore projector"

    # the run folder describes itself
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 20 and info["method"] == method
    assert 0 < info["trainable_share"] < 1 and info["trainable_parameters"] > 0
    for name in ("config.yaml", "metrics.jsonl", "loss.csv", "loss.png", "logs/train.log"):
        assert (run / name).exists(), name
    assert (run / ("adapter" if info["saves"] == "adapter" else "model")).is_dir()

    # the saved adapter / weights reload to the same logits
    reloaded = _reload_logits(run, train_settings, fixed_batch)
    tol = 1e-3 if method == "pissa" else 1e-5
    assert torch.allclose(reloaded, cap.logits, atol=tol, rtol=0), (
        f"{method}: max diff {(reloaded - cap.logits).abs().max().item():.2e}"
    )
