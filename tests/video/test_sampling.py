"""Frame indices and output sizes identical to qwen-vl-utils 0.0.14 `fetch_video` (decord backend)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from vmeta.video.container import plan_for_file
from vmeta.video.sampling import (
    FrameSettings,
    SamplingError,
    _torch_linspace_f32,
    frame_indices,
    plan_frames,
    smart_nframes,
    smart_resize,
)

SETTINGS = {
    "default": FrameSettings(),
    "fps1": FrameSettings(fps=1.0),
    "nframes8": FrameSettings(nframes=8),
    "small_max_pixels": FrameSettings(min_pixels=28 * 28 * 16, max_pixels=28 * 28 * 64),
    "total_pixels_budget": FrameSettings(total_pixels=2_000_000),
    "fps4_max_frames6": FrameSettings(fps=4.0, max_frames=6),
    "resized": FrameSettings(resized_height=200, resized_width=300),
}


def test_linspace_matches_torch_bit_for_bit():
    torch = pytest.importorskip("torch")
    rng = random.Random(0)
    ends = [*range(1, 400), *rng.sample(range(400, 300_000), 400)]
    for end in ends:
        for n in {2, 4, 8, 30, 120, 360, 768, rng.randrange(2, 769, 2)}:
            if n > end + 1:
                continue
            for start in (0, rng.randrange(0, max(1, end // 3))):
                want = torch.linspace(start, end, n).numpy()
                got = _torch_linspace_f32(start, end, n)
                assert np.array_equal(want, got), (start, end, n)
                assert frame_indices(start, end, n) == torch.linspace(start, end, n).round().long().tolist()


def test_smart_resize_and_nframes_match_qwen(qwen_vp):
    rng = random.Random(1)
    for _ in range(3000):
        h, w = rng.randrange(10, 4000), rng.randrange(10, 4000)
        if max(h, w) / min(h, w) > 200:
            continue
        lo = rng.choice([None, 3136, 100352, rng.randrange(1000, 200000)])
        hi = rng.choice([None, 602112, 16384 * 784, rng.randrange(200000, 3_000_000) + 0.5])
        assert smart_resize(h, w, 28, lo, hi) == qwen_vp.smart_resize(h, w, 28, lo, hi), (h, w, lo, hi)
    for _ in range(3000):
        total = rng.randrange(2, 20000)
        fps = rng.choice([24.0, 25.0, 30.0, 30000 / 1001, 60.0, rng.uniform(1, 120)])
        s = rng.choice(
            [
                FrameSettings(),
                FrameSettings(fps=rng.choice([0.5, 1.0, 3.0])),
                FrameSettings(min_frames=rng.randrange(1, 20), max_frames=rng.randrange(20, 900)),
                FrameSettings(nframes=rng.randrange(2, 40)),
            ]
        )
        ele = s.to_qwen_element()
        try:
            want = qwen_vp.smart_nframes(ele, total_frames=total, video_fps=fps)
        except ValueError:
            with pytest.raises(SamplingError):
                smart_nframes(s, total, fps)
            continue
        assert smart_nframes(s, total, fps) == want, (ele, total, fps)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_plan_matches_fetch_video(qwen_vp, sample_videos, video_clips, name):
    settings = SETTINGS[name]
    videos = [*sample_videos, *(p for k, p in video_clips.items() if k != "one_frame")]
    for video in videos:
        ele = settings.to_qwen_element(str(video))
        (ref, meta), sample_fps = qwen_vp.fetch_video(ele, return_video_sample_fps=True, return_video_metadata=True)
        plan, idx = plan_for_file(video, settings)
        assert list(plan.indices) == list(meta["frames_indices"]), (video.name, name)
        assert (plan.height, plan.width) == tuple(ref.shape[2:]), (video.name, name)
        assert plan.nframes == ref.shape[0]
        assert idx.total_frames == meta["total_num_frames"]
        assert plan.video_fps == pytest.approx(meta["fps"], rel=1e-12)
        assert plan.sample_fps == pytest.approx(sample_fps, rel=1e-12)


def test_video_start_end_match_fetch_video(qwen_vp, sample_videos):
    video = next(v for v in sample_videos if v.name == "bikes.mp4")
    settings = FrameSettings(video_start=1.3, video_end=7.9, fps=1.5)
    (_, meta), sample_fps = qwen_vp.fetch_video(
        settings.to_qwen_element(str(video)), return_video_sample_fps=True, return_video_metadata=True
    )
    plan, _ = plan_for_file(video, settings)
    assert list(plan.indices) == list(meta["frames_indices"])
    assert plan.sample_fps == pytest.approx(sample_fps)


def test_settings_validation_messages():
    with pytest.raises(ValueError, match="fps"):
        FrameSettings(fps=0)
    with pytest.raises(ValueError, match="max_pixels"):
        FrameSettings(max_pixels=1000)  # below the default min_pixels 128*28*28
    with pytest.raises(ValueError, match="together"):
        FrameSettings(resized_height=100)
    with pytest.raises(ValueError, match="min_frames"):
        FrameSettings(min_frames=10, max_frames=4)
    with pytest.raises(ValueError, match="nframes"):
        FrameSettings(nframes=1)
    with pytest.raises(ValueError, match="unknown"):
        FrameSettings.from_dict({"fsp": 2})


def test_plan_basics():
    plan = plan_frames(FrameSettings(), total_frames=450, video_fps=30.0, height=1280, width=720)
    assert plan.nframes == 30 and plan.indices[0] == 0 and plan.indices[-1] == 449
    assert plan.sample_fps == pytest.approx(2.0)
    assert plan.height % 28 == 0 and plan.width % 28 == 0
    assert plan.token_count() == 15 * (plan.height // 14) * (plan.width // 14) // 4
    with pytest.raises(SamplingError):
        plan_frames(FrameSettings(), total_frames=1, video_fps=30.0, height=64, width=64)


def test_segment_middle_matches_internvl_video_processor():
    """InternVL's frames: the middle of each equal segment, as transformers' InternVL video processor samples."""
    pytest.importorskip("torch")
    from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor
    from transformers.video_utils import VideoMetadata

    from vmeta.video.sampling import segment_middle_indices

    proc = InternVLVideoProcessor()
    rng = random.Random(1)
    for count in [*range(1, 200), *rng.sample(range(200, 100_000), 300), *rng.sample(range(100_000, 10**6), 50)]:
        for n in {1, 2, 3, 8, 16, 32, 64, rng.randrange(1, 65)}:
            if n > count:
                continue
            meta = VideoMetadata(total_num_frames=count, fps=30.0)
            want = proc.sample_frames(meta, num_frames=n).tolist()
            got = segment_middle_indices(0, count, n)
            if count < 100_000:
                assert got == want, (count, n)
            else:  # torch's float32 vector arithmetic (CPU-dependent) may round one frame differently
                assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1, (count, n)
    # a cut range is sampled the same way, shifted to its first frame
    assert segment_middle_indices(100, 80, 8) == [100 + i for i in proc.sample_frames(VideoMetadata(80, 30.0), 8)]


def test_internvl_plans_segment_middles_and_qwen_models_keep_qwen_indices():
    from vmeta.models.generate import frame_settings_for
    from vmeta.models.registry import MODELS

    internvl = frame_settings_for(MODELS["internvl2.5-2b"])
    plan = plan_frames(internvl, total_frames=300, video_fps=30.0, height=1280, width=720)
    assert internvl.index_rule == "segment_middle"
    assert list(plan.indices) == [18, 56, 93, 131, 168, 206, 243, 281]  # 300 / 8 = 37.5: 18.75, 56.25, ...
    assert (plan.height, plan.width) == (448, 448)
    qwen = frame_settings_for(MODELS["qwen2-vl-2b-instruct"])
    assert qwen.index_rule == "qwen"
    assert plan_frames(qwen, 300, 30.0, 1280, 720).indices[::19] == (0, 299)
    with pytest.raises(ValueError, match="index_rule"):
        FrameSettings(index_rule="middle")
    with pytest.raises(ValueError, match="no qwen-vl-utils equivalent"):
        internvl.to_qwen_element("v.mp4")
