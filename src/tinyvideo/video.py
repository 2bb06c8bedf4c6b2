"""Video decoding and frame sampling.

``read_frames`` turns a video file, a folder of JPEG frames or a still image into a uint8 RGB array
[T, H, W, 3] plus a :class:`FrameInfo` that records exactly which frames were taken and why, because
undocumented sampling choices are a main reason published video-benchmark scores fail to reproduce.

Frame positions follow the published formulas (``reference/compat-spec.md`` section 2.2): uniform
sampling is ``np.linspace(0, total - 1, N, dtype=int)`` (repeats allowed, so N frames always come back),
fps sampling takes ``min(max_frames, max(1, int(duration * fps)))`` frames the same way, and
:func:`segment_centre_indices` is MVBench's rule for its bounded tasks.

Decoding uses PyAV and touches only what it needs: the targets are visited in time order, the decoder
seeks only when a keyframe lies between its position and the next target (so dense sampling becomes
one sequential pass), and a target is matched to the first frame whose timestamp reaches it. Frames
are matched by timestamp, never by counting, because counters are meaningless after a seek.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import PIL
from PIL import Image, ImageOps

from tinyvideo.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# x264's default keyframe interval is 250 frames, 10 s at 25 fps.
UNINDEXED_KEYFRAME_INTERVAL = 10.0

IndexChooser = Callable[[int, float], Sequence[int]]  # (total_frames, fps) -> frame indices
_Chooser = Callable[..., np.ndarray]  # (frame times from the first, fps, truncated=False) -> frame indices


class VideoDecodeError(InputError):
    """A video, frame folder or image that is missing, empty or cannot be decoded."""


@dataclass(frozen=True)
class FrameInfo:
    """What was sampled from a video, for logs and reproducibility.

    ``indices`` index the frames of the video (0-based, presentation order, repeats allowed) and
    ``timestamps`` are the matching presentation times in seconds from the first frame.
    ``total_frames`` is the frame count the indices were drawn from, and ``frame_count_source`` says
    where it came from: ``"header"`` (the container's frame count), ``"estimated"`` (duration x average
    rate, e.g. Matroska/WebM, whose headers carry no count), ``"scanned"`` (counted packet by packet:
    no usable header, variable frame rate, or a file that ends early), ``"files"`` (a frame folder) or
    ``"image"``. ``truncated`` is True when the header promised more frames than could be decoded; the
    indices are then drawn from the decodable part. ``duration`` is ``total_frames / fps``.
    """

    indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    total_frames: int
    frame_count_source: str
    fps: float
    duration: float
    backend: str
    truncated: bool = False


def uniform_indices(total: int, num: int) -> np.ndarray:
    """``num`` indices spread over ``total`` frames, first and last included, repeats when ``num > total``."""
    return np.linspace(0, total - 1, num, dtype=int)


def segment_centre_indices(
    bound: tuple[float, float] | None, fps: float, max_frame: int, first_idx: int = 0, num: int = 16
) -> np.ndarray:
    """MVBench's frame rule (compat-spec 2.2 C): the centres of ``num`` equal segments of ``bound``.

    ``bound`` is ``(start, end)`` in seconds or None for the whole video; ``max_frame`` is the last valid
    index (``len(video) - 1`` for videos, the number of files for 1-based frame folders with
    ``first_idx=1``). Python's ``round`` and ``np.round`` (both half-to-even) are kept as published.
    """
    start, end = bound if bound is not None else (-100000, 100000)
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg = (end_idx - start_idx) / num
    return np.array([int(start_idx + seg / 2 + np.round(seg * i)) for i in range(num)], dtype=int)


def read_frames(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    *,
    indices: Sequence[int] | IndexChooser | None = None,
    folder_fps: float = 3.0,
    threads: int = 1,
) -> tuple[np.ndarray, FrameInfo]:
    """Decode the sampled frames of a video file, a folder of frames or an image.

    Choose at most one way to sample:
    - ``num_frames=N``: N frames spread uniformly (repeats for videos shorter than N);
    - ``fps=f``: ``max(1, int(duration * f))`` frames spread uniformly, at most ``max_frames``;
    - neither: every frame, or ``max_frames`` spread uniformly if the video has more;
    - ``indices``: explicit frame indices, or a function ``(total_frames, fps) -> indices`` for rules
      that need the frame count first (e.g. :func:`segment_centre_indices`).
    ``start``/``end`` (seconds from the first frame) restrict the first three to frames inside that window.

    A folder of images (``00001.jpg``, ``00002.jpg``, ... sorted by name) is a video at ``folder_fps``
    frames per second. A still image is a one-frame video lasting one second, so N frames are N copies.
    ``threads`` is the decoder's thread count. One suits DataLoader workers (parallel already) and sparse
    sampling (every seek restarts a threaded decoder); 0 lets FFmpeg use every core, which pays off for
    dense sampling of large videos in a single process.

    Returns ``(frames, info)``: uint8 RGB [T, H, W, 3], upright (rotation metadata applied), and a
    :class:`FrameInfo`. Raises :class:`VideoDecodeError` for a missing, empty or undecodable input and
    ``ValueError`` for contradictory arguments or a window outside the video.
    """
    if indices is not None and any(a is not None for a in (num_frames, fps, max_frames, start, end)):
        raise ValueError("indices cannot be combined with num_frames, fps, max_frames, start or end")
    if num_frames is not None and fps is not None:
        raise ValueError("give num_frames or fps, not both")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be greater than 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if start is not None and end is not None and end < start:
        raise ValueError(f"end ({end}) is before start ({start})")

    def choose(times: np.ndarray, rate: float, truncated: bool = False) -> np.ndarray:
        """Indices into ``times`` (seconds from the first frame); a truncated video clamps explicit ones."""
        if indices is None:
            return _sample(times, rate, num_frames, fps, max_frames, start, end, path)
        chosen = np.asarray(indices(len(times), rate) if callable(indices) else indices, dtype=int)
        if chosen.ndim != 1 or len(chosen) == 0 or chosen.min() < 0 or (chosen.max() >= len(times) and not truncated):
            raise ValueError(f"{path}: indices must be a non-empty list within [0, {len(times)})")
        return np.minimum(chosen, len(times) - 1)

    path = Path(path)
    if path.is_dir():
        return _read_folder(path, choose, folder_fps)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: file is empty")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image(path, choose)
    return _read_video(path, choose, threads)


def write_video(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = 8.0,
    codec: str = "libx264",
    **options: str,
) -> Path:
    """Encode uint8 RGB frames [T, H, W, 3] (or any iterable of [H, W, 3] arrays) to a video file.

    The container follows the suffix (H.264 MP4 by default). ``options`` go to the encoder (e.g. ``crf``,
    ``preset``, ``g``). The file appears only when complete: it is written next to ``path`` and renamed.
    """
    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    height, width = np.asarray(first).shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    encoder_options = {"crf": "18", **options} if codec == "libx264" else dict(options)
    try:
        with av.open(str(partial), mode="w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=encoder_options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in itertools.chain([first], frames):
                frame = av.VideoFrame.from_ndarray(np.asarray(frame, dtype=np.uint8), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _sample(
    times: np.ndarray,
    rate: float,
    num_frames: int | None,
    fps: float | None,
    max_frames: int | None,
    start: float | None,
    end: float | None,
    path: Path,
) -> np.ndarray:
    """Indices for uniform / fps / all-frames sampling inside the ``[start, end]`` window."""
    eps = 1e-6
    lo = int(np.searchsorted(times, start - eps)) if start is not None else 0
    hi = int(np.searchsorted(times, end + eps, side="right")) - 1 if end is not None else len(times) - 1
    if lo > hi:
        raise ValueError(
            f"{path}: window [{start}, {end}] s holds no frame (the video has {len(times)} frames over "
            f"{len(times) / rate:.3f} s)"
        )
    span = hi - lo + 1
    if num_frames is None:
        num_frames = span if fps is None else max(1, int(span / rate * fps))
        if max_frames is not None:
            num_frames = min(num_frames, max_frames)
    return lo + uniform_indices(span, num_frames)


def _decode_image(path: Path, upright: bool) -> np.ndarray:
    """One image file as uint8 RGB [H, W, 3], turned upright by its EXIF orientation if asked.

    Any failure of the decoder is this file's `VideoDecodeError`, so that one bad image never stops a run:
    Pillow raises OSError for most broken files, but also `DecompressionBombError` (an image too large to
    decode safely, no OSError), SyntaxError, ValueError or struct.error for some malformed ones.
    """
    try:
        with Image.open(path) as image:
            return np.asarray((ImageOps.exif_transpose(image) if upright else image).convert("RGB"))
    except Exception as error:
        raise VideoDecodeError(f"{path}: cannot read image ({type(error).__name__}: {error})") from error


def _read_image(path: Path, choose: _Chooser) -> tuple[np.ndarray, FrameInfo]:
    frame = _decode_image(path, upright=True)
    chosen = choose(np.zeros(1), 1.0)
    frames = np.repeat(frame[None], len(chosen), axis=0)
    info = FrameInfo(tuple(int(i) for i in chosen), (0.0,) * len(chosen), 1, "image", 1.0, 1.0, _pillow_backend())
    return frames, info


def _read_folder(path: Path, choose: _Chooser, rate: float) -> tuple[np.ndarray, FrameInfo]:
    files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    files.sort(key=_natural_key)
    if not files:
        raise VideoDecodeError(f"{path}: folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    times = np.arange(len(files)) / rate
    chosen = choose(times, rate)
    unique, inverse = np.unique(chosen, return_inverse=True)
    frames = []
    for i in unique:
        frames.append(_decode_image(files[i], upright=False))
        if frames[-1].shape != frames[0].shape:
            raise VideoDecodeError(f"{files[i]}: size {frames[-1].shape[:2]} differs from {frames[0].shape[:2]}")
    info = FrameInfo(
        tuple(int(i) for i in chosen), tuple(float(times[i]) for i in chosen), len(files), "files",
        float(rate), len(files) / rate, _pillow_backend(),
    )
    return np.stack(frames)[inverse], info


def _natural_key(path: Path) -> list:
    """Sort ``2.jpg`` before ``10.jpg`` as well as zero-padded names."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _pillow_backend() -> str:
    return f"pillow {PIL.__version__}"


