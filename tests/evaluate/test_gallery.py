"""The case gallery (`vmeta compare --gallery N`, `vmeta eval --gallery N`) and compare.html's plot titles."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from evaldata import SAMPLES, write_predictions
from typer.testing import CliRunner

from vmeta.cli import app
from vmeta.errors import UserError
from vmeta.testing import media

runner = CliRunner()
HOSTILE = '<script>alert("x")</script> & <b>bold</b>'


class Page(HTMLParser):
    """What the tests read from gallery.html: cases, score cells, slot spans, posters and videos."""

    def __init__(self, text: str):
        super().__init__()
        self.cases: list[dict] = []
        self.scores: list[dict] = []
        self.slots: list[dict] = []
        self.h3: list[str] = []
        self._slot: dict | None = None
        self._cell: dict | None = None
        self._h3 = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "case" in a.get("class", ""):
            self.cases.append({"id": a["data-id"], "category": a["data-category"], "img": None, "video": None})
        elif tag == "img" and self.cases:
            self.cases[-1]["img"] = a["src"]
        elif tag == "video" and self.cases:
            self.cases[-1]["video"] = a["src"]
            self.cases[-1]["img"] = a.get("poster")
        elif tag == "td" and "data-metric" in a:
            self._cell = {"case": self.cases[-1]["id"], "run": a["data-run"], "metric": a["data-metric"]}
            self._cell |= {"value": float(a["data-value"]), "best": "best" in a["class"], "text": ""}
        elif tag == "span" and "data-slot" in a:
            self._slot = {"case": self.cases[-1]["id"] if self.cases else None, "slot": a["data-slot"], "text": ""}
        elif tag == "h3":
            self._h3 = True
            self.h3.append("")

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.scores.append(self._cell)
            self._cell = None
        elif tag == "span" and self._slot is not None:
            self.slots.append(self._slot)
            self._slot = None
        elif tag == "h3":
            self._h3 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._slot is not None:
            self._slot["text"] += data
        if self._h3:
            self.h3[-1] += data


def build_dataset(root: Path) -> Path:
    """The evaluation samples as a dataset folder with a tiny video each (v005's file is missing)."""
    from vmeta.dataset.records import Dataset, Record, SourceRef

    records = []
    for i, (cat, ref, _, _) in enumerate(SAMPLES):
        video = f"videos/视频 {i:03d}.mp4"  # a space and Chinese: the page must quote the URL
        if i != 5:
            media.make_clip(root / video, 64, 48, fps=8, seconds=1.0, audio=False, seed=i)  # H.264: browsers play it
        rec = Record(
            id=f"v{i:03d}",
            video=video,
            category=cat,
            raw_label=ref,
            label=ref,
            source=SourceRef(sheet="s.csv", row=i + 2),
        )
        records.append(rec)
    Dataset(root).save(records)
    return root


def _eval(pred: Path, out: Path, encoder: Path, *extra: str) -> None:
    args = ["eval", str(pred), "--out", str(out), "--bert-model", str(encoder), "--bert-layer", "2"]
    result = runner.invoke(app, [*args, "--bootstrap", "50", *extra])
    assert result.exit_code == 0, (result.output, result.exception)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_encoder):
    """Two evaluated runs over the same ten ids; run 'zs' answers v001 with HTML in it."""
    d = tmp_path_factory.mktemp("gallery")
    ft = write_predictions(d / "ft.jsonl", 2, adapter="lora")
    zs = write_predictions(d / "zs.jsonl", 3, transform=lambda i, s: HOSTILE if i == 1 else s[3])
    for name, pred in (("ft", ft), ("zs", zs)):
        _eval(pred, d / name, tiny_encoder)
    return d


