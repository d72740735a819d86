import os
import shutil

import pytest

from vmeta.errors import UserError
from vmeta.testing import media
from vmeta.video.probe import ProbeCache, ProbeError, probe


def test_portrait_clip(clips_dir):
    m = probe(clips_dir / "portrait.mp4")
    assert m.readable and m.error is None
    assert (m.width, m.height, m.rotation) == (720, 1280, 0)
    assert (m.display_width, m.display_height) == (720, 1280)
    assert m.fps == pytest.approx(30)
    assert m.duration_s == pytest.approx(2.0, abs=0.1)
    assert m.frames == 60
    assert m.codec == "h264" and "mp4" in m.container
    assert m.has_audio and m.audio_codec == "aac"
    assert m.size_bytes == (clips_dir / "portrait.mp4").stat().st_size


def test_rotated_phone_video_displays_portrait(clips_dir):
    m = probe(clips_dir / "rotated.mp4")
    assert (m.width, m.height) == (1280, 720)  # as stored
    assert m.rotation == 90
    assert (m.display_width, m.display_height) == (720, 1280)


def test_landscape_without_audio(clips_dir):
    m = probe(clips_dir / "landscape.mp4")
    assert (m.display_width, m.display_height) == (320, 180)
    assert m.fps == pytest.approx(25)
    assert not m.has_audio and m.audio_codec is None


def test_generated_frames_differ(clips_dir):
    import av

    with av.open(str(clips_dir / "landscape.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(3), c.decode(video=0), strict=False)]
    assert len(frames) == 3
    assert (frames[0] != frames[1]).any() and (frames[1] != frames[2]).any()


def test_real_sample_videos(sample_videos):
    assert any(p.name == "bigbuckbunny.mp4" for p in sample_videos)
    for path in sample_videos:
        m = probe(path)
        assert m.readable and m.width and m.height and m.duration_s > 0 and m.fps > 0


@pytest.mark.parametrize("kind", ["zero_byte", "not_video", "corrupt", "audio_only", "missing"])
def test_bad_files_raise_clear_errors(bad_videos, kind):
    path = bad_videos[kind]
    with pytest.raises(ProbeError) as info:
        probe(path)
    err = info.value
    assert isinstance(err, UserError)
    assert err.kind == kind
    assert str(path) in str(err)  # names the file
    assert any(w in str(err) for w in ("re-export", "copy it again", "check the file name", "export the clip"))


def test_corrupt_that_opens_but_cannot_decode(tmp_path, clips_dir):
    """An MP4 whose index is intact but whose picture data is zeroed: opens, but no frame decodes."""
    data = bytearray((clips_dir / "landscape.mp4").read_bytes())
    mdat = data.find(b"mdat")
    assert mdat > 0
    size = int.from_bytes(data[mdat - 4 : mdat], "big")
    data[mdat + 4 : mdat - 4 + size] = bytes(size - 8)
    bad = tmp_path / "zeroed.mp4"
    bad.write_bytes(bytes(data))
    try:
        m = probe(bad)
    except ProbeError as exc:
        assert exc.kind == "corrupt"
    else:  # some decoders conceal errors and still return a picture; then it must at least look sane
        assert m.readable and m.width == 320


def test_probe_is_fast(clips_dir):
    import time

    t = time.perf_counter()
    for _ in range(5):
        probe(clips_dir / "portrait.mp4")
    assert (time.perf_counter() - t) / 5 < 0.5


def test_cache_hits_for_reruns_hard_links_and_copies(tmp_path, clips_dir):
    src = tmp_path / "a.mp4"
    shutil.copy2(clips_dir / "landscape.mp4", src)
    cache_file = tmp_path / ".probe_cache.jsonl"
    cache = ProbeCache(cache_file)
    first = cache.probe(src)
    assert (cache.misses, cache.hits) == (1, 0)

    os.link(src, tmp_path / "b.mp4")  # hard link: same inode
    shutil.copy2(src, tmp_path / "c.mp4")  # unchanged copy: same size, mtime and content
    assert cache.probe(tmp_path / "b.mp4") == first
    assert cache.probe(tmp_path / "c.mp4").width == first.width
    assert (cache.misses, cache.hits) == (1, 2)

    again = ProbeCache(cache_file)  # a re-run reads the cache from disk
    again.probe(src)
    assert (again.misses, again.hits) == (0, 1)

    # a changed file is probed again
    media.make_clip(src.with_name("new.mp4"), 160, 90, 10, 0.5, audio=False)
    os.replace(src.with_name("new.mp4"), src)
    assert again.probe(src).width == 160
    assert again.misses == 1


def test_cache_remembers_failures_with_the_right_name(tmp_path, bad_videos):
    cache = ProbeCache(tmp_path / "cache.jsonl")
    for _ in range(2):
        with pytest.raises(ProbeError) as info:
            cache.probe(bad_videos["not_video"])
        assert info.value.kind == "not_video"
    assert (cache.misses, cache.hits) == (1, 1)
    other = tmp_path / "renamed.mp4"
    shutil.copy2(bad_videos["not_video"], other)
    with pytest.raises(ProbeError) as info:
        cache.probe(other)
    assert str(other) in str(info.value)
    with pytest.raises(ProbeError) as info:
        cache.probe(bad_videos["missing"])
    assert info.value.kind == "missing"


def test_check_image_names_a_missing_or_broken_picture(tmp_path):
    from PIL import Image

    from vmeta.errors import UserError
    from vmeta.video.probe import check_image

    good = tmp_path / "ok.png"
    Image.new("RGB", (8, 8), "red").save(good)
    check_image(good)  # a real picture passes
    with pytest.raises(UserError, match=r"the image gone\.png cannot be found; upload it again"):
        check_image(tmp_path / "gone.png")
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"not a picture at all")
    with pytest.raises(UserError, match=r"fake\.png cannot be read as a picture; upload a PNG, JPEG or WebP"):
        check_image(bad)