def _read_video(path: Path, choose: _Chooser, threads: int) -> tuple[np.ndarray, FrameInfo]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            return _sample_video(path, _Decoder(container, threads), choose)
    except av.FFmpegError as error:
        raise VideoDecodeError(f"{path}: cannot decode ({error.strerror or error})") from error
    except _NoTimestamps:
        raise VideoDecodeError(f"{path}: frames carry no timestamps (a raw elementary stream?)") from None


def _sample_video(path: Path, decoder: _Decoder, choose: _Chooser) -> tuple[np.ndarray, FrameInfo]:
    if decoder.origin is None:
        raise VideoDecodeError(f"{path}: no decodable frames")
    rate, times, source = _frame_times(path, decoder)
    promised = len(times)
    slack = 0 if source == "header" else 1  # an estimate may be one frame high
    while True:
        chosen = choose(times, rate, truncated=len(times) < promised)
        targets, inverse = np.unique(times[chosen], return_inverse=True)
        tolerance = _tolerance(times, rate)
        frames, found = None, []
        for time, rgb in decoder.frames_at(decoder.origin + targets, tolerance):
            if frames is None:  # filled in place: no second copy of a long clip
                frames = np.empty((len(chosen), *rgb.shape), dtype=np.uint8)
            if rgb.shape != frames.shape[1:]:
                raise VideoDecodeError(f"{path}: frame size changes from {frames.shape[1:3]} to {rgb.shape[:2]}")
            frames[inverse == len(found)] = rgb
            found.append(time - decoder.origin)
        if len(found) == len(targets):
            break
        # The file ends before a target: keep only what lies before it, counted packet by packet.
        if source != "scanned":
            times, source = _scan_times(path, decoder.stamp), "scanned"
        times = times[times < targets[len(found)] - tolerance]
        if len(times) == 0:
            raise VideoDecodeError(f"{path}: no decodable frames")
    info = FrameInfo(
        indices=tuple(int(i) for i in chosen),
        timestamps=tuple(found[i] for i in inverse),
        total_frames=len(times),
        frame_count_source=source,
        fps=float(rate),
        duration=len(times) / float(rate),
        backend=f"pyav {av.__version__}",
        truncated=len(times) < promised - slack,
    )
    return frames, info


