"""Video decoding and frame sampling: every returned frame must be the frame its index names.

Each test video has its frame index painted into the pixels (``tests/media.py``), so the frames that
come back are decoded to indices and compared exactly with the indices the sampler promised.
"""

from __future__ import annotations

import gc
import io
import logging
import pickle
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from media import (
    corrupt_frames,
    cut_by_stream_copy,
    index_pattern,
    make_frame_folder,
    make_image,
    make_indexed_video,
    read_index,
    read_indices,
    truncate_file,
    zero_frame_durations,
)
from tinyvideo import video
from tinyvideo.errors import InputError
from tinyvideo.video import (
    FrameInfo,
    FrameSampling,
    VideoDecodeError,
    read_frames,
    segment_centre_indices,
    uniform_indices,
    write_video,
)


CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"  # inputs that were read wrong, when present


def linspace(total: int, num: int) -> list[int]:
    """The published uniform rule, written out independently of the module under test."""
    return [int(i * (total - 1) / (num - 1)) if num > 1 else 0 for i in range(num)]


def assert_frames(frames: np.ndarray, info: FrameInfo, expected: list[int]) -> None:
    assert list(info.indices) == expected
    assert read_indices(frames) == expected
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def long_gop(media):
    """H.264 with 3 B-frames and a GOP of 120 frames (4 s): seeking lands far before most targets."""
    path = make_indexed_video(media / "long_gop.mp4", 300, 30, gop=120, bframes=3, size=(96, 64))
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.has_b_frames
    return path


@pytest.mark.parametrize("num", [1, 2, 7, 16, 300])
def test_long_gop_bframes_uniform(long_gop, num):
    frames, info = read_frames(long_gop, num_frames=num)
    assert_frames(frames, info, linspace(300, num))
    assert (info.total_frames, info.frame_count_source, info.truncated) == (300, "header", False)
    assert info.fps == 30 and info.duration == pytest.approx(10.0)
    assert info.timestamps == pytest.approx([i / 30 for i in info.indices])
    assert info.backend == f"pyav {av.__version__}"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_decodes_only_what_is_needed(media, monkeypatch, suffix):
    """Sparse targets cost about a GOP each (a seek apiece); dense targets take one pass, no re-decoding."""
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    path = make_indexed_video(media / f"sixty_seconds{suffix}", 1500, 25, codec=codec, gop=25, size=(64, 48))
    decoded = []

    def counting(*args):
        for item in decode(*args):
            decoded.append(item[0])
            yield item

    decode = video._decode
    monkeypatch.setattr(video, "_decode", counting)
    frames, info = read_frames(path, num_frames=4)
    assert_frames(frames, info, [0, 499, 999, 1499])
    assert len(decoded) <= 4 * 25 + 10
    decoded.clear()
    frames, info = read_frames(path, start=10.0, end=20.0)  # every frame of ten seconds: one pass
    assert_frames(frames, info, list(range(250, 501)))
    assert len(decoded) <= 251 + 25


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 299), min_size=1, max_size=12))
def test_explicit_indices_any_order(long_gop, indices):
    """Unsorted, repeated, sparse or dense: seeking and forward decoding must agree with the truth."""
    frames, info = read_frames(long_gop, indices=indices)
    assert_frames(frames, info, indices)


@pytest.mark.parametrize(
    ("name", "codec"),
    [("h264.mkv", "libx264"), ("vp9.webm", "libvpx-vp9"), ("vp8.webm", "libvpx"), ("av1.mkv", "libsvtav1")],
)
def test_containers_without_frame_count(media, name, codec):
    path = make_indexed_video(media / name, 90, 30, codec=codec, gop=40, bframes=2 if codec == "libx264" else None)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the count has to be estimated
    frames, info = read_frames(path, num_frames=9)
    assert_frames(frames, info, linspace(90, 9))
    assert (info.total_frames, info.frame_count_source, info.truncated) == (90, "estimated", False)


