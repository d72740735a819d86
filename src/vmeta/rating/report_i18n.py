"""The rating report's words in each language it is written in (``--lang zh|en``): headings, notes, column
names, and how a category or a metric is named. One table per language, so adding a language is adding a table.
"""

from __future__ import annotations

from vmeta.dataset.categories import CATEGORIES
from vmeta.errors import UserError
from vmeta.evaluate.report import ALL_LABELS
from vmeta.rating.scores import JUDGE_KEY

LANGS = ("zh", "en")

TEXT = {
    "zh": {
        "title": "人工评测报告",
        "summary": "研究概况",
        "models": "模型",
        "model": "模型",
        "ids": "测试样本",
        "items": "评测条目",
        "ratings": "评分",
        "raters": "评分人",
        "design": "设计",
        "no_ratings": "这个研究还没有任何评分。请先用 `vmeta rate serve {root}` 收集评分，或用 `vmeta rate import {root} FILE` 导入，然后再生成报告。",
        "win_rates": "两两胜率",
        "win_rates_note": "A 胜率 = (A 胜 + 0.5 × (平局 + 都错)) / 评分数；[95% 置信区间] 由按测试样本重抽样的自助法得到。",
        "pair": "模型对 (A vs B)",
        "a_wins": "A 胜",
        "b_wins": "B 胜",
        "ties": "平局",
        "both_wrong": "都错",
        "a_rate": "A 胜率 [95% CI]",
        "bt": "Bradley–Terry 排名",
        "bt_note": "分数为类 Elo 刻度：1000 + 400 × log10(强度)，各模型平均为 1000；相差 400 分 = 10:1 的胜算（Chatbot Arena 的方法）。",
        "bt_prior": "注意：最大似然估计不存在（某个模型对一组模型全胜或全负），已为每对模型加入一场虚拟平局。",
        "rank": "名次",
        "score": "分数 [95% CI]",
        "log_strength": "对数强度",
        "agreement": "评分人一致性",
        "agreement_note": "基于至少两人评过的条目（{n} 个），四选一结果（按名称排序的模型对中前者胜 / 后者胜 / 平局 / 都错，与展示顺序无关）。",
        "no_multi": "没有被两人或以上评过的条目，无法计算一致性。",
        "cohen": "Cohen's kappa（评分人两两平均）",
        "fleiss": "Fleiss' kappa",
        "alpha": "Krippendorff's alpha（名义）",
        "raw": "原始一致率",
        "metrics": "自动指标与人工偏好的一致性",
        "metrics_note": "只统计有胜者的评分（平局、都错除外）：指标给胜者的分数更高记 1，相等记 0.5（机会水平 0.5），否则 0。Kendall tau-b：指标分差与人工结果（+1/−1/0）之间的秩相关。",
        "metric": "指标",
        "agree": "一致率 [95% CI]",
        "tau": "Kendall tau-b",
        "by_category": "分类别胜率",
        "category": "类别",
        "by_slot": "分槽位判断（判为正确的比例）",
        "slot_names": {"core_concept": "核心概念", "source": "出处", "emotion": "情绪/态度"},
        "no_slots": "评分人没有勾选任何槽位判断。",
        "notes": "说明",
        "plot_matrix": "胜率矩阵：行模型对列模型的胜率（平局计一半）",
        "plot_bt": "Bradley–Terry 分数及 95% 置信区间",
        "plot_metrics": "各自动指标与人工偏好的一致率（虚线 = 机会水平 50%）",
        "measure": "一致性指标",
        "value": "值",
        "row_vs_col": "行 vs 列",
        "agree_rate": "一致率",
        "human_ratings": "人工评分文件（供 LLM 评审一致性使用）",
    },
    "en": {
        "title": "Human evaluation report",
        "summary": "Study",
        "models": "models",
        "model": "model",
        "ids": "test ids",
        "items": "items",
        "ratings": "ratings",
        "raters": "raters",
        "design": "design",
        "no_ratings": "This study has no ratings yet. Collect some with `vmeta rate serve {root}` or bring them in with `vmeta rate import {root} FILE`, then run the report again.",
        "win_rates": "Win rates per pair",
        "win_rates_note": "A win rate = (A wins + 0.5 × (ties + both wrong)) / ratings; [95% CI] from a bootstrap that resamples test ids.",
        "pair": "pair (A vs B)",
        "a_wins": "A wins",
        "b_wins": "B wins",
        "ties": "ties",
        "both_wrong": "both wrong",
        "a_rate": "A win rate [95% CI]",
        "bt": "Bradley–Terry ranking",
        "bt_note": "Scores on the Elo-like scale 1000 + 400 × log10(strength), mean 1000; a 400-point gap = 10:1 odds (the Chatbot Arena method).",
        "bt_prior": "Note: the maximum-likelihood estimate does not exist (a model won or lost every comparison with a group of models); one virtual tie per pair of models was added.",
        "rank": "rank",
        "score": "score [95% CI]",
        "log_strength": "log-strength",
        "agreement": "Inter-rater agreement",
        "agreement_note": "On the items rated by two or more people ({n}), 4-way outcome (the pair's first model by name wins / the second wins / tie / both wrong, whatever order was shown).",
        "no_multi": "No item was rated by two or more people, so agreement cannot be computed.",
        "cohen": "Cohen's kappa (mean over rater pairs)",
        "fleiss": "Fleiss' kappa",
        "alpha": "Krippendorff's alpha (nominal)",
        "raw": "raw agreement",
        "metrics": "Agreement of automatic metrics with human preference",
        "metrics_note": "Over ratings with a winner (ties and both-wrong left out): 1 when the metric scores the winner higher, 0.5 when it scores both the same (chance level 0.5), else 0. Kendall tau-b: rank correlation of the metric difference with the human outcome (+1/−1/0).",
        "metric": "metric",
        "agree": "agree rate [95% CI]",
        "tau": "Kendall tau-b",
        "by_category": "Win rate by category",
        "category": "category",
        "by_slot": "Per-slot judgements (share judged right)",
        "slot_names": {"core_concept": "core concept", "source": "source", "emotion": "emotion"},
        "no_slots": "The raters ticked no per-slot judgement.",
        "notes": "Notes",
        "plot_matrix": "Win-rate matrix: row model's win rate against column model (ties half)",
        "plot_bt": "Bradley–Terry scores with 95% CIs",
        "plot_metrics": "Agreement of each automatic metric with human preference (dashed = chance, 50%)",
        "measure": "measure",
        "value": "value",
        "row_vs_col": "row vs column",
        "agree_rate": "agree rate",
        "human_ratings": "Human-rated files (for the LLM judge's agreement)",
    },
}


def texts(lang: str) -> dict:
    """The words of `lang`; a UserError naming the languages there are."""
    if lang not in LANGS:
        raise UserError(f"--lang '{lang}' is not available; choose {' or '.join(LANGS)}.")
    return TEXT[lang]


def category_label(cat: str, lang: str) -> str:
    if lang == "en" and cat in CATEGORIES:
        return f"{CATEGORIES[cat][0]} ({cat})"
    return cat


def metric_label(metric: str, lang: str) -> str:
    if metric == JUDGE_KEY:
        return "LLM 评审 loose 分" if lang == "zh" else "LLM judge loose score"
    return ALL_LABELS.get(metric, metric)


__all__ = ["LANGS", "TEXT", "category_label", "metric_label", "texts"]
