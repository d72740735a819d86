"""The five-slot template: what annotators and LLMs write must parse, and render/parse must round-trip."""

import pytest

from vmeta.dataset import template as T

# Thesis Fig. 3.4 (a): an LLM answer with a "（说明：…）" tail.
LLM_WITH_NOTE = (
    '本视频讲述了一对情侣通过即兴舞蹈化解负面情绪的故事。"沙发舞"出自日常生活物品的非常规使用，'
    '其因为被赋予"手风琴"的象征意义（通过动作与音乐的配合实现情感宣泄），表达出了从压抑到欢快的情绪转变。 \n\n'
    '（说明：重构后严格遵循给定格式，将"搬沙发跳舞"提炼为"沙发舞"这一核心概念。）'
)
# Thesis Fig. 3.4 (b): reviewed label with a further sentence after the template.
REVIEWED_WITH_EXTRA = (
    '本视频讲述了一对情侣男生情绪低落，女生通过即兴搬沙发跳舞化解他的负面情绪的故事。"搬沙发跳舞"出自日常生活物品的非常规使用，'
    '其因为被赋予"手风琴"的象征意义，通过动作与音乐的配合实现情感宣泄，表达出了从压抑到欢快的情绪转变。'
    '视频通过"物品功能转化"和"音乐协同"实现隐喻升华。'
)


def test_parse_llm_answer_flags_and_strips_note():
    p = T.parse(LLM_WITH_NOTE)
    assert p.ok and not p.strict
    assert p.slots["concept"] == "沙发舞"  # quotes are decoration
    assert p.slots["content"] == "一对情侣通过即兴舞蹈化解负面情绪的故事"
    assert p.slots["feature"].startswith("被赋予")
    assert p.slots["emotion"] == "从压抑到欢快的情绪转变"
    assert p.note.startswith("（说明")
    assert "说明" not in T.strip_note(LLM_WITH_NOTE)
    assert T.strip_note(LLM_WITH_NOTE).endswith("情绪转变。")


def test_parse_keeps_commas_inside_slots_and_reports_extra_sentence():
    p = T.parse(REVIEWED_WITH_EXTRA)
    assert p.ok and not p.strict and not p.note
    assert "，女生通过" in p.slots["content"]
    assert p.slots["feature"] == '被赋予"手风琴"的象征意义，通过动作与音乐的配合实现情感宣泄'
    assert p.extra.startswith("视频通过")


def test_half_width_punctuation_spaces_and_mismatched_quotes():
    text = (
        "本视频讲述了 网络用语“避雷”的隐喻含义.  ”避雷”出自 现实生活中的防雷概念,其因为 被赋予新含义 , "
        "表达出了 网民警惕的实用态度."
    )
    p = T.parse(text)
    assert p.strict, p.to_dict()
    assert p.slots == {
        "content": "网络用语“避雷”的隐喻含义",
        "concept": "避雷",
        "source": "现实生活中的防雷概念",
        "feature": "被赋予新含义",
        "emotion": "网民警惕的实用态度",
    }


def test_variants_without_qi_and_with_biaoda_le():
    p = T.parse("本视频讲述了猫。哈基米出自日语，因为被用作BGM，表达了喜爱。")
    assert p.ok
    assert p.slots["source"] == "日语" and p.slots["feature"] == "被用作BGM" and p.slots["emotion"] == "喜爱"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("本视频讲述了芯片中的 AI。AI 出自 [出处]，因为 [特征/新含义/事件]，表达出了 [情绪/态度]。", "placeholders"),
        ("这段视频由几个部分组成。首先，视频开头显示了一个计算机芯片的特写镜头。", "missing"),
        ("本视频讲述了一只猫。", "missing"),
        ("本视频讲述了猫。哈基米出自日语，其因为被用作BGM。", "missing"),
        ("", "missing"),
    ],
)
def test_non_conforming_outputs_are_reported(text, problem):
    p = T.parse(text)
    assert not p.ok
    assert getattr(p, problem)


def test_decimal_point_does_not_end_the_emotion_slot():
    p = T.parse("本视频讲述了跳远。摔倒出自意外，其因为手机掉落，表达出了3.5分的自嘲。")
    assert p.slots["emotion"] == "3.5分的自嘲"


def test_render_parse_round_trip():
    slots = {
        "content": "作者立定跳远",
        "concept": "神操作",
        "source": "网络用语",
        "feature": "手机掉落",
        "emotion": "自嘲",
    }
    text = T.render(slots)
    assert text == "本视频讲述了作者立定跳远。神操作出自网络用语，其因为手机掉落，表达出了自嘲。"
    assert T.parse(text).strict and T.parse(text).slots == slots


def test_render_refuses_empty_slot():
    with pytest.raises(ValueError, match="concept"):
        T.render({"content": "a", "concept": " ", "source": "b", "feature": "c", "emotion": "d"})


def test_strip_template_words_removes_only_fixed_phrases():
    stripped = T.strip_template_words("本视频讲述了猫。哈基米出自日语，其因为走红，表达出了喜爱。")
    assert stripped == "猫。哈基米日语，走红，喜爱。"


def test_chuzi_inside_a_word_is_not_the_source_marker():
    p = T.parse(
        "本视频讲述了博主晒出自己的体重变化。“喝凉水都长肉”出自网络吐槽，其因为夸张地描述易胖体质，表达出了无奈。"
    )
    assert p.strict
    assert p.slots["content"] == "博主晒出自己的体重变化"
    assert p.slots["concept"] == "喝凉水都长肉"
    assert p.slots["source"] == "网络吐槽"
