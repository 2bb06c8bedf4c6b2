"""Video decoding and frame sampling.

``read_frames`` turns a video file, a folder of JPEG frames or a still image into a uint8 RGB array
[T, H, W, 3] plus a :class:`FrameInfo` that records exactly which frames were taken and why, because
undocumented sampling choices are a main reason published video-benchmark scores fail to reproduce.

Frame positions follow the published formulas (``docs/published-format.md`` 2.2): uniform
sampling is ``np.linspace(0, total - 1, N, dtype=int)`` (repeats allowed, so N frames always come back),
fps sampling takes ``min(max_frames, max(1, int(duration * fps)))`` frames the same way (which of the two:
:class:`FrameSampling`), and :func:`segment_centre_indices` is MVBench's rule for its bounded tasks.

Decoding uses PyAV and touches only what it needs: the targets are visited in time order, the decoder
seeks only when a keyframe lies between its position and the next target (so dense sampling becomes
one sequential pass), and a target is matched to the first frame whose timestamp reaches it. Frames
are matched by timestamp, not by counting, because counters are meaningless after a seek.

What comes back is what :class:`FrameInfo` says came back. A target that cannot be decoded (a damaged
file) gets the nearest frame that can, if that frame lies within half the spacing to the neighbouring
targets, and is left out otherwise; the clip is then ``damaged`` and a warning is logged. Timestamps
that cannot tell frames apart (missing, or repeated as when every frame duration is zero) are not used
at all: frames are then counted in decoding order and the clip has no fps, duration or timestamps.
"""

from __future__ import annotations

import itertools
import logging
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
from tinyvideo.files import atomic_write

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

# x264's default keyframe interval is 250 frames, 10 s at 25 fps.
UNINDEXED_KEYFRAME_INTERVAL = 10.0

IndexChooser = Callable[[int, float | None], Sequence[int]]  # (total_frames, fps or None) -> frame indices
_Chooser = Callable[..., np.ndarray]  # (frame times from the first, fps or None, truncated=False) -> frame indices


class VideoDecodeError(InputError):
    """A video, frame folder or image that is missing, empty or cannot be decoded."""


@dataclass(frozen=True)
class FrameInfo:
    """What was sampled from a video, for logs and reproducibility.

    ``indices`` index the frames returned, one per returned frame (0-based, presentation order, repeats
    allowed), and ``targets`` the frames they were sampled for: the same unless a target could not be
    decoded and a stand-in was taken. A stand-in lies within half the spacing to the neighbouring
    targets (half the video for a lone target); a target without one is listed in ``missing`` and left
    out, so fewer frames come back. ``damaged`` tells whether either happened.
    ``timestamps`` are the presentation times of the returned frames in seconds from the first frame.
    ``total_frames`` is the frame count the targets were drawn from, and ``frame_count_source`` says
    where it came from: ``"header"`` (the container's frame count), ``"estimated"`` (duration x average
    rate, e.g. Matroska/WebM, whose headers carry no count), ``"scanned"`` (counted packet by packet: no
    usable header, variable frame rate, an MP4 edit list that shows fewer frames than the file stores,
    or a file that ends early), ``"files"`` (a frame folder) or ``"image"``. ``truncated`` is True when
    the header promised more frames than could be decoded; the targets are then drawn from the
    decodable part. ``duration`` is ``total_frames / fps``. ``fps``, ``duration`` and ``timestamps``
    are None when the file's timestamps cannot tell its frames apart; frames are then indexed in
    decoding order.
    """

    indices: tuple[int, ...]
    targets: tuple[int, ...]
    missing: tuple[int, ...]
    timestamps: tuple[float, ...] | None
    total_frames: int
    frame_count_source: str
    fps: float | None
    duration: float | None
    backend: str
    truncated: bool = False

    @property
    def damaged(self) -> bool:
        """Whether some frames are not the ones sampled: stand-ins taken or targets left out."""
        return bool(self.missing) or self.indices != self.targets


