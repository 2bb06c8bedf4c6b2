"""Evaluation sets built from the test split, each in its benchmark's real file layout.

Field names, file names and folder layouts follow `docs/published-format.md` B.1 and 5.1-5.4, quirks
included (Video-MME options already prefixed "A. ", MVBench answers as candidate text with duplicate file
names across folders, MLVU text answers, MMVU's URL-like video paths and empty choices on open-ended
items, NExT-QA's integer ids and answers, LongVideoBench's index answers, "N/A"-padded parquet options and
subtitle files in both schemas, their clock offset and null end times), so an evaluation adapter can be
tested end to end on real files.
Every clip is 2 seconds long; the Video-MME `duration` bucket and LongVideoBench's `duration_group` are
labels cycled over the videos, not lengths. LongVideoBench's subtitles are the frames' captions, one
line per run of frames with the same caption.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tinyvideo.data.synth_questions import FAMILIES, LETTERS, Clip, balanced, count_probe, presence_probe
from tinyvideo.data.synth_scenes import FPS, FRAMES, SIZE
from tinyvideo.data.synth_text import frame_caption
from tinyvideo.files import atomic_write, write_json, write_text

DURATION = FRAMES / FPS

# task -> (MVBench json stem, video folder under video/, carries start/end bounds)
MVBENCH = {
    "moving_direction": ("moving_direction", "clevrer/video_validation", False),
    "appearance_order": ("character_order", "perception/videos", False),
    "event_order": ("action_sequence", "star/Charades_v1_480", True),
    "counting": ("action_count", "perception/videos", False),
    "state_change": ("state_change", "perception/videos", False),
    "existence_end": ("object_existence", "clevrer/video_validation", False),
    "collision": ("object_interaction", "star/Charades_v1_480", True),
}
# four-option tasks only: Video-MME has four options per question
VIDEOMME_TASK_TYPE = {
    "moving_direction": "Spatial Perception",
    "appearance_order": "Temporal Perception",
    "counting": "Counting Problem",
    "existence_end": "Object Reasoning",
}
VIDEOMME_DOMAINS = (
    ("Knowledge", ("Humanity & History", "Astronomy")),
    ("Film & Television", ("Animation", "Documentary")),
    ("Sports Competition", ("Basketball", "Athletics")),
    ("Artistic Performance", ("Magic Show", "Acrobatics")),
    ("Life Record", ("Daily Life", "Pet & Animal")),
    ("Multilingual", ("Multilingual",)),
)
# task -> (MLVU json stem, question_type); the needle file's type is "findNeedle", as in the real set
MLVU = {
    "event_order": ("1_plotQA", "plotQA"),
    "existence_end": ("2_needle", "findNeedle"),
    "moving_direction": ("3_ego", "ego"),
    "counting": ("4_count", "count"),
    "appearance_order": ("5_order", "order"),
    "collision": ("6_anomaly_reco", "anomaly_reco"),
    "state_change": ("7_topic_reasoning", "topic_reasoning"),
}
MMVU_SUBJECT = {"collision": "Mechanical Engineering", "state_change": "Chemistry", "event_order": "History"}
MMVU_URL = "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main"
# NExT-QA question types (why, descriptive); event_order is TN or TP by its relation (after / before)
NEXTQA_TYPE = {"collision": "CW", "state_change": "DO"}
# LongVideoBench question categories: the referring kind closest to each task's question
LONGVIDEOBENCH_CATEGORY = {
    "moving_direction": "O2E",  # what an object does
    "appearance_order": "O3O",  # an object after another
    "event_order": "E3E",  # an event after another
    "counting": "S2O",  # the objects of a scene
    "state_change": "SAA",  # an attribute that changes
    "existence_end": "SOS",  # an object followed through the video
    "collision": "E2O",  # the object of an event
}
LONGVIDEOBENCH_GROUPS = (15, 60, 600, 3600)
SUBTITLE_OFFSET = 30.0  # the clock of the timestamp-schema files starts this long before the video


def _place(src: Path, dst: Path) -> None:
    """Put a copy of a test video where the benchmark expects it (a hard link when the disk allows)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _youtube_id(rng: np.random.Generator, taken: set) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        vid = "".join(rng.choice(list(alphabet + "_-"), 11))
        if vid[0] in alphabet and vid not in taken:
            taken.add(vid)
            return vid


