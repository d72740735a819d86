"""`vmeta rate new`: a study folder created from prediction files — the models named, the test ids every file can
be rated on, the items drawn by the design (every pair on every id, or a balanced subset), the inputs copied in.

Creating is kept apart from :mod:`vmeta.rating.study` (a study once it exists: blind order, assignment, ratings):
it runs once per study, and reopening the same inputs keeps every rating.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

from vmeta.errors import UserError
from vmeta.evaluate.predictions import Prediction, file_sha256, load_predictions
from vmeta.jsonio import write_json, write_jsonl
from vmeta.rating.study import CHOICES, ITEMS, KIND, LOCK, PREDICTIONS, RUBRIC, STUDY_JSON, VERSION, Study, now_utc

DESIGNS = ("all-pairs", "balanced")
RESERVED_NAMES = set(CHOICES)  # a model name must not read as a rating choice
_NAME_RE = re.compile(r"^[^\s/\\:*?\"<>|.][^\s/\\:*?\"<>|]{0,63}$")


def _model_names(preds: list[Path], names: list[str] | None) -> list[str]:
    if names is not None and len(names) != len(preds):
        raise UserError(
            f"--name was given {len(names)} time(s) for {len(preds)} prediction file(s); give one per file."
        )
    out = list(names) if names is not None else [p.stem for p in preds]
    for n in out:
        if not _NAME_RE.match(n):
            raise UserError(
                f"model name '{n}' cannot be used: 1-64 characters, no spaces, slashes or :*?\"<>|, not starting "
                "with a dot; pass --name to choose another."
            )
        if n.lower() in RESERVED_NAMES:
            raise UserError(f"model name '{n}' is reserved (a rating choice); pass --name to choose another.")
    dup = [n for n, c in Counter(out).items() if c > 1]
    if dup:
        raise UserError(
            f"two prediction files would both be called '{dup[0]}' (names default to the file stems); "
            "pass --name once per file to tell them apart."
        )
    return out


def _common_ids(
    loaded: dict[str, list[Prediction]], sources: dict[str, Path]
) -> tuple[list[str], dict[str, list[str]]]:
    """Ids usable in every file (present, no prediction error), in the first file's order, and per model the
    ids other files have but this one lacks or failed on."""
    usable = {n: {r.id for r in rows if not r.error} for n, rows in loaded.items()}
    every = set.intersection(*usable.values())
    union = set().union(*({r.id for r in rows} for rows in loaded.values()))
    left_out = {n: sorted(union - usable[n]) for n in loaded}
    first = next(iter(loaded.values()))
    ids = [r.id for r in first if r.id in every]
    refs: dict[str, tuple[str, str]] = {}
    for n, rows in loaded.items():
        for r in rows:
            if r.id not in every:
                continue
            if r.id in refs and refs[r.id][0].strip() != r.reference.strip():
                raise UserError(
                    f"id '{r.id}' has a different reference in {sources[n]} than in {sources[refs[r.id][1]]}; "
                    "a study compares predictions on the same test set."
                )
            refs.setdefault(r.id, (r.reference, n))
    return ids, {n: v for n, v in left_out.items() if v}


def _balanced(
    ids: list[str], categories: dict[str, str], pairs: list[tuple[str, str]], per_pair: int, rng: random.Random
) -> list[tuple[str, tuple[str, str]]]:
    """per_pair ids per pair, spread evenly: within a pair, categories in proportion to their size; across
    pairs, the least-used ids first (seeded tie-break)."""
    rank = {i: k for k, i in enumerate(rng.sample(ids, len(ids)))}
    by_cat: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        by_cat[categories[i]].append(i)
    cat_rank = {c: k for k, c in enumerate(rng.sample(sorted(by_cat), len(by_cat)))}
    used: Counter[str] = Counter()
    out = []
    for pair in pairs:
        taken: set[str] = set()
        per_cat: Counter[str] = Counter()
        for _ in range(per_pair):
            open_cats = [c for c in by_cat if any(i not in taken for i in by_cat[c])]
            cat = min(open_cats, key=lambda c: (per_cat[c] / len(by_cat[c]), cat_rank[c]))
            pick = min((i for i in by_cat[cat] if i not in taken), key=lambda i: (used[i], rank[i]))
            taken.add(pick)
            per_cat[cat] += 1
            used[pick] += 1
            out.append((pick, pair))
    return out


def _design_items(
    ids: list[str],
    categories: dict[str, str],
    models: list[str],
    design: str,
    per_pair: int | None,
    seed: int,
) -> list[dict]:
    pairs = list(combinations(sorted(models), 2))
    rng = random.Random(seed)
    if design == "all-pairs":
        chosen = [(i, p) for i in ids for p in pairs]
    else:
        chosen = _balanced(ids, categories, pairs, per_pair or 0, rng)
    rng.shuffle(chosen)  # item numbers say nothing about the id or the pair
    width = max(4, len(str(len(chosen))))
    items = [
        {"item": f"i{k:0{width}d}", "id": i, "category": categories[i], "models": list(p)}
        for k, (i, p) in enumerate(chosen, 1)
    ]
    return items


def _check_design(design: str, per_pair: int | None, raters_per_item: int, n_ids: int) -> None:
    if design not in DESIGNS:
        raise UserError(f"--design '{design}' is not known; choose {' or '.join(DESIGNS)}.")
    if design == "balanced":
        if per_pair is None or per_pair < 1:
            raise UserError("--design balanced needs --per-pair N (how many test ids each model pair is rated on).")
        if per_pair > n_ids:
            raise UserError(
                f"--per-pair {per_pair} is more than the {n_ids} test ids every file has; use at most {n_ids} "
                "(or --design all-pairs)."
            )
    elif per_pair is not None:
        raise UserError("--per-pair only applies to --design balanced; drop it or add --design balanced.")
    if raters_per_item < 1:
        raise UserError(f"--raters-per-item must be at least 1, got {raters_per_item}.")


def _same_study(meta: dict, wanted: dict) -> list[str]:
    """The fields in which an existing study differs from what `rate new` was asked for."""
    diffs = []
    old_models = [(m["name"], m["sha256"]) for m in meta.get("models", [])]
    new_models = [(m["name"], m["sha256"]) for m in wanted["models"]]
    if old_models != new_models:
        old = ", ".join(f"{n} sha256:{h[:12]}" for n, h in old_models)
        new = ", ".join(f"{n} sha256:{h[:12]}" for n, h in new_models)
        diffs.append(f"prediction files {old}; now {new}")
    for key in ("design", "seed", "show_reference", "data"):
        if meta.get(key) != wanted[key]:
            diffs.append(f"{key} {meta.get(key)!r} vs now {wanted[key]!r}")
    return diffs


def create_study(
    preds: list[Path],
    out: Path,
    names: list[str] | None = None,
    design: str = "all-pairs",
    per_pair: int | None = None,
    raters_per_item: int = 2,
    seed: int = 0,
    data: Path | None = None,
    show_reference: bool = True,
) -> Study:
    """Create STUDY (or reopen it when it already holds a study of the same inputs: ratings are kept).

    The returned Study has `.created` (False when it was already there) and `.left_out` (per model, ids that
    some file has but this one lacks or could not predict; they are not rated)."""
    preds = [Path(p) for p in preds]
    out = Path(out)
    if len(preds) < 2:
        raise UserError("a rating study compares at least two prediction files; give two or more.")
    model_names = _model_names(preds, names)
    loaded: dict[str, list[Prediction]] = {}
    for n, p in zip(model_names, preds, strict=True):
        loaded[n] = load_predictions(p)[0]
    sources = dict(zip(model_names, preds, strict=True))
    ids, left_out = _common_ids(loaded, sources)
    if not ids:
        raise UserError(
            "the prediction files share no test id with a usable output; a study needs predictions of the same "
            f"test set ({', '.join(str(p) for p in preds)})."
        )
    _check_design(design, per_pair, raters_per_item, len(ids))
    if data is not None and not Path(data).is_dir():
        raise UserError(f"--data {data}: no such folder; give the dataset folder the videos are found under.")
    wanted = {
        "models": [
            {
                "name": n,
                "file": f"{PREDICTIONS}/{n}.jsonl",
                "source": str(p.resolve()),
                "sha256": file_sha256(p),
                "rows": len(loaded[n]),
            }
            for n, p in zip(model_names, preds, strict=True)
        ],
        "data": str(Path(data).resolve()) if data is not None else None,
        "show_reference": bool(show_reference),
        "design": {"kind": design, "per_pair": per_pair, "raters_per_item": raters_per_item},
        "seed": seed,
    }
    if (out / STUDY_JSON).is_file():
        study = Study.open(out)
        diffs = _same_study(study.meta, wanted)
        if diffs:
            raise UserError(
                f"{out} already holds a rating study of other inputs ({'; '.join(diffs)}); its "
                f"{len(study.ratings())} rating(s) are kept untouched. Give another --out folder for the new study."
            )
        study.created = False
        study.left_out = left_out
        return study
    if out.exists() and any(p.name != LOCK for p in out.iterdir()):
        raise UserError(
            f"{out} is not empty and holds no {STUDY_JSON}; give an empty or new folder for the study "
            "(nothing there was changed)."
        )
    categories = {r.id: r.category for r in loaded[model_names[0]]}
    items = _design_items(ids, categories, model_names, design, per_pair, seed)
    (out / PREDICTIONS).mkdir(parents=True, exist_ok=True)
    for n, p in zip(model_names, preds, strict=True):
        tmp = out / PREDICTIONS / f".{n}.jsonl.tmp"
        shutil.copyfile(p, tmp)
        os.replace(tmp, out / PREDICTIONS / f"{n}.jsonl")
    write_jsonl(out / ITEMS, items)
    meta = {
        "kind": KIND,
        "version": VERSION,
        "created": now_utc(),
        "seed": seed,
        "models": wanted["models"],
        "data": wanted["data"],
        "show_reference": wanted["show_reference"],
        "design": wanted["design"],
        "rubric": RUBRIC,
        "ids": len(ids),
        "items": len(items),
        "left_out": left_out,
    }
    write_json(out / STUDY_JSON, meta)  # last: a folder with study.json is a complete study
    study = Study.open(out)
    study.created = True
    study.left_out = left_out
    return study


__all__ = ["DESIGNS", "create_study"]
