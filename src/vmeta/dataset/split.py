"""Stratified, seeded, reproducible train/val/test split (thesis §4.1: 679 / 119 / 100, test = 20 per category).

How a split is made
-------------------
* Eligible records: not review-rejected, video readable (``video_meta.readable``), label not empty, and with
  ``reviewed_only`` also reviewed (accepted or edited). Everything else is excluded and counted by reason.
* Per category: a fixed test count (``test_per_category``, default 20). Of what remains, a validation share
  ``val_fraction`` of the *non-test* items overall, ``V = round_half_up(val_fraction * remaining)``, apportioned
  to the categories by the largest-remainder (Hamilton) method so the per-category counts add up exactly.
  Everything else is train.
* Which items: within a category, records are ordered by ``sha256(f"{seed}:{id}")`` — a function of the seed
  and the id only, so the split does not depend on the order of records in the file, and a different seed
  gives a different split.

Default ``val_fraction = 0.149``: on the thesis' 898 videos (425/140/119/105/109) the test split takes
5 x 20 = 100, leaving 798; ``round(0.149 * 798) = round(118.9) = 119`` validation items (60/18/15/13/13 by
largest remainder) and 679 train — the thesis' 679 / 119 / 100. (0.15 would give 120.)

Re-splitting
------------
* By default existing assignments are kept: a record keeps its split; new eligible records are ordered by
  the seeded hash and fill the missing test and validation quotas of their category first, the rest go to
  train. A record that became ineligible (rejected, unreadable) loses its split and is listed.
* ``reshuffle=True`` recomputes everything from the seed. Any record that would move out of test into train
  or val is refused (a `UserError` listing the ids) unless ``allow_test_to_train=True``; then the moves are
  listed in the report and in ``splits.json``. A model trained on an old test item and evaluated on the new
  test split would otherwise report inflated scores without anyone noticing.

The split is stored in each record's ``split`` field (under the dataset lock) and described in
``DATASET/splits.json`` (seed, parameters, counts per split x category, id lists, a hash of the id lists).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from vmeta.dataset.records import Dataset, Record, ReviewStatus, now_iso
from vmeta.errors import UserError
from vmeta.jsonio import read_json, write_json

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLITS_FILE = "splits.json"
DEFAULT_TEST_PER_CATEGORY = 20
DEFAULT_VAL_FRACTION = 0.149
DEFAULT_SEED = 42

# Why a record is not in any split. Checked in this order; a record is counted under its first reason.
EXCLUDE_REASONS: tuple[str, ...] = ("rejected", "unreadable", "empty_label", "not_reviewed")


@dataclass
class SplitReport:
    seed: int
    test_per_category: int
    val_fraction: float
    reviewed_only: bool
    reshuffle: bool
    counts: dict[str, dict[str, int]]  # split -> category -> n
    ids: dict[str, list[str]]  # split -> sorted ids
    excluded: dict[str, list[str]]  # reason -> ids
    kept: int = 0  # records that kept an earlier assignment
    assigned: int = 0  # records that got a split in this run
    moved: list[dict[str, str]] = field(default_factory=list)  # reshuffle: {"id", "from", "to"}
    test_to_train: list[str] = field(default_factory=list)  # moved out of test (only with allow_test_to_train)
    dropped: list[dict[str, str]] = field(default_factory=list)  # had a split, now ineligible: {"id", "from", "reason"}
    warnings: list[str] = field(default_factory=list)
    hash: str = ""
    path: Path | None = None

    @property
    def totals(self) -> dict[str, int]:
        return {s: sum(self.counts.get(s, {}).values()) for s in SPLITS}

    @property
    def categories(self) -> list[str]:
        cats: set[str] = set()
        for per in self.counts.values():
            cats.update(per)
        return sorted(cats, key=_category_order)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "parameters": {
                "test_per_category": self.test_per_category,
                "val_fraction": self.val_fraction,
                "reviewed_only": self.reviewed_only,
                "reshuffle": self.reshuffle,
                "order": "sha256(f'{seed}:{id}') within each category",
                "val_allocation": "round_half_up(val_fraction * non-test items), largest remainder per category",
            },
            "created": now_iso(),
            "totals": self.totals,
            "counts": self.counts,
            "excluded": {k: v for k, v in self.excluded.items() if v},
            "kept": self.kept,
            "assigned": self.assigned,
            "moved": self.moved,
            "test_to_train": self.test_to_train,
            "dropped": self.dropped,
            "warnings": self.warnings,
            "hash": self.hash,
            "ids": self.ids,
        }


def order_key(seed: int, record_id: str) -> str:
    """The seeded position of a record within its category: independent of file order."""
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def exclusion_reason(record: Record, *, reviewed_only: bool = False) -> str | None:
    if record.review.status == ReviewStatus.rejected:
        return "rejected"
    if not record.video_meta.readable:
        return "unreadable"
    if not (record.label or "").strip():
        return "empty_label"
    if reviewed_only and record.review.status not in (ReviewStatus.accepted, ReviewStatus.edited):
        return "not_reviewed"
    return None


def largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Apportion `total` seats to keys in proportion to `weights`; the parts add up to `total` exactly.

    Ties in the fractional part go to the larger weight, then to the key in category order (deterministic).
    """
    wsum = sum(weights.values())
    if wsum <= 0 or total <= 0:
        return {k: 0 for k in weights}
    quotas = {k: Fraction(total * w, wsum) for k, w in weights.items()}
    out = {k: math.floor(q) for k, q in quotas.items()}
    left = total - sum(out.values())
    ranked = sorted(weights, key=lambda k: (-(quotas[k] - out[k]), -weights[k], _category_order(k)))
    for k in ranked[:left]:
        out[k] += 1
    return out


