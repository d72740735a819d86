"""The statistics against references that are not our code: statsmodels (Logit, Cohen's and Fleiss' kappa), the
`krippendorff` package, scipy's Kendall tau, and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vmeta.rating import stats

krippendorff = pytest.importorskip("krippendorff")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
sm = pytest.importorskip("statsmodels.api")


def _o(test_id, rater, x, y, result, item=None, category="c"):
    return stats.Outcome(test_id, item or f"{test_id}:{x}:{y}", rater, category, x, y, result)


def test_two_model_bradley_terry_is_log_odds_of_wins():
    """Hand-worked: with w wins, n losses and t ties, the MLE gap is log((w + t/2) / (n + t/2))."""
    for w, n, t in ((7, 3, 0), (5, 2, 4), (1, 1, 6)):
        mat = np.array([[0, w + t / 2], [n + t / 2, 0]], dtype=float)
        b = stats.bt_fit(mat)
        assert b[0] - b[1] == pytest.approx(math.log((w + t / 2) / (n + t / 2)), abs=1e-9)
        assert b.sum() == pytest.approx(0, abs=1e-12)


def _bt_case() -> tuple[list[str], list[stats.Outcome]]:
    models = ["m1", "m2", "m3", "m4"]
    spec = {  # (x, y): (x wins, y wins, ties, both_wrong)
        ("m1", "m2"): (6, 3, 1, 1),
        ("m1", "m3"): (7, 2, 0, 1),
        ("m1", "m4"): (3, 4, 2, 0),
        ("m2", "m3"): (4, 4, 1, 0),
        ("m2", "m4"): (2, 5, 0, 1),
        ("m3", "m4"): (3, 6, 1, 1),
    }
    res = []
    for (x, y), counts in spec.items():
        for result, n in zip(("x", "y", "tie", "both_wrong"), counts, strict=True):
            res += [_o(f"t{len(res)}", "r", x, y, result) for _ in range(n)]
    return models, res


def test_bradley_terry_equals_statsmodels_logit():
    """Reference: an unpenalised logistic regression on the design matrix (+1 for the first model, -1 for the
    second, no intercept, m1's column dropped); a tie is one win and one loss (all weights doubled, which leaves
    the MLE unchanged), the Chatbot Arena encoding."""
    models, res = _bt_case()
    k = {m: n for n, m in enumerate(models)}
    rows, ys = [], []
    for o in res:
        v = np.zeros(len(models))
        v[k[o.x]], v[k[o.y]] = 1, -1
        outcomes = {"x": [1, 1], "y": [0, 0]}.get(o.result, [1, 0])
        for yv in outcomes:
            rows.append(v[1:])
            ys.append(yv)
    fit = sm.Logit(np.array(ys), np.array(rows)).fit(disp=0, tol=1e-12, maxiter=200)
    ref = np.concatenate([[0.0], fit.params])
    ref -= ref.mean()
    ours = stats.bt_fit(stats.win_matrix(res, models))
    np.testing.assert_allclose(ours, ref, atol=1e-7)
    boot = stats.Resampler(sorted({o.id for o in res}), 200, 0)
    table, fit_info = stats.bradley_terry(res, models, boot)
    assert fit_info["prior"] == 0.0
    by_model = {e["model"]: e for e in table}
    for m in models:
        assert by_model[m]["log_strength"] == pytest.approx(ref[k[m]], abs=1e-7)
        assert by_model[m]["score"] == pytest.approx(1000 + 400 * ref[k[m]] / math.log(10), abs=1e-5)
        lo, hi = by_model[m]["ci"]
        assert lo <= by_model[m]["score"] <= hi
    assert [e["model"] for e in table] == sorted(models, key=lambda m: -ref[k[m]])
    assert [e["rank"] for e in table] == [1, 2, 3, 4]


def test_bradley_terry_without_an_mle_uses_the_virtual_tie_prior():
    res = [_o(f"t{i}", "r", "a", "b", "x") for i in range(5)]  # a always wins: the MLE gap is infinite
    assert not stats.mle_exists(stats.win_matrix(res, ["a", "b"]))
    table, fit = stats.bradley_terry(res, ["a", "b"], stats.Resampler([f"t{i}" for i in range(5)], 50, 0))
    assert fit["prior"] == 1.0
    gap = table[0]["log_strength"] - table[1]["log_strength"]
    assert table[0]["model"] == "a" and gap == pytest.approx(math.log(5.5 / 0.5), abs=1e-9)


def test_win_rates_count_ties_and_both_wrong_as_half_and_bootstrap_over_ids():
    res = [
        _o("t1", "r1", "a", "b", "x"),
        _o("t1", "r2", "a", "b", "tie"),
        _o("t2", "r1", "a", "b", "y"),
        _o("t3", "r1", "a", "b", "both_wrong"),
        _o("t3", "r2", "a", "b", "x"),
    ]
    boot = stats.Resampler(["t1", "t2", "t3"], 500, 3)
    (w,) = stats.win_rates(res, ["a", "b"], boot)
    assert (w["a"], w["b"], w["a_wins"], w["b_wins"], w["ties"], w["both_wrong"], w["n"]) == ("a", "b", 2, 1, 1, 1, 5)
    assert w["a_win_rate"] == pytest.approx((2 + 0.5 * 2) / 5)
    # the bootstrap resamples ids: recompute the replicates by hand from the same counts matrix
    num = {"t1": 1.5, "t2": 0.0, "t3": 1.5}
    den = {"t1": 2, "t2": 1, "t3": 2}
    reps = [
        sum(c * num[i] for c, i in zip(row, boot.ids, strict=True))
        / sum(c * den[i] for c, i in zip(row, boot.ids, strict=True))
        for row in boot.counts
    ]
    assert w["ci"] == pytest.approx([np.percentile(reps, 2.5), np.percentile(reps, 97.5)])


def _agreement_case() -> list[stats.Outcome]:
    """Ten items, three raters; every item rated by exactly two of them."""
    data = {  # item: {rater: result}
        "i1": {"r1": "x", "r2": "x"},
        "i2": {"r1": "y", "r2": "y"},
        "i3": {"r1": "x", "r2": "tie"},
        "i4": {"r1": "both_wrong", "r3": "both_wrong"},
        "i5": {"r1": "x", "r3": "y"},
        "i6": {"r2": "tie", "r3": "tie"},
        "i7": {"r2": "x", "r3": "x"},
        "i8": {"r2": "y", "r3": "x"},
        "i9": {"r1": "x", "r2": "x"},
        "i10": {"r1": "y", "r3": "y"},
    }
    return [_o(i[1:], r, "a", "b", v, item=i) for i, rs in data.items() for r, v in rs.items()]


def test_agreement_equals_statsmodels_and_krippendorff():
    res = _agreement_case()
    labels = ["x", "y", "tie", "both_wrong"]
    ag = stats.agreement(res)
    assert ag["items_multi_rated"] == 10
    # Cohen per rater pair (statsmodels on the 4x4 contingency table), then the mean over pairs
    by_item: dict[str, dict[str, str]] = {}
    for o in res:
        by_item.setdefault(o.item, {})[o.rater] = o.result
    kappas = []
    for ra, rb in (("r1", "r2"), ("r1", "r3"), ("r2", "r3")):
        table = np.zeros((4, 4))
        for rs in by_item.values():
            if ra in rs and rb in rs:
                table[labels.index(rs[ra]), labels.index(rs[rb])] += 1
        kappas.append(inter_rater.cohens_kappa(table, return_results=False))
        pair = next(p for p in ag["cohen_pairs"] if p["raters"] == [ra, rb])
        assert pair["kappa"] == pytest.approx(kappas[-1])
        assert pair["n"] == table.sum()
    assert ag["cohen_kappa"] == pytest.approx(np.mean(kappas))
    # Fleiss: statsmodels on the items x categories table (two ratings per item)
    counts = np.array([[list(rs.values()).count(c) for c in labels] for rs in by_item.values()])
    assert ag["fleiss_kappa"] == pytest.approx(inter_rater.fleiss_kappa(counts, method="fleiss"))
    # Krippendorff: the reference package on the raters x items matrix with gaps
    raters = ["r1", "r2", "r3"]
    items = list(by_item)
    rel = np.array(
        [[labels.index(by_item[i][r]) if r in by_item[i] else np.nan for i in items] for r in raters], dtype=float
    )
    assert ag["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=rel, level_of_measurement="nominal")
    )


def test_krippendorff_with_three_raters_on_some_items_and_single_ratings():
    """Varying numbers of values per unit, and units with one value (not pairable)."""
    units = {"u1": ["a", "a", "b"], "u2": ["b", "b"], "u3": ["a"], "u4": ["c", "a", "c"], "u5": ["b", "b", "b"]}
    cats = ["a", "b", "c"]
    rel = np.full((3, len(units)), np.nan)
    for j, vals in enumerate(units.values()):
        for r, v in enumerate(vals):
            rel[r, j] = cats.index(v)
    ours = stats.krippendorff_alpha_nominal(list(units.values()))
    assert ours == pytest.approx(krippendorff.alpha(reliability_data=rel, level_of_measurement="nominal"))


def test_fleiss_with_varying_raters_reduces_to_the_textbook_formula():
    table = np.array([[2, 0, 1], [0, 3, 0], [1, 1, 0], [0, 0, 2]])
    n_i = table.sum(1)
    p_i = ((table * (table - 1)).sum(1)) / (n_i * (n_i - 1))
    p_k = table.sum(0) / table.sum()
    expected = (p_i.mean() - (p_k**2).sum()) / (1 - (p_k**2).sum())
    assert stats.fleiss_kappa(table) == pytest.approx(expected)
    constant = np.array([[2, 1, 0], [0, 3, 0], [1, 1, 1], [0, 0, 3]])
    assert stats.fleiss_kappa(constant) == pytest.approx(inter_rater.fleiss_kappa(constant))


def test_metric_agreement_by_hand_and_scipy_kendall():
    from scipy.stats import kendalltau

    res = [
        _o("t1", "r1", "a", "b", "x"),  # metric: a 50 > b 20 -> agree
        _o("t2", "r1", "a", "b", "y"),  # a 30 > b 10 -> disagree
        _o("t3", "r1", "a", "b", "x"),  # a 40 = b 40 -> 0.5
        _o("t4", "r1", "a", "b", "tie"),  # left out of agree, in tau
        _o("t5", "r1", "a", "b", "y"),  # a 10 < b 60 -> agree
        _o("t6", "r1", "a", "b", "both_wrong"),  # no score for b: left out everywhere
    ]
    scores = {
        "m": {
            "a": {"t1": 50, "t2": 30, "t3": 40, "t4": 70, "t5": 10, "t6": 5},
            "b": {"t1": 20, "t2": 10, "t3": 40, "t4": 60, "t5": 60, "t6": math.nan},
        }
    }
    boot = stats.Resampler(["t1", "t2", "t3", "t4", "t5", "t6"], 300, 1)
    e = stats.metric_agreement(res, scores, boot)["m"]
    assert e["n"] == 4 and e["metric_ties"] == 1
    assert e["agree_rate"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    ref = kendalltau([30, 20, 0, 10, -50], [1, -1, 1, 0, -1])
    assert e["kendall_tau"] == pytest.approx(ref.statistic) and e["kendall_p"] == pytest.approx(ref.pvalue)
    assert e["n_tau"] == 5
    lo, hi = e["ci"]
    assert 0 <= lo <= e["agree_rate"] <= hi <= 1


def test_by_slot_and_by_category():
    res = [
        stats.Outcome("t1", "i1", "r1", "讽刺类", "a", "b", "x", {"a": {"source": 1}, "b": {"source": 0}}),
        stats.Outcome("t1", "i1", "r2", "讽刺类", "a", "b", "tie", {"a": {"source": 1, "emotion": 0}}),
        stats.Outcome("t2", "i2", "r1", "硬核类", "a", "b", "y", {}),
    ]
    boot = stats.Resampler(["t1", "t2"], 100, 0)
    slots = stats.by_slot(res, ["a", "b"], ["core_concept", "source", "emotion"], boot)
    assert slots["a"]["source"]["rate"] == 1.0 and slots["a"]["source"]["n"] == 2
    assert slots["a"]["emotion"] == {"rate": 0.0, "ci": [0.0, 0.0], "n": 1}
    assert slots["b"]["core_concept"] == {"rate": None, "ci": None, "n": 0}
    cats = stats.by_category(res, ["a", "b"], boot)
    assert cats["讽刺类"]["models"]["a"]["win_rate"] == pytest.approx(0.75)
    assert cats["讽刺类"]["models"]["b"]["win_rate"] == pytest.approx(0.25)
    assert cats["硬核类"]["models"]["b"]["win_rate"] == 1.0 and cats["硬核类"]["n_ratings"] == 1
