"""Each evaluation video decoded once, in DataLoader workers, with the frames its benchmark's published
evaluation would take; a video that cannot be read gets a status instead of frames."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset

from tinyvideo.eval.benchmarks.common import Sampling
from tinyvideo.eval.settings import Settings
from tinyvideo.processing import preprocess_frames
from tinyvideo.video import VideoDecodeError, read_frames
from tinyvideo.vision_towers import FrameTransform


class VideoFrames(Dataset):
    """One item per (video, frame rule): its sampled frames as model pixels (under the last-frame control,
    the last of them as many times), or why there are none.

    Runs in DataLoader workers, so decoding and resizing overlap with the model's work.
    """

    def __init__(self, videos: Sequence[tuple[str, Sampling]], settings: Settings, transform: FrameTransform, threads: int = 0):
        self.videos = list(videos)
        self.settings = settings
        self.transform = transform
        self.threads = threads

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int):
        path, sampling = self.videos[index]
        s = self.settings
        choose = sampling.chooser(Path(path).is_dir(), s.frames, s.fps, s.max_frames)
        rule = {"rule": sampling.rule, "bound": list(sampling.bound) if sampling.bound else None}
        try:
            frames, info = read_frames(path, indices=choose, threads=self.threads)
        except (VideoDecodeError, ValueError) as error:
            status = "unreadable" if Path(path).exists() else "missing"
            return index, None, {**rule, "error": str(error)}, status
        record = {**rule, **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(info).items()}}
        status = "damaged" if info.damaged else "truncated" if info.truncated else "ok"
        if s.control == "last-frame":  # as many frames as sampled, so the connector makes as many tokens
            frames = frames[-1:].repeat(len(frames), axis=0)
        return index, preprocess_frames(frames, self.transform), record, status
