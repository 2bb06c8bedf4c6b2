"""The synthetic video-reasoning suite: small H.264 clips of moving, appearing, disappearing and
colour-changing shapes, questions that need the time axis, and every file format the pipeline reads.

It lets the whole pipeline (captions pretraining, Option-form fine-tuning, cold start, GRPO, the five
benchmark adapters) run and learn on a laptop in minutes, with answers that are true by construction.

    suite = generate_suite("synth", seed=0, scale="small")
    suite.path("train", "grpo")         # -> synth/train/grpo.jsonl
    suite.records("test")               # the native test questions

Command line: `tinyvideo synth --out DIR [--seed S] [--scale smoke|small|full] [--preview]`.
`DIR/suite.json` lists every path below, relative to `DIR`:

    videos/{train,val,test}/*.mp4        the clips: H.264, 16 frames, 64x64, 8 fps (the video root)
    annotations/<split>.jsonl            native questions; scenes/<split>.jsonl: tracks and event log
    train/frames.json, captions.json, qa.json, rotated.json, binding.json, reading.json, coldstart.json, grpo.jsonl   training data (synth_formats)
    eval/{mvbench,videomme,mlvu,mmvu,nextqa}/                    the test split in each benchmark's layout
    preview.png                          with --preview
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinyvideo.data.synth_benchmarks import write_benchmarks
from tinyvideo.data.synth_formats import write_split, write_training
from tinyvideo.data.synth_preview import write_preview
from tinyvideo.data.synth_questions import FAMILIES, Clip, balanced, design
from tinyvideo.data.synth_scenes import FPS, FRAMES, SIZE, Scene, render
from tinyvideo.errors import InputError
from tinyvideo.files import write_json
from tinyvideo.rows import read_json_values
from tinyvideo.video import write_video

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MANIFEST = "suite.json"
VERSION = 6  # of the suite's files; 2: `train/qa.json` has each question three times (`synth_formats.qa_records`);
# 3: the cold-start answers state the answer's text, then its letter (`synth_text.reasoning`); 4: they state it first;
# 5: `train/rotated.json`, the Option-mode rows with their options rotated (`synth_formats.rotated_records`);
# 6: `train/reading.json`, the Option-mode questions about the clip's caption, text only (`synth_formats.reading_records`)
_INCOMPLETE = ".synth-incomplete"
_OWNED = ("videos", "annotations", "scenes", "train", "eval", MANIFEST, "preview.png")


@dataclass(frozen=True)
class Scale:
    """Clips per task in each split, and the size of the cold-start set."""

    train: int
    val: int
    test: int
    coldstart: int


# small: 280 clips per task (1,960 in all) is a few minutes of training for a tiny model on 2 CPU cores,
# yet enough that it has to learn the visual rule rather than memorise clips; test has 40 per task,
# a multiple of 4 and 5, so answer letters are exactly uniform. full: 200 test questions per task, as MVBench.
SCALES = {
    "smoke": Scale(train=8, val=4, test=8, coldstart=14),
    "small": Scale(train=280, val=20, test=40, coldstart=28),
    "full": Scale(train=2000, val=100, test=200, coldstart=56),
}


@dataclass
class Suite:
    """A generated suite on disk: its folder and the parsed `suite.json`."""

    root: Path
    manifest: dict

    def path(self, *keys: str) -> Path:
        """The file a manifest entry points to, e.g. `path("eval", "videomme", "parquet")`."""
        value = self.manifest
        for key in keys:
            value = value[key]
        return self.root / value

    @property
    def video_root(self) -> Path:
        return self.root / self.manifest["video_root"]

    def records(self, split: str) -> list[dict]:
        """The native question records of a split (`id, video, task, question, options, answer, answer_text`)."""
        return read_json_values(self.path("splits", split, "annotations"))

    def scenes(self, split: str) -> dict[str, Scene]:
        """Ground truth of a split's clips (tracks and event log), by clip id."""
        return {row["id"]: Scene.from_dict(row) for row in read_json_values(self.path("splits", split, "scenes"))}


def load_suite(root: str | Path) -> Suite:
    root = Path(root)
    path = root / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: generate the suite first with `tinyvideo synth --out {root}`")
    return Suite(root, json.loads(path.read_text(encoding="utf-8")))


