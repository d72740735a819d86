"""A study for the rating-page tests: three prediction files whose model names and file names are distinctive
strings (so a blindness test can search every response for them) and a dataset folder with a tiny video per id."""

from __future__ import annotations

import json
from pathlib import Path

from ratingdata import ROWS

from vmeta.testing import media

# name the study gives each model, the prediction file's stem, and the 'adapter' field its rows carry
MODELS = {"lora-qx7": "run_alpha_preds", "zeroshot-vk3": "run_beta_preds", "dora-pm9": "run_gamma_preds"}
COLUMN = {"lora-qx7": 3, "zeroshot-vk3": 5, "dora-pm9": 4}  # good, bad, mid answers of ratingdata.ROWS
SECRETS = (*MODELS, *MODELS.values(), "predictions/")


def build_dataset(root: Path) -> Path:
    """A dataset folder: one record and one tiny clip per test id (t06's file missing: no video for it)."""
    from vmeta.dataset.records import Dataset, Record, SourceRef

    records = []
    for k, (rid, cat, ref, *_rest) in enumerate(ROWS):
        video = f"videos/{rid}.mp4"
        if rid != "t06":
            media.make_clip(root / video, 64, 48, fps=8, seconds=1.0, audio=False, seed=k)  # H.264: browsers play it
        records.append(
            Record(id=rid, video=video, category=cat, raw_label=ref, label=ref, source=SourceRef(sheet="s", row=k + 2))
        )
    Dataset(root).save(records)
    return root


def write_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, stem in MODELS.items():
        rows = [
            {
                "id": row[0],
                "category": row[1],
                "reference": row[2],
                "output": row[COLUMN[model]],
                "model": "tiny-qwen2-vl",
                "adapter": model,
            }
            for row in ROWS
        ]
        path = folder / f"{stem}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


def make_study(tmp: Path, *, data: bool = True, show_reference: bool = True, raters_per_item: int = 2):
    """6 ids x 3 pairs = 18 items, `raters_per_item` ratings wanted per item."""
    from vmeta.rating.create import create_study

    files = write_files(tmp / "preds")
    return create_study(
        files,
        tmp / "study",
        names=list(MODELS),
        raters_per_item=raters_per_item,
        seed=7,
        data=build_dataset(tmp / "ds") if data else None,
        show_reference=show_reference,
    )


def choice_for(rater: str, view: dict) -> str:
    """A scripted rater: prefers the answer that fits the template with the longer text; some raters say tie or
    both wrong now and then (deterministic, from the item and rater)."""
    a, b = (x["text"] for x in view["answers"])
    k = sum(map(ord, rater + view["item"])) % 7
    if k == 0:
        return "tie"
    if k == 1:
        return "both_wrong"
    return "a" if len(a) >= len(b) else "b"