def val_total(val_fraction: float, remaining: int) -> int:
    """round_half_up(val_fraction * remaining), computed exactly on the decimal value of val_fraction."""
    return math.floor(Fraction(str(val_fraction)) * remaining + Fraction(1, 2))


def plan_split(
    records: list[Record],
    *,
    test_per_category: int = DEFAULT_TEST_PER_CATEGORY,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    reviewed_only: bool = False,
    reshuffle: bool = False,
    allow_test_to_train: bool = False,
) -> tuple[dict[str, str | None], SplitReport]:
    """Decide every record's split without changing anything. Returns (id -> split or None, report)."""
    if test_per_category < 0:
        raise UserError(f"--test-per-category must be 0 or more, not {test_per_category}.")
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), not {val_fraction}.")
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise UserError(f"record id {r.id!r} appears twice in records.jsonl; fix the dataset before splitting.")
        seen.add(r.id)

    excluded: dict[str, list[str]] = {reason: [] for reason in EXCLUDE_REASONS}
    eligible: dict[str, list[Record]] = defaultdict(list)
    dropped: list[dict[str, str]] = []
    for r in records:
        reason = exclusion_reason(r, reviewed_only=reviewed_only)
        if reason:
            excluded[reason].append(r.id)
            if r.split:
                dropped.append({"id": r.id, "from": r.split, "reason": reason})
        else:
            eligible[r.category].append(r)

    warnings: list[str] = []
    too_small = {c: len(rs) for c, rs in eligible.items() if len(rs) < test_per_category}
    if too_small:
        worst = min(too_small.values())
        listing = ", ".join(f"{c} has {n}" for c, n in sorted(too_small.items(), key=lambda kv: _category_order(kv[0])))
        raise UserError(
            f"not enough eligible records for {test_per_category} test items per category ({listing}); "
            f"set --test-per-category {worst} or lower, or add/accept more records in those categories."
        )

    def keep(r: Record) -> bool:
        return not reshuffle and r.split in SPLITS

    # Test and val targets per category.
    kept_counts: dict[str, dict[str, int]] = {
        c: {s: sum(1 for r in rs if keep(r) and r.split == s) for s in SPLITS} for c, rs in eligible.items()
    }
    test_target: dict[str, int] = {}
    for c, rs in eligible.items():
        test_target[c] = max(test_per_category, kept_counts[c]["test"])
        if kept_counts[c]["test"] > test_per_category:
            warnings.append(
                f"{c}: {kept_counts[c]['test']} records are already in test (more than {test_per_category}); "
                "they stay there. Use --reshuffle --allow-test-to-train to rebalance."
            )
        if len(rs) == test_target[c]:
            warnings.append(f"{c}: all {len(rs)} eligible records are in test; nothing left for train/val.")
    remaining = {c: len(rs) - test_target[c] for c, rs in eligible.items()}
    val_target = largest_remainder(val_total(val_fraction, sum(remaining.values())), remaining)

    assignment: dict[str, str | None] = {r.id: None for r in records}
    kept = assigned = 0
    for c, rs in eligible.items():
        fresh = sorted((r for r in rs if not keep(r)), key=lambda r: order_key(seed, r.id))
        for r in rs:
            if keep(r):
                assignment[r.id] = r.split
                kept += 1
        need_test = max(0, test_target[c] - kept_counts[c]["test"])
        need_val = max(0, val_target[c] - kept_counts[c]["val"])
        if kept_counts[c]["val"] > val_target[c]:
            warnings.append(
                f"{c}: {kept_counts[c]['val']} records are already in val (quota now {val_target[c]}); they stay there."
            )
        for i, r in enumerate(fresh):
            assignment[r.id] = "test" if i < need_test else "val" if i < need_test + need_val else "train"
            assigned += 1

    moved = [
        {"id": r.id, "from": r.split, "to": assignment[r.id]}
        for r in records
        if r.split in SPLITS and assignment[r.id] is not None and assignment[r.id] != r.split
    ]
    test_out = sorted(m["id"] for m in moved if m["from"] == "test")
    if test_out and not allow_test_to_train:
        shown = ", ".join(test_out[:20]) + (f" … ({len(test_out)} in all)" if len(test_out) > 20 else "")
        raise UserError(
            f"re-splitting would move {len(test_out)} test record(s) into train/val: {shown}. "
            "Models trained on the new split would have seen old test items. Nothing was changed; "
            "re-run without --reshuffle to keep existing assignments, or add --allow-test-to-train to accept the moves."
        )

    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    ids: dict[str, list[str]] = {s: [] for s in SPLITS}
    by_id = {r.id: r for r in records}
    for rid, s in assignment.items():
        if s is None:
            continue
        c = by_id[rid].category
        counts[s][c] = counts[s].get(c, 0) + 1
        ids[s].append(rid)
    for s in SPLITS:
        ids[s].sort()
        counts[s] = dict(sorted(counts[s].items(), key=lambda kv: _category_order(kv[0])))
    report = SplitReport(
        seed=seed,
        test_per_category=test_per_category,
        val_fraction=val_fraction,
        reviewed_only=reviewed_only,
        reshuffle=reshuffle,
        counts=counts,
        ids=ids,
        excluded=excluded,
        kept=kept,
        assigned=assigned,
        moved=moved,
        test_to_train=test_out,
        dropped=dropped,
        warnings=warnings,
        hash=split_hash(ids),
    )
    return assignment, report


