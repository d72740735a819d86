"""Offline fixtures for the evaluation tests: a tiny random BERT with a Chinese character vocabulary
(built once per session, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
from evaldata import all_texts


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 3-layer random BERT (hidden 32) with the characters of every test text; model_max_length 64,
    so the long outputs are truncated (as bert-base-chinese truncates at 512)."""
    from vmeta.evaluate.tiny_bert import build_char_bert

    return build_char_bert(tmp_path_factory.mktemp("tiny_bert"), all_texts(), max_length=64)


@pytest.fixture
def bert_cfg(tiny_encoder):
    from vmeta.evaluate.bertscore import BertScoreConfig

    return BertScoreConfig(model=str(tiny_encoder), num_layers=2, batch_size=4)
