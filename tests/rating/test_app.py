"""The rating page's API (`vmeta rate serve`): three scripted raters complete a study; blindness; reloads;
each item at most once per rater; errors as sentences; the video with HTTP Range; the page and its messages."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from appdata import MODELS, SECRETS, choice_for, make_study
from fastapi.testclient import TestClient

TOKEN = "test-token"
POST = {"X-Rate-Token": TOKEN}
RATERS = ("alice", "张伟", "bob")


def client_for(root: Path) -> TestClient:
    from vmeta.rating.app import create_rate_app

    return TestClient(create_rate_app(root, token=TOKEN))


@pytest.fixture
def rate_study(tmp_path):
    return make_study(tmp_path)


@pytest.fixture
def client(rate_study):
    return client_for(rate_study.root)


def rate_one(client: TestClient, rater: str, log: list | None = None) -> dict | None:
    """One scripted rating through the API: what /api/next showed, and what was posted (None when done)."""
    res = client.get("/api/next", params={"rater": rater})
    assert res.status_code == 200, res.text
    view = res.json()
    if log is not None:
        log.append(res)
    if view.get("done"):
        return None
    choice = choice_for(rater, view)
    slots = {"a": {"core_concept": 1, "emotion": 0}, "b": {"source": 1}} if choice == "a" else {}
    body = {"rater": rater, "item": view["item"], "choice": choice, "slots": slots, "note": "", "seconds": 3.5}
    posted = client.post("/api/ratings", json=body, headers=POST)
    assert posted.status_code == 200, posted.text
    if log is not None:
        log.append(posted)
    return {"view": view, "body": body, "answer": posted.json()}


def run_session(client: TestClient, log: list | None = None) -> list[dict]:
    """Three raters take turns until none has anything left."""
    done: list[dict] = []
    active = list(RATERS)
    while active:
        for rater in list(active):
            step = rate_one(client, rater, log)
            if step is None:
                active.remove(rater)
            else:
                done.append(step)
    return done


# ------------------------------------------------------------------------------------------- a whole study
def test_three_raters_complete_the_study(client, rate_study):
    steps = run_session(client)
    study = rate_study
    need = study.raters_per_item
    assert len(study.items) == 18 and need == 2
    assert len(steps) == 18 * need  # every item rated twice, nobody stuck

    ratings = study.ratings()
    assert len(ratings) == len(steps)
    pairs = Counter((r["rater"], r["item"]) for r in ratings)
    assert max(pairs.values()) == 1  # never the same item twice for one rater
    per_item = Counter(r["item"] for r in ratings)
    assert set(per_item) == {it["item"] for it in study.items} and set(per_item.values()) == {need}
    assert {r["rater"] for r in ratings} == set(RATERS)

    by_key = {(r["rater"], r["item"]): r for r in ratings}
    for step in steps:
        view, body = step["view"], step["body"]
        row = by_key[(body["rater"], view["item"])]
        item = study.item(view["item"])
        # who / when / what was shown in which order
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["time"])
        assert (row["model_a"], row["model_b"]) == study.shown_order(body["rater"], view["item"])
        assert sorted((row["model_a"], row["model_b"])) == item["models"]
        assert view["answers"][0]["text"] == study.answer(row["model_a"], item["id"])
        assert view["answers"][1]["text"] == study.answer(row["model_b"], item["id"])
        expected = {"a": row["model_a"], "b": row["model_b"]}.get(body["choice"], body["choice"])
        assert row["winner"] == expected
        if body["choice"] == "a":
            assert row["slots"] == {row["model_a"]: {"core_concept": 1, "emotion": 0}, row["model_b"]: {"source": 1}}
        else:
            assert row["slots"] == {}
        assert row["source"] == "page" and row["seconds"] == 3.5 and row["id"] == item["id"]
        assert view["category"] == item["category"] and view["reference"]["text"] == study.reference(item["id"])
        # progress in the answer after the rating is stored
        assert step["answer"]["stored"] is True and step["answer"]["item"] == view["item"]

    for rater in RATERS:
        final = client.get("/api/next", params={"rater": rater}).json()
        assert final["done"] is True
        assert final["progress"]["all_done"] == final["progress"]["all_total"] == 36
        assert final["progress"]["done"] == final["progress"]["total"] == sum(1 for r in ratings if r["rater"] == rater)
    # a newcomer finds nothing left (every item has its two ratings)
    assert client.get("/api/next", params={"rater": "carol"}).json()["done"] is True


def test_progress_counts_mine_and_everyone(client):
    first = client.get("/api/next", params={"rater": "alice"}).json()
    assert first["progress"] == {"done": 0, "total": 18, "all_done": 0, "all_total": 36}
    body = {"rater": "alice", "item": first["item"], "choice": "tie"}
    res = client.post("/api/ratings", json=body, headers=POST).json()
    assert res["progress"] == {"done": 1, "total": 18, "all_done": 1, "all_total": 36}
    other = client.get("/api/next", params={"rater": "bob"}).json()
    assert other["progress"] == {"done": 0, "total": 18, "all_done": 1, "all_total": 36}


# ------------------------------------------------------------------------------------------------ blindness
def test_nothing_reveals_which_model_wrote_which_answer(client, rate_study):
    """Every byte a rater's browser can receive in a full session — page, assets, API answers, error answers,
    videos, headers, URLs — is searched for the model names and the prediction files' names."""
    log: list = []
    log.append(client.get("/"))
    html = log[-1].text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        log.append(client.get(asset))
    for asset in ("/static/js/i18n.js", "/static/i18n/zh.json", "/static/i18n/en.json"):
        log.append(client.get(asset))
    steps = run_session(client, log)
    # error answers too: a second rating of the same item, a bad choice, an unknown item
    last = steps[0]
    log.append(client.post("/api/ratings", json={**last["body"]}, headers=POST))
    assert log[-1].status_code == 409
    log.append(client.post("/api/ratings", json={**last["body"], "choice": "left"}, headers=POST))
    log.append(client.post("/api/ratings", json={**last["body"], "item": "i9999"}, headers=POST))
    urls = []
    for step in steps:
        url = step["view"]["video_url"]
        if url:
            urls.append(url)
            log.append(client.get(url, headers={"Range": "bytes=0-99"}))
    assert len(urls) > 20  # t06 has no video; every other item does

    secrets = [s.lower() for s in SECRETS]
    for res in log:
        blobs = [str(res.request.url), res.content.decode("utf-8", "replace"), json.dumps(dict(res.headers))]
        for blob in blobs:
            low = blob.lower()
            leaked = [s for s in secrets if s in low]
            assert not leaked, (str(res.request.url), leaked)
    # item ids and video URLs are opaque; answers are only ever labelled A and B
    for step in steps:
        view = step["view"]
        assert re.fullmatch(r"i\d{4}", view["item"]) and view["video_url"] in (None, f"/video/{view['item']}")
        assert [a["label"] for a in view["answers"]] == ["A", "B"]
        assert set(view) <= {"item", "category", "answers", "video_url", "reference", "progress", "slots"}
        assert all(set(a) == {"label", "text", "segments"} for a in view["answers"])
    # and the order really is random: each model is shown as A on some items and as B on others
    rows = rate_study.ratings()
    shown_a = Counter(r["model_a"] for r in rows)
    shown_b = Counter(r["model_b"] for r in rows)
    assert set(shown_a) == set(shown_b) == set(MODELS)
    first_alpha = sum(1 for r in rows if r["model_a"] == min(r["model_a"], r["model_b"]))
    assert 0.2 < first_alpha / len(rows) < 0.8


# --------------------------------------------------------------------------------------- reloads, once only
def test_reload_mid_study_returns_the_same_item(client, rate_study):
    for _ in range(3):
        rate_one(client, "alice")
    shown = client.get("/api/next", params={"rater": "alice"}).json()
    again = client.get("/api/next", params={"rater": "alice"}).json()
    assert again == shown
    # a restarted server (a new app on the same folder) shows the same item in the same order
    restarted = client_for(rate_study.root).get("/api/next", params={"rater": "alice"}).json()
    assert restarted == shown
    body = {"rater": "alice", "item": shown["item"], "choice": "b"}
    assert client.post("/api/ratings", json=body, headers=POST).status_code == 200
    after = client.get("/api/next", params={"rater": "alice"}).json()
    assert after["item"] != shown["item"] and after["progress"]["done"] == 4


def test_a_rater_never_gets_an_item_twice(client, rate_study):
    seen = []
    while (step := rate_one(client, "alice")) is not None:
        seen.append(step["view"]["item"])
    assert len(seen) == len(set(seen)) == 18
    again = client.post("/api/ratings", json={"rater": "alice", "item": seen[0], "choice": "a"}, headers=POST)
    assert again.status_code == 409
    assert again.json()["detail"] == f"alice has already rated item '{seen[0]}'; each rater rates an item once."
    assert len(rate_study.ratings()) == 18


