"""A rating study folder once it exists: its items and answers, who rates what next, and the append-only ratings.

STUDY/
  study.json          what the study is (inputs with hashes, design, rubric); written last, so its presence
                      means the folder is complete
  predictions/*.jsonl copies of the inputs: the study is self-contained
  items.jsonl         one line per (test id, unordered model pair); item ids are opaque and shuffled
  ratings.jsonl       one line per stored rating (append-only, locked, fsynced)
  assigned.jsonl      which item each rater was given (so a reload shows the same item until it is rated)

Blindness: an item names its two models, but which one is shown as A is drawn per (rater, item) from a
hash of (seed, rater, item), so it is stable across reloads and processes and never guessable from the item.

Creating one (`vmeta rate new`) is :mod:`vmeta.rating.create`.
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmeta.errors import UserError
from vmeta.evaluate.predictions import Prediction, load_predictions
from vmeta.jsonio import append_jsonl, iter_jsonl, read_json

KIND = "vmeta-rating-study"
VERSION = 1
STUDY_JSON = "study.json"
ITEMS = "items.jsonl"
RATINGS = "ratings.jsonl"
ASSIGNED = "assigned.jsonl"
PREDICTIONS = "predictions"
LOCK = ".lock"
CHOICES = ("a", "b", "tie", "both_wrong")
SLOTS = ("core_concept", "source", "emotion")
RUBRIC = {"version": "v1", "choices": list(CHOICES), "slots": list(SLOTS)}
MAX_RATER = 64
MAX_NOTE = 2000

# One lock per study folder for the threads of this process; the fcntl lock covers other processes.
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


class AlreadyRated(UserError):
    """This rater already stored a rating of this item (each rater rates an item at most once)."""


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _process_lock(root: Path) -> threading.Lock:
    key = str(root.resolve())
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.Lock())


def _stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts, the same in every process (unlike hash())."""
    h = hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big")


def check_rater(rater: str) -> str:
    name = (rater or "").strip()
    if not name:
        raise UserError("the rater's name is empty; give a name (or log in) before rating.")
    if len(name) > MAX_RATER or any(ord(c) < 32 for c in name):
        raise UserError(
            f"rater name {name[:80]!r} is not usable: at most {MAX_RATER} characters, no control characters."
        )
    return name


# --------------------------------------------------------------------------------------------------------------
# A loaded study


