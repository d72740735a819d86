"""End to end: a study of three prediction files rated by three simulated raters through the Study API (what the
page calls); the report's numbers equal values computed here independently — by counting, with statsmodels'
Logit / kappas, the `krippendorff` package, nltk's sentence_bleu and scipy's kendalltau."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
from ratingdata import ROWS

from vmeta.rating.report import build_report, human_rating_rows, write_report
from vmeta.rating.report_i18n import TEXT
from vmeta.rating.report_plots import plot_lang
from vmeta.rating.study import Study

krippendorff = pytest.importorskip("krippendorff")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
sm = pytest.importorskip("statsmodels.api")

STRENGTH = {"good": 3, "mid": 2, "bad": 1}
SLOT_TRUTH = {
    "good": {"core_concept": 1, "source": 1, "emotion": 1},
    "mid": {"core_concept": 1, "source": 0, "emotion": 1},
    "bad": {"core_concept": 0, "source": 0, "emotion": 0},
}


def preference(rater: str, test_id: str, x: str, y: str) -> str:
    """What a simulated rater picks for the pair (x, y): a model name, 'tie' or 'both_wrong'. Mostly the stronger
    model, with scripted disagreements so agreement is neither 0 nor 1."""
    if rater == "bob" and {x, y} == {"good", "mid"} and test_id in ("t01", "t02"):
        return "tie"
    if rater == "carol" and test_id in ("t03", "t05"):
        return min((x, y), key=STRENGTH.get)  # prefers the weaker answer
    if rater == "alice" and {x, y} == {"mid", "bad"} and test_id in ("t04", "t06"):
        return "both_wrong"
    return max((x, y), key=STRENGTH.get)


def simulate(study: Study, raters=("alice", "bob", "carol")) -> None:
    """Round-robin: each rater asks for the next item, reloads once (same item), and rates it as shown."""
    active = list(raters)
    while active:
        for rater in list(active):
            item = study.next_item(rater)
            if item is None:
                active.remove(rater)
                continue
            assert study.next_item(rater) == item  # a reload shows the same item
            a, b = study.shown_order(rater, item["item"])
            want = preference(rater, item["id"], a, b)
            choice = "a" if want == a else "b" if want == b else want
            slots = {"a": dict(SLOT_TRUTH[a]), "b": dict(SLOT_TRUTH[b])}
            if rater == "carol":
                slots["a"]["source"] = 1 - slots["a"]["source"]
            study.record(rater, item["item"], choice, slots, "", 5.0)


@pytest.fixture
def rated(study):
    simulate(study)
    return study


def test_simulated_raters_fill_the_design(rated):
    ratings = rated.ratings()
    per_item = Counter(r["item"] for r in ratings)
    assert len(per_item) == 18 and set(per_item.values()) == {2}  # every item twice, nobody twice on one item
    assert len({(r["rater"], r["item"]) for r in ratings}) == len(ratings) == 36
    assert all(rated.progress(r)["done"] == rated.progress(r)["total"] for r in ("alice", "bob", "carol"))
    # blind order: each model appears on both sides
    assert {r["model_a"] for r in ratings} == {"good", "mid", "bad"}
    assert {r["model_b"] for r in ratings} == {"good", "mid", "bad"}


def test_report_equals_independent_computation(rated):
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from scipy.stats import kendalltau

    report = build_report(rated, n_boot=200, seed=0)
    ratings = rated.ratings()

    # win rates: counted here
    for w in report["win_rates"]:
        rows = [r for r in ratings if {r["model_a"], r["model_b"]} == {w["a"], w["b"]}]
        c = Counter(r["winner"] for r in rows)
        assert (w["a_wins"], w["b_wins"], w["ties"], w["both_wrong"], w["n"]) == (
            c[w["a"]],
            c[w["b"]],
            c["tie"],
            c["both_wrong"],
            len(rows),
        )
        assert w["a_win_rate"] == pytest.approx((c[w["a"]] + 0.5 * (c["tie"] + c["both_wrong"])) / len(rows))
        assert w["ci"][0] <= w["a_win_rate"] <= w["ci"][1]
    assert {(w["a"], w["b"]) for w in report["win_rates"]} == {("bad", "good"), ("bad", "mid"), ("good", "mid")}

    # Bradley–Terry: statsmodels Logit on the Chatbot Arena design matrix
    models = rated.models
    k = {m: n for n, m in enumerate(models)}
    xs, ys = [], []
    for r in ratings:
        v = np.zeros(len(models))
        v[k[r["model_a"]]], v[k[r["model_b"]]] = 1, -1
        outcome = {r["model_a"]: [1, 1], r["model_b"]: [0, 0]}.get(r["winner"], [1, 0])
        for y in outcome:
            xs.append(v[1:])
            ys.append(y)
    ref = np.concatenate([[0.0], sm.Logit(np.array(ys), np.array(xs)).fit(disp=0, tol=1e-12).params])
    ref -= ref.mean()
    assert report["bradley_terry_fit"]["prior"] == 0.0  # the MLE exists here, so it must equal the Logit fit
    for e in report["bradley_terry"]:
        assert e["log_strength"] == pytest.approx(ref[k[e["model"]]], abs=1e-6)
        assert e["score"] == pytest.approx(1000 + 400 / math.log(10) * ref[k[e["model"]]], abs=1e-4)
    assert [e["model"] for e in report["bradley_terry"]] == ["good", "mid", "bad"]

    # agreement on the 4-way outcome in the item's frame (sorted pair)
    labels = ["first", "second", "tie", "both_wrong"]
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for r in ratings:
        x, y = sorted((r["model_a"], r["model_b"]))
        by_item[r["item"]][r["rater"]] = {x: "first", y: "second"}.get(r["winner"], r["winner"])
    counts = np.array([[list(v.values()).count(c) for c in labels] for v in by_item.values()])
    ag = report["agreement"]
    assert ag["items_multi_rated"] == 18
    assert ag["fleiss_kappa"] == pytest.approx(inter_rater.fleiss_kappa(counts))
    raters = ["alice", "bob", "carol"]
    rel = np.array([[labels.index(v[r]) if r in v else np.nan for v in by_item.values()] for r in raters])
    assert ag["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=rel, level_of_measurement="nominal")
    )
    kappas = []
    for i, ra in enumerate(raters):
        for rb in raters[i + 1 :]:
            table = np.zeros((4, 4))
            for v in by_item.values():
                if ra in v and rb in v:
                    table[labels.index(v[ra]), labels.index(v[rb])] += 1
            if table.sum():
                kappas.append(inter_rater.cohens_kappa(table, return_results=False))
    assert ag["cohen_kappa"] == pytest.approx(np.mean(kappas))

    # metric–human agreement for BLEU-4, from nltk directly
    ref_text = {row[0]: row[2] for row in ROWS}
    out_text = {m: {row[0]: row[3 + n] for row in ROWS} for n, m in enumerate(("good", "mid", "bad"))}

    def bleu(m, i):
        return 100 * sentence_bleu(
            [list(ref_text[i])], list(out_text[m][i]), smoothing_function=SmoothingFunction().method3
        )

    agree, diffs, humans = [], [], []
    for r in ratings:
        x, y = sorted((r["model_a"], r["model_b"]))
        d = bleu(x, r["id"]) - bleu(y, r["id"])
        h = {x: 1, y: -1}.get(r["winner"], 0)
        diffs.append(d)
        humans.append(h)
        if h:
            agree.append(0.5 if d == 0 else float(np.sign(d) == h))
    e = ag["metrics"]["bleu4"]
    assert e["n"] == len(agree) and e["agree_rate"] == pytest.approx(np.mean(agree))
    assert e["kendall_tau"] == pytest.approx(kendalltau(diffs, humans).statistic)
    assert set(ag["metrics"]) >= {"bleu4", "rougeL", "concept_exact", "concept_fuzzy", "emotion_fuzzy", "template_ok"}
    assert "bertscore" not in ag["metrics"]

    # per-slot rates: counted here
    for m in models:
        for s in ("core_concept", "source", "emotion"):
            vals = [r["slots"][m][s] for r in ratings if m in r["slots"]]
            assert report["by_slot"][m][s]["rate"] == pytest.approx(np.mean(vals))
            assert report["by_slot"][m][s]["n"] == len(vals)
    assert set(report["by_category"]) == {"讽刺类", "诙谐类", "硬核类"}


def test_report_files_and_json_keys(rated):
    write_report(rated, lang="zh", n_boot=100)
    out = rated.root / "report"
    for name in (
        "report.md",
        "report.html",
        "report.json",
        "win_rates.png",
        "bradley_terry.png",
        "metric_agreement.png",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for key in ("win_rates", "bradley_terry", "agreement", "by_category", "by_slot", "conventions", "study"):
        assert key in data
    assert set(data["win_rates"][0]) >= {"a", "b", "a_wins", "b_wins", "ties", "both_wrong", "n", "a_win_rate", "ci"}
    assert set(data["bradley_terry"][0]) >= {"model", "score", "ci"}
    assert set(data["agreement"]) >= {
        "cohen_kappa",
        "fleiss_kappa",
        "krippendorff_alpha",
        "items_multi_rated",
        "metrics",
    }
    assert set(data["agreement"]["metrics"]["rougeL"]) >= {"agree_rate", "ci", "n", "kendall_tau"}
    md = (out / "report.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "# 人工评测报告" in md and "两两胜率" in md and "Bradley–Terry" in md
    assert "<html lang='zh'>" in page and page.count("data:image/png;base64,") == 3
    # plots are titled by what they show, in the report's language (English only on a machine without a CJK font)
    assert TEXT[plot_lang("zh")]["plot_matrix"] in page
    assert "win_rates.png</" not in page
    write_report(rated, lang="en", n_boot=50, out_dir=rated.root / "report-en")
    assert "Win rates per pair" in (rated.root / "report-en" / "report.md").read_text(encoding="utf-8")


def test_human_ratings_files_read_by_the_judge(rated):
    from vmeta.evaluate.judge import agreement

    write_report(rated, n_boot=0)
    path = rated.root / "human_ratings" / "mid.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {r["id"] for r in rows} == {row[0] for row in ROWS}
    for r in rows:
        assert r["core_concept"] == 1 and r["emotion"] == 1
        assert "mapping" not in r and "loose" not in r
    # carol flips 'source' of the answer shown as A: with 2 raters per item an even split leaves it out
    rows_by_model = human_rating_rows(rated)
    assert all(r.get("source") in (None, 0, 1) for rs in rows_by_model.values() for r in rs)
    # the judge's agreement report reads the file as its human-rated JSONL
    verdicts = [
        {"id": r["id"], "verdict": {"core_concept": 1, "source": 0, "mapping": 1, "emotion": 1, "loose": 7}}
        for r in rows
    ]
    res = agreement(verdicts, path)
    assert res["n"] == len(rows) and res["raw_agreement"]["core_concept"] == 1.0
    assert res["cohen_kappa"]["mapping"] is None and res["spearman_loose"] is None


def test_report_with_bertscore_from_a_tiny_encoder(rated, tmp_path):
    from vmeta.evaluate.bertscore import BertScoreConfig
    from vmeta.evaluate.tiny_bert import build_char_bert

    texts = [t for row in ROWS for t in row[2:]]
    enc = build_char_bert(tmp_path / "bert", texts, max_length=128)
    report = build_report(rated, bert=BertScoreConfig(model=str(enc), num_layers=2, device="cpu"), n_boot=50)
    e = report["agreement"]["metrics"]["bertscore"]
    assert e["n"] > 0 and 0 <= e["agree_rate"] <= 1
    assert "hash" in report["bertscore"]


def test_judge_cache_scores(rated, tmp_path):
    from vmeta.evaluate.judge import cache_key

    cache = tmp_path / "judge.jsonl"
    lines = []
    loose = {"good": 9, "mid": 5, "bad": 1}
    for m in rated.models:
        for i in rated.ids:
            key = cache_key("judge-x", rated.reference(i), rated.answer(m, i))
            verdict = {"core_concept": 1, "source": 1, "mapping": 1, "emotion": 1, "loose": loose[m], "reason": ""}
            lines.append(json.dumps({"key": key, "model": "judge-x", "verdict": verdict}, ensure_ascii=False))
    cache.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = build_report(rated, judge_cache=cache, n_boot=50)
    e = report["agreement"]["metrics"]["judge_loose"]
    decided = [r for r in rated.ratings() if r["winner"] not in ("tie", "both_wrong")]
    agree = [r["winner"] == max((r["model_a"], r["model_b"]), key=loose.get) for r in decided]
    assert e["n"] == len(decided) and e["agree_rate"] == pytest.approx(np.mean(agree))


def test_report_without_ratings_says_so(study):
    report, files = write_report(study, n_boot=10)
    assert report["study"]["ratings"] == 0 and report["win_rates"] == [] and report["bradley_terry"] == []
    md = files["report.md"].read_text(encoding="utf-8")
    assert "还没有任何评分" in md and "vmeta rate serve" in md
    assert json.loads(files["report.json"].read_text(encoding="utf-8"))["agreement"]["cohen_kappa"] is None
    assert not (study.root / "human_ratings").exists()