def split_hash(ids: dict[str, list[str]]) -> str:
    canonical = json.dumps({s: sorted(ids.get(s, [])) for s in SPLITS}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def split_dataset(
    dataset: Dataset,
    *,
    test_per_category: int = DEFAULT_TEST_PER_CATEGORY,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    reviewed_only: bool = False,
    reshuffle: bool = False,
    allow_test_to_train: bool = False,
) -> SplitReport:
    """Split the dataset in place (record.split) and write DATASET/splits.json. See the module docstring."""
    dataset.require()
    splits_path = dataset.root / SPLITS_FILE
    with dataset.locked():
        records = dataset.load()
        assignment, report = plan_split(
            records,
            test_per_category=test_per_category,
            val_fraction=val_fraction,
            seed=seed,
            reviewed_only=reviewed_only,
            reshuffle=reshuffle,
            allow_test_to_train=allow_test_to_train,
        )
        previous = _previous_parameters(splits_path)
        if previous and not reshuffle:
            now = {"seed": seed, "test_per_category": test_per_category, "val_fraction": val_fraction}
            changed = [k for k, v in now.items() if previous.get(k) is not None and previous.get(k) != v]
            if changed and report.kept:
                report.warnings.append(
                    f"{', '.join(changed)} differ from the previous split; existing assignments were kept and only "
                    "new records follow the new settings. Use --reshuffle to recompute."
                )
        for r in records:
            r.split = assignment[r.id]
        dataset.save(records)
        write_json(splits_path, report.to_dict())
    report.path = splits_path
    return report


def load_splits(dataset: Dataset) -> dict[str, Any] | None:
    path = dataset.root / SPLITS_FILE
    return read_json(path) if path.exists() else None


def _previous_parameters(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = read_json(path)
    except UserError:
        return {}
    return {"seed": data.get("seed"), **(data.get("parameters") or {})}


def _category_order(name: str) -> tuple[int, str]:
    from vmeta.dataset.categories import CATEGORIES

    order = list(CATEGORIES)
    return (order.index(name) if name in order else len(order), name)