class Study:
    """A loaded study folder; every method re-reads the ratings file, so several processes can share it."""

    def __init__(self, root: Path, meta: dict, items: list[dict], predictions: dict[str, dict[str, Prediction]]):
        self.root = Path(root)
        self.meta = meta
        self.models: list[str] = [m["name"] for m in meta["models"]]
        self.items = items
        self.predictions = predictions  # model -> id -> Prediction (the study's copies)
        self.item_by_id = {it["item"]: it for it in items}
        self._by_key = {(it["id"], tuple(it["models"])): it for it in items}  # (test id, sorted pair) -> item
        self.created = False
        self.left_out: dict[str, list[str]] = {}
        self._videos: dict[str, Path] | None = None

    @classmethod
    def open(cls, root: Path) -> Study:
        root = Path(root)
        path = root / STUDY_JSON
        if not path.is_file():
            raise UserError(f"{root} is not a rating study (no {STUDY_JSON}); create one with `vmeta rate new`.")
        meta = read_json(path)
        if not isinstance(meta, dict) or meta.get("kind") != KIND:
            raise UserError(f"{path} is not a vmeta rating study (its 'kind' is not '{KIND}').")
        if meta.get("version", 0) > VERSION:
            raise UserError(f"{path} was written by a newer vmeta (study version {meta['version']}); upgrade vmeta.")
        items = list(iter_jsonl(root / ITEMS, tolerate_torn_tail=False))
        predictions: dict[str, dict[str, Prediction]] = {}
        for m in meta["models"]:
            rows, _ = load_predictions(root / m["file"])
            predictions[m["name"]] = {r.id: r for r in rows}
        return cls(root, meta, items, predictions)

    # ---- content
    @property
    def ids(self) -> list[str]:
        """The rated test ids, in the order of the first prediction file."""
        first = self.predictions[self.models[0]]
        used = {it["id"] for it in self.items}
        return [i for i in first if i in used]

    @property
    def raters_per_item(self) -> int:
        return int(self.meta["design"].get("raters_per_item", 1))

    def _prediction(self, model: str, test_id: str) -> Prediction:
        if model not in self.predictions:
            raise UserError(f"model '{model}' is not in this study ({', '.join(self.models)}).")
        row = self.predictions[model].get(str(test_id))
        if row is None:
            raise UserError(f"test id '{test_id}' is not in this study's predictions of '{model}'.")
        return row

    def answer(self, model: str, test_id: str) -> str:
        return self._prediction(model, test_id).output

    def reference(self, test_id: str) -> str:
        return self._prediction(self.models[0], test_id).reference

    def category(self, test_id: str) -> str:
        return self._prediction(self.models[0], test_id).category

    def video_path(self, test_id: str) -> Path | None:
        if not self.meta.get("data"):
            return None
        if self._videos is None:
            from vmeta.dataset.records import Dataset

            ds = Dataset(self.meta["data"])
            self._videos = {r.id: ds.video_path(r) for r in ds.load()} if ds.exists() else {}
        p = self._videos.get(str(test_id))
        return p if p is not None and p.is_file() else None

    def item(self, item: str) -> dict:
        it = self.item_by_id.get(item)
        if it is None:
            raise UserError(f"item '{item}' is not in this study.")
        return it

    def find_item(self, test_id: str, model_x: str, model_y: str) -> dict | None:
        """The item rating test_id on this pair of models (either order), or None."""
        return self._by_key.get((str(test_id), tuple(sorted((model_x, model_y)))))

    # ---- ratings
    def ratings(self) -> list[dict]:
        """Every stored rating, in the order stored (a torn last line, from a crash mid-write, is ignored)."""
        return list(iter_jsonl(self.root / RATINGS))

    def _assigned(self) -> list[dict]:
        return list(iter_jsonl(self.root / ASSIGNED))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access to the study's logs: a lock for this process's threads and an fcntl lock for others."""
        with _process_lock(self.root), (self.root / LOCK).open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def shown_order(self, rater: str, item: str) -> tuple[str, str]:
        """(model_a, model_b) as this rater sees this item: a fair coin from (seed, rater, item)."""
        x, y = self.item(item)["models"]
        flip = _stable_int(self.meta.get("seed", 0), check_rater(rater), item, "order") & 1
        return (y, x) if flip else (x, y)

    def _rater_rank(self, rater: str) -> dict[str, int]:
        """A per-rater seeded order of the items: ties between equally-rated items break differently per rater."""
        order = sorted(self.items, key=lambda it: _stable_int(self.meta.get("seed", 0), rater, it["item"], "next"))
        return {it["item"]: k for k, it in enumerate(order)}

    def next_item(self, rater: str) -> dict | None:
        """The item this rater should rate next, or None when they are done. The same item comes back until it
        is rated (the choice is written to assigned.jsonl). New picks prefer items with the fewest ratings (plus
        open assignments of other raters), skip items the rater rated and items already rated `raters_per_item`
        times. The returned dict is the item line; it names the models, so a page must not pass it on as is."""
        rater = check_rater(rater)
        with self.locked():
            ratings = self.ratings()
            assigned = self._assigned()
            done_by: dict[str, set[str]] = defaultdict(set)
            for r in ratings:
                done_by[r["rater"]].add(r["item"])
            rated = done_by[rater]
            for a in assigned:
                if a["rater"] == rater and a["item"] not in rated and a["item"] in self.item_by_id:
                    return self.item_by_id[a["item"]]
            counts = Counter(r["item"] for r in ratings)
            claims = Counter(counts)
            for a in assigned:
                if a["rater"] != rater and a["item"] not in done_by[a["rater"]]:
                    claims[a["item"]] += 1
            need = self.raters_per_item
            candidates = [it["item"] for it in self.items if it["item"] not in rated and counts[it["item"]] < need]
            if not candidates:
                return None
            rank = self._rater_rank(rater)
            pick = min(candidates, key=lambda i: (claims[i], rank[i]))
            append_jsonl(self.root / ASSIGNED, {"rater": rater, "item": pick, "time": now_utc()})
            return self.item_by_id[pick]

    def record(self, *args: Any, **kwargs: Any) -> dict:
        """Store one rating (the arguments of :meth:`rating_row`) and return it. Raises AlreadyRated if this rater
        already rated this item; UserError on bad input."""
        row = self.rating_row(*args, **kwargs)
        if not self.store([row]):
            raise AlreadyRated(f"{row['rater']} has already rated item '{row['item']}'; each rater rates an item once.")
        return row

    def store(self, rows: list[dict]) -> list[dict]:
        """Append rating rows (from :meth:`rating_row`) under the study's lock, reading the stored ratings once;
        -> the rows stored (a row whose rater already rated its item, before or earlier in `rows`, is left out)."""
        stored = []
        with self.locked():
            seen = {(r.get("rater"), r.get("item")) for r in self.ratings()}
            for row in rows:
                if (row["rater"], row["item"]) in seen:
                    continue
                append_jsonl(self.root / RATINGS, row)
                seen.add((row["rater"], row["item"]))
                stored.append(row)
        return stored

    def rating_row(
        self,
        rater: str,
        item: str,
        choice: str,
        slots: dict | None = None,
        note: str = "",
        seconds: float | None = None,
        source: str = "page",
        *,
        order: tuple[str, str] | None = None,
        time: str | None = None,
    ) -> dict:
        """A rating checked (UserError on bad input), not yet stored: `choice` is what the rater picked, a | b | tie |
        both_wrong, where A and B are the answers as shown (`shown_order`, or `order` for imported ratings);
        `slots` is keyed "a" / "b" -> {slot: 0/1}."""
        rater = check_rater(rater)
        it = self.item(item)
        if choice not in CHOICES:
            raise UserError(f"choice {choice!r} is not one of {', '.join(CHOICES)}.")
        if order is None:
            model_a, model_b = self.shown_order(rater, item)
        else:
            model_a, model_b = order
            if sorted((model_a, model_b)) != it["models"]:
                raise UserError(f"models {model_a!r} and {model_b!r} are not the pair of item '{item}'.")
        row_slots = _check_slots(slots, {"a": model_a, "b": model_b})
        if not isinstance(note, str):
            raise UserError("note must be text.")
        if len(note) > MAX_NOTE:
            raise UserError(f"the note is {len(note)} characters long; keep it under {MAX_NOTE}.")
        if seconds is not None:
            try:
                seconds = round(float(seconds), 3)
            except (TypeError, ValueError):
                raise UserError(f"seconds must be a number, got {seconds!r}.") from None
            if not seconds >= 0:
                raise UserError(f"seconds must be >= 0, got {seconds}.")
        winner = {"a": model_a, "b": model_b}.get(choice, choice)
        return {
            "item": item,
            "id": it["id"],
            "rater": rater,
            "time": time or now_utc(),
            "model_a": model_a,
            "model_b": model_b,
            "winner": winner,
            "slots": row_slots,
            "note": note.strip(),
            "source": source,
            "seconds": seconds,
        }

    def progress(self, rater: str) -> dict:
        """done: items this rater rated; total: done + the items still open to them (not rated by them and not yet
        rated raters_per_item times); all_done / all_total: ratings towards the design's target, all raters."""
        rater = check_rater(rater)
        ratings = self.ratings()
        counts = Counter(r["item"] for r in ratings)
        rated = {r["item"] for r in ratings if r.get("rater") == rater}
        need = self.raters_per_item
        open_items = sum(1 for it in self.items if it["item"] not in rated and counts[it["item"]] < need)
        return {
            "done": len(rated),
            "total": len(rated) + open_items,
            "all_done": sum(min(counts[it["item"]], need) for it in self.items),
            "all_total": need * len(self.items),
        }


def _check_slots(slots: dict | None, side: dict[str, str]) -> dict:
    """{"a": {slot: 0/1}, "b": {...}} -> {model: {slot: 0/1}}; a slot left out or None was not judged."""
    if not slots:
        return {}
    if not isinstance(slots, dict):
        raise UserError('slots must be an object like {"a": {"core_concept": 1}, "b": {...}}.')
    out = {}
    for key, judged in slots.items():
        if key not in side:
            raise UserError(f"slots are keyed 'a' and 'b' (the answers as shown), got {key!r}.")
        if judged is None:
            continue
        if not isinstance(judged, dict):
            raise UserError(f"the slots of answer {key!r} must be an object of slot -> 0/1.")
        clean = {}
        for slot, v in judged.items():
            if slot not in SLOTS:
                raise UserError(f"slot {slot!r} is not one of {', '.join(SLOTS)}.")
            if v is None:
                continue
            if v not in (0, 1):  # True/False and 1.0/0.0 compare equal to 1/0
                raise UserError(f"slot {slot!r} of answer {key!r} must be 0 or 1 (or true/false), got {v!r}.")
            clean[slot] = int(v)
        if clean:
            out[side[key]] = clean
    return out


__all__ = ["CHOICES", "SLOTS", "AlreadyRated", "Study"]
