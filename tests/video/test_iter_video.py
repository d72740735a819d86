"""`iter_video`: the frames of `load_video`, pixel for pixel, a few whole GOPs at a time (on-screen text OCR
streams through it instead of holding every sampled frame)."""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pytest

from vmeta.errors import UserError
from vmeta.video.container import read_stream_index
from vmeta.video.decode import iter_video, load_video
from vmeta.video.sampling import FrameSettings


@pytest.mark.parametrize(
    ("clip", "settings", "chunk"),
    [
        ("landscape_gop12", FrameSettings(fps=6.0), 1),  # 75 frames, GOP 12: ~2 wanted frames per GOP
        ("landscape_gop12", FrameSettings(fps=6.0), 5),
        ("odd_24fps", FrameSettings(fps=4.0), 3),
        ("portrait_gop250", FrameSettings(nframes=8), 2),  # one GOP holds every frame: one chunk
    ],
)
def test_chunks_are_load_video_cut_at_gops(video_clips, clip, settings, chunk):
    path = video_clips[clip]
    whole = load_video(path, settings)
    chunks = list(iter_video(path, settings, chunk_frames=chunk))
    assert np.array_equal(np.concatenate([c.frames for c in chunks]), whole.frames)
    assert [i for c in chunks for i in c.indices] == whole.indices
    assert [t for c in chunks for t in c.timestamps] == whole.timestamps
    assert all(c.size == whole.size and c.sample_fps == whole.sample_fps for c in chunks)
    assert all(len(c.indices) >= chunk for c in chunks[:-1])
    # a cut only between GOPs: no GOP's frames are in two chunks
    idx = read_stream_index(path)
    gop_of = {
        p: max(k for k in idx.keyframe_pos if k <= idx.pts_to_pos[p]) for p in idx.display_pts
    }  # display pts -> its GOP's keyframe position
    gops = [{gop_of[idx.display_pts[i]] for i in c.indices} for c in chunks]
    for a in range(len(gops)):
        for b in range(a + 1, len(gops)):
            assert not gops[a] & gops[b], (clip, chunk, gops)
    if clip == "portrait_gop250":
        assert len(chunks) == 1
    else:
        assert len(chunks) > 1


def test_chunks_keep_memory_to_a_chunk(video_clips):
    chunks = iter_video(video_clips["landscape_gop12"], FrameSettings(fps=6.0), chunk_frames=2)
    with closing(chunks):
        first = next(chunks)
    assert len(first.indices) < len(load_video(video_clips["landscape_gop12"], FrameSettings(fps=6.0)).indices)


def test_bad_file_and_chunk_size(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(UserError, match=r"bad\.mp4"):  # the probe's message naming the file
        next(iter_video(bad))
    with pytest.raises(ValueError, match="chunk_frames"):
        iter_video(bad, chunk_frames=0)