@dataclass(frozen=True)
class FrameSampling:
    """How many frames training, evaluation and ``infer`` take from a video, spread uniformly over it:
    ``num_frames`` frames, or one per 1/``fps`` seconds (``fps`` in frames per second of video; at least one
    frame) and at most ``max_frames`` frames. Exactly one of ``num_frames`` and ``fps`` is set
    (``FrameSampling(None, fps=1.0)`` samples by rate); ``max_frames`` only with ``fps``."""

    num_frames: int | None = 16
    fps: float | None = None
    max_frames: int | None = None

    def __post_init__(self):
        if (self.num_frames is None) == (self.fps is None):
            raise InputError(f"give exactly one of num_frames and fps; got num_frames={self.num_frames}, fps={self.fps}")
        if self.max_frames is not None and self.fps is None:
            raise InputError("max_frames caps fps sampling; with num_frames it has no effect (set fps instead)")
        for name in ("num_frames", "max_frames"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.fps is not None and not self.fps > 0:
            raise InputError(f"fps must be greater than 0; got {self.fps}")

    @classmethod
    def from_config(cls, config) -> FrameSampling:
        """A training config's sampling: ``fps`` (with ``max_frames``) when set, else its ``num_frames``."""
        return cls(None if config.fps is not None else config.num_frames, config.fps, config.max_frames)

    def count(self, total: int, rate: float | None) -> int:
        """How many frames to take from ``total`` frames shown at ``rate`` frames per second (needed by ``fps``)."""
        if self.num_frames is not None:
            return self.num_frames
        count = max(1, int(total / rate * self.fps))
        return count if self.max_frames is None else min(count, self.max_frames)


def uniform_indices(total: int, num: int) -> np.ndarray:
    """``num`` indices spread over ``total`` frames, first and last included, repeats when ``num > total``."""
    return np.linspace(0, total - 1, num, dtype=int)


def segment_centre_indices(
    bound: tuple[float, float] | None, fps: float, max_frame: int, first_idx: int = 0, num: int = 16
) -> np.ndarray:
    """MVBench's frame rule (docs/published-format.md 2.2 C): the centres of ``num`` equal segments of ``bound``.

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
    - ``fps=f``: ``max(1, int(duration * f))`` frames spread uniformly, at most ``max_frames`` (a :class:`FrameSampling`);
    - neither: every frame, or ``max_frames`` spread uniformly if the video has more;
    - ``indices``: explicit frame indices, or a function ``(total_frames, fps) -> indices`` for rules
      that need the frame count first (e.g. :func:`segment_centre_indices`); ``fps`` is None for a
      video whose timestamps cannot tell its frames apart.
    ``start``/``end`` (seconds from the first frame) restrict the first three to frames inside that window.
    ``fps`` sampling and ``start``/``end`` need timestamps: a video without usable ones raises ``ValueError``.

    A folder of images (``00001.jpg``, ``00002.jpg``, ... sorted by name) is a video at ``folder_fps``
    frames per second. A still image is a one-frame video lasting one second, so N frames are N copies.
    ``threads`` is the decoder's thread count. One suits DataLoader workers (parallel already) and sparse
    sampling (every seek restarts a threaded decoder); 0 lets FFmpeg use every core, which pays off for
    dense sampling of large videos in a single process.

    Returns ``(frames, info)``: uint8 RGB [T, H, W, 3], upright (rotation metadata applied), and a
    :class:`FrameInfo` naming the frames returned. T is the number of frames sampled, less any left out of
    a damaged file (``info.missing``). Raises :class:`VideoDecodeError` for a missing, empty or undecodable input and
    ``ValueError`` for contradictory arguments or a window outside the video.
    """
    if indices is not None and any(a is not None for a in (num_frames, fps, max_frames, start, end)):
        raise ValueError("indices cannot be combined with num_frames, fps, max_frames, start or end")
    sampling = None if num_frames is None and fps is None else FrameSampling(num_frames, fps, max_frames)
    if sampling is None and max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1; got {max_frames}")
    if start is not None and end is not None and end < start:
        raise ValueError(f"end ({end}) is before start ({start})")

    def choose(times: np.ndarray, rate: float, truncated: bool = False) -> np.ndarray:
        """Indices into ``times`` (seconds from the first frame); a truncated video clamps explicit ones."""
        if indices is None:
            return _sample(times, rate, sampling, max_frames, start, end, path)
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


def load_video(path: str | os.PathLike, sampling: FrameSampling) -> np.ndarray:
    """uint8 frames [T,H,W,3] sampled as `sampling` says; a still image is one frame. One decoder thread:
    this runs in DataLoader workers."""
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        frames, _ = read_frames(path)
    else:
        frames, _ = read_frames(path, sampling.num_frames, sampling.fps, sampling.max_frames, threads=1)
    return frames


def read_exact_frames(path: Path, indices: list[int]):
    """The frames at `indices`, or `VideoDecodeError` when any of them cannot be decoded: another frame in
    its place would pair that frame with the wrong target."""
    frames, info = read_frames(path, indices=indices)
    if info.damaged:
        lost = [t for t, i in zip(info.targets, info.indices) if t != i] + list(info.missing)
        raise VideoDecodeError(f"{path}: frames {lost} cannot be decoded")
    return frames


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
    encoder_options = {"crf": "18", **options} if codec == "libx264" else dict(options)

    def encode(partial: str) -> None:
        with av.open(partial, mode="w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=encoder_options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in itertools.chain([first], frames):
                frame = av.VideoFrame.from_ndarray(np.asarray(frame, dtype=np.uint8), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())

    return atomic_write(path, encode)


def _sample(
    times: np.ndarray,
    rate: float | None,
    sampling: FrameSampling | None,
    max_frames: int | None,
    start: float | None,
    end: float | None,
    path: Path,
) -> np.ndarray:
    """Indices for `sampling` inside the ``[start, end]`` window; with None, every frame (at most `max_frames`)."""
    if rate is None and ((sampling is not None and sampling.fps is not None) or start is not None or end is not None):
        raise ValueError(f"{path}: its timestamps cannot tell frames apart, so fps, start and end cannot apply")
    eps = 1e-6
    lo = int(np.searchsorted(times, start - eps)) if start is not None else 0
    hi = int(np.searchsorted(times, end + eps, side="right")) - 1 if end is not None else len(times) - 1
    if lo > hi:
        raise ValueError(
            f"{path}: window [{start}, {end}] s holds no frame (the video has {len(times)} frames over "
            f"{len(times) / rate:.3f} s)"
        )
    span = hi - lo + 1
    count = sampling.count(span, rate) if sampling is not None else min(span, max_frames or span)
    return lo + uniform_indices(span, count)


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
    taken = tuple(int(i) for i in chosen)
    info = FrameInfo(taken, taken, (), (0.0,) * len(chosen), 1, "image", 1.0, 1.0, _pillow_backend())
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
    taken = tuple(int(i) for i in chosen)
    info = FrameInfo(
        taken, taken, (), tuple(float(times[i]) for i in chosen), len(files), "files", float(rate),
        len(files) / rate, _pillow_backend(),
    )
    return np.stack(frames)[inverse], info


def _natural_key(path: Path) -> list:
    """Sort ``2.jpg`` before ``10.jpg`` as well as zero-padded names."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _pillow_backend() -> str:
    return f"pillow {PIL.__version__}"


def _read_video(path: Path, choose: _Chooser, threads: int) -> tuple[np.ndarray, FrameInfo]:
    try:
        with _Decoder(path, threads) as decoder:
            return _sample_video(path, decoder, choose)
    except av.FFmpegError as error:
        raise VideoDecodeError(f"{path}: cannot decode ({error.strerror or error})") from error
    except _NoTimestamps:
        raise VideoDecodeError(f"{path}: the first frame after a seek carries no timestamp") from None


def _sample_video(path: Path, decoder: _Decoder, choose: _Chooser) -> tuple[np.ndarray, FrameInfo]:
    if decoder.origin is None:
        raise VideoDecodeError(f"{path}: no decodable frames")
    rate, times, source = _frame_times(path, decoder)
    promised = len(times)
    slack = 0 if source == "header" else 1  # an estimate may be one frame high
    while True:
        chosen = choose(times, rate, truncated=len(times) < promised)
        targets, inverse = np.unique(times[chosen], return_inverse=True)
        tolerance = _tolerance(times, rate or 1.0)  # a counting clock ticks once per frame
        reach = _reach(targets, times[-1], tolerance)
        frames, found = None, []  # found: per target, the time of the frame taken, or None
        for match in decoder.frames_at(decoder.origin + targets, tolerance, reach):
            if match is not None:
                time, rgb = match
                if frames is None:  # filled in place: no second copy of a long clip
                    frames = np.empty((len(chosen), *rgb.shape), dtype=np.uint8)
                if rgb.shape != frames.shape[1:]:
                    raise VideoDecodeError(f"{path}: frame size changes from {frames.shape[1:3]} to {rgb.shape[:2]}")
                frames[inverse == len(found)] = rgb
            found.append(None if match is None else match[0] - decoder.origin)
        if len(found) == len(targets):
            break
        # The file ends before a target: keep only what lies before it, counted packet by packet.
        if source != "scanned":
            times, source = _scan(path, decoder), "scanned"
            if decoder.counting:  # the times are positions now: sample them afresh
                rate = None
                continue
        times = times[times < targets[len(found)] - tolerance]
        if len(times) == 0:
            raise VideoDecodeError(f"{path}: no decodable frames")
    if frames is None:
        raise VideoDecodeError(f"{path}: none of the sampled frames, nor any frame near them, can be decoded")
    kept = np.array([found[i] is not None for i in inverse])
    taken = np.array([found[i] for i in inverse[kept]])
    indices = np.minimum(np.searchsorted(times, taken - tolerance), len(times) - 1)
    info = FrameInfo(
        indices=tuple(int(i) for i in indices),
        targets=tuple(int(i) for i in chosen[kept]),
        missing=tuple(int(i) for i in chosen[~kept]),
        timestamps=None if rate is None else tuple(float(t) for t in taken),
        total_frames=len(times),
        frame_count_source=source,
        fps=None if rate is None else float(rate),
        duration=None if rate is None else len(times) / float(rate),
        backend=f"pyav {av.__version__}",
        truncated=len(times) < promised - slack,
    )
    if info.damaged:
        stand_ins = int(np.sum(indices != chosen[kept]))
        logger.warning(
            "%s is damaged: %d of %d sampled frames cannot be decoded (%d replaced by a frame within half the "
            "sampling spacing, %d left out)", path, stand_ins + len(info.missing), len(chosen), stand_ins,
            len(info.missing),
        )
    return (frames if kept.all() else frames[kept]), info


def _reach(targets: np.ndarray, span: float, tolerance: float) -> np.ndarray:
    """How far from each target (sorted times) a stand-in for it may lie: half the way to the nearest
    other target, so a stand-in is always nearer its own target than any other (a lone target: half of
    ``span``, the video's length); never less than ``tolerance``, so an exact frame always matches."""
    gaps = np.diff(targets)
    nearest = np.minimum(np.concatenate([[span], gaps]), np.concatenate([gaps, [span]]))
    return np.maximum(nearest / 2, tolerance)


def _frame_times(path: Path, decoder: _Decoder) -> tuple[float | None, np.ndarray, str]:
    """``(fps, time of every frame in seconds from the first, count source)``.

    A constant-rate video whose header agrees with itself (:func:`_header_grid_holds`) has frame ``k``
    at ``k / fps``. Any other is scanned for its real timestamps, and its fps is then measured from
    them. Frames that the timestamps cannot tell apart are counted instead (:func:`_scan`): the
    "times" are then positions 0, 1, 2, ... and fps is None.
    """
    if decoder.counting:  # the frames carry no timestamps
        return None, _scan(path, decoder), "scanned"
    stream = decoder.stream
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise VideoDecodeError(f"{path}: the video stream has no frame rate")
    count, source = stream.frames, "header"
    if count <= 0:
        seconds = _duration(decoder.container, stream, decoder.origin)
        count, source = round(seconds * rate) if seconds else 0, "estimated"
    if count > 0 and _header_grid_holds(stream, count, rate):
        return float(rate), np.arange(count) / float(rate), source
    times = _scan(path, decoder)
    if decoder.counting:
        return None, times, "scanned"
    measured = (len(times) - 1) / times[-1] if len(times) > 1 and times[-1] > 0 else float(rate)
    return measured, times, "scanned"


def _header_grid_holds(stream: av.video.stream.VideoStream, count: int, rate: Fraction) -> bool:
    """Whether frame ``k`` of the header's ``count`` frames is at ``k / rate``: the rate is constant
    (the average rate is the base rate) and the stream's duration, where given, holds ``count`` frames.

    An MP4 cut without re-encoding keeps every sample of the cut GOPs but its edit list shows only
    some: the header then counts more frames than its duration holds. Zero frame durations leave no
    base rate.
    """
    constant = bool(stream.base_rate) and stream.average_rate == stream.base_rate
    seconds = float(stream.duration * stream.time_base) if stream.duration else None
    return constant and (seconds is None or abs(seconds * float(rate) - count) <= 1)


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


def _scan(path: Path, decoder: _Decoder) -> np.ndarray:
    """Times (s, from the first) of every frame shown, read in a second pass without decoding.

    When the timestamps cannot tell the frames apart (one is missing, or two are equal, as when every
    frame duration is zero), the decoder is switched to counting frames, and their positions 0, 1,
    2, ... in decoding order are returned instead.
    """
    stamps = _packet_times(path, decoder.stamp)
    times = np.sort(stamps)
    if decoder.counting or np.isnan(times).any() or (np.diff(times) <= 0).any():
        if not decoder.counting:
            logger.warning("%s: its timestamps cannot tell frames apart; frames are counted in decoding order", path)
            decoder.count_frames()
        return np.arange(len(stamps), dtype=np.float64)
    return times - times[0] if len(times) else times


def _packet_times(path: Path, stamp: str) -> np.ndarray:
    """The time (s) of every readable video packet that is shown, in file order; NaN for one without.

    Packets an edit list hides (flagged to discard) are not shown.
    """
    times = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    value = getattr(packet, stamp)
                    times.append(np.nan if value is None else value * time_base)
        except av.FFmpegError:
            pass  # a damaged tail: what was read so far is the decodable part
    return np.array(times, dtype=np.float64)


def _tolerance(times: np.ndarray, rate: float) -> float:
    """Half the smallest gap between frames: timestamps rounded by the container still match."""
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return 0.5 * float(gaps.min()) if len(gaps) else 0.5 / rate


class _NoTimestamps(Exception):
    """The first frame decoded from some position carries no timestamp: at the start of the file (a raw
    elementary stream), frames are then counted instead."""


class _Decoder:
    """Frames of one video file's first video stream by time, decoding as little as possible.

    It opens the file and starts at its beginning (``origin`` is the first frame's time, even if that
    frame cannot be decoded), moves only forward through the targets, and seeks only when a keyframe
    lies between its position and the next target. Its clock is the frames' timestamps in seconds or,
    once counting (frames without timestamps, or :meth:`count_frames`), their positions in decoding
    order; a counting decoder never seeks: to go back it starts over.
    """

    def __init__(self, path: Path, threads: int):
        self.path, self.threads = path, threads
        self.counting = False
        try:
            self._open()
        except _NoTimestamps:
            self.counting = True
            self._open()

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.container.close()

    def count_frames(self) -> None:
        """Index frames by their position in decoding order from now on, starting over."""
        self.counting = True
        self._start_over()

    def frames_at(
        self, targets: np.ndarray, tolerance: float, reach: np.ndarray
    ) -> Iterator[tuple[float, np.ndarray] | None]:
        """For each target time (sorted, seconds), ``(time, rgb)`` of the frame at it; if that frame
        cannot be decoded, of the nearest decodable one within the target's ``reach``; else None.

        Stops early, yielding fewer results, when the file ends before a target.
        """
        for target, limit in zip(targets, reach):
            if self.current is None or self._keyframe_between(self.current[0], target, tolerance):
                self._seek(target, tolerance)
            while self.current is not None and self.current[0] < target - tolerance:
                self.previous, self.current = self.current, next(self.frames, None)
            if self.current is None:
                return
            time, frame = min(filter(None, (self.previous, self.current)), key=lambda f: abs(f[0] - target))
            yield (time, _to_rgb(frame)) if abs(time - target) <= limit else None

    def _open(self) -> None:
        """Open the file and decode its first frame; the file is closed again if that fails."""
        self.container = av.open(str(self.path))
        try:
            if not self.container.streams.video:
                raise VideoDecodeError(f"{self.path}: no video stream")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            self.stream.thread_count = self.threads
            self.time_base = float(self.stream.time_base)
            # AVI stores decode times only; its presentation times are wrong when B-frames are packed in.
            self.stamp = "dts" if self.container.format.name == "avi" else "pts"
            if "matroska" in self.container.format.name:
                self.container.seek(0, stream=self.stream)  # Matroska reads its index (cues) at the first seek
            self.frames = _decode(self.container, self.stream, None if self.counting else self.stamp)
            self.current, self.previous = next(self.frames, None), None
            self.origin = self._start_time()
        except BaseException:
            self.container.close()
            raise

    def _start_time(self) -> float | None:
        """The time of the stream's first frame, even when it cannot be decoded; None when none can.

        The header's start time is a presentation time: decode times (AVI) start from the first frame.
        """
        if self.current is None:
            return None
        start = self.stream.start_time
        if self.counting or start is None or self.stamp != "pts":
            return self.current[0]
        return min(self.current[0], start * self.time_base)

    def _start_over(self) -> None:
        self.container.close()
        self._open()

    def _keyframe_between(self, position: float, target: float, tolerance: float) -> bool:
        """Whether a keyframe lies after ``position`` and at or before ``target``: only then does seeking pay.

        The container's index answers exactly where it reaches. Where it does not (MPEG-TS and live
        recordings have none or build it while reading) a keyframe is assumed within
        ``UNINDEXED_KEYFRAME_INTERVAL`` seconds, and nearer targets are reached by decoding forward.
        A counting decoder's position is no time, so it decodes forward.
        """
        if self.counting:
            return False
        entries = self.stream.index_entries
        if len(entries) == 0 or entries[len(entries) - 1].timestamp * self.time_base < target:
            return target - position > UNINDEXED_KEYFRAME_INTERVAL
        i = entries.search_timestamp(int(target / self.time_base), backward=True)
        return i >= 0 and entries[i].timestamp * self.time_base > position + tolerance

    def _seek(self, target: float, tolerance: float) -> None:
        """Seek to the keyframe before ``target`` and decode its first frame (a counting decoder starts over).

        Some files land after the target, or past the end (MPEG-TS seeks to the next keyframe, truncated
        files index data they lack): then seek again from further back, doubling the step, until the first
        frame is not too late.
        """
        if self.counting:
            self._start_over()
            return
        floor = min(self.origin, 0.0)  # some demuxers refuse to seek before the start
        back = 0.0
        while True:
            position = max(target - back, floor)
            self.container.seek(int(position / self.time_base), stream=self.stream, backward=True)
            self.frames = _decode(self.container, self.stream, self.stamp)
            self.current, self.previous = next(self.frames, None), None
            if (self.current is not None and self.current[0] <= target + tolerance) or position <= floor:
                return
            back = max(1.0, 2 * back)


def _decode(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, stamp: str | None
) -> Iterator[tuple[float, av.VideoFrame]]:
    """``(time, frame)`` in presentation order; a corrupt packet is skipped, a damaged tail ends it.

    The time is the frame's ``stamp`` (``"pts"`` or ``"dts"``) in seconds, or with ``stamp`` None its
    position: 0, 1, 2, ...

    A free function, not a method: a generator holding its decoder would form a reference cycle, and a
    codec context left for the garbage collector can be freed in a forked DataLoader worker, where it
    waits forever for decoder threads that were not copied by the fork.
    """
    time_base = float(stream.time_base)
    step = 1.0 if stamp is None else 1 / float(stream.average_rate or stream.guessed_rate or 1)
    time = None
    for frame, sound in _decoded_frames(container, stream):
        time = _frame_time(frame, stamp, time_base, time, step)
        if sound:
            yield time, frame


def _decoded_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[tuple[av.VideoFrame, bool]]:
    """Every frame the decoder outputs, with whether it is sound.

    Decoders conceal errors: after a packet fails to decode, or one the demuxer found damaged (MPEG-TS
    continuity errors), the frames predicted from it come out looking valid but show stale or mixed
    pictures. So every frame from such a packet up to the next keyframe is unsound, as is any frame the
    decoder itself marks corrupt.
    """
    sound = True

    def judged(frames: Iterable[av.VideoFrame]) -> Iterator[tuple[av.VideoFrame, bool]]:
        nonlocal sound
        for frame in frames:
            sound = sound or frame.key_frame
            yield frame, sound and not frame.is_corrupt

    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                sound = False
                continue
            sound = sound and not packet.is_corrupt
            yield from judged(frames)
    except av.FFmpegError:
        try:
            yield from judged(stream.decode(None))
        except av.FFmpegError:
            return


def _frame_time(
    frame: av.VideoFrame, stamp: str | None, time_base: float, previous: float | None, step: float
) -> float:
    """The frame's time in seconds, or its position when counting (``stamp`` None). Frames drained from
    the decoder at the end carry no decode time (AVI), so they follow the previous frame by one step."""
    value = getattr(frame, stamp) if stamp is not None else None
    if value is not None:
        return value * time_base
    if previous is not None:
        return previous + step
    if stamp is None:
        return 0.0
    raise _NoTimestamps


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB array, turned upright by the stream's display matrix (multiples of 90 degrees)."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb
