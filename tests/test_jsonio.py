import os

import pytest

from vmeta.errors import UserError
from vmeta.jsonio import append_jsonl, read_json, read_jsonl, write_jsonl


def test_jsonl_round_trip_keeps_chinese_readable(tmp_path):
    p = tmp_path / "a.jsonl"
    write_jsonl(p, [{"label": "本视频讲述了"}, {"n": 1}])
    assert "本视频讲述了" in p.read_text(encoding="utf-8")
    assert read_jsonl(p) == [{"label": "本视频讲述了"}, {"n": 1}]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_append_survives_a_torn_tail(tmp_path):
    p = tmp_path / "log.jsonl"
    append_jsonl(p, {"a": 1})
    with p.open("a", encoding="utf-8") as fh:  # a writer killed mid-line
        fh.write('{"b": ')
    assert read_jsonl(p) == [{"a": 1}]
    append_jsonl(p, {"c": 3})
    assert read_jsonl(p) == [{"a": 1}, {"c": 3}]


def test_bad_line_in_the_middle_names_the_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a":1}\nnot json\n{"b":2}\n', encoding="utf-8")
    with pytest.raises(UserError, match="line 2"):
        read_jsonl(p)


def test_failed_write_leaves_the_old_file(tmp_path):
    p = tmp_path / "r.jsonl"
    write_jsonl(p, [{"v": 1}])

    def rows():
        yield {"v": 2}
        raise RuntimeError("crash while producing rows")

    with pytest.raises(RuntimeError):
        write_jsonl(p, rows())
    assert read_jsonl(p) == [{"v": 1}]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_read_json_errors_are_for_people(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(UserError, match="line 1"):
        read_json(tmp_path / "bad.json")


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "r.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
    assert (tmp_path / "r.jsonl").stat().st_mode & 0o777 == 0o644
