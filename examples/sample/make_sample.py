"""Regenerate the sample dataset inputs: videos/*.mp4, sheet.xlsx and sheet.csv (shaped like thesis table 3.1).

    python examples/sample/make_sample.py            # writes next to this file
    python examples/sample/make_sample.py OUT_DIR    # or somewhere else

The videos are tiny generated portrait clips (144x256, 2 s, 15 fps, with a test tone): stand-ins for real
short videos, so the labels describe what the annotators saw in the originals, not these pictures.
The last three rows are deliberately bad (missing video, unknown category, empty label) so that
`vmeta data build` shows its rejects.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HEADERS = ["短视频文件名", "类别", "隐喻解释"]
TITLE = "表 3.1 原始 Excel 样本数据"

# (file name as the annotator wrote it, category, metaphor explanation). Texts adapted from thesis table 3.1.
ROWS: list[tuple[str, str, str]] = [
    (
        "自嘲幽默类_1",
        "自嘲幽默类",
        "视频中的作者在进行立定跳远，在跳跃过程中手机从口袋中掉落，恰巧掉落在作者落脚的地方，导致作者没有站稳而摔倒。"
        "作者本人给视频的标题带有“神操作”、“猎奇”的 tag，充满了自嘲的意味。",
    ),
    (
        "自嘲幽默类_2.mp4",
        "自嘲幽默类",
        "本视频讲述了作者第一次下厨把锅烧糊后自封“厨房杀手”。“厨房杀手”出自网络流行语，"
        "其因为作者把自己的失败夸张成了战绩，表达出了自嘲与乐观的态度。",
    ),
    (
        "诙谐类_47",
        "诙谐类",
        "哈基米是日语“蜂蜜水”的发音，因被当做 BGM 用于各类猫猫萌宠视频中而走红，后成为一切“可爱事物”的代称。",
    ),
    (
        "诙谐类_12.mp4 ",  # a trailing space, as annotators leave them
        "诙谐",  # a short spelling of 诙谐类: accepted
        "视频中小狗听到“洗澡”两个字立刻躺下装睡，配文“已读不回”，把人类社交中的敷衍用在了狗身上，令人捧腹。",
    ),
    (
        "硬核类_1",
        "硬核类",
        "视频中的作者是一名在读中学生，画面记录了两个场景，一个是“住宿生回宿舍的路”，画面阴暗、灯光呈现冷色调；"
        "另一个是“住宿生回家的路”，画面温馨、灯光呈现暖色调。作者配文“阴阳两隔”，"
        "从侧面硬核地表达了中学生两种不同的居住生活所体现的精神状态。",
    ),
    (
        "硬核类_8",
        "硬核类",
        "本视频讲述了外卖小哥在暴雨中把餐准时送达。“使命必达”出自快递行业的服务口号，"
        "其因为他冒雨坚持、分秒必争，表达出了敬业与硬核的态度。",
    ),
    (
        "生活态度类_21",
        "生活态度类",
        "松弛感指面对压力时从容应对、善待自己、不慌张、不焦虑的心理状态，倡导一种轻松、自在的生活态度。",
    ),
    (
        "生活态度类_5",
        "生活态度类",
        "视频中年轻人下班后在城市街头随意散步，配文“City Walk”，倡导用低成本的方式发现身边的美好，表达出对慢生活的向往。",
    ),
    (
        "讽刺类_27",
        "讽刺类",
        "视频主题为“太感动了，以后僵尸肉只卖给大学生”，讽刺了网络上挂羊头卖狗肉，以量大好吃为卖点，"
        "骗取大家的信任，贩卖僵尸肉给孩子们。",
    ),
    (
        "讽刺类_3",
        "讽刺类",
        "视频中博主用夸张的滤镜把普通小吃拍成“米其林大餐”，讽刺了网红探店过度包装、名不副实的现象。",
    ),
    # deliberately bad rows
    ("讽刺类_99", "讽刺类", "视频中的商家先涨价再打折，讽刺了“先涨后降”的促销套路。"),  # no such video
    ("诙谐类_30", "搞笑类", "视频中猫咪把主人的拖鞋藏进纸箱，配文“我的我的都是我的”。"),  # unknown category
    ("生活态度类_9", "生活态度类", ""),  # empty label
]
MISSING = {"讽刺类_99"}  # rows whose video is deliberately absent


def video_names() -> list[str]:
    names = []
    for name, _cat, _label in ROWS:
        stem = name.strip().removesuffix(".mp4")
        if stem not in MISSING:
            names.append(stem + ".mp4")
    return names


def make_videos(videos_dir: Path) -> list[Path]:
    from vmeta.testing.media import make_clip

    videos_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for seed, name in enumerate(video_names()):
        out.append(
            make_clip(
                videos_dir / name,
                144,
                256,
                fps=15,
                seconds=2.0,
                audio=True,
                options={"crf": "42", "preset": "medium"},
                seed=seed,
            )
        )
    return out


def write_csv(path: Path) -> None:
    # UTF-8 with a BOM: what Excel writes for "CSV UTF-8", and what it needs to open Chinese text correctly.
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([TITLE, "", ""])
        w.writerow(HEADERS)
        w.writerows(ROWS)


def write_xlsx(path: Path) -> None:
    import openpyxl
    from openpyxl.styles import Alignment, Font

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "样本数据"
    ws.append([TITLE])
    ws.merge_cells("A1:C1")
    ws["A1"].font = Font(bold=True)
    ws["A1"].alignment = Alignment(horizontal="center")
    ws.append(HEADERS)
    for row in ROWS:
        ws.append(list(row))
    ws.column_dimensions["A"].width = 18
    ws.column_dimensions["B"].width = 12
    ws.column_dimensions["C"].width = 90
    wb.save(path)


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = make_videos(out_dir / "videos")
    write_csv(out_dir / "sheet.csv")
    write_xlsx(out_dir / "sheet.xlsx")
    total = sum(p.stat().st_size for p in videos)
    print(f"{len(videos)} videos ({total / 1024:.0f} KiB), {len(ROWS)} rows -> {out_dir}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
