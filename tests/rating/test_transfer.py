"""Import from a spreadsheet (CSV / JSONL): bad rows named by line and field, good rows in, duplicates counted;
export and a round trip into a fresh study."""

from __future__ import annotations

import json

import pytest

from vmeta.errors import UserError
from vmeta.rating.create import create_study
from vmeta.rating.transfer import export_ratings, import_ratings

CSV = """id,rater,model_a,model_b,winner,a_core_concept,b_source,note,time
t01,ann,good,mid,good,1,0,clear,2026-12-07T10:00:00Z
t02,ann,mid,bad,tie,,,,
t03,ann,good,bad,nobody,,,,
t04,ann,good,zzz,good,,,,
t05,,good,mid,mid,,,,
t99,ann,good,mid,mid,,,,
t06,ann,good,mid,both_wrong,2,,,
t06,ann,bad,good,a,,,,yesterday
t01,ann,mid,good,mid,,,,
t06,ben,mid,bad,b,,1,"a, quoted note",
"""


def test_import_csv_reports_bad_rows_and_keeps_good_ones(study, tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_text(CSV, encoding="utf-8-sig")  # with a BOM, as spreadsheet programs write
    res = import_ratings(study, path)
    assert res.imported == 3 and res.duplicates == 1 and res.rows == 10
    errors = "\n".join(res.errors)
    assert len(res.errors) == 6, errors
    assert "sheet.csv line 4, field 'winner'" in errors and "'nobody'" in errors
    assert "line 5, field 'model_b'" in errors and "'zzz'" in errors
    assert "line 6, field 'rater'" in errors
    assert "line 7, field 'id'" in errors and "t99" in errors
    assert "line 8, field 'a_core_concept'" in errors
    assert "line 9, field 'time'" in errors
    stored = study.ratings()
    first = stored[0]
    assert (first["id"], first["rater"], first["model_a"], first["model_b"], first["winner"]) == (
        "t01",
        "ann",
        "good",
        "mid",
        "good",
    )
    assert first["slots"] == {"good": {"core_concept": 1}, "mid": {"source": 0}}
    assert first["note"] == "clear" and first["time"] == "2026-12-07T10:00:00Z"
    assert first["source"] == "import:sheet.csv"
    assert stored[1]["winner"] == "tie" and stored[1]["slots"] == {}
    assert stored[2]["winner"] == "bad" and stored[2]["note"] == "a, quoted note"
    assert stored[2]["slots"] == {"bad": {"source": 1}}
    again = import_ratings(study, path)  # importing twice adds nothing
    assert again.imported == 0 and again.duplicates == 4
    assert len(study.ratings()) == 3


def test_import_jsonl_and_bad_json_lines(study, tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [
        {
            "id": "t01",
            "rater": "ann",
            "model_a": "mid",
            "model_b": "good",
            "winner": "good",
            "slots": {"good": {"emotion": 1}},
        },
        "not an object",
        {
            "id": "t02",
            "rater": "ann",
            "model_a": "mid",
            "model_b": "good",
            "winner": "b",
            "slots": {"a": {"source": 0}},
        },
    ]
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{broken\n"
    path.write_text(text, encoding="utf-8")
    res = import_ratings(study, path)
    assert res.imported == 2 and len(res.errors) == 2
    assert "r.jsonl line 2: not a JSON object" in res.errors[0] and "line 4: not valid JSON" in res.errors[1]
    r0, r1 = study.ratings()
    assert r0["slots"] == {"good": {"emotion": 1}} and r1["winner"] == "good" and r1["slots"] == {"mid": {"source": 0}}


def test_import_refuses_a_file_without_the_required_columns(study, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,who,winner\nt01,ann,good\n", encoding="utf-8")
    with pytest.raises(UserError, match="rater, model_a, model_b"):
        import_ratings(study, path)
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("id,rater,model_a,model_b,winner\nt01,张三,good,mid,good\n".encode("gbk"))
    with pytest.raises(UserError, match="UTF-8"):
        import_ratings(study, gbk)


def test_import_into_balanced_study_names_pairs_outside_the_design(pred_files, tmp_path):
    s = create_study(pred_files, tmp_path / "b", design="balanced", per_pair=1)
    (item,) = [it for it in s.items if it["models"] == ["good", "mid"]]
    other = next(r for r in ("t01", "t02", "t03") if r != item["id"])
    path = tmp_path / "b.csv"
    path.write_text(
        f"id,rater,model_a,model_b,winner\n{item['id']},ann,good,mid,good\n{other},ann,good,mid,good\n",
        encoding="utf-8",
    )
    res = import_ratings(s, path)
    assert res.imported == 1 and "line 3, field 'id'" in res.errors[0] and "design" in res.errors[0]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_round_trip(study, pred_files, tmp_path, fmt):
    for k, it in enumerate(study.items[:5]):
        rater = ("alice", "bob")[k % 2]
        study.record(rater, it["item"], ("a", "b", "tie", "both_wrong", "a")[k], {"a": {"source": k % 2}}, f"n{k}", 1.5)
    path, n = export_ratings(study, tmp_path / f"out.{fmt}")
    assert n == 5
    fresh = create_study(pred_files, tmp_path / "fresh", raters_per_item=2, seed=0)
    res = import_ratings(fresh, path)
    assert res.imported == 5 and not res.errors
    keep = ("item", "id", "rater", "time", "model_a", "model_b", "winner", "slots", "note", "seconds")
    assert [{k: r[k] for k in keep} for r in fresh.ratings()] == [{k: r[k] for k in keep} for r in study.ratings()]


def test_export_default_path_and_format(study):
    study.record("alice", study.items[0]["item"], "tie", None, "", None)
    path, n = export_ratings(study)
    assert path == study.root / "export" / "ratings.csv" and n == 1
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM so spreadsheet programs read UTF-8
    with pytest.raises(UserError, match="--format"):
        export_ratings(study, fmt="xlsx")
