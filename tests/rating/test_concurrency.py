"""Several raters at once lose no rating: threads posting through the served app (a real uvicorn server, whose
sync endpoints run in a thread pool), the same rater posting one item twice at the same moment, and two processes
appending through `Study.record` — every rating stored once, every line whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
from appdata import make_study

from vmeta.testing.browser import serve_in_thread

TOKEN = "t"


def _lines(study) -> list[dict]:
    """Every line of ratings.jsonl parsed strictly: a torn or merged line fails here."""
    text = (study.root / "ratings.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_raters_in_threads_lose_nothing(tmp_path):
    from vmeta.rating.app import create_rate_app

    study = make_study(tmp_path, raters_per_item=3)
    raters = [f"rater{k}" for k in range(6)]
    stored: dict[str, list[str]] = {r: [] for r in raters}
    errors: list[str] = []
    start = threading.Barrier(len(raters))

    with serve_in_thread(create_rate_app(study.root, token=TOKEN), lifespan="off") as base:

        def work(rater: str) -> None:
            try:
                with httpx.Client(base_url=base, timeout=30) as http:
                    start.wait()
                    while True:
                        view = http.get("/api/next", params={"rater": rater}).json()
                        if view.get("done"):
                            return
                        body = {"rater": rater, "item": view["item"], "choice": "a", "note": "n" * 300}
                        res = http.post("/api/ratings", json=body, headers={"X-Rate-Token": TOKEN})
                        if res.status_code != 200:
                            errors.append(f"{rater}: {res.status_code} {res.text}")
                            return
                        stored[rater].append(view["item"])
            except Exception as exc:  # surfaced by the assertion below
                errors.append(f"{rater}: {exc!r}")

        threads = [threading.Thread(target=work, args=(r,)) for r in raters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors
    rows = _lines(study)
    accepted = sum(len(v) for v in stored.values())
    assert len(rows) == accepted  # every accepted rating is on disk, once
    assert Counter((r["rater"], r["item"]) for r in rows) == Counter(
        (rater, item) for rater, items in stored.items() for item in items
    )
    counts = Counter(r["item"] for r in rows)
    assert set(counts) == {it["item"] for it in study.items}
    assert min(counts.values()) >= 3  # the design's three ratings per item were all collected
    assert all(r["note"] == "n" * 300 for r in rows)


def test_one_rater_posting_the_same_item_twice_at_once_stores_it_once(tmp_path, monkeypatch):
    """A double click, or two tabs: eight posts of one rating at the same moment. Reading the ratings is made slow
    (a busy disk) so that, without the study's lock, several posts would pass the "already rated?" check."""
    import time

    from vmeta.rating.app import create_rate_app
    from vmeta.rating.study import Study

    study = make_study(tmp_path)
    read = Study.ratings

    def slow_ratings(self):
        rows = read(self)
        time.sleep(0.05)
        return rows

    monkeypatch.setattr(Study, "ratings", slow_ratings)
    with serve_in_thread(create_rate_app(study.root, token=TOKEN), lifespan="off") as base:
        item = httpx.get(f"{base}/api/next", params={"rater": "alice"}).json()["item"]
        statuses: list[int] = []
        start = threading.Barrier(8)

        def post() -> None:
            start.wait()
            res = httpx.post(
                f"{base}/api/ratings",
                json={"rater": "alice", "item": item, "choice": "b"},
                headers={"X-Rate-Token": TOKEN},
                timeout=30,
            )
            statuses.append(res.status_code)

        threads = [threading.Thread(target=post) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * 7
    assert [(r["rater"], r["item"]) for r in _lines(study)] == [("alice", item)]


_WRITER = """
import sys
import time
from pathlib import Path
from vmeta.rating.study import AlreadyRated, Study

root, who, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
read = Study.ratings
Study.ratings = lambda self: (read(self), time.sleep(0.005))[0]  # a slow disk widens every race
study = Study.open(root)
while not go.exists():
    time.sleep(0.002)
won = 0
for it in study.items:  # both processes rate every item as the same rater: one of them must be refused
    try:
        study.record("shared", it["item"], "a", note=who)
        won += 1
    except AlreadyRated:
        pass
for k, it in enumerate(study.items * 3):
    study.record(f"{who}-{k}", it["item"], "tie", note=who * 700, seconds=k)
print(won)
"""


def test_two_processes_appending_lose_no_line(tmp_path):
    study = make_study(tmp_path, data=False)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(study.root), who, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("p", "q")
    ]
    go.touch()  # both start appending at the same moment
    won = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        won.append(int(out))
    rows = _lines(study)
    shared = [r["item"] for r in rows if r["rater"] == "shared"]
    assert sorted(shared) == sorted(it["item"] for it in study.items) and sum(won) == len(study.items)
    per = len(study.items) * 3
    assert len(rows) == 2 * per + len(study.items)
    for who in ("p", "q"):
        mine = [r for r in rows if r["rater"].startswith(f"{who}-")]
        assert sorted(int(r["rater"].split("-")[1]) for r in mine) == list(range(per))
        assert all(r["note"] == who * 700 for r in mine)
    assert rows == study.ratings()
