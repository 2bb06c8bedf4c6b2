"""Generate small test media whose frame index is painted into the pixels.

Every frame carries its index as a 4x4 grid of black/white blocks (bit ``i`` of the index is block
``i`` in row-major order), so a test can decode the index back from any returned frame and check that
sampled frame ``k`` really is frame ``k``. The blocks survive lossy compression at any size down to
about 32x32 pixels. Up to 65,536 distinct indices fit (a 20-minute 30 fps video has 36,000 frames).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

GRID = 4  # blocks per side; GRID * GRID bits

FAST_ENCODER_OPTIONS = {
    "libx264": {"preset": "ultrafast"},  # no B-frames unless ``bframes`` asks for them
    "libx265": {"preset": "ultrafast"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
    "libsvtav1": {"preset": "11"},
}


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """The RGB image [height, width, 3] that encodes ``index`` as black/white blocks."""
    bits = (int(index) >> np.arange(GRID * GRID)) & 1
    blocks = (bits.reshape(GRID, GRID) * 255).astype(np.uint8)
    rows = np.arange(height) * GRID // height
    cols = np.arange(width) * GRID // width
    return np.repeat(blocks[rows][:, cols][:, :, None], 3, axis=2)


def read_index(frame: np.ndarray) -> int:
    """Decode the index painted by :func:`index_pattern` from an RGB frame [H, W, 3].

    Only the central half of each block is read, so blurred block edges cannot flip a bit.
    """
    gray = np.asarray(frame, dtype=np.float32).mean(axis=2)
    height, width = gray.shape
    index = 0
    for bit in range(GRID * GRID):
        r, c = divmod(bit, GRID)
        top, bottom = (4 * r + 1) * height // (4 * GRID), (4 * r + 3) * height // (4 * GRID)
        left, right = (4 * c + 1) * width // (4 * GRID), (4 * c + 3) * width // (4 * GRID)
        if gray[top:bottom, left:right].mean() > 127:
            index |= 1 << bit
    return index


def read_indices(frames: np.ndarray) -> list[int]:
    """:func:`read_index` for every frame of a [T, H, W, 3] array."""
    return [read_index(frame) for frame in frames]


def make_indexed_video(
    path: str | Path,
    num_frames: int,
    fps: float | Fraction = 25,
    *,
    codec: str = "libx264",
    size: tuple[int, int] = (128, 96),
    gop: int | None = None,
    bframes: int | None = None,
    start_time: float = 0.0,
    timestamps: Sequence[float] | None = None,
    rotation: int = 0,
    audio: bool = False,
    seekable: bool = True,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode a video whose frame ``k`` shows the pattern of index ``k``; returns ``path``.

    ``size`` is ``(width, height)`` of the stored (pre-rotation) picture. ``gop`` and ``bframes`` set the
    keyframe interval and the number of B-frames. ``start_time`` (seconds) shifts every timestamp, and
    ``timestamps`` (seconds, increasing, one per frame) gives a variable frame rate instead of ``fps``.
    ``rotation`` writes display-matrix metadata (degrees counter-clockwise, as PyAV reads it back in
    ``VideoFrame.rotation``); the pattern is painted on the stored picture. ``audio`` adds a stereo AAC
    (mp4/mkv) or Opus (webm) track. ``seekable=False`` writes Matroska/WebM/MPEG-TS as a live recording
    or a pipe would: the muxer cannot go back, so the file has no duration and no index.
    Frames are generated one at a time, so long videos cost no memory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rate = Fraction(fps).limit_denominator(1001)
    # AVI (and MPEG-4 Part 2) count time in frames; everything else gets a fine clock for VFR and offsets.
    time_base = 1 / rate if path.suffix.lower() == ".avi" else Fraction(1, 90000)
    encoder_options = {**FAST_ENCODER_OPTIONS.get(codec, {}), **(options or {})}

    with ExitStack() as files:
        target, container_format = str(path), None
        if not seekable:
            target = _WriteOnly(files.enter_context(path.open("wb")))
            container_format = {".mkv": "matroska", ".webm": "webm", ".ts": "mpegts"}[path.suffix.lower()]
        container = files.enter_context(av.open(target, "w", format=container_format, options=container_options or {}))
        stream = container.add_stream(codec, rate=rate, options=encoder_options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if gop is not None:
            stream.codec_context.gop_size = gop
        if bframes is not None:
            stream.codec_context.max_b_frames = bframes
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = _add_audio(container) if audio else None

        if timestamps is None:
            timestamps = [k / rate for k in range(num_frames)]
        for k in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_pattern(k, width, height), format="rgb24")
            frame.pts = round((start_time + float(timestamps[k])) / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio_stream is not None:
            _write_audio(container, audio_stream, start_time + float(timestamps[-1]) + 1 / float(rate))
    return path


class _WriteOnly:
    """A file that can only be appended to, like a pipe."""

    def __init__(self, file):
        self.write = file.write


def _add_audio(container: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    codec = "libopus" if container.format.name == "webm" else "aac"
    stream = container.add_stream(codec, rate=48000)
    stream.layout = "stereo"
    return stream


def _write_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    """A quiet 440 Hz tone of the given length, so demuxers interleave real audio packets."""
    chunk = 960
    for start in range(0, int(seconds * stream.rate), chunk):
        t = (start + np.arange(chunk)) / stream.rate
        samples = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([samples, samples]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = stream.rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def make_frame_folder(path: str | Path, num_frames: int, size: tuple[int, int] = (128, 96)) -> Path:
    """A folder of JPEG frames ``00001.jpg``, ``00002.jpg``, ... (the MVBench episodic-reasoning layout).

    File ``{k+1:05d}.jpg`` shows index ``k``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for k in range(num_frames):
        Image.fromarray(index_pattern(k, *size)).save(path / f"{k + 1:05d}.jpg", quality=90)
    return path