def _five_options(clips: list[Clip]) -> list[Clip]:
    """The clips MMVU and NExT-QA can use: both have five options per question."""
    return [c for c in clips if FAMILIES[c.question.task].n_options == 5]


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def write_mvbench(out: Path, root: Path, clips: list[Clip], video_root: Path) -> dict:
    """`json/<task>.json` lists of {video, question, candidates, answer text[, start, end]}; videos in
    `video/<folder>/`."""
    tasks: dict[str, list] = {}
    counters: dict[str, int] = {}
    for clip in clips:
        stem, folder, bounded = MVBENCH[clip.question.task]
        k = counters[folder] = counters.get(folder, -1) + 1
        # CLEVRER- and Perception-style names repeat across folders, as in the real set; STAR uses Charades ids.
        name = f"{np.base_repr(k, 36):0>5}.mp4" if folder.startswith("star") else f"video_{10000 + k}.mp4"
        _place(video_root / clip.video, out / "video" / folder / name)
        q = clip.question
        item = {"video": name, "question": q.question, "candidates": q.options, "answer": q.answer_text}
        if bounded:
            item.update(start=0.0, end=DURATION)
        tasks.setdefault(stem, []).append(item)
    for stem, items in tasks.items():
        write_json(out / "json" / f"{stem}.json", items)
    prefixes = {stem: folder for stem, folder, _ in MVBENCH.values() if stem in tasks}
    return {
        "root": _relative(out, root),
        "json": _relative(out / "json", root),
        "video": _relative(out / "video", root),
        "prefixes": prefixes,
    }


def caption_srt(clip: Clip) -> str:
    """The clip's frame captions as an `.srt` file, each line wrapped in Video-MME's `<font>` tag."""
    blocks = []
    for number, line in enumerate(caption_subtitles(clip, timestamp_schema=False), 1):
        start, end = (line[key].replace(".", ",") for key in ("start", "end"))
        blocks.append(f'{number}\n{start} --> {end}\n<font color="white" size=".72c">{line["line"]}</font>\n')
    return "\n".join(blocks)