def test_gallery_cases_scores_slots_and_escaping(runs, tmp_path):
    from vmeta.evaluate.metrics import bleu4_chars, rougeL_jieba

    data = build_dataset(tmp_path / "ds")
    out = tmp_path / "cmp"
    args = ["compare", str(runs / "ft"), str(runs / "zs"), "--out", str(out), "--bootstrap", "50"]
    result = runner.invoke(app, [*args, "--gallery", "1", "--data", str(data), "--seed", "3"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "gallery.html" in result.output
    text = (out / "gallery.html").read_text(encoding="utf-8")
    page = Page(text)

    # one video per category (each category has two), in the thesis' category order
    assert [case["category"] for case in page.cases] == ["讽刺类", "诙谐类", "生活态度类", "硬核类", "自嘲幽默类"]
    by_id = {f"v{i:03d}": s for i, s in enumerate(SAMPLES)}
    for case in page.cases:
        assert by_id[case["id"]][0] == case["category"]

    # scores: the numbers `vmeta eval` wrote, equal to the reference functions for BLEU-4 / ROUGE-L
    samples = {
        name: {s["id"]: s for s in map(json.loads, (runs / name / "samples.jsonl").read_text("utf-8").splitlines())}
        for name in ("ft", "zs")
    }
    assert {c["metric"] for c in page.scores} == {"bertscore", "bleu4", "rougeL"}
    assert len(page.scores) == 5 * 2 * 3
    for cell in page.scores:
        s = samples[cell["run"]][cell["case"]]
        assert cell["value"] == pytest.approx(s["scores"][cell["metric"]], abs=1e-9)
        assert cell["text"] == f"{cell['value']:.2f}"
        if cell["metric"] == "bleu4":
            assert cell["value"] == pytest.approx(bleu4_chars(s["output"], s["reference"]), abs=1e-4)
        if cell["metric"] == "rougeL":
            assert cell["value"] == pytest.approx(rougeL_jieba(s["output"], s["reference"]), abs=1e-4)
    for case in page.cases:  # bold = the better of the two answers
        for metric in ("bleu4", "rougeL", "bertscore"):
            cells = {c["run"]: c for c in page.scores if c["case"] == case["id"] and c["metric"] == metric}
            top = max(c["value"] for c in cells.values())
            assert {r for r, c in cells.items() if c["best"]} == {r for r, c in cells.items() if c["value"] == top}

    # slots highlighted: the reference's core concept and emotion of every case, as the parser finds them
    from vmeta.dataset.template import parse

    for case in page.cases:
        ref_slots = parse(by_id[case["id"]][1]).slots
        shown = {(s["slot"], s["text"]) for s in page.slots if s["case"] == case["id"]}
        assert ("concept", ref_slots["concept"]) in shown and ("emotion", ref_slots["emotion"]) in shown

    # posters: a JPEG per case that has a video file, beside the page; the video link reaches the file
    for case in page.cases:
        if case["id"] == "v005":
            assert case["img"] is None and case["video"] is None
            continue
        assert (out / case["img"]).read_bytes()[:2] == b"\xff\xd8"
        assert "%20" in case["video"] and (out / unquote(case["video"])).resolve().is_file()


def test_gallery_escapes_answers_and_is_seeded(runs, tmp_path):
    out = tmp_path / "g"
    args = ["compare", str(runs / "ft"), str(runs / "zs"), "--out", str(out), "--bootstrap", "20"]
    result = runner.invoke(app, [*args, "--gallery", "5"])
    assert result.exit_code == 0, (result.output, result.exception)
    text = (out / "gallery.html").read_text(encoding="utf-8")
    page = Page(text)
    assert len(page.cases) == 10  # 5 asked, 2 per category exist
    assert "<script>" not in text and "<b>bold</b>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "not in the five-slot template" in text
    assert all(c["img"] is None for c in page.cases)  # no dataset known: no frames, said so
    assert "pass --data DATASET" in text

    from vmeta.evaluate.compare import load_runs
    from vmeta.evaluate.gallery import choose_cases

    loaded = load_runs([runs / "ft", runs / "zs"])
    picks = {seed: choose_cases(loaded, 1, seed) for seed in range(6)}
    assert picks[0] == choose_cases(loaded, 1, 0)
    assert len({json.dumps(p) for p in picks.values()}) > 1  # the seed changes the choice
    with pytest.raises(UserError, match="positive number"):
        choose_cases(loaded, 0)


def test_gallery_needs_out_and_a_real_dataset(runs, tmp_path):
    result = runner.invoke(app, ["compare", str(runs / "ft"), "--gallery", "2"])
    assert isinstance(result.exception, UserError) and "--out" in str(result.exception)
    args = ["compare", str(runs / "ft"), "--out", str(tmp_path / "o"), "--gallery", "2", "--data", str(tmp_path)]
    result = runner.invoke(app, args)
    assert isinstance(result.exception, UserError) and "no records.jsonl" in str(result.exception)


def test_eval_gallery(tmp_path, tiny_encoder):
    pred = write_predictions(tmp_path / "p.jsonl", 2)
    _eval(pred, tmp_path / "e", tiny_encoder, "--gallery", "1")
    page = Page((tmp_path / "e" / "gallery.html").read_text(encoding="utf-8"))
    assert len(page.cases) == 5 and {c["run"] for c in page.scores} == {"e"}


def test_compare_html_titles_say_what_each_plot_shows(runs, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(runs / "ft"), str(runs / "zs"), "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    text = (out / "compare.html").read_text(encoding="utf-8")
    titles = Page(text).h3
    assert len(titles) == 4
    assert not [t for t in titles if t.endswith(".png")]
    assert not any(name in text for name in ("bars.png", "heatmap_bleu4.png", ">heatmap_"))
    assert "Mean score of each run with its 95% CI (BERT-F1, BLEU-4, ROUGE-L)" in titles
    assert "BLEU-4 by category: mean per run and category" in titles

    # categories are drawn as the tables name them (Chinese) when a CJK font exists, English only without one
    from vmeta.evaluate import plots

    monkeypatch.setattr("vmeta.plotting.find_cjk_font", lambda: "WenQuanYi Micro Hei")
    assert plots.category_label("讽刺类") == "讽刺类"
    monkeypatch.setattr("vmeta.plotting.find_cjk_font", lambda: None)
    assert plots.category_label("讽刺类") == "satire"