def make_image(path: str | Path, index: int = 0, size: tuple[int, int] = (128, 96)) -> Path:
    """A still image (format from the extension) showing ``index``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(index_pattern(index, *size)).save(path)
    return path


def corrupt_frames(path: str | Path, frames: Sequence[int], seed: int = 0) -> Path:
    """Overwrite the coded bytes of ``frames`` with random bytes, as a failing disk or transfer would.

    Frames are counted in decoding order, which is presentation order for a video without B-frames.
    The container's index is untouched, so the file still opens and every other frame still decodes.
    """
    path = Path(path)
    wanted = set(frames)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
        spans = [(p.pos, p.size) for k, p in enumerate(packets) if k in wanted]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for position, size in spans:
        data[position : position + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def cut_by_stream_copy(source: str | Path, path: str | Path, start: int) -> Path:
    """The video of ``source`` from frame ``start`` on, cut without re-encoding (``ffmpeg -ss -c copy``).

    Every packet is kept, so the frames before ``start`` can still be decoded as references; their times
    become negative and the MP4 muxer writes an edit list that hides them. The header then counts every
    stored frame, of which only the last ``len - start`` are shown.
    """
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        shift = round(start / stream.average_rate / stream.time_base)

    def retime(packet: av.Packet) -> None:
        packet.pts -= shift
        packet.dts -= shift

    return _copy_packets(source, path, retime)


def zero_frame_durations(source: str | Path, path: str | Path) -> Path:
    """The video of ``source`` with every packet at time 0 and lasting 0: a file whose timestamps are all
    equal, as some screen recorders and broken remuxers write. The header still counts every frame."""

    def retime(packet: av.Packet) -> None:
        packet.pts = packet.dts = 0
        packet.duration = 0

    return _copy_packets(source, path, retime)


def _copy_packets(source: str | Path, path: str | Path, retime: Callable[[av.Packet], None]) -> Path:
    """Copy the video packets of ``source`` into ``path`` without re-encoding, each retimed in place first."""
    path = Path(path)
    with av.open(str(source)) as container, av.open(str(path), "w") as output:
        stream = container.streams.video[0]
        copy = output.add_stream_from_template(stream)
        for packet in container.demux(stream):
            if packet.size:
                retime(packet)
                packet.stream = copy
                output.mux(packet)
    return path


def truncate_file(path: str | Path, keep: float) -> Path:
    """Cut a file to the first ``keep`` fraction of its bytes, as an interrupted download would."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
