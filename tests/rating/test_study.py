"""The study folder and its API: creation, resume, refusal on changed inputs, designs, blind assignment,
reload-safety, the ratings store (AlreadyRated, validation, torn last line)."""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations

import pytest
from ratingdata import MODELS, ROWS, write_preds

from vmeta.errors import UserError
from vmeta.rating.create import create_study
from vmeta.rating.study import AlreadyRated, Study


def test_create_writes_a_self_describing_folder(study, pred_files):
    root = study.root
    meta = json.loads((root / "study.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "vmeta-rating-study" and meta["version"] == 1
    assert [m["name"] for m in meta["models"]] == list(MODELS)
    for m, p in zip(meta["models"], pred_files, strict=True):
        assert (root / m["file"]).read_bytes() == p.read_bytes()
        assert m["source"] == str(p.resolve()) and m["rows"] == 6 and len(m["sha256"]) == 64
    assert meta["design"] == {"kind": "all-pairs", "per_pair": None, "raters_per_item": 2}
    assert meta["rubric"]["choices"] == ["a", "b", "tie", "both_wrong"]
    assert meta["rubric"]["slots"] == ["core_concept", "source", "emotion"]
    assert meta["ids"] == 6 and meta["items"] == 18
    # every id x every pair exactly once, models sorted, item ids opaque
    keys = Counter((it["id"], tuple(it["models"])) for it in study.items)
    assert set(keys) == {(r[0], p) for r in ROWS for p in combinations(sorted(MODELS), 2)}
    assert set(keys.values()) == {1}
    for it in study.items:
        assert it["models"] == sorted(it["models"])
        assert not any(m in it["item"] for m in MODELS)
    in_order = [(it["id"], it["models"]) for it in study.items]
    assert in_order != sorted(in_order)  # item numbers say nothing about the id or the pair
    assert study.created is True


def test_answer_reference_category(study):
    assert study.answer("good", "t01") == ROWS[0][3]
    assert study.answer("bad", "t06") == ""
    assert study.reference("t03") == ROWS[2][2]
    assert study.category("t05") == "硬核类"
    assert study.video_path("t01") is None  # no --data
    with pytest.raises(UserError, match="not in this study"):
        study.answer("nobody", "t01")
    with pytest.raises(UserError, match="t99"):
        study.answer("good", "t99")


def test_rate_new_again_resumes_and_keeps_ratings(study, pred_files):
    item = study.next_item("alice")
    study.record("alice", item["item"], "tie", None, "", 3.0)
    again = create_study(pred_files, study.root, raters_per_item=2, seed=0)
    assert again.created is False
    assert len(again.ratings()) == 1
    assert again.items == study.items


def test_rate_new_refuses_changed_inputs_and_keeps_ratings(study, pred_files, tmp_path):
    item = study.next_item("alice")
    study.record("alice", item["item"], "a", None, "", None)
    before = (study.root / "ratings.jsonl").read_bytes()
    changed = write_preds(tmp_path / "preds" / "mid.jsonl", "mid", ids=["t01", "t02", "t03", "t04", "t05"])
    with pytest.raises(UserError, match="already holds a rating study of other inputs") as exc:
        create_study([pred_files[0], changed, pred_files[2]], study.root, raters_per_item=2, seed=0)
    assert "1 rating(s) are kept" in str(exc.value)
    with pytest.raises(UserError, match="seed"):
        create_study(pred_files, study.root, raters_per_item=2, seed=1)
    assert (study.root / "ratings.jsonl").read_bytes() == before


def test_rate_new_refuses_a_foreign_non_empty_folder(pred_files, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        create_study(pred_files, out)
    assert (out / "notes.txt").read_text() == "mine"


def test_missing_and_failed_ids_are_reported_not_silently_dropped(tmp_path):
    a = write_preds(tmp_path / "m1.jsonl", "good")
    b = write_preds(tmp_path / "m2.jsonl", "mid", ids=["t01", "t02", "t03", "t04", "t05"], errors={"t02"})
    s = create_study([a, b], tmp_path / "s")
    assert s.left_out == {"m2": ["t02", "t06"]}
    assert s.meta["left_out"] == {"m2": ["t02", "t06"]}
    assert sorted({it["id"] for it in s.items}) == ["t01", "t03", "t04", "t05"]


def test_bad_inputs_are_refused_with_clear_messages(pred_files, tmp_path):
    with pytest.raises(UserError, match="at least two"):
        create_study(pred_files[:1], tmp_path / "s1")
    with pytest.raises(UserError, match="both be called 'good'"):
        create_study([pred_files[0], pred_files[0]], tmp_path / "s2")
    with pytest.raises(UserError, match="reserved"):
        create_study(pred_files[:2], tmp_path / "s3", names=["tie", "x"])
    with pytest.raises(UserError, match="--per-pair"):
        create_study(pred_files, tmp_path / "s4", design="balanced")
    with pytest.raises(UserError, match="at most 6"):
        create_study(pred_files, tmp_path / "s5", design="balanced", per_pair=7)
    with pytest.raises(UserError, match="design"):
        create_study(pred_files, tmp_path / "s6", design="round-robin")
    other = tmp_path / "other.jsonl"
    other.write_text(
        pred_files[1].read_text(encoding="utf-8").replace("本视频讲述了打工人加班", "本视频讲述了学生加班"),
        encoding="utf-8",
    )
    with pytest.raises(UserError, match="different reference"):
        create_study([pred_files[0], other], tmp_path / "s7")
    with pytest.raises(UserError, match="not a rating study"):
        Study.open(tmp_path)


def test_balanced_design_spreads_ids_and_categories(pred_files, tmp_path):
    s = create_study(pred_files, tmp_path / "b", design="balanced", per_pair=3, seed=7)
    per_pair = Counter(tuple(it["models"]) for it in s.items)
    assert per_pair == {p: 3 for p in combinations(sorted(MODELS), 2)}
    for p in per_pair:  # one id of each of the three categories in every pair
        cats = [it["category"] for it in s.items if tuple(it["models"]) == p]
        assert sorted(cats) == sorted({"讽刺类", "诙谐类", "硬核类"})
    uses = Counter(it["id"] for it in s.items)  # 9 slots over 6 ids: every id once or twice
    assert set(uses) == {r[0] for r in ROWS} and max(uses.values()) - min(uses.values()) <= 1
    s2 = create_study(pred_files, tmp_path / "b2", design="balanced", per_pair=3, seed=7)
    assert s2.items == s.items  # seeded


def test_shown_order_is_stable_and_both_orders_occur(study):
    orders = {it["item"]: study.shown_order("alice", it["item"]) for it in study.items}
    reopened = Study.open(study.root)
    assert {i: reopened.shown_order("alice", i) for i in orders} == orders
    assert any(o[0] > o[1] for o in orders.values()) and any(o[0] < o[1] for o in orders.values())
    for i, (a, b) in orders.items():
        assert sorted((a, b)) == study.item(i)["models"]


def test_next_item_is_reload_safe_and_never_repeats(study):
    first = study.next_item("alice")
    assert Study.open(study.root).next_item("alice") == first  # a reload (new process) gets the same item
    seen = set()
    while (it := study.next_item("alice")) is not None:
        assert it["item"] not in seen
        seen.add(it["item"])
        study.record("alice", it["item"], "a", None, "", None)
    assert len(seen) == 18
    assert study.progress("alice") == {"done": 18, "total": 18, "all_done": 18, "all_total": 36}


def test_next_item_prefers_items_with_fewest_ratings_and_stops_at_target(study):
    for it in study.items[:6]:
        study.record("carol", it["item"], "tie", None, "", None)
        study.record("dave", it["item"], "tie", None, "", None)  # these six reach the target of two
    full = {it["item"] for it in study.items[:6]}
    got = []
    while (it := study.next_item("erin")) is not None:
        got.append(it["item"])
        study.record("erin", it["item"], "b", None, "", None)
    assert len(got) == 12 and not full & set(got)
    # bob: erin rated the other 12 once each, so bob gets those 12 and then is done
    p = study.progress("bob")
    assert p == {"done": 0, "total": 12, "all_done": 24, "all_total": 36}


def test_two_raters_are_spread_over_different_items(study):
    a = study.next_item("alice")
    b = study.next_item("bob")
    assert a["item"] != b["item"]  # alice's open item counts as claimed


def test_record_stores_what_was_shown(study):
    item = study.next_item("alice")["item"]
    a, b = study.shown_order("alice", item)
    row = study.record(
        "alice", item, "b", {"a": {"core_concept": 1, "source": 0}, "b": {"emotion": True}}, " ok ", 4.25
    )
    assert row["model_a"] == a and row["model_b"] == b and row["winner"] == b
    assert row["slots"] == {a: {"core_concept": 1, "source": 0}, b: {"emotion": 1}}
    assert row["note"] == "ok" and row["seconds"] == 4.25 and row["source"] == "page"
    stored = study.ratings()
    assert stored == [row]
    assert stored[0]["time"].endswith("Z") and stored[0]["id"] == study.item(item)["id"]


def test_already_rated_and_validation(study):
    item = study.items[0]["item"]
    study.record("alice", item, "tie", None, "", None)
    with pytest.raises(AlreadyRated):
        study.record("alice", item, "a", None, "", None)
    with pytest.raises(AlreadyRated):
        study.record(" alice ", item, "a", None, "", None)  # names are stripped
    assert isinstance(AlreadyRated("x"), UserError)
    with pytest.raises(UserError, match="choice"):
        study.record("bob", item, "left", None, "", None)
    with pytest.raises(UserError, match="not in this study"):
        study.record("bob", "i9999", "a", None, "", None)
    with pytest.raises(UserError, match="keyed 'a' and 'b'"):
        study.record("bob", item, "a", {"good": {"source": 1}}, "", None)
    with pytest.raises(UserError, match="not one of"):
        study.record("bob", item, "a", {"a": {"mapping": 1}}, "", None)
    with pytest.raises(UserError, match="0 or 1"):
        study.record("bob", item, "a", {"a": {"source": 2}}, "", None)
    with pytest.raises(UserError, match="empty"):
        study.record("  ", item, "a", None, "", None)
    with pytest.raises(UserError, match="seconds"):
        study.record("bob", item, "a", None, "", -1)
    assert len(study.ratings()) == 1


def test_torn_last_line_is_ignored_and_next_append_repairs_it(study):
    items = [it["item"] for it in study.items]
    study.record("alice", items[0], "a", None, "", None)
    with (study.root / "ratings.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"item": "' + items[1] + '", "rater": "alice", "winn')  # killed mid-write
    assert len(study.ratings()) == 1
    assert study.progress("alice")["done"] == 1
    study.record("alice", items[1], "b", None, "", None)  # the torn line never counted; it is cut off
    assert [r["item"] for r in study.ratings()] == items[:2]
    assert all(json.loads(line) for line in (study.root / "ratings.jsonl").read_text().splitlines())
