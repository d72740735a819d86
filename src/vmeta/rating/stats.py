"""The numbers of a rating study: win rates, a Bradley–Terry ranking, inter-rater agreement, breakdowns, and how
well each automatic metric agrees with the people.

Conventions (also written into report.json["conventions"]):
- A rating is turned into an outcome for the item's pair (x, y) (sorted names), whichever side was shown as A:
  x wins, y wins, tie, or both_wrong. For win rates and Bradley–Terry, `tie` and `both_wrong` both count as a
  tie = half a win for each model (Chatbot Arena counts "tie" and "tie (bothbad)" alike).
- Confidence intervals are 95% percentile bootstraps that resample **test ids** (all ratings of a drawn id come
  with it), so several ratings of one video do not pass for independent evidence. Seeded.
- Bradley–Terry: P(i beats j) = 1 / (1 + exp(-(b_i - b_j))), fitted by maximum likelihood (Newton's method) on
  the win counts, ties as half wins each; b (log-strength, natural log) is centred to mean 0, and `score` is on
  the Elo-like scale 1000 + 400 * b / ln(10) (a 400-point gap = 10:1 odds), as in Chatbot Arena. When the
  maximum-likelihood estimate does not exist (a model won, or lost, every comparison with some group of models),
  one virtual tie per pair of models is added; the result says so (`prior`).
- Agreement is on the 4-way outcome over items rated by two or more raters: Cohen's kappa per pair of raters
  (on the items both rated; the mean over rater pairs is reported), Fleiss' kappa (the usual generalisation to a
  varying number of raters per item: each item's pairwise agreement, chance from the pooled category shares),
  Krippendorff's alpha (nominal, from the coincidence matrix).
- Metric–human agreement: for each rating where one model won (ties and both_wrong left out), does the metric
  score the winner higher? agree = 1, metric tie = 0.5 (it picks no winner; chance level is 0.5), else 0.
  Kendall's tau-b (scipy) between the metric difference s(x) - s(y) and the human outcome (+1 / -1 / 0 for
  tie and both_wrong) over every rating where the metric has both scores.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from vmeta.evaluate.bootstrap import percentile_ci, resample_counts
from vmeta.evaluate.judge import cohen_kappa

ELO_BASE = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)


@dataclass(frozen=True)
class Outcome:
    """One rating, seen from the item's sorted pair (x, y)."""

    id: str
    item: str
    rater: str
    category: str
    x: str
    y: str
    result: str  # "x" | "y" | "tie" | "both_wrong"
    slots: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def x_score(self) -> float:
        return {"x": 1.0, "y": 0.0}.get(self.result, 0.5)

    @property
    def human(self) -> int:
        """+1 when x won, -1 when y won, 0 for tie / both_wrong."""
        return {"x": 1, "y": -1}.get(self.result, 0)


def outcomes(ratings: list[dict], categories: dict[str, str]) -> list[Outcome]:
    out = []
    for r in ratings:
        x, y = sorted((r["model_a"], r["model_b"]))
        w = r["winner"]
        result = "x" if w == x else "y" if w == y else w
        out.append(
            Outcome(
                str(r["id"]),
                r["item"],
                r["rater"],
                categories.get(str(r["id"]), ""),
                x,
                y,
                result,
                r.get("slots") or {},
            )
        )
    return out


def _ci(replicates: np.ndarray) -> list[float | None]:
    reps = np.asarray(replicates, dtype=float)
    if reps.size == 0 or np.all(np.isnan(reps)):
        return [None, None]
    lo, hi = percentile_ci(reps)
    return [_f(lo), _f(hi)]


