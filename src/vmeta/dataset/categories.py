"""The five categories of thesis §3.2, with the spellings annotators use for them."""

from __future__ import annotations

import unicodedata

# Canonical name -> (English name, aliases). Order is the thesis' order.
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "讽刺类": ("satire", ("讽刺", "satirical", "irony", "ironic", "sarcasm")),
    "诙谐类": ("humor", ("诙谐", "humour", "humorous", "funny", "comedy")),
    "生活态度类": ("life-attitude", ("生活态度", "life attitude", "attitude", "lifestyle")),
    "硬核类": ("hardcore", ("硬核", "hard-core", "hard core")),
    "自嘲幽默类": (
        "self-mockery",
        ("自嘲幽默", "自嘲", "self-deprecating", "self mockery", "self-deprecation"),
    ),
}
# Thesis §3.2 counts (898 videos): used by the split defaults' documentation and tests.
THESIS_COUNTS = {"讽刺类": 140, "诙谐类": 425, "生活态度类": 119, "硬核类": 105, "自嘲幽默类": 109}


def fold(text: str) -> str:
    """Fold width (NFKC), case and surrounding spaces: how names are compared across sheets."""
    return unicodedata.normalize("NFKC", str(text)).strip().casefold()


def category_lookup(categories: dict[str, tuple[str, tuple[str, ...]]] | None = None) -> dict[str, str]:
    table = categories or CATEGORIES
    out: dict[str, str] = {}
    for name, (english, aliases) in table.items():
        for spelling in (name, english, *aliases):
            out[fold(spelling)] = name
    return out


def canonical_category(value: str, lookup: dict[str, str] | None = None) -> str | None:
    return (lookup or category_lookup()).get(fold(value))
