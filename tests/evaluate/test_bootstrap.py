"""Bootstrap CIs (vectorised, seeded, NaN-aware) and paired tests."""

from __future__ import annotations

import numpy as np
import pytest

from vmeta.evaluate.bootstrap import boot_means, paired_test, percentile_ci, resample_counts, summarize


def test_vectorised_means_equal_a_naive_loop():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 100, size=(50, 3))
    counts = resample_counts(50, 200, seed=7)
    fast = boot_means(scores, counts)
    naive = np.array([[np.repeat(scores[:, j], c.astype(int)).mean() for j in range(3)] for c in counts])
    np.testing.assert_allclose(fast, naive, atol=1e-9)
    assert counts.sum(axis=1).tolist() == [50.0] * 200


def test_summary_is_seeded_and_contains_the_mean():
    rng = np.random.default_rng(1)
    s = rng.normal(60, 10, size=100)
    a = summarize(s, resample_counts(100, 1000, 0))[0]
    b = summarize(s, resample_counts(100, 1000, 0))[0]
    c = summarize(s, resample_counts(100, 1000, 1))[0]
    assert a == b and a["ci95"] != c["ci95"]
    lo, hi = a["ci95"]
    assert lo < a["mean"] < hi
    # the percentile CI of a mean is close to mean +- 1.96 * sd / sqrt(n)
    half = 1.96 * s.std(ddof=1) / np.sqrt(len(s))
    assert hi - lo == pytest.approx(2 * half, rel=0.2)


def test_nan_entries_are_left_out():
    s = np.array([10.0, np.nan, 30.0, np.nan])
    out = summarize(s, resample_counts(4, 500, 0))[0]
    assert out["mean"] == 20.0 and out["n"] == 2
    lo, hi = out["ci95"]
    assert 10.0 <= lo <= hi <= 30.0
    all_nan = summarize(np.array([np.nan, np.nan]), resample_counts(2, 10, 0))[0]
    assert all_nan["mean"] is None and all_nan["n"] == 0


def test_percentile_ci_level():
    reps = np.arange(1001, dtype=float)
    lo, hi = percentile_ci(reps)
    assert lo == pytest.approx(25.0) and hi == pytest.approx(975.0)


def test_paired_identical_runs_are_not_different():
    a = np.linspace(0, 100, 40)
    r = paired_test(a, a.copy(), metric="BLEU-4", name_a="x", name_b="y")
    assert r.diff == 0.0 and r.p_permutation == 1.0 and r.p_sign == 1.0 and r.p_bootstrap == 1.0
    assert r.verdict.startswith("No significant difference")


def test_paired_clear_improvement_is_significant():
    rng = np.random.default_rng(3)
    b = rng.uniform(20, 60, 100)
    a = b + rng.normal(3.0, 2.0, 100)
    r = paired_test(a, b, metric="ROUGE-L", name_a="lora", name_b="base", seed=0)
    assert r.diff > 0 and r.ci95[0] > 0
    assert r.p_permutation < 0.01 and r.p_sign < 0.01 and r.p_bootstrap < 0.01
    assert r.verdict.startswith("lora is significantly better than base on ROUGE-L")
    worse = paired_test(b, a, metric="ROUGE-L", name_a="base", name_b="lora")
    assert worse.verdict.startswith("lora is significantly better than base")


def test_paired_noise_is_not_significant():
    rng = np.random.default_rng(5)
    b = rng.uniform(20, 60, 60)
    a = b + rng.normal(0.0, 5.0, 60)
    r = paired_test(a, b, seed=1)
    assert r.p_permutation > 0.05 and r.ci95[0] < 0 < r.ci95[1]


def test_paired_sign_test_exact_value():
    a = np.array([1.0, 1, 1, 1, 1, 0, 0])
    b = np.zeros(7)
    r = paired_test(a, b)
    assert (r.wins, r.losses, r.ties) == (5, 0, 2)
    assert r.p_sign == pytest.approx(2 / 32)


def test_paired_drops_nan_pairs_and_refuses_empty():
    a = np.array([1.0, np.nan, 3.0])
    b = np.array([0.0, 2.0, np.nan])
    assert paired_test(a, b).n == 1
    with pytest.raises(ValueError):
        paired_test(np.array([np.nan]), np.array([1.0]))