# ---------------------------------------------------------------------------------------------------- errors
def test_rater_name_errors_are_sentences(client):
    res = client.get("/api/next", params={"rater": "   "})
    assert res.status_code == 400 and "name is empty" in res.json()["detail"]
    res = client.get("/api/next")
    assert res.status_code == 400 and "name is empty" in res.json()["detail"]
    res = client.get("/api/next", params={"rater": "x" * 65})
    assert res.status_code == 400 and "at most 64 characters" in res.json()["detail"]
    res = client.post("/api/ratings", json={"rater": "", "item": "i0001", "choice": "a"}, headers=POST)
    assert res.status_code == 400 and "name is empty" in res.json()["detail"]


def test_bad_ratings_are_refused_and_nothing_is_stored(client, rate_study):
    item = client.get("/api/next", params={"rater": "alice"}).json()["item"]
    ok = {"rater": "alice", "item": item, "choice": "a"}
    res = client.post("/api/ratings", json={**ok, "choice": "left"}, headers=POST)
    assert res.status_code == 422 and res.json()["detail"].startswith("invalid request — choice:")
    res = client.post("/api/ratings", json={**ok, "item": "i9999"}, headers=POST)
    assert res.status_code == 400 and res.json()["detail"] == "item 'i9999' is not in this study."
    res = client.post("/api/ratings", json={**ok, "slots": {"a": {"colour": 1}}}, headers=POST)
    assert res.status_code == 400 and "colour" in res.json()["detail"]
    res = client.post("/api/ratings", json={**ok, "slots": {"a": {"source": 5}}}, headers=POST)
    assert res.status_code == 400 and "must be 0 or 1" in res.json()["detail"]
    res = client.post("/api/ratings", json={**ok, "seconds": -1}, headers=POST)
    assert res.status_code == 422
    # CSRF: no token, a wrong token, or another site's page
    assert client.post("/api/ratings", json=ok).status_code == 403
    assert client.post("/api/ratings", json=ok, headers={"X-Rate-Token": "nope"}).status_code == 403
    cross = client.post("/api/ratings", json=ok, headers={**POST, "Origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
    sec = client.post("/api/ratings", json=ok, headers={**POST, "Sec-Fetch-Site": "cross-site"})
    assert sec.status_code == 403
    # a page on another host name (DNS rebinding) gets nothing
    assert client.get("/api/next", params={"rater": "alice"}, headers={"Host": "evil.example"}).status_code == 400
    assert rate_study.ratings() == []
    same = client.post("/api/ratings", json=ok, headers={**POST, "Origin": "http://testserver"})
    assert same.status_code == 200 and len(rate_study.ratings()) == 1


# ----------------------------------------------------------------------------------------------------- video
def test_video_with_range_and_missing_videos(client, rate_study):
    by_id = {it["id"]: it["item"] for it in rate_study.items}
    url = f"/video/{by_id['t01']}"
    full = client.get(url)
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    size = len(full.content)
    part = client.get(url, headers={"Range": "bytes=10-29"})
    assert part.status_code == 206 and part.headers["content-range"] == f"bytes 10-29/{size}"
    assert part.content == full.content[10:30]
    missing = client.get(f"/video/{by_id['t06']}")
    assert missing.status_code == 404 and "not available" in missing.json()["detail"]
    assert client.get("/video/i9999").status_code == 404


def test_study_without_videos_or_reference(tmp_path):
    study = make_study(tmp_path, data=False, show_reference=False)
    view = client_for(study.root).get("/api/next", params={"rater": "alice"}).json()
    assert view["video_url"] is None and "reference" not in view
    assert [a["label"] for a in view["answers"]] == ["A", "B"]


# ------------------------------------------------------------------------------------------------------ page
def test_page_has_token_language_and_every_message(client):
    res = client.get("/")
    assert res.status_code == 200 and "no-store" in res.headers["cache-control"]
    assert "content-security-policy" in res.headers
    html = res.text
    assert f'<meta name="rate-token" content="{TOKEN}">' in html
    assert '<meta name="rate-slots" content="core_concept,source,emotion">' in html
    assert '<html lang="zh">' in html and "回答对比盲评" in html
    assert '<html lang="en">' in client.get("/?lang=en").text

    static = Path(__file__).parents[2] / "src" / "vmeta" / "web" / "static"
    zh = json.loads((static / "i18n" / "zh.json").read_text(encoding="utf-8"))
    en = json.loads((static / "i18n" / "en.json").read_text(encoding="utf-8"))
    js = (static / "rate" / "rate.js").read_text(encoding="utf-8")
    keys = set(re.findall(r'data-i18n(?:-placeholder|-aria-label)?="([^"]+)"', html))
    keys |= set(re.findall(r't\("((?:rate|common)\.[a-z_.]+)"', js))
    keys |= {f"rate.slot.{s}" for s in ("core_concept", "source", "emotion")}
    keys |= {f"rate.choice.{c}" for c in ("a", "b", "tie", "both_wrong")}
    assert len(keys) > 30
    for key in keys:
        assert key in zh and key in en, key
    assert "{done}" in zh["rate.progress"] and "{all_total}" in en["rate.progress"]


# ------------------------------------------------------------------------------------------------------- cli
def test_rate_serve_command(rate_study, monkeypatch):
    """`vmeta rate serve` prints the URL and how raters join; loopback by default, any Host on --host 0.0.0.0."""
    import uvicorn
    from typer.testing import CliRunner

    from vmeta.cli import app

    served: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda a, **kw: served.append({"app": a, **kw}))
    runner = CliRunner()
    result = runner.invoke(app, ["rate", "serve", str(rate_study.root)])
    assert result.exit_code == 0, (result.output, result.exception)
    out = " ".join(result.output.split())
    assert "http://127.0.0.1:8020/" in out and "typing their name" in out and "--host 0.0.0.0" in out
    assert "18 items" in out and "3 models" in out
    assert served[-1]["host"] == "127.0.0.1" and served[-1]["port"] == 8020
    local = TestClient(served[-1]["app"])
    assert local.get("/api/next", params={"rater": "a"}, headers={"Host": "192.168.1.5:8020"}).status_code == 400

    result = runner.invoke(app, ["rate", "serve", str(rate_study.root), "--host", "0.0.0.0", "--port", "9001"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "http://<this machine's address>:9001/" in " ".join(result.output.split())
    lan = TestClient(served[-1]["app"])
    assert lan.get("/api/next", params={"rater": "a"}, headers={"Host": "192.168.1.5:9001"}).status_code == 200

    result = runner.invoke(app, ["rate", "serve", str(rate_study.root.parent)])
    assert result.exit_code != 0 and "not a rating study" in str(result.exception)


def test_page_ratings_make_the_report(client, rate_study):
    """Three raters through the page's API, then `vmeta rate report`: its win counts equal the counts made by
    hand from what each rater was shown and chose (the answer's text says which model it was)."""
    from typer.testing import CliRunner

    from vmeta.cli import app

    steps = run_session(client)
    study = rate_study
    hand: dict[tuple[str, str], Counter] = {}
    for step in steps:
        view, choice = step["view"], step["body"]["choice"]
        item = study.item(view["item"])
        writer = {study.answer(m, item["id"]): m for m in item["models"]}
        assert len(writer) == 2  # the two answers differ, so the text names its model
        shown = {"a": writer[view["answers"][0]["text"]], "b": writer[view["answers"][1]["text"]]}
        x, y = sorted(item["models"])
        key = {"a": shown["a"], "b": shown["b"]}.get(choice, choice)
        hand.setdefault((x, y), Counter())["x" if key == x else "y" if key == y else key] += 1

    result = CliRunner().invoke(app, ["rate", "report", str(study.root), "--bootstrap", "50"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((study.root / "report" / "report.json").read_text(encoding="utf-8"))
    assert len(report["win_rates"]) == 3
    for entry in report["win_rates"]:
        c = hand[tuple(sorted((entry["a"], entry["b"])))]
        flip = entry["a"] > entry["b"]
        wins_a, wins_b = (c["y"], c["x"]) if flip else (c["x"], c["y"])
        assert (entry["a_wins"], entry["b_wins"], entry["ties"], entry["both_wrong"]) == (
            wins_a,
            wins_b,
            c["tie"],
            c["both_wrong"],
        )
        assert entry["n"] == sum(c.values()) == 12  # 6 ids x 2 raters
        assert entry["a_win_rate"] == pytest.approx((wins_a + 0.5 * (c["tie"] + c["both_wrong"])) / 12)
