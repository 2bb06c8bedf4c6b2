"""MVBench: 20 tasks of 200 questions, answers given as candidate text, 2 to 5 candidates.

Both Hugging Face layouts are read:
- `main`: `json/<task>.json` and raw sources under `video/<source folder>/` (Charades, `.webm`
  Something-Something, `.avi` NTU RGB+D, JPEG-frame folders at 3 fps for episodic reasoning); the
  five bounded tasks carry `start`/`end` seconds that select the clip.
- `video`: pre-cut clips (`star/Charades_segment`, `tvqa/video_fps3_hq_segment`, ...), with the
  annotations in `json/<task>.json` or in one `test.json` of the form `{"root": {task: folder},
  "meta": {task: [items]}}`; some folders sit under `data0613/`.
A clip found in a pre-cut (`*_segment`) folder is already the window, so its bound is not applied again.
The same file name occurs in several folders (clevrer and perception), so a video is known by its
full path. Prompts (docs/published-format.md 5.2): TinyLLaVA-Video's "(A) c" lines in Option mode,
TinyLLaVA-Video-R1's "Options:" and "A. c" lines in Reason mode. Frames: segment centres inside the
bound, the benchmark's own rule, for every task (the published TinyLLaVA script ignored the bounds
of mp4 tasks, docs/published-format.md 6, item 13).
"""

from __future__ import annotations

from pathlib import Path

from tinyvideo.answers import format_options
from tinyvideo.eval.benchmarks.common import (
    AnnotationError,
    Question,
    Sampling,
    first_existing,
    letter_of,
    lettered,
    require,
)
from tinyvideo.eval.report import Scoring
from tinyvideo.prompts import question_with_instruction
from tinyvideo.rows import read_json

# task -> (folder on the `main` branch, folder on the `video` revision)
TASKS = {
    "action_sequence": ("star/Charades_v1_480", "star/Charades_segment"),
    "action_prediction": ("star/Charades_v1_480", "star/Charades_segment"),
    "action_antonym": ("ssv2_video", "ssv2_video_mp4"),
    "fine_grained_action": ("Moments_in_Time_Raw/videos", "Moments_in_Time_Raw/videos"),
    "unexpected_action": ("FunQA_test/test", "FunQA_test/test"),
    "object_existence": ("clevrer/video_validation", "clevrer/video_validation"),
    "object_interaction": ("star/Charades_v1_480", "star/Charades_segment"),
    "object_shuffle": ("perception/videos", "perception/videos"),
    "moving_direction": ("clevrer/video_validation", "clevrer/video_validation"),
    "action_localization": ("sta/sta_video", "sta/sta_video_segment"),
    "scene_transition": ("scene_qa/video", "scene_qa/video"),
    "action_count": ("perception/videos", "perception/videos"),
    "moving_count": ("clevrer/video_validation", "clevrer/video_validation"),
    "moving_attribute": ("clevrer/video_validation", "clevrer/video_validation"),
    "state_change": ("perception/videos", "perception/videos"),
    "fine_grained_pose": ("nturgbd", "nturgbd_convert"),
    "character_order": ("perception/videos", "perception/videos"),
    "egocentric_navigation": ("vlnqa", "vlnqa"),
    "episodic_reasoning": ("tvqa/frames_fps3_hq", "tvqa/video_fps3_hq_segment"),
    "counterfactual_inference": ("clevrer/video_validation", "clevrer/video_validation"),
}
BOUNDED = frozenset({"action_sequence", "action_prediction", "object_interaction", "action_localization", "episodic_reasoning"})
SCORING = Scoring(breakdowns=("task",))


def prompt(question: str, candidates: dict[str, str], mode: str) -> str:
    if mode == "reason":
        body = question + "\nOptions:\n" + format_options(candidates, "dot")
    else:
        body = question + "\n" + format_options(candidates, "paren")
    return question_with_instruction(body.rstrip(), mode)


def annotations(root: Path) -> dict[str, tuple[list[dict], list[str], Path]]:
    """task -> (items, candidate folders, annotation file), from `test.json` or `json/<task>.json`."""
    combined = root / "test.json"
    if combined.is_file():
        data = read_json(combined)
        if not isinstance(data, dict) or "meta" not in data:
            raise AnnotationError(f"{combined}: expected {{'root': {{task: folder}}, 'meta': {{task: [items]}}}}")
        roots = data.get("root", {})
        found = {}
        for task, items in data["meta"].items():
            folders = ([roots[task]] if task in roots else []) + list(TASKS.get(task, ()))
            if not folders:
                raise AnnotationError(f"{combined}: task {task!r} has no folder in 'root' and is not an MVBench task")
            found[task] = (items, folders, combined)
        return found
    found = {}
    for task, folders in TASKS.items():
        path = root / "json" / f"{task}.json"
        if path.is_file():
            found[task] = (read_json(path), list(folders), path)
    if not found:
        raise AnnotationError(f"{root}: no MVBench annotations (json/<task>.json or test.json)")
    return found


def locate(root: Path, folders: list[str], name: str) -> Path:
    """The clip's path: each folder under the root, `video/` and `data0613/`, as named or converted to mp4."""
    names = [name] + ([str(Path(name).with_suffix(".mp4"))] if Path(name).suffix.lower() != ".mp4" else [])
    bases = [root, root / "video", root / "data0613", root / "video" / "data0613"]
    return first_existing(base / folder / n for folder in folders for n in names for base in bases)


def load(root: Path, mode: str) -> list[Question]:
    questions = []
    for task, (items, folders, source) in annotations(root).items():
        for number, item in enumerate(items):
            where = f"{source}, {task} item {number}"
            require(item, ("video", "question", "candidates", "answer"), where)
            options = lettered(item["candidates"], where)
            video = locate(root, folders, str(item["video"]))
            bound = None
            if task in BOUNDED and "segment" not in video.parent.name:
                require(item, ("start", "end"), where)
                bound = (float(item["start"]), float(item["end"]))
            questions.append(
                Question(
                    id=f"{task}/{number}",
                    video=str(video),
                    prompt=prompt(str(item["question"]), options, mode),
                    text=str(item["question"]),
                    options=options,
                    answer=letter_of(str(item["answer"]), options, where),
                    categories={"task": task},
                    sampling=Sampling("segment_centre", bound),
                )
            )
    return questions
