"""Bootstrap confidence intervals and paired tests over per-sample scores, vectorised with numpy.

Resampling is done once as a matrix of counts (n_boot x n, multinomial), so every metric's resampled
means are one matrix product: counts @ scores / counts @ valid (NaN = not applicable, left out).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

LEVEL = 0.95


def resample_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) how often each sample is drawn in each bootstrap replicate."""
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros((n_boot, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def boot_means(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Resampled means of each column: scores (n,) or (n, m) -> (n_boot,) or (n_boot, m); NaN entries ignored."""
    s = np.asarray(scores, dtype=float)
    valid = ~np.isnan(s)
    num = counts @ np.where(valid, s, 0.0)
    den = counts @ valid.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def percentile_ci(replicates: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - level) / 2
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (no applicable sample) -> NaN
        lo = np.nanpercentile(replicates, 100 * alpha, axis=0)
        hi = np.nanpercentile(replicates, 100 * (1 - alpha), axis=0)
    return lo, hi


def summarize(scores: np.ndarray, counts: np.ndarray, level: float = LEVEL) -> list[dict]:
    """Mean, 95% percentile CI, std and n for each column of scores (n, m)."""
    s = np.asarray(scores, dtype=float)
    if s.ndim == 1:
        s = s[:, None]
    reps = boot_means(s, counts)
    lo, hi = percentile_ci(reps, level) if len(reps) else (np.full(s.shape[1], np.nan),) * 2
    out = []
    for j in range(s.shape[1]):
        col = s[:, j]
        v = col[~np.isnan(col)]
        out.append(
            {
                "mean": float(v.mean()) if len(v) else None,
                "ci95": [_f(lo[j]), _f(hi[j])] if len(v) else [None, None],
                "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                "n": len(v),
            }
        )
    return out


def corpus_ci(
    stats: np.ndarray, counts: np.ndarray, score_fn: Callable[[np.ndarray], float], level: float = LEVEL
) -> list:
    """CI of a corpus-level metric from per-sample sufficient statistics (n, k): resample, sum, score."""
    summed = counts @ np.asarray(stats, dtype=float)
    reps = np.array([score_fn(row) for row in summed])
    lo, hi = percentile_ci(reps, level)
    return [_f(lo), _f(hi)]


def _f(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


# --------------------------------------------------------------------------------------------------------------
# Paired tests


@dataclass
class PairedResult:
    metric: str
    name_a: str
    name_b: str
    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean(a - b)
    ci95: tuple[float, float]
    p_bootstrap: float
    p_permutation: float
    p_sign: float
    wins: int
    losses: int
    ties: int
    alpha: float
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    *,
    metric: str = "score",
    name_a: str = "A",
    name_b: str = "B",
    n_boot: int = 1000,
    n_perm: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedResult:
    """Is A better than B on the same samples? Paired bootstrap CI of the mean difference, a paired
    permutation (sign-flip) test and an exact sign test; the verdict uses the permutation p-value."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = len(a)
    if n == 0:
        raise ValueError("no sample has a score in both runs")
    d = a - b
    obs = float(d.mean())
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    reps = counts @ d / n
    lo, hi = percentile_ci(reps)
    # two-sided bootstrap p: how often the resampled difference lands on the other side of 0
    p_boot = min(1.0, 2 * min(float(np.mean(reps <= 0)), float(np.mean(reps >= 0))))
    if np.all(d == 0):
        p_boot = 1.0
    # sign-flip permutation test, chunked to bound memory
    hits, done = 0, 0
    while done < n_perm:
        k = min(2000, n_perm - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(k, n))
        perm = (signs @ d) / n
        hits += int(np.sum(np.abs(perm) >= abs(obs) - 1e-12))
        done += k
    p_perm = (hits + 1) / (n_perm + 1)
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    ties = n - wins - losses
    p_sign = _sign_test(wins, losses)
    verdict = _verdict(metric, name_a, name_b, obs, (float(lo), float(hi)), p_perm, alpha, n)
    return PairedResult(
        metric,
        name_a,
        name_b,
        n,
        float(a.mean()),
        float(b.mean()),
        obs,
        (float(lo), float(hi)),
        p_boot,
        float(p_perm),
        p_sign,
        wins,
        losses,
        ties,
        alpha,
        verdict,
    )


def _sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial sign test (ties dropped)."""
    m = wins + losses
    if m == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2**m
    return min(1.0, 2 * tail)


def _verdict(metric: str, a: str, b: str, diff: float, ci: tuple[float, float], p: float, alpha: float, n: int) -> str:
    detail = f"{a} − {b} = {diff:+.2f} (95% CI {ci[0]:+.2f} to {ci[1]:+.2f}; permutation p={p:.3g}, n={n})"
    if p < alpha:
        better, worse = (a, b) if diff > 0 else (b, a)
        return f"{better} is significantly better than {worse} on {metric}: {detail}."
    return f"No significant difference between {a} and {b} on {metric} at α={alpha}: {detail}."
