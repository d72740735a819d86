"""Stage 3 review: the logic (queue, analyze, decide + audit log), the web API and the CLI's scriptable mode."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vmeta.dataset import review as rv
from vmeta.dataset.records import Dataset, Record, ReviewStatus, Rewrite, SourceRef
from vmeta.errors import UserError
from vmeta.video.meta import VideoMeta
from vmeta.web.common import parse_range

GOOD = "本视频讲述了一对情侣跳沙发舞的故事。“搬沙发跳舞”出自日常生活物品的非常规使用，其因为被赋予手风琴的象征意义，表达出了从压抑到欢快的情绪转变。"
LLM_RAW = GOOD + "\n\n（说明：重构后严格遵循给定格式。）"
GOOD2 = "本视频讲述了一个学生熬夜复习的场景。“早八”出自大学生的日常用语，其因为象征清晨的痛苦，表达出了自嘲的态度。"
EDITED = "本视频讲述了一个学生熬夜复习最后睡过头的场景。“早八人”出自大学生的网络用语，其因为代表被早课支配的人，表达出了无奈又自嘲的态度。"
BAD = "这个视频很搞笑，讽刺了内卷。"


def make_clip(path: Path, width: int = 64, height: int = 48, frames: int = 12, fps: int = 12) -> Path:
    """A tiny H.264 (or MPEG-4 part 2) clip written with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        try:
            stream = out.add_stream("libx264", rate=fps)
        except Exception:  # an FFmpeg build without x264
            stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(frames):
            img = np.zeros((height, width, 3), dtype=np.uint8)
            img[:, :, 0] = (i * 20) % 256
            img[: height // 2, : width // 2, 1] = 200
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def build_review_dataset(root: Path) -> Dataset:
    """Four records: r001 rewritten (LLM note stripped), r002 raw conforming, r003 non-conforming + flagged,
    r004 already accepted. r001..r003 have a real video file; r004's file is missing."""
    make_clip(root / "videos" / "a.mp4")
    make_clip(root / "videos" / "b.mp4")
    make_clip(root / "videos" / "c.mp4")
    meta = VideoMeta(readable=True, duration_s=1.0, fps=12.0, width=64, height=48, display_width=64, display_height=48)

    def rec(rid: str, video: str, raw: str, category: str = "诙谐类") -> Record:
        r = Record(
            id=rid,
            video=video,
            category=category,
            raw_label=raw,
            label=raw,
            source=SourceRef(sheet="sheet.csv", row=int(rid[1:]) + 1),
            video_meta=meta,
        )
        r.set_label(raw, "raw")
        return r

    r1 = rec("r001", "videos/a.mp4", "情侣搬沙发跳舞，化解坏心情")
    r1.rewrite = Rewrite(model="deepseek-chat", text=GOOD, raw=LLM_RAW)
    r1.set_label(GOOD, "rewrite")
    r2 = rec("r002", "videos/b.mp4", GOOD2, "自嘲幽默类")
    r3 = rec("r003", "videos/c.mp4", BAD, "讽刺类")
    r3.add_flag("raw_label_changed")
    r4 = rec("r004", "videos/missing.mp4", GOOD2)
    r4.review.status = ReviewStatus.accepted
    ds = Dataset(root)
    ds.save([r3, r1, r4, r2])  # stored out of order: the queue sorts by id
    return ds


@pytest.fixture
def ds(tmp_path) -> Dataset:
    return build_review_dataset(tmp_path / "ds")


def audit(ds: Dataset) -> list[dict]:
    if not ds.audit_path.exists():
        return []
    return [json.loads(line) for line in ds.audit_path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_id(ds: Dataset) -> dict[str, Record]:
    return {r.id: r for r in ds.load()}


# ------------------------------------------------------------------------------------------------ logic
def test_queue_filters_and_counts(ds):
    records = ds.load()
    assert [r.id for r in rv.queue(records)] == ["r001", "r002", "r003"]  # pending by default, by id
    assert [r.id for r in rv.queue(records, "all")] == ["r001", "r002", "r003", "r004"]
    assert [r.id for r in rv.queue(records, "flagged")] == ["r003"]
    assert [r.id for r in rv.queue(records, "accepted")] == ["r004"]
    assert rv.queue(records, "rejected") == []
    c = rv.counts(records)
    assert c == {"pending": 3, "accepted": 1, "edited": 0, "rejected": 0, "flagged": 1, "total": 4}
    with pytest.raises(UserError, match="unknown review filter 'nope'"):
        rv.queue(records, "nope")


def test_analyze_spans_and_segments():
    a = rv.analyze(LLM_RAW)
    assert a["ok"] and not a["strict"]
    assert a["note"].startswith("（说明")
    slots = {s["name"]: s for s in a["slots"]}
    for s in slots.values():
        assert LLM_RAW[s["start"] : s["end"]] == s["text"]
    assert slots["concept"]["text"] == "搬沙发跳舞"
    assert slots["emotion"]["text"] == "从压抑到欢快的情绪转变"
    assert "".join(seg["text"] for seg in a["segments"]) == LLM_RAW
    assert [seg["slot"] for seg in a["segments"] if seg["slot"]] == [
        "content",
        "concept",
        "source",
        "feature",
        "emotion",
        "note",
    ]
    bad = rv.analyze(BAD)
    assert not bad["ok"] and bad["missing"] == list(rv.SLOT_NAMES)
    assert bad["segments"] == [{"text": BAD, "slot": None}]
    # whitespace the parser folds still maps back onto the original text
    spaced = "本视频讲述了 一只猫  打翻水杯 。喵星人出自网络用语，其因为调皮，表达出了喜爱。"
    sp = {s["name"]: s for s in rv.analyze(spaced)["slots"]}
    assert spaced[sp["content"]["start"] : sp["content"]["end"]] == "一只猫  打翻水杯"


def test_accept_keeps_label_and_logs_one_entry(ds):
    before = by_id(ds)["r001"]
    d = rv.decide(ds, "r001", "accept", reviewer="alice", expected_label=GOOD)
    after = by_id(ds)["r001"]
    assert after.review.status == "accepted" and after.review.reviewer == "alice" and after.review.at
    assert after.label == GOOD and after.label_origin == "rewrite" and after.conforms
    assert after.slots["concept"] == "搬沙发跳舞"
    assert after.raw_label == before.raw_label and after.rewrite == before.rewrite
    log = audit(ds)
    assert len(log) == 1
    e = log[0]
    assert e == d.entry
    assert e["reviewer"] == "alice" and e["id"] == "r001" and e["action"] == "accept" and e["at"]
    assert e["before"] == {"label": GOOD, "status": "pending", "note": ""}
    assert e["after"] == {"label": GOOD, "status": "accepted", "note": ""}


def test_edit_reparses_and_keeps_raw_and_rewrite(ds):
    before = by_id(ds)["r002"]
    rv.decide(ds, "r002", "edit", text=EDITED + "\r\n", note="补充细节", reviewer="bob")
    after = by_id(ds)["r002"]
    assert after.label == EDITED and after.label_origin == "review" and after.review.status == "edited"
    assert after.slots["concept"] == "早八人" and after.slots["emotion"] == "无奈又自嘲的态度" and after.conforms
    assert after.raw_label == before.raw_label == GOOD2 and after.rewrite is None
    assert after.review.note == "补充细节"
    (e,) = audit(ds)
    assert e["action"] == "edit" and e["before"]["label"] == GOOD2 and e["after"]["label"] == EDITED
    assert e["after"]["status"] == "edited" and e["note"] == "补充细节"


def test_reject_reset_and_flag_cleared(ds):
    rv.decide(ds, "r003", "reject", note="标签与视频无关", reviewer="carol")
    r3 = by_id(ds)["r003"]
    assert r3.review.status == "rejected" and r3.label == BAD and r3.review.note == "标签与视频无关"
    assert "raw_label_changed" not in r3.flags
    rv.decide(ds, "r003", "reset", reviewer="carol")
    assert by_id(ds)["r003"].review.status == "pending"
    log = audit(ds)
    assert [(e["action"], e["before"]["status"], e["after"]["status"]) for e in log] == [
        ("reject", "pending", "rejected"),
        ("reset", "rejected", "pending"),
    ]


def test_audit_log_is_append_only(ds):
    rv.decide(ds, "r001", "accept", reviewer="a")
    first = ds.audit_path.read_bytes()
    rv.decide(ds, "r002", "reject", reviewer="a")
    rv.decide(ds, "r001", "reset", reviewer="a")
    data = ds.audit_path.read_bytes()
    assert data.startswith(first) and len(audit(ds)) == 3
    assert [e["id"] for e in rv.audit_entries(ds, "r001")] == ["r001", "r001"]


def test_conflict_writes_nothing(ds):
    records_before = ds.records_path.read_bytes()
    with pytest.raises(rv.ReviewConflict, match="changed since you loaded it"):
        rv.decide(ds, "r001", "edit", text=EDITED, reviewer="a", expected_label="an older label")
    assert ds.records_path.read_bytes() == records_before
    assert not ds.audit_path.exists()


def test_bad_input_is_a_clear_error(ds):
    with pytest.raises(rv.UnknownRecord, match="no record with id 'zzz'"):
        rv.decide(ds, "zzz", "accept", reviewer="a")
    with pytest.raises(UserError, match="unknown review action 'approve'"):
        rv.decide(ds, "r001", "approve", reviewer="a")
    with pytest.raises(UserError, match="needs the new label text"):
        rv.decide(ds, "r001", "edit", text="  ", reviewer="a")
    with pytest.raises(UserError, match="only used with the 'edit' action"):
        rv.decide(ds, "r001", "accept", text=EDITED, reviewer="a")
    assert not ds.audit_path.exists()
    with pytest.raises(UserError, match=r"no records\.jsonl"):
        rv.decide(Dataset(ds.root / "nowhere"), "r001", "accept")


def test_default_reviewer(monkeypatch):
    assert rv.default_reviewer("  zoe ") == "zoe"
    monkeypatch.setenv("USER", "annotator1")
    assert rv.default_reviewer(None) == "annotator1"


def test_parse_range():
    assert parse_range("bytes=0-99", 1000) == (0, 99)
    assert parse_range("bytes=900-", 1000) == (900, 999)
    assert parse_range("bytes=-100", 1000) == (900, 999)
    assert parse_range("bytes=990-5000", 1000) == (990, 999)
    assert parse_range("bytes=0-1,5-6", 1000) is None
    assert parse_range("items=0-1", 1000) is None
    assert parse_range("bytes=abc", 1000) is None
    with pytest.raises(ValueError):
        parse_range("bytes=1000-", 1000)


# -------------------------------------------------------------------------------------------------- API
@pytest.fixture
def client(ds):
    from fastapi.testclient import TestClient

    from vmeta.dataset.review_app import create_review_app

    app = create_review_app(ds.root, "tester", token="secret-token")
    with TestClient(app) as c:
        c.headers["X-Review-Token"] = "secret-token"
        yield c


def test_page_embeds_token_and_chinese_ui(client):
    res = client.get("/")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert 'content="secret-token"' in res.text and "隐喻标签人工复审" in res.text
    assert "Content-Security-Policy" in res.headers
    for asset in ("/static/review/review.js", "/static/js/i18n.js", "/static/css/base.css", "/static/i18n/en.json"):
        assert client.get(asset).status_code == 200, asset


def test_api_list_and_get(client):
    data = client.get("/api/items").json()
    assert [i["id"] for i in data["items"]] == ["r001", "r002", "r003"]
    assert data["counts"]["pending"] == 3 and data["reviewer"] == "tester"
    assert client.get("/api/items?filter=all").json()["items"][3] == {
        "id": "r004",
        "category": "诙谐类",
        "status": "accepted",
        "flags": [],
        "conforms": True,
    }
    bad = client.get("/api/items?filter=nope")
    assert bad.status_code == 400 and "unknown review filter" in bad.json()["detail"]

    item = client.get("/api/items/r001").json()
    assert item["position"] == 1 and item["total"] == 3
    assert item["raw_label"] == "情侣搬沙发跳舞，化解坏心情" and item["rewrite"]["text"] == GOOD
    assert item["label"] == GOOD and item["stripped_note"].startswith("（说明")
    assert item["analysis"]["ok"] and item["video_exists"] and item["video_url"] == "/video/r001"
    assert {s["name"] for s in item["analysis"]["slots"]} == set(rv.SLOT_NAMES)
    assert client.get("/api/items/r003?filter=flagged").json()["position"] == 1
    assert client.get("/api/items/r004").json()["position"] is None
    missing = client.get("/api/items/nope")
    assert missing.status_code == 404 and "no record with id 'nope'" in missing.json()["detail"]


def test_api_parse(client):
    res = client.post("/api/parse", json={"text": EDITED})
    assert res.status_code == 200
    body = res.json()
    assert body["ok"] and [s["text"] for s in body["slots"]][1] == "早八人"
    assert client.post("/api/parse", json={"text": BAD}).json()["ok"] is False


def test_api_decision_and_counts(client, ds):
    res = client.post("/api/items/r001/decision", json={"action": "accept", "expected_label": GOOD})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["item"]["status"] == "accepted" and body["entry"]["reviewer"] == "tester"
    assert body["counts"]["accepted"] == 2 and body["counts"]["pending"] == 2
    res = client.post(
        "/api/items/r002/decision", json={"action": "edit", "text": EDITED, "note": "n", "expected_label": GOOD2}
    )
    assert res.status_code == 200 and res.json()["item"]["label"] == EDITED
    assert [i["id"] for i in client.get("/api/items").json()["items"]] == ["r003"]
    assert [e["action"] for e in audit(ds)] == ["accept", "edit"]
    bad = client.post("/api/items/r003/decision", json={"action": "approve"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("invalid request")
    empty = client.post("/api/items/r003/decision", json={"action": "edit", "text": ""})
    assert empty.status_code == 400 and "needs the new label text" in empty.json()["detail"]
    assert client.post("/api/items/zzz/decision", json={"action": "accept"}).status_code == 404


def test_api_stale_label_is_409(client, ds):
    rv.decide(ds, "r002", "edit", text=EDITED, reviewer="someone-else")  # changed behind the page's back
    records_before = ds.records_path.read_bytes()
    res = client.post("/api/items/r002/decision", json={"action": "accept", "expected_label": GOOD2})
    assert res.status_code == 409 and "changed since you loaded it" in res.json()["detail"]
    assert ds.records_path.read_bytes() == records_before and len(audit(ds)) == 1
    # the page sends its language: the same refusal in Chinese, naming the record
    zh = {"X-Vmeta-Lang": "zh"}
    res = client.post("/api/items/r002/decision", json={"action": "accept", "expected_label": GOOD2}, headers=zh)
    assert res.status_code == 409 and res.json()["detail"].startswith("记录“r002”在您打开之后已被修改")
    res = client.post("/api/items/r003/decision", json={"action": "edit", "text": ""}, headers=zh)
    assert res.json()["detail"] == "记录“r003”：编辑需要填写新的标签文本。"
    assert ds.records_path.read_bytes() == records_before


def test_token_and_origin_required(client, ds):
    for headers in ({"X-Review-Token": ""}, {"X-Review-Token": "wrong"}):
        res = client.post("/api/items/r001/decision", json={"action": "accept"}, headers=headers)
        assert res.status_code == 403 and "X-Review-Token" in res.json()["detail"]
    res = client.post("/api/parse", json={"text": GOOD}, headers={"X-Review-Token": "wrong"})
    assert res.status_code == 403
    cross = client.post(
        "/api/items/r001/decision",
        json={"action": "accept"},
        headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
    same = client.post("/api/parse", json={"text": GOOD}, headers={"Origin": "http://testserver"})
    assert same.status_code == 200
    # a DNS-rebinding page (Host: evil.example resolving to 127.0.0.1) cannot even read the page's token
    rebind = client.get("/", headers={"Host": "evil.example"})
    assert rebind.status_code == 400 and "secret-token" not in rebind.text
    assert by_id(ds)["r001"].review.status == "pending" and not ds.audit_path.exists()


def test_video_range(client, ds):
    path = ds.root / "videos" / "a.mp4"
    data = path.read_bytes()
    size = len(data)
    full = client.get("/video/r001")
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and full.headers["content-type"] == "video/mp4"
    part = client.get("/video/r001", headers={"Range": "bytes=10-109"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-109/{size}"
    assert part.headers["content-length"] == "100" and part.content == data[10:110]
    tail = client.get("/video/r001", headers={"Range": "bytes=-20"})
    assert tail.status_code == 206 and tail.content == data[-20:]
    assert tail.headers["content-range"] == f"bytes {size - 20}-{size - 1}/{size}"
    open_end = client.get("/video/r001", headers={"Range": "bytes=5-"})
    assert open_end.status_code == 206 and open_end.content == data[5:]
    past = client.get("/video/r001", headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    head = client.head("/video/r001", headers={"Range": "bytes=0-0"})
    assert head.status_code == 206 and head.headers["content-length"] == "1"
    unknown = client.get("/video/nope")
    assert unknown.status_code == 404 and "no record" in unknown.json()["detail"]
    gone = client.get("/video/r004")
    assert gone.status_code == 404 and "missing on disk" in gone.json()["detail"]
    # never arbitrary paths
    assert client.get("/video/..%2Frecords.jsonl").status_code == 404
    assert client.get("/video/../records.jsonl").status_code == 404


def test_app_sees_external_writes(client, ds):
    assert client.get("/api/items/r003").json()["label"] == BAD

    def change(records):
        for r in records:
            if r.id == "r003":
                r.set_label(GOOD, "rewrite")

    ds.update(change)
    assert client.get("/api/items/r003").json()["label"] == GOOD


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_scriptable_mode(ds, monkeypatch):
    from typer.testing import CliRunner

    from vmeta.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["data", "review", str(ds.root), "--id", "r002", "--edit", EDITED, "--note", "细节", "--reviewer", "cli-user"],
    )
    assert res.exit_code == 0, res.output
    assert "before" in res.output and "after" in res.output and "edited" in res.output
    r2 = by_id(ds)["r002"]
    assert r2.label == EDITED and r2.review.reviewer == "cli-user"
    res = runner.invoke(app, ["data", "review", str(ds.root), "--id", "r003", "--reject", "--note", "无关"])
    assert res.exit_code == 0, res.output
    assert by_id(ds)["r003"].review.status == "rejected"
    res = runner.invoke(app, ["data", "review", str(ds.root), "--id", "r001", "--accept"])
    assert res.exit_code == 0 and by_id(ds)["r001"].review.status == "accepted"
    assert [e["action"] for e in audit(ds)] == ["edit", "reject", "accept"]
    # errors: exactly one action, and an id that exists
    bad = runner.invoke(app, ["data", "review", str(ds.root), "--id", "r001", "--accept", "--reject"])
    assert bad.exit_code != 0 and "exactly one" in str(bad.exception)
    unknown = runner.invoke(app, ["data", "review", str(ds.root), "--id", "zzz", "--accept"])
    assert isinstance(unknown.exception, rv.UnknownRecord)
    assert len(audit(ds)) == 3


def test_ids_with_slashes_spaces_and_chinese(tmp_path):
    from urllib.parse import quote

    from fastapi.testclient import TestClient

    from vmeta.dataset.review_app import create_review_app

    ds = build_review_dataset(tmp_path / "ds")
    odd = "子目录/搞笑 视频#1"

    def rename(records):
        for r in records:
            if r.id == "r002":
                r.id = odd

    ds.update(rename)
    app = create_review_app(ds.root, "t", token="tok")
    with TestClient(app) as c:
        item = c.get("/api/items/" + quote(odd, safe="")).json()
        assert item["id"] == odd and item["video_url"] == "/video/" + quote(odd, safe="")
        assert c.get(item["video_url"], headers={"Range": "bytes=0-3"}).status_code == 206
        res = c.post(
            "/api/items/" + quote(odd, safe="") + "/decision",
            json={"action": "accept", "expected_label": GOOD2},
            headers={"X-Review-Token": "tok"},
        )
        assert res.status_code == 200, res.text
    assert by_id(ds)[odd].review.status == "accepted"


def test_concurrent_decisions_and_rewrites_lose_nothing(ds):
    """Review decisions from several threads interleaved with a rewrite-style Dataset.update: the file lock
    serialises them, so every decision and every rewrite survives and each decision is logged once."""
    import threading

    ids = ["r001", "r002", "r003"]
    errors: list[Exception] = []

    def review(i: int) -> None:
        try:
            for _ in range(5):
                rv.decide(ds, ids[i], "accept", reviewer=f"t{i}")
                rv.decide(ds, ids[i], "reset", reviewer=f"t{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def rewrite() -> None:
        for n in range(10):

            def bump(records, n=n):
                for r in records:
                    if r.id == "r004":
                        r.history.append({"bump": n})

            ds.update(bump)

    threads = [threading.Thread(target=review, args=(i,)) for i in range(3)] + [threading.Thread(target=rewrite)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    recs = by_id(ds)
    assert len(recs["r004"].history) == 10
    assert all(recs[i].review.status == "pending" for i in ids)
    log = audit(ds)
    assert len(log) == 30 and all(len([e for e in log if e["id"] == i]) == 10 for i in ids)


def test_i18n_tables_and_language_choice():
    from starlette.requests import Request

    from vmeta.web.common import messages, pick_language, t

    zh, en = messages("zh"), messages("en")
    assert set(zh) == set(en), "zh.json and en.json must define the same keys"
    assert t("review.accept") == "接受" and t("review.accept", "en") == "Accept"
    assert t("no.such.key", "en") == "no.such.key"

    def req(query: str = "", headers: dict | None = None) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        return Request({"type": "http", "query_string": query.encode(), "headers": raw})

    assert pick_language(req()) == "zh"
    assert pick_language(req(headers={"Accept-Language": "en-US,en;q=0.9"})) == "zh"  # Chinese by default
    assert pick_language(req(headers={"Accept-Language": "en-US,en;q=0.9"}), accept_language=True) == "en"
    assert pick_language(req("lang=zh", {"Accept-Language": "en"})) == "zh"
    assert pick_language(req(headers={"Cookie": "vmeta_lang=en"})) == "en"