def write_videomme(out: Path, root: Path, clips: list[Clip], video_root: Path, seed: int) -> dict:
    """`videomme/test-00000-of-00001.parquet`, three questions per video, videos at `data/<videoID>.mp4`,
    subtitles at `subtitle/<videoID>.srt` for two videos in three (some real videos have none)."""
    clips = [c for c in clips if c.question.task in VIDEOMME_TASK_TYPE]
    rng = np.random.default_rng([seed, 4])
    n = len(clips)
    presence_letters, count_letters, durations = balanced(rng, 4, n), balanced(rng, 4, n), balanced(rng, 3, n)
    rows, taken = [], set()
    for j, clip in enumerate(clips):
        video_id, youtube = f"{j + 1:03d}", _youtube_id(rng, taken)
        domain, categories = VIDEOMME_DOMAINS[j % len(VIDEOMME_DOMAINS)]
        questions = [
            (clip.question, VIDEOMME_TASK_TYPE[clip.question.task]),
            (presence_probe(clip.scene, rng, 4, presence_letters[j]), "Object Recognition"),
            (count_probe(clip.scene, rng, 4, count_letters[j]), "Counting Problem"),
        ]
        for i, (q, task_type) in enumerate(questions, 1):
            rows.append(
                {
                    "video_id": video_id,
                    "duration": ("short", "medium", "long")[durations[j]],
                    "domain": domain,
                    "sub_category": categories[(j // len(VIDEOMME_DOMAINS)) % len(categories)],
                    "url": f"https://www.youtube.com/watch?v={youtube}",
                    "videoID": youtube,
                    "question_id": f"{video_id}-{i}",
                    "task_type": task_type,
                    "question": q.question,
                    "options": [f"{LETTERS[k]}. {text}" for k, text in enumerate(q.options)],
                    "answer": q.answer,
                }
            )
        _place(video_root / clip.video, out / "data" / f"{youtube}.mp4")
        if j % 3 != 2:
            srt = caption_srt(clip)
            write_text(out / "subtitle" / f"{youtube}.srt", srt)
    parquet = out / "videomme" / "test-00000-of-00001.parquet"
    atomic_write(parquet, lambda tmp: pd.DataFrame(rows).to_parquet(tmp, index=False))
    return {
        "root": _relative(out, root),
        "parquet": _relative(parquet, root),
        "video": _relative(out / "data", root),
        "subtitles": _relative(out / "subtitle", root),
    }


def write_mlvu(out: Path, root: Path, clips: list[Clip], video_root: Path) -> dict:
    """`json/<N_task>.json` lists of {video, duration, question, candidates (4), answer text, question_type}."""
    tasks: dict[str, list] = {}
    for clip in clips:
        stem, question_type = MLVU[clip.question.task]
        q = clip.question
        # MLVU has four candidates: a five-option question drops its last wrong option.
        wrong = [i for i in range(len(q.options)) if i != q.answer_index]
        candidates = [o for i, o in enumerate(q.options) if i not in wrong[3:]]
        name = f"{question_type}_{len(tasks.get(stem, []))}.mp4"
        _place(video_root / clip.video, out / "video" / stem / name)
        item = {
            "video": name,
            "duration": DURATION,
            "question": q.question,
            "candidates": candidates,
            "answer": q.answer_text,
            "question_type": question_type,
        }
        tasks.setdefault(stem, []).append(item)
    for stem, items in tasks.items():
        write_json(out / "json" / f"{stem}.json", items)
    return {
        "root": _relative(out, root),
        "json": _relative(out / "json", root),
        "video": _relative(out / "video", root),
    }


def write_mmvu(out: Path, root: Path, clips: list[Clip], video_root: Path, seed: int) -> dict:
    """`validation.json`: multiple-choice items with a `choices` dict, plus some open-ended ones (empty choices)."""
    rng = np.random.default_rng([seed, 5])
    items, counters, taken = [], {}, set()
    for j, clip in enumerate(_five_options(clips)):
        q = clip.question
        subject = MMVU_SUBJECT[q.task]
        folder = subject.replace(" ", "_")
        k = counters[folder] = counters.get(folder, 0) + 1
        _place(video_root / clip.video, out / "videos" / folder / f"{k}.mp4")
        common = {
            "video": f"{MMVU_URL}/videos/{folder}/{k}.mp4",
            "youtube_url": f"https://www.youtube.com/watch?v={_youtube_id(rng, taken)}",
        }
        metadata = {
            "subject": subject,
            "textbook": "tinyvideo synthetic scenes",
            "rationale": q.evidence,
            "knowledge": [],
        }
        items.append(
            {
                "id": f"validation_{len(items)}",
                **common,
                "question_type": "multiple-choice",
                "metadata": metadata,
                "question": q.question,
                "choices": dict(zip(LETTERS, q.options, strict=True)),
                "answer": q.answer,
            }
        )
        if j % 3 == 2:  # the real set asks several questions per video and has open-ended items
            items.append(
                {
                    "id": f"validation_{len(items)}",
                    **common,
                    "question_type": "open-ended",
                    "metadata": metadata,
                    "question": q.question,
                    "choices": dict.fromkeys(LETTERS, ""),
                    "answer": q.answer_text,
                }
            )
    write_json(out / "validation.json", items)
    return {
        "root": _relative(out, root),
        "annotations": _relative(out / "validation.json", root),
        "video": _relative(out / "videos", root),
        "url_prefix": MMVU_URL,
    }


def write_nextqa(out: Path, root: Path, clips: list[Clip], video_root: Path, seed: int) -> dict:
    """`test.csv` (integer video ids and answers, a0..a4), `map_vid_vidorID.json`, videos in
    `NExTVideo/<dir>/<id>.mp4`."""
    rng = np.random.default_rng([seed, 6])
    clips = _five_options(clips)
    count_letters = balanced(rng, 5, len(clips))
    rows, mapping = [], {}
    ids = 2_000_000_000 + rng.choice(8_000_000_000, size=len(clips), replace=False)  # ten digits, as VidOR ids
    for j, clip in enumerate(clips):
        video = int(ids[j])
        mapping[str(video)] = f"{j // 25:04d}/{video}"
        _place(video_root / clip.video, out / "NExTVideo" / f"{mapping[str(video)]}.mp4")
        q = clip.question
        qtype = NEXTQA_TYPE.get(q.task) or ("TN" if " after " in q.question else "TP")
        questions = [(q, qtype), (count_probe(clip.scene, rng, 5, count_letters[j]), "DC")]
        for qid, (item, qtype) in enumerate(questions):
            # NExT-QA questions are lower case without a question mark.
            row = {
                "video": video,
                "frame_count": FRAMES,
                "width": SIZE,
                "height": SIZE,
                "question": item.question.lower().rstrip("?"),
                "answer": item.answer_index,
                "qid": qid,
                "type": qtype,
            }
            rows.append(row | {f"a{i}": text for i, text in enumerate(item.options)})
    csv = out / "test.csv"
    atomic_write(csv, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
    write_json(out / "map_vid_vidorID.json", mapping)
    return {
        "root": _relative(out, root),
        "csv": _relative(csv, root),
        "map": _relative(out / "map_vid_vidorID.json", root),
        "video": _relative(out / "NExTVideo", root),
    }


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes // 60):02d}:{int(minutes % 60):02d}:{rest:06.3f}"


def caption_subtitles(clip: Clip, timestamp_schema: bool) -> list[dict]:
    """The clip's frame captions as subtitle lines, one per run of frames with the same caption: in the
    `{start, end, line}` schema on the video's clock, or in the `{timestamp: [s, e], text}` schema on a
    clock `SUBTITLE_OFFSET` seconds ahead, the last line's end null ("until the end")."""
    captions = [frame_caption(clip.scene, frame) for frame in range(FRAMES)]
    starts = [frame for frame in range(FRAMES) if frame == 0 or captions[frame] != captions[frame - 1]]
    lines = []
    for start, end in zip(starts, starts[1:] + [FRAMES]):
        if timestamp_schema:
            last = None if end == FRAMES else SUBTITLE_OFFSET + end / FPS
            lines.append({"timestamp": [SUBTITLE_OFFSET + start / FPS, last], "text": captions[start]})
        else:
            lines.append({"start": _clock(start / FPS), "end": _clock(end / FPS), "line": captions[start]})
    return lines


def write_longvideobench(out: Path, root: Path, clips: list[Clip], video_root: Path) -> dict:
    """`lvb_val.json` (index answers) and its parquet re-pack (`option0..4`, "N/A" padding) beside
    `videos/<video_id>.mp4` and `subtitles/<video_id>_en.json`, the two subtitle schemas alternating."""
    rows = []
    for j, clip in enumerate(clips):
        q, video_id = clip.question, f"lvb{j:05d}"
        timestamp_schema = j % 2 == 1
        _place(video_root / clip.video, out / "videos" / f"{video_id}.mp4")
        write_json(out / "subtitles" / f"{video_id}_en.json", caption_subtitles(clip, timestamp_schema))
        rows.append(
            {
                "video_id": video_id,
                "question": q.question,
                "question_wo_referring_query": q.question,
                "candidates": q.options,
                "correct_choice": q.answer_index,
                "position": [0],
                "topic_category": "SY-Synthetic",
                "question_category": LONGVIDEOBENCH_CATEGORY[q.task],
                "level": "L1-Perception",
                "id": f"{video_id}_0",
                "video_path": f"{video_id}.mp4",
                "subtitle_path": f"{video_id}_en.json",
                "duration_group": LONGVIDEOBENCH_GROUPS[j % len(LONGVIDEOBENCH_GROUPS)],
                "starting_timestamp_for_subtitles": SUBTITLE_OFFSET if timestamp_schema else 0.0,
                "duration": DURATION,
            }
        )
    write_json(out / "lvb_val.json", rows)
    repack = [
        {k: v for k, v in row.items() if k != "candidates"}
        | {f"option{i}": text for i, text in enumerate(row["candidates"] + ["N/A"] * (5 - len(row["candidates"])))}
        for row in rows
    ]
    parquet = out / "validation-00000-of-00001.parquet"
    atomic_write(parquet, lambda tmp: pd.DataFrame(repack).to_parquet(tmp, index=False))
    return {
        "root": _relative(out, root),
        "json": _relative(out / "lvb_val.json", root),
        "parquet": _relative(parquet, root),
        "video": _relative(out / "videos", root),
        "subtitles": _relative(out / "subtitles", root),
    }


def write_benchmarks(root: Path, clips: list[Clip], video_root: Path, seed: int) -> dict:
    """All six evaluation sets under `root/eval/`; returns their manifest entries (paths relative to `root`)."""
    base = root / "eval"
    return {
        "mvbench": write_mvbench(base / "mvbench", root, clips, video_root),
        "videomme": write_videomme(base / "videomme", root, clips, video_root, seed),
        "mlvu": write_mlvu(base / "mlvu", root, clips, video_root),
        "mmvu": write_mmvu(base / "mmvu", root, clips, video_root, seed),
        "nextqa": write_nextqa(base / "nextqa", root, clips, video_root, seed),
        "longvideobench": write_longvideobench(base / "longvideobench", root, clips, video_root),
    }