@pytest.mark.parametrize("name", ["live.mkv", "live.webm", "stream.ts"])
def test_no_duration_and_no_index(media, name):
    """A live recording (or MPEG-TS) has neither count nor index; MPEG-TS seeks land after the target."""
    codec = "libvpx-vp9" if name.endswith(".webm") else "libx264"
    path = make_indexed_video(media / name, 120, 25, codec=codec, gop=25, seekable=False)
    frames, info = read_frames(path, num_frames=11)
    assert_frames(frames, info, linspace(120, 11))
    assert info.total_frames == 120 and not info.truncated
    frames, info = read_frames(path)
    assert_frames(frames, info, list(range(120)))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_ntsc_rate(media, suffix):
    """29.97 fps: Matroska rounds timestamps to milliseconds, so frames must match within half a frame."""
    path = make_indexed_video(media / f"ntsc{suffix}", 120, Fraction(30000, 1001), gop=60, bframes=2)
    frames, info = read_frames(path, num_frames=13)
    assert_frames(frames, info, linspace(120, 13))
    assert info.fps == pytest.approx(30000 / 1001)
    assert info.timestamps == pytest.approx([i * 1001 / 30000 for i in info.indices], abs=1e-3)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_non_zero_start_time(media, suffix):
    path = make_indexed_video(media / f"late{suffix}", 75, 25, gop=30, bframes=2, start_time=2.5)
    frames, info = read_frames(path, num_frames=6)
    assert_frames(frames, info, linspace(75, 6))
    assert info.total_frames == 75 and not info.truncated
    assert info.timestamps[0] == 0.0  # times count from the first frame
    frames, info = read_frames(path, start=1.0, end=2.0)
    assert_frames(frames, info, list(range(25, 51)))


def test_variable_frame_rate(media):
    gaps = np.tile([0.02, 0.1, 0.04, 0.3, 0.04], 12)
    stamps = np.concatenate([[0.0], np.cumsum(gaps)])[:60]
    path = make_indexed_video(media / "vfr.mp4", 60, 25, timestamps=stamps, gop=20, bframes=2)
    frames, info = read_frames(path, num_frames=10)
    assert_frames(frames, info, linspace(60, 10))
    assert info.frame_count_source == "scanned"
    assert info.timestamps == pytest.approx(stamps[list(info.indices)], abs=1e-4)
    frames, info = read_frames(path, start=1.0, end=2.0)
    inside = [k for k, t in enumerate(stamps) if 1.0 - 1e-6 <= t <= 2.0 + 1e-6]
    assert_frames(frames, info, inside)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata(media, rotation):
    path = make_indexed_video(media / f"rot{rotation}.mp4", 30, 25, size=(96, 64), rotation=rotation)
    frames, info = read_frames(path, num_frames=5)
    quarter_turns = rotation // 90
    assert frames.shape[1:3] == ((96, 64) if quarter_turns % 2 else (64, 96))  # upright: height, width
    assert [read_index(np.rot90(f, -quarter_turns)) for f in frames] == linspace(30, 5)


