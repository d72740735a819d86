"""Fixtures for the rating-study tests: three prediction files (tests/rating/ratingdata.py) and a study over them.
R2 may append fixtures at the end of this file."""

from __future__ import annotations

from pathlib import Path

import pytest
from ratingdata import MODELS, write_preds


@pytest.fixture
def pred_files(tmp_path) -> list[Path]:
    """good.jsonl, mid.jsonl, bad.jsonl: six ids each (names default to the stems)."""
    d = tmp_path / "preds"
    d.mkdir()
    return [write_preds(d / f"{m}.jsonl", m) for m in MODELS]


@pytest.fixture
def study(pred_files, tmp_path):
    """An all-pairs study of the three files (6 ids x 3 pairs = 18 items), two raters per item, seed 0."""
    from vmeta.rating.create import create_study

    return create_study(pred_files, tmp_path / "study", raters_per_item=2, seed=0)
