"""Test data for the rating-study tests: six test ids in three categories with a reference and three
hand-written outputs shaped like `vmeta predict` rows: 'good' (close to the reference), 'mid' (right concept,
loose wording) and 'bad' (off the template)."""

from __future__ import annotations

import json
from pathlib import Path

# (id, category, reference, good, mid, bad)
ROWS = [
    (
        "t01",
        "讽刺类",
        "本视频讲述了打工人加班到深夜还被老板画大饼的场景。“画大饼”出自职场流行语，其因为老板只许诺不兑现的行为，表达出了对职场空头承诺的讽刺与无奈。",
        "本视频讲述了员工深夜加班时老板描绘美好未来的场景。“画大饼”出自职场流行语，其因为老板只许诺不兑现，表达出了对职场空头承诺的讽刺。",
        "本视频讲述了办公室里的加班。“画大饼”出自网络，其因为老板说了很多话，表达出了无奈。",
        "这段视频展示了一个办公室，几个人在电脑前工作。",
    ),
    (
        "t02",
        "讽刺类",
        "本视频讲述了网红景点排队三小时拍照五分钟的现象。“打卡”出自考勤制度，其因为被赋予到热门地点拍照留念的新含义，表达出了对盲目跟风的讽刺态度。",
        "本视频讲述了游客在网红景点排长队拍照的现象。“打卡”出自考勤制度，其因为被赋予了去热门地点拍照的新含义，表达出了对盲目跟风的讽刺。",
        "本视频讲述了旅游。“排队”出自生活，其因为人很多，表达出了烦躁。",
        "本视频讲述了[视频内容]。[核心概念]出自[出处]，其因为[特征/新含义/事件]，表达出了[情绪/态度]。",
    ),
    (
        "t03",
        "诙谐类",
        "本视频讲述了猫咪假装没看见主人叫它的搞笑片段。“已读不回”出自社交软件的聊天场景，其因为猫咪听见却故意无视主人，表达出了轻松诙谐的调侃态度。",
        "本视频讲述了一只猫听到主人呼唤却装作没听见。“已读不回”出自社交软件的聊天场景，其因为猫明明听到了却不理主人，表达出了轻松诙谐的调侃态度。",
        "本视频讲述了一只猫。“已读不回”出自聊天，其因为猫不理人，表达出了调侃。",
        "视频里一只橘猫趴在沙发上，主人喊它名字，它没有反应。",
    ),
    (
        "t04",
        "诙谐类",
        "本视频讲述了男子用红酒洗头的荒诞行为。“避雷”出自现实生活中的防雷概念，其因为被赋予避开不良事物的新含义，表达出了网友戏谑劝诫的态度。",
        "本视频讲述了男子用红酒洗头的荒诞行为。“避雷”出自网络流行文化，其因为被赋予避开不良事物的新含义，表达出了戏谑的态度。",
        "本视频讲述了一个男人洗头。“红酒”出自法国，其因为红酒很贵，表达出了奢侈。",
        "本视频讲述了一个男人洗头。",
    ),
    (
        "t05",
        "硬核类",
        "本视频讲述了工程师徒手修复老式收音机的过程。“硬核”出自游戏圈对高难度内容的称呼，其因为被用来形容专业、强悍的技术能力，表达出了对专业精神的敬佩。",
        "本视频讲述了一位师傅修理老旧收音机的全过程。“硬核”出自游戏圈，其因为被用来形容专业、强悍的技术能力，表达出了对专业精神的敬佩。",
        "本视频讲述了修收音机。“硬核”出自游戏，其因为很厉害，表达出了佩服。",
        "A man repairs an old radio. 硬核 means hardcore.",
    ),
    (
        "t06",
        "硬核类",
        "本视频讲述了外卖小哥在暴雨中准时送达的经历。“硬核”出自游戏术语，其因为形容在极端条件下依然完成任务的强悍，表达出了对普通劳动者的敬意。",
        "本视频讲述了外卖员冒着大雨送餐的故事。“硬核”出自游戏术语，其因为形容在恶劣环境中坚持完成任务，表达出了对劳动者的尊敬。",
        "本视频讲述了外卖。“送餐”出自外卖平台，其因为下雨，表达出了辛苦。",
        "",
    ),
]
MODELS = ("good", "mid", "bad")


def write_preds(path: Path, which: str, *, ids: list[str] | None = None, errors: set[str] = frozenset()) -> Path:
    col = 3 + MODELS.index(which)
    lines = []
    for row in ROWS:
        if ids is not None and row[0] not in ids:
            continue
        obj = {
            "id": row[0],
            "category": row[1],
            "prompt": "理解视频的隐喻内容",
            "reference": row[2],
            "output": row[col],
            "model": "tiny-qwen2-vl",
            "adapter": which,
        }
        if row[0] in errors:
            obj["error"] = "video could not be read"
        lines.append(json.dumps(obj, ensure_ascii=False) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path