def open_suite(root: str | Path, seed: int, scale: str) -> Suite:
    """The suite in `root`, generated unless a finished one is there; `InputError` when the one there has
    another seed, scale or version (a rerun must not mix two suites)."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        logger.info("synthetic suite: generating the %s scale into %s", scale, root)
        return generate_suite(root, seed=seed, scale=scale)
    suite = load_suite(root)
    if suite.manifest["version"] != VERSION:
        raise InputError(
            f"{root} holds a suite of version {suite.manifest['version']}, written by an older tinyvideo; this one "
            f"writes version {VERSION}: delete that folder to generate it again"
        )
    found = (suite.manifest["scale"], suite.manifest["seed"])
    if found != (scale, seed):
        raise InputError(
            f"{root} holds a suite of scale {found[0]} and seed {found[1]}, not {scale} and {seed}: choose another "
            "folder, or delete that one to start again"
        )
    logger.info("synthetic suite: reusing %s", root)
    return suite


def design_split(seed: int, split: str, per_task: int) -> list[Clip]:
    """Scenes and questions of one split (no video written): `per_task` clips of every task, interleaved.

    Each clip draws from its own generator keyed by (seed, split, task, index), and the answer and
    letter cycles are prefixes of fixed sequences, so a clip does not depend on the scale (the smoke
    test split is the start of the small one) or on how many threads encode it.
    """
    s = SPLITS.index(split)
    plans = []
    for f, family in enumerate(FAMILIES.values()):
        values = balanced(np.random.default_rng([seed, 1, s, f, 0]), family.n_values, per_task)
        letters = balanced(np.random.default_rng([seed, 1, s, f, 1]), family.n_options, per_task)
        plans.append((f, family, values, letters))
    clips = []
    for i in range(per_task):
        for f, family, values, letters in plans:
            scene, question = design(family, np.random.default_rng([seed, 2, s, f, i]), values[i], letters[i])
            name = f"{split}-{len(clips):05d}"
            clips.append(Clip(name, split, f"{split}/{name}.mp4", scene, question))
    return clips


# The same seed gives byte-identical clips on any x86-64 machine only with x264's plain C code: its
# SIMD kernels are not all bit-exact with it (AVX and AVX2 give other bytes than C and SSE2 on 50 of
# 56 test clips), and on a CPU with AVX-512 those kernels even change the bytes from run to run (41 of
# 560 repeated encodes; decoded pixels up to 6 levels apart). `asm=0` costs about 2.5x the encode time,
# some 4 ms per clip. One encoder thread per clip (clips are encoded in parallel): x264's frame
# threading may change the bytes with the thread count, which by default follows the core count.
_DETERMINISTIC_X264 = {"threads": "1", "x264-params": "asm=0"}


def _encode(job: tuple[str, Scene]) -> None:
    # The frame size is also given to the encoder, so no default stream size can rescale the clips.
    write_video(job[0], render(job[1]), fps=FPS, video_size=f"{SIZE}x{SIZE}", **_DETERMINISTIC_X264)


def encode_clips(clips: list[Clip], video_root: Path, workers: int = 1) -> None:
    """Render and encode every clip. Threads suffice (the encoder and numpy release the GIL), and unlike
    processes they need no `if __name__ == "__main__"` guard in the caller's script."""
    jobs = [(str(video_root / c.video), c.scene) for c in clips]
    for split in {c.split for c in clips}:
        (video_root / split).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for _ in tqdm(
            pool.map(_encode, jobs),
            total=len(jobs),
            desc="encoding clips",
            unit="clip",
            disable=True if len(jobs) < 500 else None,
        ):
            pass


def _prepare(root: Path) -> None:
    """Clear a previous suite in `root` (only the entries it wrote); refuse a folder holding other files."""
    if root.exists() and any(root.iterdir()) and not (root / MANIFEST).exists() and not (root / _INCOMPLETE).exists():
        raise InputError(f"{root} is not empty and holds no synthetic suite: choose a new or empty folder")
    for name in _OWNED:
        target = root / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / _INCOMPLETE).touch()


def generate_suite(
    out_dir: str | Path, seed: int = 0, scale: str = "small", preview: bool = False, workers: int | None = None
) -> Suite:
    """Write the whole suite under `out_dir` and return it; the same seed and scale give the same files."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    root, sizes = Path(out_dir), SCALES[scale]
    _prepare(root)
    splits = {split: design_split(seed, split, getattr(sizes, split)) for split in SPLITS}
    clips = [clip for split in SPLITS for clip in splits[split]]
    workers = workers or min(os.cpu_count() or 1, 8)
    started = time.perf_counter()
    encode_clips(clips, root / "videos", workers)
    logger.info("encoded %d clips in %.1f s with %d worker(s)", len(clips), time.perf_counter() - started, workers)
    manifest = {
        "format": "tinyvideo-synth",
        "version": VERSION,
        "seed": seed,
        "scale": scale,
        "frames": FRAMES,
        "size": SIZE,
        "fps": FPS,
        "video_root": "videos",
        "counts": {split: len(splits[split]) for split in SPLITS},
        "tasks": {name: {"options": f.n_options, "summary": f.summary} for name, f in FAMILIES.items()},
        "splits": {split: write_split(root, split, splits[split]) for split in SPLITS},
        "train": write_training(root, splits["train"], sizes.coldstart, seed),
        "eval": write_benchmarks(root, splits["test"], root / "videos", seed),
    }
    if preview:
        manifest["preview"] = str(write_preview(root / "preview.png", splits["test"]).relative_to(root))
    write_json(root / MANIFEST, manifest)
    (root / _INCOMPLETE).unlink()
    return Suite(root, manifest)
