"""Evaluation during training: generate on (up to eval_limit) val samples with the model being trained and
score them with the same registered metrics `vmeta eval` uses."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vmeta.dataset.context import with_context
from vmeta.train.config import TrainConfig


class ValEvaluator:
    """Generate on (up to eval_limit) val samples with the model being trained and score them."""

    def __init__(
        self,
        cfg: TrainConfig,
        loaded: Any,
        records: list[Any],
        dataset_root: Path,
        fs: Any,
        prompt: str,
        blocks: dict[str, str] | None = None,
    ):
        self.cfg = cfg
        self.loaded = loaded
        self.records = records[: cfg.training.eval_limit] if cfg.training.eval_limit else records
        self.root = dataset_root
        self.fs = fs
        self.prompt = prompt
        self.blocks = blocks or {}  # record id -> context block, as in training
        self._ctx = None

    def __call__(self, model: Any) -> dict[str, float]:
        import dataclasses

        import numpy as np

        import vmeta.evaluate  # noqa: F401  (registers every metric)
        from vmeta.evaluate.metrics import EvalContext, score
        from vmeta.models.generate import GenerationSettings, generate_batch

        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        loaded = dataclasses.replace(self.loaded, model=model)
        gen = GenerationSettings(max_new_tokens=self.cfg.training.eval_max_new_tokens)
        preds: list[str] = []
        bs = self.cfg.training.eval_batch_size
        import torch

        # mixed precision: fp32 trainable weights next to bf16/fp16 frozen ones, as inside the training step
        half = self.loaded.dtype != torch.float32
        device_type = "cuda" if str(self.loaded.device).startswith("cuda") else "cpu"
        try:
            for i in range(0, len(self.records), bs):
                chunk = self.records[i : i + bs]
                convs = [
                    [
                        {
                            "role": "user",
                            "content": [
                                {"type": "video", "video": str(self._path(r))},
                                {"type": "text", "text": with_context(self.prompt, self.blocks.get(r.id, ""))},
                            ],
                        }
                    ]
                    for r in chunk
                ]
                with torch.autocast(device_type=device_type, dtype=self.loaded.dtype, enabled=half):
                    preds += [res.text for res in generate_batch(loaded, convs, gen, self.fs)]
        finally:
            if was_training:
                model.train()
        refs = [r.label for r in self.records]
        if self._ctx is None:
            bert = None
            if self.cfg.training.bertscore_model:
                from vmeta.evaluate.bertscore import BertScoreConfig

                bert = BertScoreConfig(model=self.cfg.training.bertscore_model)
            self._ctx = EvalContext(bert=bert)
        names = list(self.cfg.training.eval_metrics) + (["bertscore"] if self.cfg.training.bertscore_model else [])
        scores: dict[str, float] = {}
        for col, vals in score(names, preds, refs, self._ctx).columns.items():  # the scoring `vmeta eval` does
            arr = np.asarray(vals, dtype=float)
            scores[col] = float(np.nanmean(arr)) if arr.size else float("nan")
        scores["samples"] = float(len(preds))
        scores["runtime"] = time.perf_counter() - t0
        return scores

    def _path(self, r: Any) -> Path:
        p = Path(r.video)
        return p if p.is_absolute() else self.root / p


__all__ = ["ValEvaluator"]