def _f(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


class Resampler:
    """One seeded bootstrap over test ids, shared by every analysis of a report (so their CIs line up)."""

    def __init__(self, ids: list[str], n_boot: int, seed: int):
        self.ids = list(ids)
        self.index = {i: k for k, i in enumerate(self.ids)}
        self.n_boot = n_boot
        self.counts = resample_counts(len(self.ids), n_boot, seed)  # (n_boot, n_ids)

    def ratio(self, num: dict[str, float], den: dict[str, float]) -> list[float | None]:
        """CI of sum(num) / sum(den), both per id."""
        if self.n_boot == 0:
            return [None, None]
        vn = np.zeros(len(self.ids))
        vd = np.zeros(len(self.ids))
        for i, v in num.items():
            vn[self.index[i]] += v
        for i, v in den.items():
            vd[self.index[i]] += v
        with np.errstate(invalid="ignore", divide="ignore"):
            return _ci((self.counts @ vn) / (self.counts @ vd))


# --------------------------------------------------------------------------------------------------------------
# Win rates


def win_rates(res: list[Outcome], models: list[str], boot: Resampler) -> list[dict]:
    """One entry per model pair (a < b by name) that has ratings."""
    by_pair: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in res:
        by_pair[(o.x, o.y)].append(o)
    order = {m: k for k, m in enumerate(models)}
    out = []
    for (a, b), rows in sorted(by_pair.items(), key=lambda kv: (order.get(kv[0][0], 0), order.get(kv[0][1], 0))):
        c = Counter(o.result for o in rows)
        num: dict[str, float] = defaultdict(float)
        den: dict[str, float] = defaultdict(float)
        for o in rows:
            num[o.id] += o.x_score
            den[o.id] += 1
        n = len(rows)
        out.append(
            {
                "a": a,
                "b": b,
                "a_wins": c["x"],
                "b_wins": c["y"],
                "ties": c["tie"],
                "both_wrong": c["both_wrong"],
                "n": n,
                "ids": len(den),
                "a_win_rate": (c["x"] + 0.5 * (c["tie"] + c["both_wrong"])) / n,
                "ci": boot.ratio(num, den),
            }
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# Bradley–Terry


def win_matrix(res: list[Outcome], models: list[str], ids: list[str] | None = None) -> np.ndarray:
    """W[i, j] = wins of model i over model j (ties: half each); with `ids`, one matrix per id: (n_ids, K, K)."""
    k = {m: n for n, m in enumerate(models)}
    if ids is None:
        w = np.zeros((len(models), len(models)))
        for o in res:
            s = o.x_score
            w[k[o.x], k[o.y]] += s
            w[k[o.y], k[o.x]] += 1 - s
        return w
    idx = {i: n for n, i in enumerate(ids)}
    w = np.zeros((len(ids), len(models), len(models)))
    for o in res:
        s = o.x_score
        w[idx[o.id], k[o.x], k[o.y]] += s
        w[idx[o.id], k[o.y], k[o.x]] += 1 - s
    return w


def mle_exists(w: np.ndarray) -> bool:
    """Zermelo/Ford: the maximum-likelihood strengths exist iff the 'i beat j at least once' graph is strongly
    connected (every model can be reached from every other by a chain of wins)."""
    k = len(w)
    reach = (w > 0) | np.eye(k, dtype=bool)
    for _ in range(max(1, math.ceil(math.log2(max(k, 2))))):
        reach = reach | ((reach.astype(int) @ reach.astype(int)) > 0)
    return bool(reach.all())


def bt_fit(w: np.ndarray, prior: float = 0.0, tol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """Log-strengths b (mean 0) maximising sum_ij W_ij log sigmoid(b_i - b_j); `prior` adds that many virtual
    ties per pair of models. Newton's method with b_0 fixed during the fit and step halving."""
    k = len(w)
    w = np.asarray(w, dtype=float) + 0.5 * prior * (1 - np.eye(k))
    n = w + w.T
    beta = np.zeros(k)

    def loglik(b: np.ndarray) -> float:
        d = b[:, None] - b[None, :]
        return float(-(w * np.logaddexp(0.0, -d)).sum())

    ll = loglik(beta)
    for _ in range(max_iter):
        d = beta[:, None] - beta[None, :]
        p = 1.0 / (1.0 + np.exp(-d))
        g = (w - n * p).sum(axis=1)
        hw = n * p * (1 - p)
        neg_h = np.diag(hw.sum(axis=1)) - hw
        try:
            step = np.linalg.solve(neg_h[1:, 1:], g[1:])
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(neg_h[1:, 1:], g[1:], rcond=None)[0]
        t = 1.0
        while True:
            cand = beta.copy()
            cand[1:] += t * step
            new_ll = loglik(cand)
            if new_ll >= ll - 1e-12 or t < 1e-6:
                break
            t /= 2
        beta, ll = cand, new_ll
        if np.max(np.abs(t * step)) < tol:
            break
    return beta - beta.mean()


def _fit(w: np.ndarray) -> tuple[np.ndarray, float]:
    prior = 0.0 if mle_exists(w) else 1.0
    return bt_fit(w, prior), prior


def elo(beta: np.ndarray | float) -> np.ndarray | float:
    return ELO_BASE + ELO_SCALE * np.asarray(beta)


def bradley_terry(res: list[Outcome], models: list[str], boot: Resampler) -> tuple[list[dict], dict]:
    """Per model: Elo-like score with CI, log-strength with CI, rank; plus how it was fitted."""
    if not res:
        return [], {"prior": None, "n": 0}
    beta, prior = _fit(win_matrix(res, models))
    reps = np.full((boot.n_boot, len(models)), np.nan)
    if boot.n_boot:
        per_id = win_matrix(res, models, boot.ids)  # (n_ids, K, K)
        for b in range(boot.n_boot):
            reps[b] = _fit(np.tensordot(boot.counts[b], per_id, axes=1))[0]
    order = np.argsort(-beta, kind="stable")
    rank = {int(i): r for r, i in enumerate(order, 1)}
    out = []
    for i in order:
        out.append(
            {
                "model": models[i],
                "rank": rank[int(i)],
                "score": float(elo(beta[i])),
                "ci": [None if v is None else float(elo(v)) for v in _ci(reps[:, i])],
                "log_strength": float(beta[i]),
                "log_strength_ci": _ci(reps[:, i]),
            }
        )
    return out, {"prior": prior, "n": len(res)}


# --------------------------------------------------------------------------------------------------------------
# Inter-rater agreement


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' kappa from an items x categories count table; items may have different numbers of ratings (>= 2)
    — with a constant number it is exactly Fleiss (1971)."""
    t = np.asarray(table, dtype=float)
    t = t[t.sum(axis=1) >= 2]
    if len(t) == 0:
        return None
    n_i = t.sum(axis=1)
    p_i = (t * (t - 1)).sum(axis=1) / (n_i * (n_i - 1))
    p_bar = float(p_i.mean())
    p_k = t.sum(axis=0) / t.sum()
    p_e = float((p_k**2).sum())
    if p_e == 1.0:
        return None
    return (p_bar - p_e) / (1 - p_e)


def krippendorff_alpha_nominal(units: list[list[str]]) -> float | None:
    """Krippendorff's alpha for nominal data; each unit is the list of values it got (units with < 2 values are
    not pairable and left out)."""
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    cats = sorted({v for u in units for v in u})
    k = {c: n for n, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for u in units:
        cnt = Counter(u)
        m = len(u)
        for c, nc in cnt.items():
            for d, nd in cnt.items():
                o[k[c], k[d]] += (nc * (nc - 1) if c == d else nc * nd) / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    disagree_o = o.sum() - np.trace(o)
    disagree_e = (np.outer(n_c, n_c).sum() - (n_c**2).sum()) / (n - 1)
    if disagree_e == 0:
        return None
    return float(1 - disagree_o / disagree_e)


def agreement(res: list[Outcome]) -> dict:
    """Cohen (mean over rater pairs), Fleiss and Krippendorff on items with ratings by two or more raters."""
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for o in res:
        by_item[o.item][o.rater] = o.result
    multi = {i: r for i, r in by_item.items() if len(r) >= 2}
    labels = ["x", "y", "tie", "both_wrong"]
    table = np.array([[Counter(r.values())[c] for c in labels] for r in multi.values()]).reshape(-1, 4)
    raters = sorted({r for rs in multi.values() for r in rs})
    pairs = []
    for ia, ra in enumerate(raters):
        for rb in raters[ia + 1 :]:
            common = [i for i, rs in multi.items() if ra in rs and rb in rs]
            if not common:
                continue
            a = [labels.index(multi[i][ra]) for i in common]
            b = [labels.index(multi[i][rb]) for i in common]
            undefined = len(set(a) | set(b)) == 1  # both used one and the same category: chance agreement is 1
            pairs.append(
                {
                    "raters": [ra, rb],
                    "n": len(common),
                    "kappa": None if undefined else cohen_kappa(a, b),
                    "raw_agreement": float(np.mean(np.array(a) == np.array(b))),
                }
            )
    kappas = [p["kappa"] for p in pairs if p["kappa"] is not None]
    return {
        "items_multi_rated": len(multi),
        "cohen_kappa": float(np.mean(kappas)) if kappas else None,
        "cohen_pairs": pairs,
        "fleiss_kappa": fleiss_kappa(table) if len(multi) else None,
        "krippendorff_alpha": krippendorff_alpha_nominal([list(r.values()) for r in multi.values()]),
        "raw_agreement": _raw_agreement(table) if len(multi) else None,
    }


def _raw_agreement(table: np.ndarray) -> float:
    """Mean over items of the share of rater pairs that agree."""
    n_i = table.sum(axis=1)
    return float(np.mean((table * (table - 1)).sum(axis=1) / (n_i * (n_i - 1))))


# --------------------------------------------------------------------------------------------------------------
# Breakdowns


def by_category(res: list[Outcome], models: list[str], boot: Resampler) -> dict:
    """Per category and model: win rate against all opponents (ties and both_wrong half), its CI, and how often
    the rater found both answers wrong."""
    cats: dict[str, list[Outcome]] = defaultdict(list)
    for o in res:
        cats[o.category].append(o)
    out = {}
    for cat, rows in cats.items():
        entry = {"n_ratings": len(rows), "models": {}}
        for m in models:
            num: dict[str, float] = defaultdict(float)
            den: dict[str, float] = defaultdict(float)
            bw = 0
            for o in rows:
                if m not in (o.x, o.y):
                    continue
                num[o.id] += o.x_score if m == o.x else 1 - o.x_score
                den[o.id] += 1
                bw += o.result == "both_wrong"
            n = int(sum(den.values()))
            if n:
                entry["models"][m] = {
                    "win_rate": sum(num.values()) / n,
                    "ci": boot.ratio(num, den),
                    "n": n,
                    "both_wrong_rate": bw / n,
                }
        out[cat] = entry
    return out


def by_slot(res: list[Outcome], models: list[str], slots: list[str], boot: Resampler) -> dict:
    """Per model and slot: share of the raters' per-slot judgements that said 'right', with CI and n."""
    out: dict[str, dict] = {}
    for m in models:
        per: dict[str, dict] = {}
        for s in slots:
            num: dict[str, float] = defaultdict(float)
            den: dict[str, float] = defaultdict(float)
            for o in res:
                v = (o.slots.get(m) or {}).get(s)
                if v is not None:
                    num[o.id] += float(v)
                    den[o.id] += 1
            n = int(sum(den.values()))
            per[s] = {"rate": sum(num.values()) / n if n else None, "ci": boot.ratio(num, den) if n else None, "n": n}
        out[m] = per
    return out


# --------------------------------------------------------------------------------------------------------------
# Metric agreement


def metric_agreement(res: list[Outcome], scores: dict[str, dict[str, dict[str, float]]], boot: Resampler) -> dict:
    """scores: metric -> model -> test id -> score (NaN = none). Per metric: agree_rate + CI + n over ratings with a
    human winner, Kendall tau-b (and p) between s(x) - s(y) and the human outcome over all ratings."""
    from scipy.stats import kendalltau

    out = {}
    for metric, table in scores.items():
        num: dict[str, float] = defaultdict(float)
        den: dict[str, float] = defaultdict(float)
        diffs, humans = [], []
        metric_ties = 0
        for o in res:
            sx = table.get(o.x, {}).get(o.id, math.nan)
            sy = table.get(o.y, {}).get(o.id, math.nan)
            d = sx - sy
            if math.isnan(d):
                continue
            diffs.append(d)
            humans.append(o.human)
            if o.human == 0:
                continue
            agree = 0.5 if d == 0 else float(np.sign(d) == o.human)
            metric_ties += d == 0
            num[o.id] += agree
            den[o.id] += 1
        n = int(sum(den.values()))
        tau = p = None
        if len(diffs) >= 2 and len(set(diffs)) > 1 and len(set(humans)) > 1:
            r = kendalltau(diffs, humans)
            tau, p = _f(r.statistic), _f(r.pvalue)
        out[metric] = {
            "agree_rate": sum(num.values()) / n if n else None,
            "ci": boot.ratio(num, den) if n else [None, None],
            "n": n,
            "metric_ties": int(metric_ties),
            "kendall_tau": tau,
            "kendall_p": p,
            "n_tau": len(diffs),
        }
    return out


__all__ = [
    "Outcome",
    "Resampler",
    "agreement",
    "bradley_terry",
    "bt_fit",
    "by_category",
    "by_slot",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "metric_agreement",
    "outcomes",
    "win_rates",
]