def _frame_times(path: Path, decoder: _Decoder) -> tuple[float, np.ndarray, str]:
    """``(fps, time of every frame in seconds from the first, count source)``.

    A constant-rate video has frame ``k`` at ``k / fps``. A variable-rate one (average rate differs from
    the base rate) or one without any count or duration is scanned for its real timestamps, and its fps
    is then measured from them.
    """
    stream = decoder.stream
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise VideoDecodeError(f"{path}: the video stream has no frame rate")
    variable = bool(stream.base_rate) and stream.average_rate != stream.base_rate
    count, source = stream.frames, "header"
    if count <= 0:
        seconds = _duration(decoder.container, stream, decoder.origin)
        count, source = round(seconds * rate) if seconds else 0, "estimated"
    if variable or count <= 0:
        times = _scan_times(path, decoder.stamp)
        measured = (len(times) - 1) / times[-1] if len(times) > 1 and times[-1] > 0 else float(rate)
        return measured, times, "scanned"
    return float(rate), np.arange(count) / float(rate), source


def _duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, origin: float
) -> float | None:
    """The video's length in seconds from the header, or None.

    Matroska/WebM keep no per-stream duration field; their ``DURATION`` tag and segment duration count
    from timestamp 0, so the first frame's time is subtracted.
    """
    if stream.duration:
        return float(stream.duration * stream.time_base)
    matroska = "matroska" in container.format.name
    tag = stream.metadata.get("DURATION")
    if tag:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds) - (origin if matroska else 0.0)
    if container.duration:
        return container.duration / av.time_base - (origin if matroska else 0.0)
    return None


