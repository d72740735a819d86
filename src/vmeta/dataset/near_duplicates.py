"""Near-duplicate labels: which labels are (almost) the same text, found exactly and fast.

Labels are normalised (template.normalize, whitespace removed) and cut into character 3-gram shingles; pairs
with Jaccard similarity >= 0.8 are found exactly with prefix filtering (the "All-Pairs" set-similarity join):
tokens are ordered rarest first, and two sets with Jaccard >= t must share a token among the first
|s| - ceil(t*|s|) + 1 of each, so only pairs that share a rare shingle are compared. 10,000 labels take well
under a second instead of 50 million pair comparisons. Used by `vmeta data stats` (dataset/stats.py).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from vmeta.dataset.template import normalize

DUPLICATE_THRESHOLD = 0.8
SHINGLE = 3


def shingles(text: str, k: int = SHINGLE) -> frozenset[str]:
    s = "".join(normalize(text).split())
    if len(s) <= k:
        return frozenset([s]) if s else frozenset()
    return frozenset(s[i : i + k] for i in range(len(s) - k + 1))


def near_duplicates(
    texts: dict[str, str], threshold: float = DUPLICATE_THRESHOLD, k: int = SHINGLE
) -> list[dict[str, Any]]:
    """All pairs of ids whose texts have shingle Jaccard >= threshold (exact; prefix-filtered join)."""
    sets = {i: shingles(t, k) for i, t in texts.items()}
    sets = {i: s for i, s in sets.items() if s}
    freq = Counter(tok for s in sets.values() for tok in s)
    rank = {tok: (n, tok) for tok, n in freq.items()}
    items = sorted(sets, key=lambda i: (len(sets[i]), i))
    index: dict[str, list[str]] = defaultdict(list)
    pairs = []
    eps = 1e-9
    for x in items:
        sx = sets[x]
        toks = sorted(sx, key=rank.__getitem__)
        prefix = len(toks) - math.ceil(threshold * len(toks) - eps) + 1
        candidates: set[str] = set()
        for tok in toks[:prefix]:
            for y in index[tok]:
                if len(sets[y]) >= threshold * len(sx) - eps:  # length filter (y is never larger than x)
                    candidates.add(y)
            index[tok].append(x)
        for y in candidates:
            sy = sets[y]
            inter = len(sx & sy)
            j = inter / (len(sx) + len(sy) - inter)
            if j >= threshold - eps:
                a, b = sorted((x, y))
                pairs.append({"a": a, "b": b, "jaccard": round(j, 4)})
    pairs.sort(key=lambda p: (-p["jaccard"], p["a"], p["b"]))
    return pairs


def duplicate_groups(pairs: list[dict[str, Any]]) -> list[list[str]]:
    """The pairs joined into groups (union-find): largest first, ids sorted."""
    parent: dict[str, str] = {}

    def find(u: str) -> str:
        parent.setdefault(u, u)
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    for p in pairs:
        ra, rb = find(p["a"]), find(p["b"])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    out: dict[str, list[str]] = defaultdict(list)
    for u in parent:
        out[find(u)].append(u)
    return sorted((sorted(g) for g in out.values()), key=lambda g: (-len(g), g))
