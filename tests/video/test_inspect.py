"""`vmeta video inspect`: JSON with frame_indices / size / tokens, and a contact sheet of exactly those frames."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vmeta.cli import app
from vmeta.video.decode import load_video
from vmeta.video.sampling import FrameSettings

runner = CliRunner()


def test_inspect_json_and_sheet(tmp_path, video_clips):
    clip = video_clips["landscape_gop12"]
    sheet = tmp_path / "sheet.png"
    res = runner.invoke(app, ["video", "inspect", str(clip), "--nframes", "6", "--json", "--sheet", str(sheet)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    v = load_video(clip, FrameSettings(nframes=6))
    assert data["frame_indices"] == v.indices
    assert (data["output_height"], data["output_width"]) == v.size
    assert data["tokens"] == (6 // 2) * (v.size[0] // 14) * (v.size[1] // 14) // 4
    assert data["probe"]["frames"] == 75
    from PIL import Image

    with Image.open(sheet) as im:
        assert im.width > 0 and im.height > 0


def test_inspect_segment_middle_frames(video_clips):
    clip = video_clips["landscape_gop12"]  # 75 frames
    res = runner.invoke(
        app, ["video", "inspect", str(clip), "--nframes", "6", "--index-rule", "segment_middle", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["frame_indices"] == [6, 18, 31, 43, 56, 68]  # middles of 6 segments of 12.5
    res = runner.invoke(app, ["video", "inspect", str(clip), "--index-rule", "middle"])
    assert res.exit_code != 0 and "index_rule" in str(res.exception)


def test_inspect_rotated_reports_upright_size(rotated_clip):
    res = runner.invoke(app, ["video", "inspect", str(rotated_clip), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["output_height"] > data["output_width"]


def test_inspect_bad_settings_and_files(tmp_path, bad_videos):
    from vmeta.cli import main  # noqa: F401 - main() turns UserError into one line; CliRunner shows the exception

    res = runner.invoke(app, ["video", "inspect", str(bad_videos["not_video"])])
    assert res.exit_code != 0 and "not_video.mp4" in str(res.exception)
    res = runner.invoke(app, ["video", "inspect", str(bad_videos["zero_byte"]), "--max-pixels", "10"])
    assert res.exit_code != 0 and "max_pixels" in str(res.exception)
