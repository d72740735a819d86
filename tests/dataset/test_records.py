import threading

import pytest

from vmeta.dataset.records import Dataset, Record, ReviewStatus, SourceRef
from vmeta.errors import UserError


def _rec(i: int, label: str = "本视频讲述了猫。哈基米出自日语，其因为走红，表达出了喜爱。") -> Record:
    r = Record(
        id=f"v{i}",
        video=f"videos/v{i}.mp4",
        category="诙谐类",
        raw_label=label,
        label=label,
        source=SourceRef(sheet="s.csv", row=i + 1),
    )
    r.set_label(label, "raw")
    return r


def test_save_load_round_trip_and_manifest(tmp_path):
    ds = Dataset(tmp_path)
    ds.save([_rec(1), _rec(2)])
    loaded = ds.load()
    assert [r.id for r in loaded] == ["v1", "v2"]
    assert loaded[0].conforms and loaded[0].slots["concept"] == "哈基米"
    assert ds.manifest()["records"] == 2
    assert len(ds.content_hash()) == 16


def test_missing_dataset_says_how_to_build_one(tmp_path):
    with pytest.raises(UserError, match="vmeta data build"):
        Dataset(tmp_path / "nope").require()


def test_invalid_record_line_is_named(tmp_path):
    (tmp_path / "records.jsonl").write_text('{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="line 1"):
        Dataset(tmp_path).load()


def test_concurrent_updates_lose_nothing(tmp_path):
    ds = Dataset(tmp_path)
    ds.save([_rec(i) for i in range(20)])

    def review(i: int) -> None:
        def fn(records):
            next(r for r in records if r.id == f"v{i}").review.status = ReviewStatus.accepted

        ds.update(fn)

    threads = [threading.Thread(target=review, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.review.status == ReviewStatus.accepted for r in ds.load())


def test_audit_is_append_only(tmp_path):
    ds = Dataset(tmp_path)
    ds.audit({"id": "v1", "action": "accept"})
    ds.audit({"id": "v1", "action": "edit"})
    lines = ds.audit_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and '"edit"' in lines[1] and '"at"' in lines[0]