def test_rotation_direction(media):
    """A phone's portrait clip: stored landscape, matrix rotation -90 (FFmpeg shows it turned clockwise).

    The stored top-left block (index 1 lights only that block) must end up top-right.
    """
    path = make_indexed_video(media / "phone.mp4", 3, 25, size=(96, 64), rotation=-90)
    frames, _ = read_frames(path, indices=[1])
    frame = frames[0].mean(axis=2)
    height, width = frame.shape
    assert (height, width) == (96, 64)
    assert frame[: height // 8, -width // 8 :].mean() > 200  # top-right corner lit
    assert frame[: height // 8, : width // 8].mean() < 50  # top-left corner dark


@pytest.mark.parametrize("name", ["audio.mp4", "audio.webm"])
def test_audio_stream(media, name):
    codec = "libvpx-vp9" if name.endswith(".webm") else "libx264"
    path = make_indexed_video(media / name, 50, 25, codec=codec, gop=20, audio=True)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 1
    frames, info = read_frames(path, num_frames=8)
    assert_frames(frames, info, linspace(50, 8))
    assert info.total_frames == 50 and not info.truncated


@pytest.mark.parametrize(
    ("name", "codec", "size", "pix_fmt"),
    [
        ("portrait.mp4", "libx264", (64, 112), "yuv420p"),
        ("odd.webm", "libvpx-vp9", (75, 49), "yuv420p"),
        ("odd444.mp4", "libx264", (67, 45), "yuv444p"),
        ("UPPER.MP4", "libx264", (96, 64), "yuv420p"),
    ],
)
def test_sizes_and_names(media, name, codec, size, pix_fmt):
    path = make_indexed_video(media / name, 40, 25, codec=codec, size=size, pix_fmt=pix_fmt, gop=10)
    frames, info = read_frames(path, num_frames=5)
    assert_frames(frames, info, linspace(40, 5))
    assert frames.shape[1:3] == (size[1], size[0])


@pytest.mark.parametrize(
    ("name", "codec", "bframes"),
    [("mpeg4.avi", "mpeg4", 2), ("h264.avi", "libx264", 2), ("hevc.mkv", "libx265", 2), ("mjpeg.avi", "mjpeg", 0)],
)
def test_other_codecs(media, name, codec, bframes):
    """AVI keeps decode times only (MVBench's pose clips are AVI); HEVC and MJPEG for completeness."""
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    path = make_indexed_video(media / name, 60, 25, codec=codec, gop=20, bframes=bframes, pix_fmt=pix_fmt)
    for num in (7, 60):
        frames, info = read_frames(path, num_frames=num)
        assert_frames(frames, info, linspace(60, num))
        assert info.total_frames == 60 and not info.truncated


@pytest.mark.parametrize(
    ("name", "options"), [("cut.mkv", {}), ("cut.mp4", {"movflags": "faststart"}), ("cut.webm", {})]
)
def test_truncated_file(media, name, options):
    """The header promises 400 frames, the bytes hold fewer: sample what can be decoded and say so."""
    codec = "libvpx-vp9" if name.endswith(".webm") else "libx264"
    path = make_indexed_video(media / name, 400, 25, codec=codec, gop=25, container_options=options)
    truncate_file(path, 0.5)
    frames, info = read_frames(path, num_frames=8)
    assert info.truncated and info.frame_count_source == "scanned"
    assert 100 < info.total_frames < 350
    assert list(info.indices) == linspace(info.total_frames, 8)
    # A cut can drop B-frames before the last frame, so the painted index is checked against its time.
    assert read_indices(frames) == [round(t * 25) for t in info.timestamps]
    assert read_indices(frames)[-1] >= info.total_frames - 3
    frames, info = read_frames(path, indices=[0, 399])  # valid for the header: clamped to what exists
    assert info.truncated and list(info.indices) == [0, info.total_frames - 1]
    assert read_indices(frames) == [round(t * 25) for t in info.timestamps]


def test_truncated_mp4_without_front_index(media):
    """An MP4 whose index sits at the end is unreadable once cut: a clear error, not a crash."""
    path = truncate_file(make_indexed_video(media / "cut_tail.mp4", 50, 25), 0.5)
    with pytest.raises(VideoDecodeError, match="cut_tail.mp4"):
        read_frames(path, num_frames=4)


def test_frame_folder(media):
    folder = make_frame_folder(media / "tvqa_clip", 30)
    frames, info = read_frames(folder, num_frames=8)
    assert_frames(frames, info, linspace(30, 8))
    assert (info.total_frames, info.frame_count_source, info.fps) == (30, "files", 3.0)
    assert info.timestamps == pytest.approx([i / 3 for i in info.indices])
    frames, info = read_frames(folder, fps=1.0)  # 10 s at 3 fps
    assert_frames(frames, info, linspace(30, 10))
    frames, info = read_frames(folder, num_frames=4, folder_fps=6.0, start=1.0, end=2.0)
    assert_frames(frames, info, [6, 8, 10, 12])


def test_frame_folder_with_mvbench_segments(media):
    """Episodic reasoning: 1-based files, fps 3, a time bound; the published rule picks the files."""
    folder = make_frame_folder(media / "episode", 45)
    bound = (2.0, 12.5)
    files = segment_centre_indices(bound, 3, 45, first_idx=1, num=8)
    frames, info = read_frames(folder, indices=lambda total, fps: segment_centre_indices(bound, fps, total, 1, 8) - 1)
    assert_frames(frames, info, [f - 1 for f in files])  # file 00007.jpg shows index 6


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_still_image(media, suffix):
    """An image is a one-frame video: N frames are N copies of it."""
    path = make_image(media / f"still{suffix}", index=1234)
    frames, info = read_frames(path, num_frames=16)
    assert frames.shape == (16, 96, 128, 3)
    assert read_indices(frames) == [1234] * 16
    assert (info.indices, info.total_frames, info.frame_count_source) == ((0,) * 16, 1, "image")
    frames, _ = read_frames(path, fps=1.0)
    assert len(frames) == 1


def test_time_window(long_gop):
    frames, info = read_frames(long_gop, num_frames=5, start=3.0, end=7.0)
    assert_frames(frames, info, [90 + i for i in linspace(121, 5)])
    assert all(3.0 - 1e-6 <= t <= 7.0 + 1e-6 for t in info.timestamps)
    frames, info = read_frames(long_gop, start=9.5)
    assert_frames(frames, info, list(range(285, 300)))
    with pytest.raises(ValueError, match="window"):
        read_frames(long_gop, num_frames=4, start=20.0)


def test_fps_sampling_with_cap(long_gop):
    frames, info = read_frames(long_gop, fps=1.0)  # 10 s
    assert_frames(frames, info, linspace(300, 10))
    frames, info = read_frames(long_gop, fps=2.0, max_frames=8)
    assert_frames(frames, info, linspace(300, 8))
    frames, info = read_frames(long_gop, fps=0.01)  # at least one frame
    assert_frames(frames, info, [0])
    frames, info = read_frames(long_gop, fps=1.0, start=2.0, end=6.0)  # 121 frames, about 4 s
    assert_frames(frames, info, [60 + i for i in linspace(121, 4)])


def test_short_video_repeats_frames(media):
    path = make_indexed_video(media / "short.mp4", 5, 25)
    frames, info = read_frames(path, num_frames=16)
    assert len(frames) == 16
    assert_frames(frames, info, linspace(5, 16))
    assert sorted(set(info.indices)) == [0, 1, 2, 3, 4]


def test_segment_centre_indices_published_values():
    # Worked by hand from docs/published-format.md 2.2 C: seg = 299 / 8 = 37.375, idx_i = int(18.6875 + round(37.375 i)).
    assert segment_centre_indices(None, 30, 299, 0, 8).tolist() == [18, 55, 93, 130, 168, 205, 242, 280]
    # start_idx = max(1, round(1.2)) = 1, end_idx = min(round(30.6), 20) = 20, seg = 4.75; round(9.5) = 10 (half-even).
    assert segment_centre_indices((0.4, 10.2), 3, 20, 1, 4).tolist() == [3, 8, 13, 17]


def test_uniform_indices_published_values():
    assert uniform_indices(300, 4).tolist() == [0, 99, 199, 299]
    assert uniform_indices(3, 7).tolist() == [0, 0, 0, 1, 1, 1, 2]


@pytest.mark.parametrize("content", [None, b"", b"\x00\x01garbage" * 500])
def test_bad_files_raise(media, content):
    path = media / f"bad_{len(content) if content is not None else 'missing'}.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=path.name):
        read_frames(path, num_frames=4)


def test_bad_folder_and_image_raise(media):
    empty = media / "no_frames"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="no_frames"):
        read_frames(empty, num_frames=2)
    fake = media / "fake.jpg"
    fake.write_bytes(b"not a jpeg")
    with pytest.raises(VideoDecodeError, match="fake.jpg"):
        read_frames(fake, num_frames=2)
    assert issubclass(VideoDecodeError, InputError)  # a command reports it in one line


def test_argument_errors(long_gop):
    with pytest.raises(ValueError):
        read_frames(long_gop, num_frames=4, fps=1.0)
    with pytest.raises(ValueError):
        read_frames(long_gop, num_frames=0)
    with pytest.raises(ValueError):
        read_frames(long_gop, indices=[0], num_frames=3)
    with pytest.raises(ValueError, match="indices"):
        read_frames(long_gop, indices=[300])


@pytest.mark.parametrize(
    "given, refused",
    [
        ({"num_frames": 4, "fps": 1.0}, "exactly one of num_frames and fps"),
        ({"num_frames": None}, "exactly one of num_frames and fps"),
        ({"num_frames": 4, "max_frames": 2}, "max_frames caps fps sampling"),
        ({"num_frames": 0}, "num_frames must be at least 1"),
        ({"num_frames": None, "fps": 1.0, "max_frames": 0}, "max_frames must be at least 1"),
        ({"num_frames": None, "fps": 0.0}, "fps must be greater than 0"),
        ({"num_frames": None, "fps": float("nan")}, "fps must be greater than 0"),
    ],
)
def test_frame_sampling_refuses_what_cannot_be_sampled(given, refused):
    with pytest.raises(InputError, match=refused):
        FrameSampling(**given)


def test_frame_sampling_counts_frames_by_number_or_by_rate():
    assert FrameSampling().count(100, 25.0) == 16
    assert FrameSampling(None, fps=1.0).count(100, 25.0) == 4  # 4 s at 1 fps
    assert FrameSampling(None, fps=0.01).count(100, 25.0) == 1  # at least one frame
    assert FrameSampling(None, fps=2.0, max_frames=5).count(100, 25.0) == 5
    # a training config: num_frames always set, fps (with max_frames) samples instead when given
    config = type("Config", (), {"num_frames": 8, "fps": None, "max_frames": None})
    assert FrameSampling.from_config(config) == FrameSampling(8)
    config.fps, config.max_frames = 2.0, 3
    assert FrameSampling.from_config(config) == FrameSampling(None, 2.0, 3)


def test_write_video_round_trip(tmp_path):
    frames = np.stack([index_pattern(k, 64, 48) for k in range(12)])
    path = write_video(tmp_path / "clip.mp4", frames, fps=6.0)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
    decoded, info = read_frames(path)
    assert_frames(decoded, info, list(range(12)))
    assert decoded.shape == (12, 48, 64, 3) and info.fps == 6.0
    path = write_video(tmp_path / "gen.webm", (index_pattern(k, 64, 48) for k in range(5)), codec="libvpx-vp9")
    decoded, info = read_frames(path)
    assert_frames(decoded, info, list(range(5)))
    assert decoded.shape == (5, 48, 64, 3)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mp4", [])


# ---- damaged files, edit lists and timestamps that cannot tell frames apart ------------------------

# Frames overwritten in a 200-frame, 25 fps clip with a keyframe every 25 frames -> the frames that cannot
# be decoded: every frame predicted from a damaged one, up to the next keyframe.
DAMAGE = {(75, 125): range(75, 125), (0, 25): range(0, 25), (80, 90): range(80, 100), (40, 41): range(40, 50)}


def shared_case(name: str) -> Path:
    path = CASES / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def reach(asked: list[int], target: int) -> float:
    """How far a stand-in may be: half the way to the nearest other target (half the video for a lone one)."""
    return min((abs(other - target) for other in set(asked) if other != target), default=199) / 2


@pytest.fixture(scope="module", params=list(DAMAGE), ids=lambda r: f"frames{r[0]}-{r[1] - 1}")
def damaged(media, request):
    first, end = request.param
    path = make_indexed_video(media / f"damaged_{first}_{end}.mp4", 200, 25, gop=25)
    return corrupt_frames(path, range(first, end)), set(DAMAGE[request.param])


@pytest.mark.parametrize("num", [1, 7, 16, 60, 200])
def test_damaged_file_returns_what_it_says(damaged, num, caplog):
    """Every frame that comes back is the one FrameInfo names; a target that cannot be decoded gets the
    nearest frame that can within half the sampling spacing, or is left out, and the clip is flagged."""
    path, lost = damaged
    asked = linspace(200, num)
    frames, info = read_frames(path, num_frames=num)
    assert read_indices(frames) == list(info.indices) and not set(info.indices) & lost
    assert sorted(info.targets + info.missing) == asked
    decodable = [k for k in range(200) if k not in lost]
    for target, index in zip(info.targets, info.indices):
        assert abs(index - target) == min(abs(k - target) for k in decodable) <= reach(asked, target)
    for target in info.missing:
        assert all(abs(k - target) > reach(asked, target) for k in decodable)
    assert info.damaged == any(t in lost for t in asked) == ("is damaged" in caplog.text)
    assert not info.truncated and info.timestamps == pytest.approx([i / 25 for i in info.indices])


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
@pytest.mark.parametrize("damage", [(80, 90), (150, 151)])
def test_damaged_file_with_bframes_returns_what_it_says(media, suffix, damage):
    """With B-frames, and in MPEG-TS, where damage also breaks the packets around it (the demuxer flags
    them): frames predicted from a damaged one look valid but show stale pictures, and are not taken."""
    path = make_indexed_video(media / f"damaged_b{damage[0]}{suffix}", 200, 25, gop=25, bframes=2)
    corrupt_frames(path, range(*damage))
    for num in (16, 200):
        frames, info = read_frames(path, num_frames=num)
        assert read_indices(frames) == list(info.indices) and info.damaged and not info.truncated


def test_damaged_file_explicit_indices(media):
    path = corrupt_frames(make_indexed_video(media / "damaged_explicit.mp4", 200, 25, gop=25), range(75, 125))
    frames, info = read_frames(path, indices=[150, 80, 0, 80, 100])
    # 80's neighbours are 100 and 0: a stand-in within 10 frames; 74 is 6 away. 100's nearest is 125 (25 away).
    assert (info.indices, info.targets, info.missing) == ((150, 74, 0, 74), (150, 80, 0, 80), (100,))
    assert read_indices(frames) == [150, 74, 0, 74] and info.damaged


def test_shared_file_damaged_mid_file(caplog):
    """An H.264 file with frames 73-124 undecodable: targets 79...119 used to all come back as frame 125."""
    frames, info = read_frames(shared_case("corrupt_mid.mp4"), num_frames=16)
    assert info.targets == (0, 13, 26, 39, 53, 66, 119, 132, 145, 159, 172, 185, 199)
    assert info.indices == (0, 13, 26, 39, 53, 66, 125, 132, 145, 159, 172, 185, 199)
    assert info.missing == (79, 92, 106) and read_indices(frames) == list(info.indices)
    assert info.damaged and not info.truncated and "3 left out" in caplog.text


@pytest.mark.parametrize(("start", "gop", "bframes"), [(81, 100, 0), (30, 25, 0), (45, 20, 2)])
def test_edit_list_cut_is_not_damage(media, start, gop, bframes):
    """A cut by stream copy keeps the hidden frames in the file and in its header's count."""
    source = make_indexed_video(media / f"uncut_{start}.mp4", 94, 30, gop=gop, bframes=bframes)
    path = cut_by_stream_copy(source, media / f"editlist_{start}.mp4", start)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 94
    shown = 94 - start
    for num in (5, 16, shown):
        frames, info = read_frames(path, num_frames=num)
        assert list(info.indices) == linspace(shown, num) and read_indices(frames) == [start + i for i in info.indices]
        assert (info.total_frames, info.truncated, info.damaged) == (shown, False, False)
        assert info.fps == 30 and info.duration == pytest.approx(shown / 30)


def test_shared_file_edit_list_cut():
    frames, info = read_frames(shared_case("editlist_cut.mp4"), num_frames=16)
    assert read_indices(frames) == [81 + i for i in linspace(13, 16)]
    assert (info.total_frames, info.truncated, info.damaged) == (13, False, False)


@pytest.fixture(scope="module", params=["zero_durations.mp4", "raw.h264"])
def untimed(media, request):
    """96 frames whose timestamps are all equal (every frame duration zero), or absent (raw H.264)."""
    if request.param == "raw.h264":
        return make_indexed_video(media / request.param, 96, 25, gop=25)
    source = make_indexed_video(media / "timed.mp4", 96, 25, gop=25, bframes=2)
    return zero_frame_durations(source, media / request.param)


@pytest.mark.parametrize("num", [1, 8, 96, 200])
def test_timestamps_that_cannot_tell_frames_apart(untimed, num):
    """Frames are counted in decoding order, and no length is made up for the clip."""
    frames, info = read_frames(untimed, num_frames=num)
    assert_frames(frames, info, linspace(96, num))
    assert (info.total_frames, info.fps, info.duration, info.timestamps) == (96, None, None, None)
    assert not info.damaged and not info.truncated


def test_timestamps_that_cannot_tell_frames_apart_by_index(untimed, caplog):
    frames, info = read_frames(untimed, indices=[90, 3, 3, 50])
    assert_frames(frames, info, [90, 3, 3, 50])
    frames, info = read_frames(untimed)
    assert_frames(frames, info, list(range(96)))
    with pytest.raises(ValueError, match="timestamps cannot tell frames apart"):
        read_frames(untimed, fps=1.0)
    with pytest.raises(ValueError, match="timestamps cannot tell frames apart"):
        read_frames(untimed, num_frames=4, start=1.0)
    if untimed.suffix == ".mp4":
        assert "frames are counted in decoding order" in caplog.text


class Clips(torch.utils.data.Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        frames, info = read_frames(self.paths[i], num_frames=4)
        return torch.from_numpy(frames), list(info.indices)


def test_dataloader_workers(long_gop, media):
    """Workers are forked after the parent decoded: nothing may be left for them to clean up."""
    gc.collect()
    _, info = read_frames(long_gop, num_frames=2)
    assert gc.collect() == 0  # no decoder waits in a reference cycle to be freed inside a worker
    folder = make_frame_folder(media / "loader_frames", 12)
    paths = [long_gop, folder, long_gop, folder]
    loader = torch.utils.data.DataLoader(Clips(paths), batch_size=None, num_workers=2, timeout=60)
    for frames, indices in loader:
        assert read_indices(frames.numpy()) == indices
    assert pickle.loads(pickle.dumps(info)) == info
    error = pickle.loads(pickle.dumps(VideoDecodeError("x.mp4: file is empty")))
    assert str(error) == "x.mp4: file is empty"


def _png(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


BROKEN_IMAGES = {
    "garbage.png": lambda: b"not an image at all",
    "truncated.png": lambda: _png()[:60],
    "bad_crc.png": lambda: _png()[:33] + b"\x00" * 4 + _png()[37:],
    "header_only.jpg": lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "bomb.png": _png,  # over the pixel limit set below: DecompressionBombError, which is no OSError
}


@pytest.mark.parametrize("name", BROKEN_IMAGES)
@pytest.mark.parametrize("as_folder", [False, True])
def test_every_decoder_error_of_an_image_is_that_files_error(tmp_path, monkeypatch, name, as_folder):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 48 is over twice this: Pillow refuses it
    target = tmp_path / "frames" / name if as_folder else tmp_path / name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(BROKEN_IMAGES[name]())
    with pytest.raises(VideoDecodeError, match=re.escape(str(target))):
        read_frames(target.parent if as_folder else target, num_frames=2)
