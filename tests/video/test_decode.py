"""Seek-based decoding gives the frames qwen-vl-utils gives, upright, with bounded memory and clear errors.

"The same frames" here means: identical frame indices, identical output (T, C, H, W) shape and sample fps,
and pixels within rounding of each other — max abs diff <= 16 and mean abs diff < 0.5 (out of 255). The
rest comes from YUV->RGB (swscale via PyAV vs decord's) and swscale's fixed-point bicubic vs torch's float one.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from vmeta.errors import UserError
from vmeta.video.container import DecodeError
from vmeta.video.decode import load_video
from vmeta.video.sampling import FrameSettings

MAX_ABS = 16
MEAN_ABS = 0.5


def _diff(ours: np.ndarray, ref) -> tuple[int, float]:
    r = ref.numpy() if hasattr(ref, "numpy") else np.asarray(ref)
    d = np.abs(ours.astype(np.int16) - r.astype(np.int16))
    return int(d.max()), float(d.mean())


@pytest.mark.parametrize(
    "settings",
    [FrameSettings(), FrameSettings(nframes=8, min_pixels=28 * 28 * 16, max_pixels=28 * 28 * 64)],
    ids=["default", "nframes8_small"],
)
def test_frames_match_fetch_video(qwen_vp, sample_videos, video_clips, settings, capsys):
    videos = [*sample_videos, *(p for k, p in video_clips.items() if k != "one_frame")]
    report = []
    for video in videos:
        (ref, meta), sample_fps = qwen_vp.fetch_video(
            settings.to_qwen_element(str(video)), return_video_sample_fps=True, return_video_metadata=True
        )
        ours = load_video(video, settings)
        assert ours.frames.dtype == np.uint8
        assert ours.indices == list(meta["frames_indices"])
        assert ours.frames.shape == tuple(ref.shape), video.name
        assert ours.sample_fps == pytest.approx(sample_fps)
        mx, mean = _diff(ours.frames, ref)
        report.append(f"{video.name}: max {mx} mean {mean:.3f}")
        assert mx <= MAX_ABS and mean < MEAN_ABS, (video.name, mx, mean)
    with capsys.disabled():
        print("\npixel diff vs qwen-vl-utils (decord):", "; ".join(report))


def test_rotated_portrait_comes_out_upright(qwen_vp, rotated_clip):
    ours = load_video(rotated_clip, FrameSettings(nframes=4))
    assert ours.rotation == 90
    t, c, h, w = ours.frames.shape
    assert (t, c) == (4, 3) and h > w, ours.frames.shape  # portrait
    frame = ours.frames[0].transpose(1, 2, 0).astype(int)
    top_left = frame[: h // 10, : w // 10].mean(axis=(0, 1))
    top_right = frame[: h // 10, -w // 10 :].mean(axis=(0, 1))
    bottom = frame[-h // 40 :, :].mean(axis=(0, 1))
    assert top_left[0] > 200 and top_left[1] < 60 and top_left[2] < 60, top_left  # red
    assert abs(top_right - 90).max() < 20, top_right  # background
    assert bottom[2] > 200 and bottom[0] < 60, bottom  # blue
    # decord applies the rotation too, so qwen-vl-utils' frames are upright and the same as ours.
    ref = qwen_vp.fetch_video({"video": str(rotated_clip), "nframes": 4}).numpy()
    assert ref.shape == ours.frames.shape
    mx, mean = _diff(ours.frames, ref)
    assert mx <= MAX_ABS and mean < MEAN_ABS


@pytest.mark.parametrize("kind", ["zero_byte", "not_video", "corrupt", "audio_only", "missing"])
def test_unreadable_files_give_a_clear_error(bad_videos, kind):
    path = bad_videos[kind]
    with pytest.raises(UserError) as info:
        load_video(path)
    assert str(path) in str(info.value)


def test_too_short_video_names_the_file(video_clips):
    with pytest.raises(DecodeError, match=r"one\.mp4.*frame settings"):
        load_video(video_clips["one_frame"])


def test_seeks_and_skips_instead_of_decoding_everything(tmp_path, clip_tools):
    write_clip, numbered_frame = clip_tools
    # 300 frames, GOP 30, 4 frames wanted: only the GOPs holding them are decoded.
    clip = write_clip(tmp_path / "gop30.mp4", (numbered_frame(i, 96, 64) for i in range(300)), 30, gop=30)
    v = load_video(clip, FrameSettings(nframes=4))
    assert v.indices == [0, 100, 199, 299]
    assert v.stats.seeks >= 3
    assert v.stats.packets_fed < 0.5 * v.stats.packets_indexed
    assert v.stats.frames_converted == 4
    # Skipping non-reference frames inside the decoder changes nothing in the pixels.
    plain = load_video(clip, FrameSettings(nframes=4), skip_nonref=False, seek_gap=10**9, threads=1, decoders=1)
    assert plain.stats.decoders == 1
    assert np.array_equal(v.frames, plain.frames)
    assert v.stats.frames_out <= plain.stats.frames_out
    # Several decoders on different GOPs at once: the same frames, in the same slots, with the same timestamps.
    for n in (2, 3, 8):
        par = load_video(clip, FrameSettings(nframes=4), decoders=n)
        assert par.stats.decoders == min(n, 4)  # never more decoders than GOPs to decode
        assert np.array_equal(par.frames, plain.frames) and par.timestamps == plain.timestamps
        assert par.stats.frames_converted == 4


def test_split_work_gives_contiguous_balanced_runs():
    from vmeta.video.decode import split_work

    assert split_work([10] * 8, 4) == [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    assert split_work([10] * 3, 4) == [range(0, 1), range(1, 2), range(2, 3)]
    assert split_work([100, 1, 1, 1], 2) == [range(0, 1), range(1, 4)]
    assert split_work([5], 4) == [range(0, 1)]
    runs = split_work(list(range(1, 61)), 4)
    assert [i for r in runs for i in r] == list(range(60)) and len(runs) == 4
    costs = [sum(range(r.start + 1, r.stop + 1)) for r in runs]
    assert max(costs) < 1.3 * sum(costs) / 4


def test_memory_does_not_grow_with_video_length(tmp_path, clip_tools):
    """Same number of sampled frames from a 4x longer video: the Python-side peak stays about the same."""
    write_clip, numbered_frame = clip_tools
    w, h = 320, 240
    peaks = []
    for n in (120, 480):
        clip = write_clip(tmp_path / f"len{n}.mp4", (numbered_frame(i, w, h) for i in range(n)), 30, gop=60)
        tracemalloc.start()
        v = load_video(clip, FrameSettings(nframes=8))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert v.stats.frames_converted == 8
        peaks.append(peak - v.frames.nbytes)
    frame_bytes = w * h * 3
    # beyond the output: a few full-size frames at most, and no growth with length (480 frames = 110 MB held)
    assert peaks[1] < 4 * frame_bytes + (2 << 20), peaks
    assert peaks[1] < peaks[0] + frame_bytes, peaks


def test_threads_do_not_change_frames(video_clips):
    a = load_video(video_clips["landscape_gop12"], FrameSettings(fps=3.0), threads=1)
    b = load_video(video_clips["landscape_gop12"], FrameSettings(fps=3.0), threads=0)
    assert a.indices == b.indices and np.array_equal(a.frames, b.frames)
    assert len(a.timestamps) == len(a.indices) and a.timestamps == sorted(a.timestamps)


def test_frame_cache_hit_skips_decoding(tmp_path, video_clips, monkeypatch):
    import shutil

    from vmeta.video import decode as decode_mod
    from vmeta.video.cache import FrameCache

    cache = FrameCache(tmp_path / "frames")
    clip = video_clips["landscape_gop12"]
    first = load_video(clip, FrameSettings(nframes=6), cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded despite a cache hit")

    monkeypatch.setattr(decode_mod, "_load_video", no_decode)
    again = load_video(clip, FrameSettings(nframes=6), cache=cache)
    assert cache.hits == 1
    assert np.array_equal(first.frames, again.frames) and again.indices == first.indices
    assert again.sample_fps == first.sample_fps and again.timestamps == first.timestamps
    # a copy with a new mtime still hits (content key); other settings miss
    copy = tmp_path / "copy.mp4"
    shutil.copy(clip, copy)
    assert load_video(copy, FrameSettings(nframes=6), cache=cache).indices == first.indices
    with pytest.raises(AssertionError, match="despite"):
        load_video(clip, FrameSettings(nframes=4), cache=cache)
    # a damaged entry is a miss, not a crash
    for npy in (tmp_path / "frames").rglob("*.npy"):
        npy.write_bytes(b"garbage")
    monkeypatch.undo()
    assert np.array_equal(load_video(clip, FrameSettings(nframes=6), cache=cache).frames, first.frames)
    assert not list((tmp_path / "frames").rglob("*.tmp"))


def test_retries_without_frame_skipping_when_a_frame_is_missing(video_clips, monkeypatch):
    from vmeta.video import decode as decode_mod

    real = decode_mod._decode_planned
    calls = []

    def flaky(*args, **kwargs):
        opts = args[-1]
        calls.append(opts.skip_nonref)
        if opts.skip_nonref:  # pretend the decoder discarded a wanted frame
            raise decode_mod._MissingFrames([3])
        assert kwargs == {"lead_in": 1}
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_mod, "_decode_planned", flaky)
    v = load_video(video_clips["landscape_gop12"], FrameSettings(nframes=4))
    assert calls == [True, False] and len(v.indices) == 4
    monkeypatch.setattr(
        decode_mod, "_decode_planned", lambda *a, **k: (_ for _ in ()).throw(decode_mod._MissingFrames([3]))
    )
    with pytest.raises(DecodeError, match=r"landscape\.mp4: frames \[3\] could not be decoded"):
        load_video(video_clips["landscape_gop12"], FrameSettings(nframes=4))