def _scan_times(path: Path, stamp: str) -> np.ndarray:
    """Times (s, from the first) of every readable video packet, read in a second pass without decoding."""
    stamps = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        try:
            for packet in container.demux(stream):
                if packet.size:
                    value = getattr(packet, stamp)
                    if value is None:
                        raise _NoTimestamps
                    stamps.append(value)
        except av.FFmpegError:
            pass  # a damaged tail: what was read so far is the decodable part
    times = np.sort(np.array(stamps, dtype=np.float64)) * time_base
    return times - times[0] if len(times) else times


def _tolerance(times: np.ndarray, rate: float) -> float:
    """Half the smallest gap between frames: timestamps rounded by the container still match."""
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return 0.5 * float(gaps.min()) if len(gaps) else 0.5 / rate


class _NoTimestamps(Exception):
    """Decoded frames without timestamps cannot be matched to target times."""


class _Decoder:
    """Frames of one video stream by time, decoding as little as possible.

    It starts at the beginning of the file (``origin`` is the first frame's time), moves only forward
    through the targets, and seeks only when a keyframe lies between its position and the next target.
    """

    def __init__(self, container: av.container.InputContainer, threads: int):
        self.container = container
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.stream.thread_count = threads
        self.time_base = float(self.stream.time_base)
        # AVI stores decode times only; its presentation times are wrong when B-frames are packed in.
        self.stamp = "dts" if container.format.name == "avi" else "pts"
        if "matroska" in container.format.name:
            container.seek(0, stream=self.stream)  # Matroska reads its index (cues) at the first seek
        self.frames = _decode(self.container, self.stream, self.stamp)
        self.current = next(self.frames, None)
        self.origin = self.current[0] if self.current else None

    def frames_at(self, targets: np.ndarray, tolerance: float) -> Iterator[tuple[float, np.ndarray]]:
        """``(time, rgb)`` of the first frame at or after each target time (sorted, seconds).

        Stops early, yielding fewer results, when the file ends before a target.
        """
        for target in targets:
            if self.current is None or self._keyframe_between(self.current[0], target, tolerance):
                self._seek(target, tolerance)
            while self.current is not None and self.current[0] < target - tolerance:
                self.current = next(self.frames, None)
            if self.current is None:
                return
            yield self.current[0], _to_rgb(self.current[1])

    def _keyframe_between(self, position: float, target: float, tolerance: float) -> bool:
        """Whether a keyframe lies after ``position`` and at or before ``target``: only then does seeking pay.

        The container's index answers exactly where it reaches. Where it does not (MPEG-TS and live
        recordings have none or build it while reading) a keyframe is assumed within
        ``UNINDEXED_KEYFRAME_INTERVAL`` seconds, and nearer targets are reached by decoding forward.
        """
        entries = self.stream.index_entries
        if len(entries) == 0 or entries[len(entries) - 1].timestamp * self.time_base < target:
            return target - position > UNINDEXED_KEYFRAME_INTERVAL
        i = entries.search_timestamp(int(target / self.time_base), backward=True)
        return i >= 0 and entries[i].timestamp * self.time_base > position + tolerance

    def _seek(self, target: float, tolerance: float) -> None:
        """Seek to the keyframe before ``target`` and decode its first frame.

        Some files land after the target, or past the end (MPEG-TS seeks to the next keyframe, truncated
        files index data they lack): then seek again from further back, doubling the step, until the first
        frame is not too late.
        """
        floor = min(self.origin, 0.0)  # some demuxers refuse to seek before the start
        back = 0.0
        while True:
            position = max(target - back, floor)
            self.container.seek(int(position / self.time_base), stream=self.stream, backward=True)
            self.frames = _decode(self.container, self.stream, self.stamp)
            self.current = next(self.frames, None)
            if (self.current is not None and self.current[0] <= target + tolerance) or position <= floor:
                return
            back = max(1.0, 2 * back)


