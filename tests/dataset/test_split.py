import json
import random

import pytest

from vmeta.dataset.categories import THESIS_COUNTS
from vmeta.dataset.records import Dataset, Record, ReviewStatus, SourceRef
from vmeta.dataset.split import (
    DEFAULT_VAL_FRACTION,
    largest_remainder,
    plan_split,
    split_dataset,
    val_total,
)
from vmeta.errors import UserError
from vmeta.video.meta import VideoMeta

LABEL = "本视频讲述了猫。哈基米出自日语，其因为走红，表达出了喜爱。"


def make(rid: str, category: str, *, readable: bool = True, status: str = "pending", split=None) -> Record:
    return Record(
        id=rid,
        video=f"videos/{rid}.mp4",
        category=category,
        raw_label=LABEL,
        label=LABEL,
        source=SourceRef(sheet="s.csv", row=2),
        video_meta=VideoMeta(readable=readable),
        review={"status": status},
        split=split,
    )


def thesis_records(counts=THESIS_COUNTS, prefix="") -> list[Record]:
    out = []
    for c, n in counts.items():
        out += [make(f"{prefix}{c}_{i:03d}", c) for i in range(1, n + 1)]
    return out


def by_split(records):
    return {r.id: r.split for r in records}


def test_thesis_counts_give_679_119_100(tmp_path):
    ds = Dataset(tmp_path)
    ds.save(thesis_records())
    report = split_dataset(ds)
    assert report.totals == {"train": 679, "val": 119, "test": 100}
    assert all(n == 20 for n in report.counts["test"].values())
    assert len(report.counts["test"]) == 5
    # Largest remainder over the 798 non-test items: 405/120/99/85/89 -> 60/18/15/13/13.
    assert report.counts["val"] == {"讽刺类": 18, "诙谐类": 60, "生活态度类": 15, "硬核类": 13, "自嘲幽默类": 13}
    stored = ds.load()
    assert sum(r.split == "train" for r in stored) == 679
    data = json.loads((tmp_path / "splits.json").read_text(encoding="utf-8"))
    assert data["seed"] == 42 and data["totals"] == {"train": 679, "val": 119, "test": 100}
    assert len(data["ids"]["test"]) == 100 and data["hash"] == report.hash
    assert data["counts"]["test"]["诙谐类"] == 20


def test_default_val_fraction_documented_arithmetic():
    assert val_total(DEFAULT_VAL_FRACTION, 798) == 119
    assert val_total(0.15, 798) == 120
    parts = largest_remainder(7, {"a": 1, "b": 1, "c": 1})
    assert sum(parts.values()) == 7 and sorted(parts.values()) == [2, 2, 3]


def test_same_seed_same_split_different_seed_differs():
    a, _ = plan_split(thesis_records(), seed=42)
    b, _ = plan_split(thesis_records(), seed=42)
    c, _ = plan_split(thesis_records(), seed=7)
    assert a == b
    assert a != c
    assert sum(v == "test" for v in c.values()) == 100


def test_record_order_does_not_matter():
    records = thesis_records()
    a, ra = plan_split(records)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    b, rb = plan_split(shuffled)
    assert a == b and ra.hash == rb.hash


def test_resplit_after_adding_records_keeps_assignments(tmp_path):
    ds = Dataset(tmp_path)
    ds.save(thesis_records())
    split_dataset(ds)
    before = by_split(ds.load())
    extra = thesis_records({"讽刺类": 10, "硬核类": 30}, prefix="new_")
    ds.save(ds.load() + extra)
    report = split_dataset(ds)
    after = by_split(ds.load())
    assert all(after[k] == v for k, v in before.items())
    assert report.kept == 898 and report.assigned == 40
    assert report.counts["test"]["讽刺类"] == 20  # quota already full: new records go to val/train
    assert {after[r.id] for r in extra} <= {"train", "val"}


def test_new_records_fill_test_quota(tmp_path):
    ds = Dataset(tmp_path)
    recs = thesis_records({"讽刺类": 30})
    # Pretend an earlier split left only 15 items in test for this category.
    for i, r in enumerate(recs):
        r.split = "test" if i < 15 else "train"
    ds.save(recs + thesis_records({"讽刺类": 10}, prefix="new_"))
    report = split_dataset(ds, val_fraction=0.0)
    assert report.counts["test"]["讽刺类"] == 20
    assert report.assigned == 10


def test_reshuffle_refuses_test_to_train_without_flag(tmp_path):
    ds = Dataset(tmp_path)
    ds.save(thesis_records())
    split_dataset(ds, seed=42)
    before = by_split(ds.load())
    with pytest.raises(UserError, match="allow-test-to-train") as err:
        split_dataset(ds, seed=1, reshuffle=True)
    moved_out = [k for k, v in before.items() if v == "test"]
    assert any(rid in str(err.value) for rid in moved_out)
    assert by_split(ds.load()) == before  # nothing changed
    report = split_dataset(ds, seed=1, reshuffle=True, allow_test_to_train=True)
    assert report.test_to_train and all(before[i] == "test" for i in report.test_to_train)
    data = json.loads((tmp_path / "splits.json").read_text(encoding="utf-8"))
    assert data["test_to_train"] == report.test_to_train
    # Reshuffle with the same seed as a from-scratch split reproduces it.
    again = split_dataset(ds, seed=1, reshuffle=True)
    assert not again.moved


def test_excluded_records_are_reported(tmp_path):
    ds = Dataset(tmp_path)
    recs = thesis_records({"诙谐类": 25, "硬核类": 22})
    recs.append(make("bad_rej", "诙谐类", status="rejected", split="test"))
    recs.append(make("bad_vid", "硬核类", readable=False))
    ds.save(recs)
    report = split_dataset(ds, test_per_category=20)
    assert report.excluded["rejected"] == ["bad_rej"]
    assert report.excluded["unreadable"] == ["bad_vid"]
    assert report.dropped == [{"id": "bad_rej", "from": "test", "reason": "rejected"}]
    stored = {r.id: r for r in ds.load()}
    assert stored["bad_rej"].split is None and stored["bad_vid"].split is None
    assert sum(report.totals.values()) == 47


def test_reviewed_only(tmp_path):
    recs = thesis_records({"诙谐类": 6})
    for r in recs[:4]:
        r.review.status = ReviewStatus.accepted
    recs[4].review.status = ReviewStatus.edited
    assignment, report = plan_split(recs, test_per_category=2, reviewed_only=True)
    assert report.excluded["not_reviewed"] == [recs[5].id]
    assert assignment[recs[5].id] is None and sum(report.totals.values()) == 5


def test_small_category_error_says_what_to_set():
    with pytest.raises(UserError, match="--test-per-category 12"):
        plan_split(thesis_records({"诙谐类": 30, "硬核类": 12}))


def test_cli_split_prints_table_and_refuses_test_moves(tmp_path):
    from typer.testing import CliRunner

    from vmeta.cli import app

    ds = Dataset(tmp_path)
    ds.save(thesis_records())
    runner = CliRunner()
    res = runner.invoke(app, ["data", "split", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "679" in res.output and "119" in res.output and "100" in res.output and "诙谐类" in res.output
    # Second run reuses the stored parameters and keeps everything.
    res = runner.invoke(app, ["data", "split", str(tmp_path)])
    assert res.exit_code == 0 and "kept 898" in res.output
    res = runner.invoke(app, ["data", "split", str(tmp_path), "--reshuffle", "--seed", "5"])
    assert isinstance(res.exception, UserError) and "allow-test-to-train" in str(res.exception)
    res = runner.invoke(app, ["data", "split", str(tmp_path), "--reshuffle", "--seed", "5", "--allow-test-to-train"])
    assert res.exit_code == 0 and "moved out of test" in res.output