def _decode(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, stamp: str
) -> Iterator[tuple[float, av.VideoFrame]]:
    """``(time, frame)`` in presentation order; a corrupt packet is skipped, a damaged tail ends it.

    A free function, not a method: a generator holding its decoder would form a reference cycle, and a
    codec context left for the garbage collector can be freed in a forked DataLoader worker, where it
    waits forever for decoder threads that were not copied by the fork.
    """
    time_base = float(stream.time_base)
    step = 1 / float(stream.average_rate or stream.guessed_rate or 1)
    time = None
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for frame in frames:
                time = _frame_time(frame, stamp, time_base, time, step)
                yield time, frame
    except av.FFmpegError:
        try:
            for frame in stream.decode(None):
                time = _frame_time(frame, stamp, time_base, time, step)
                yield time, frame
        except av.FFmpegError:
            return


def _frame_time(frame: av.VideoFrame, stamp: str, time_base: float, previous: float | None, step: float) -> float:
    """The frame's time in seconds. Frames drained from the decoder at the end carry no decode time
    (AVI), so they follow the previous frame by one frame interval."""
    value = getattr(frame, stamp)
    if value is not None:
        return value * time_base
    if previous is None:
        raise _NoTimestamps
    return previous + step


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB array, turned upright by the stream's display matrix (multiples of 90 degrees)."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb
