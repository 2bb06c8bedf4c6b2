"""Benchmark adapters on small copies of each benchmark's native files, and the frames each question gets.

Every fixture keeps its benchmark's real quirks (docs/published-format.md B.1 and B.5): Video-MME options that
already carry "A. ", MVBench answers given as candidate text with time bounds and a varying number of
candidates, the same file name in two folders, MLVU's two packagings, MMVU's URL paths and open-ended
items, NExT-QA's integer ids and answers with TP merged into TN. Prompts are compared with the published
strings written out in full. Frames are checked through the index painted into each frame.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from media import make_frame_folder, make_indexed_video, read_indices
from tinyvideo.eval.benchmarks import mlvu, mmvu, mvbench, nextqa, synth, videomme
from tinyvideo.eval.benchmarks.common import AnnotationError, Sampling, lettered
from tinyvideo.eval.frames import VideoFrames
from tinyvideo.eval.settings import Settings
from tinyvideo.processing import chat_prompt
from tinyvideo.vision_towers import FrameTransform

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. "
)
OPTION = "Answer with the option's letter from the given choices directly."
REASON = "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags."


def published(user_text: str) -> str:
    """The qwen2_base generation prompt around a question, as the published scripts build it."""
    return SYSTEM + "USER: <image>\n" + user_text + " ASSISTANT:"


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# ---- Video-MME -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def videomme_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videomme")
    rows = []
    for n, (stem, duration, domain) in enumerate([("yt_AAA", "short", "Knowledge"), ("yt_BBB", "medium", "Sports Competition")]):
        for i in range(3):
            rows.append({
                "video_id": f"{n + 1:03d}", "duration": duration, "domain": domain, "sub_category": "Astronomy",
                "url": f"https://www.youtube.com/watch?v={stem}", "videoID": stem, "question_id": f"{n + 1:03d}-{i + 1}",
                "task_type": ["Counting Problem", "OCR Problems", "Action Reasoning"][i],
                "question": f"Question {i} about {stem}?",
                "options": ["A. Apples.", "B. Two.", "C. A red car.", "D. None of the above."],
                "answer": "ABCD"[i],
            })
    (root / "videomme").mkdir()
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet", index=False)
    touch(root / "data" / "yt_AAA.mp4")
    touch(root / "data" / "yt_BBB.MP4")  # real downloads have upper-case suffixes
    return root


def test_videomme_reads_parquet_and_finds_upper_case_videos(videomme_dir):
    questions = videomme.load(videomme_dir, "option")
    assert [q.id for q in questions] == ["001-1", "001-2", "001-3", "002-1", "002-2", "002-3"]
    assert questions[3].video == str(videomme_dir / "data" / "yt_BBB.MP4")
    assert [q.answer for q in questions[:3]] == ["A", "B", "C"]
    assert questions[0].options == {"A": "Apples.", "B": "Two.", "C": "A red car.", "D": "None of the above."}
    assert questions[1].categories == {"duration": "short", "domain": "Knowledge", "sub_category": "Astronomy", "task_type": "OCR Problems"}
    assert all(q.sampling == Sampling("unique") for q in questions)
    assert [q.id for q in videomme.load(videomme_dir, "option", duration="medium")] == ["002-1", "002-2", "002-3"]


def test_videomme_published_prompts(videomme_dir):
    option, reason = videomme.load(videomme_dir, "option")[0], videomme.load(videomme_dir, "reason")[0]
    options = "A. Apples.\nB. Two.\nC. A red car.\nD. None of the above."
    assert chat_prompt(option.prompt) == published(f"Question 0 about yt_AAA?\n{options}\n{OPTION}")
    assert chat_prompt(reason.prompt) == published(f"Question 0 about yt_AAA?\nOptions:\n{options}\n{REASON}")


# ---- MVBench ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mvbench_main(tmp_path_factory) -> Path:
    """The `main` branch: json/<task>.json, raw sources under video/, frame folders, bounds."""
    root = tmp_path_factory.mktemp("mvbench_main")
    write_json(root / "json" / "action_sequence.json", [
        {"video": "ABC12.mp4", "question": "What did the person do first?", "candidates": ["Sat down.", "Opened the door.", "Ate."],
         "answer": "Opened the door.", "start": 1.0, "end": 2.0},
        {"video": "ABC12.mp4", "question": "What did the person do last?", "candidates": ["Sat down.", "Ate."],
         "answer": "Ate.", "start": 0.5, "end": 2.5},
    ])
    write_json(root / "json" / "object_existence.json", [
        {"video": "video_10142.mp4", "question": "Are there any cubes?", "candidates": ["yes", "no", "not sure"], "answer": "no"},
    ])
    write_json(root / "json" / "action_count.json", [
        {"video": "video_10142.mp4", "question": "How many times?", "candidates": ["3", "4", "5", "6"], "answer": "5"},
    ])
    write_json(root / "json" / "action_antonym.json", [
        {"video": "1234.webm", "question": "What is the action?", "candidates": ["pushing", "pulling", "not sure"], "answer": "pulling"},
    ])
    write_json(root / "json" / "episodic_reasoning.json", [
        {"video": "s01e02_seg01_clip_00", "question": "Why is he angry?", "candidates": ["a", "b", "c", "d", "e"], "answer": "e",
         "start": 2.0, "end": 8.0},
    ])
    make_indexed_video(root / "video" / "star" / "Charades_v1_480" / "ABC12.mp4", 75, 25, size=(64, 48))
    make_indexed_video(root / "video" / "clevrer" / "video_validation" / "video_10142.mp4", 20, 10, size=(64, 48))
    make_indexed_video(root / "video" / "perception" / "videos" / "video_10142.mp4", 30, 10, size=(64, 48))
    make_indexed_video(root / "video" / "ssv2_video" / "1234.webm", 40, 20, codec="libvpx-vp9", size=(64, 48))
    make_frame_folder(root / "video" / "tvqa" / "frames_fps3_hq" / "s01e02_seg01_clip_00", 30, size=(64, 48))
    return root


@pytest.fixture(scope="module")
def mvbench_video_revision(tmp_path_factory) -> Path:
    """The `video` revision: one test.json, pre-cut clips in *_segment folders, some under data0613/."""
    root = tmp_path_factory.mktemp("mvbench_video")
    write_json(root / "test.json", {
        "root": {"action_sequence": "star/Charades_segment", "moving_count": "clevrer/video_validation"},
        "meta": {
            "action_sequence": [{"video": "ABC12.mp4", "question": "First?", "candidates": ["x", "y"], "answer": "y", "start": 1.0, "end": 2.0}],
            "moving_count": [{"video": "video_1.mp4", "question": "How many?", "candidates": ["0", "1", "2"], "answer": "0"}],
        },
    })
    touch(root / "star" / "Charades_segment" / "ABC12.mp4")
    touch(root / "data0613" / "clevrer" / "video_validation" / "video_1.mp4")
    return root


def test_mvbench_main_layout(mvbench_main):
    questions = {q.id: q for q in mvbench.load(mvbench_main, "option")}
    first = questions["action_sequence/0"]
    assert first.answer == "B" and first.options == {"A": "Sat down.", "B": "Opened the door.", "C": "Ate."}
    assert first.sampling == Sampling("segment_centre", (1.0, 2.0))
    assert questions["action_sequence/1"].answer == "B" and len(questions["action_sequence/1"].options) == 2
    # the same file name in two folders stays two videos
    assert questions["object_existence/0"].video != questions["action_count/0"].video
    assert questions["object_existence/0"].sampling == Sampling("segment_centre", None)
    assert questions["episodic_reasoning/0"].video.endswith("tvqa/frames_fps3_hq/s01e02_seg01_clip_00")
    assert questions["action_antonym/0"].categories == {"task": "action_antonym"}


def test_mvbench_video_revision_layout(mvbench_video_revision):
    questions = {q.id: q for q in mvbench.load(mvbench_video_revision, "option")}
    clip = questions["action_sequence/0"]
    assert Path(clip.video) == mvbench_video_revision / "star" / "Charades_segment" / "ABC12.mp4"
    assert clip.sampling.bound is None  # a pre-cut clip is the window already
    assert Path(questions["moving_count/0"].video) == mvbench_video_revision / "data0613" / "clevrer" / "video_validation" / "video_1.mp4"


def test_mvbench_published_prompts(mvbench_main):
    option = {q.id: q for q in mvbench.load(mvbench_main, "option")}["action_sequence/0"]
    reason = {q.id: q for q in mvbench.load(mvbench_main, "reason")}["action_sequence/0"]
    assert chat_prompt(option.prompt) == published(
        f"What did the person do first?\n(A) Sat down.\n(B) Opened the door.\n(C) Ate.\n{OPTION}"
    )
    assert chat_prompt(reason.prompt) == published(
        f"What did the person do first?\nOptions:\nA. Sat down.\nB. Opened the door.\nC. Ate.\n{REASON}"
    )


def test_mvbench_answer_not_among_candidates(tmp_path):
    write_json(tmp_path / "json" / "action_count.json", [{"video": "v.mp4", "question": "q", "candidates": ["1", "2"], "answer": "3"}])
    with pytest.raises(AnnotationError, match=r"action_count item 0.*'3'"):
        mvbench.load(tmp_path, "option")


# ---- MLVU ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlvu_official(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mlvu")
    write_json(root / "json" / "1_plotQA.json", [
        {"video": "movie101_66.mp4", "duration": 246, "question": "What color is the main male character in the video?",
         "candidates": ["Yellow", "Red", "Green", "Blue"], "answer": "Yellow", "question_type": "plotQA"},
    ])
    write_json(root / "json" / "2_needle.json", [
        {"video": "movie101_66.mp4", "duration": 246, "question": "What does the hand coming out of the computer do?",
         "candidates": ["Delivers a product", "Shoots", "Waves", "Points"], "answer": "Waves", "question_type": "findNeedle"},
    ])
    touch(root / "video" / "1_plotQA" / "movie101_66.mp4")
    touch(root / "video" / "2_needle" / "movie101_66.mp4")
    return root


def test_mlvu_official_packaging(mlvu_official):
    questions = mlvu.load(mlvu_official, "option")
    assert [q.id for q in questions] == ["plotQA/0", "needle/0"]
    assert [q.answer for q in questions] == ["A", "C"]
    assert [q.categories["task"] for q in questions] == ["plotQA", "needle"]
    assert questions[0].video != questions[1].video  # same name, two task folders
    assert all(q.sampling == Sampling("unique") for q in questions)


def test_mlvu_published_prompt(mlvu_official):
    text = "What color is the main male character in the video?\n(A) Yellow\n(B) Red\n(C) Green\n(D) Blue"
    assert chat_prompt(mlvu.load(mlvu_official, "option")[0].prompt) == published(f"{text}\n{OPTION}")
    assert chat_prompt(mlvu.load(mlvu_official, "reason")[0].prompt) == published(f"{text}\n{REASON}")


def test_mlvu_hugging_face_packaging(tmp_path):
    rows = [
        {"video_name": "needle_32.mp4", "duration": 500.0, "question": "What is in the box?\n(A) A cat\n(B) A dog\n(C) A hat\n(D) A pen",
         "candidates": ["A cat", "A dog", "A hat", "A pen"], "answer": "C", "task_type": "needleQA", "question_id": "needle_32_0"},
        {"video_name": "plot_1.mp4", "duration": 300.0, "question": "Who wins?", "candidates": ["Ann", "Bob", "Cid", "Dee"],
         "answer": "Bob", "task_type": "plotQA", "question_id": "plot_1_0"},
    ]
    (tmp_path / "data").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", index=False)
    touch(tmp_path / "video" / "2_needle" / "needle_32.mp4")
    questions = mlvu.load(tmp_path, "option")
    assert [(q.id, q.answer, q.categories["task"]) for q in questions] == [("needle_32_0", "C", "needle"), ("plot_1_0", "B", "plotQA")]
    assert questions[0].video == str(tmp_path / "video" / "2_needle" / "needle_32.mp4")
    # options already in the question are not listed twice
    assert questions[0].prompt == f"What is in the box?\n(A) A cat\n(B) A dog\n(C) A hat\n(D) A pen\n{OPTION}"


# ---- MMVU ------------------------------------------------------------------------------------------


def test_mmvu_multiple_choice_items_and_disciplines(tmp_path):
    url = "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos"
    choices = {"A": "O(n)", "B": "O(n log n)", "C": "O(n^2)", "D": "O(1)", "E": "O(log n)"}
    write_json(tmp_path / "validation.json", [
        {"id": "validation_0", "video": f"{url}/Computer_Science/1.mp4", "youtube_url": "", "question_type": "multiple-choice",
         "metadata": {"subject": "Computer Science"}, "question": "What is the complexity?", "choices": choices, "answer": "B"},
        {"id": "validation_1", "video": f"{url}/Computer_Science/1.mp4", "youtube_url": "", "question_type": "open-ended",
         "metadata": {"subject": "Computer Science"}, "question": "Name it.", "choices": dict.fromkeys("ABCDE", ""), "answer": "merge sort"},
        {"id": "validation_2", "video": f"{url}/History/3.mp4", "youtube_url": "", "question_type": "multiple-choice",
         "metadata": {"subject": "History"}, "question": "Which war?", "choices": choices, "answer": "E"},
    ])
    questions = mmvu.load(tmp_path, "reason")
    assert [q.id for q in questions] == ["validation_0", "validation_2"]
    assert questions[0].video == str(tmp_path / "videos" / "Computer_Science" / "1.mp4")
    assert questions[0].categories == {"discipline": "Engineering", "subject": "Computer_Science"}
    assert questions[1].categories == {"discipline": "Humanities_and_Social_Science", "subject": "History"}
    assert questions[0].sampling == Sampling("uniform")
    lines = "A. O(n)\nB. O(n log n)\nC. O(n^2)\nD. O(1)\nE. O(log n)"
    assert chat_prompt(questions[0].prompt) == published(f"What is the complexity?\n{lines}\n{REASON}")
    assert chat_prompt(mmvu.load(tmp_path, "option")[0].prompt) == published(f"What is the complexity?\n{lines}\n{OPTION}")


# ---- NExT-QA ---------------------------------------------------------------------------------------


def test_nextqa_csv_with_integer_ids_and_merged_types(tmp_path):
    header = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4"]
    with open(tmp_path / "test.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerow([4010069381, 300, 640, 480, "why did the boy pick up the ball", 2, 6, "CW", "to throw", "to eat", "to play", "to sit", "to hide"])
        writer.writerow([4010069381, 300, 640, 480, "what did the boy do after falling", 0, 7, "TP", "stood up", "cried", "ran", "sat", "slept"])
    write_json(tmp_path / "map_vid_vidorID.json", {"4010069381": "0000/4010069381"})
    touch(tmp_path / "NExTVideo" / "0000" / "4010069381.mp4")
    questions = nextqa.load(tmp_path, "option")
    assert [q.id for q in questions] == ["4010069381_6", "4010069381_7"]
    assert [q.answer for q in questions] == ["C", "A"]
    assert [q.categories["type"] for q in questions] == ["CW", "TN"]
    assert questions[0].video == str(tmp_path / "NExTVideo" / "0000" / "4010069381.mp4")
    lines = "A. to throw\nB. to eat\nC. to play\nD. to sit\nE. to hide"
    assert chat_prompt(questions[0].prompt) == published(f"why did the boy pick up the ball\n{lines}\n{OPTION}")
    reason = nextqa.load(tmp_path, "reason")[0]
    assert chat_prompt(reason.prompt) == published(f"why did the boy pick up the ball\nOptions:\n{lines}\n{REASON}")


# ---- synthetic suite -------------------------------------------------------------------------------


def test_synth_suite_manifest_and_bare_jsonl(tmp_path):
    rows = [{"id": "test-00000", "video": "test/test-00000.mp4", "task": "counting", "question": "How many circles appear?",
             "options": ["1", "2", "3", "4"], "answer": "B", "answer_text": "2"}]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json(tmp_path / "suite.json", {"video_root": "videos", "splits": {"test": {"annotations": "annotations/test.jsonl"}}})
    touch(tmp_path / "videos" / "test" / "test-00000.mp4")
    [question] = synth.load(tmp_path, "reason")
    assert question.video == str(tmp_path / "videos" / "test" / "test-00000.mp4")
    assert question.categories == {"task": "counting"} and question.answer == "B"
    assert question.prompt == f"How many circles appear?\nOptions:\nA. 1\nB. 2\nC. 3\nD. 4\n{REASON}"
    [direct] = synth.load(tmp_path / "annotations" / "test.jsonl", "option")
    assert direct.video == question.video
    assert direct.prompt == f"How many circles appear?\nA. 1\nB. 2\nC. 3\nD. 4\n{OPTION}"


SYNTH_ROW = {"id": "q", "video": "v.mp4", "task": "counting", "question": "How many?", "options": ["1", "2"], "answer": "B"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"options": "right"}, "options must be a non-empty list"),
        ({"options": "AB"}, "options must be a non-empty list"),
        ({"options": []}, "options must be a non-empty list"),
        ({"options": None}, "options must be a non-empty list"),
        ({"options": {"A": "1"}}, "options must be a non-empty list"),
        ({"options": [["1"], ["2"]]}, "every option must be a text"),
        ({"options": [str(i) for i in range(27)]}, "27 options are more than there are letters"),
        ({"answer": "C"}, "answer 'C' is not one of the option letters A, B"),
        ({"answer": "2"}, "answer '2' is not one of the option letters"),
        ({"answer": ""}, "answer '' is not one of the option letters"),
        ({"answer": "b"}, "answer 'b' is not one of the option letters"),
    ],
)
def test_a_row_whose_options_or_answer_cannot_be_asked_is_refused_naming_file_and_line(tmp_path, change, message):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(SYNTH_ROW) + "\n\n" + json.dumps({**SYNTH_ROW, "id": "bad", **change}) + "\n")
    with pytest.raises(AnnotationError, match=f"^{path} line 3: {re.escape(message)}"):
        synth.load(path, "option")


@pytest.mark.parametrize("options", [["right", "left"], ["1", "2", "3"], [1, 2.5], ["A. a", "B. b"]])
def test_option_lists_keep_each_text_whole(options):
    assert lettered(options, "here") == {letter: str(text) for letter, text in zip("ABC", options)}


def test_a_broken_annotation_line_refuses_the_benchmark_naming_file_and_line(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(SYNTH_ROW) + "\n" + json.dumps(SYNTH_ROW)[:20] + "\n")
    with pytest.raises(AnnotationError, match=f"^{path} line 2: not valid JSON"):
        synth.load(path, "option")


# ---- frames ----------------------------------------------------------------------------------------


def sampled(path: Path, sampling: Sampling, frames=None, fps=None, max_frames=None) -> tuple[list[int], dict]:
    """Frame indices read back from the pixels the harness would give the model, and the frame record."""
    settings = Settings("synth", "data", "model", frames=frames, fps=fps, max_frames=max_frames)
    _, pixels, record, status = VideoFrames([(str(path), sampling)], settings, FrameTransform(64))[0]
    assert status == "ok", record
    as_uint8 = ((pixels.permute(0, 2, 3, 1).numpy() * 0.5 + 0.5) * 255).round().astype(np.uint8)
    return read_indices(as_uint8), record


def test_segment_centres_inside_mvbench_bounds(mvbench_main):
    question = {q.id: q for q in mvbench.load(mvbench_main, "option")}["action_sequence/0"]
    # 25 fps, bound 1-2 s: frames 25..50 in 4 segments of 6.25, centres rounded half to even as published
    indices, record = sampled(Path(question.video), question.sampling, frames=4)
    assert indices == record["indices"] == [28, 34, 40, 47]
    assert record["rule"] == "segment_centre" and record["bound"] == [1.0, 2.0]
    assert record["backend"].startswith("pyav") and record["frame_count_source"] == "header"


def test_segment_centres_in_a_jpeg_folder_at_3_fps(mvbench_main):
    question = {q.id: q for q in mvbench.load(mvbench_main, "option")}["episodic_reasoning/0"]
    # files are numbered from 1: bound 2-8 s at 3 fps is files 6..24, centres 8, 12, 17, 22 (file k shows index k-1)
    indices, record = sampled(Path(question.video), question.sampling, frames=4)
    assert indices == [7, 11, 16, 21]
    assert record["fps"] == 3.0 and record["frame_count_source"] == "files"


def test_segment_centres_without_bounds_in_webm(mvbench_main):
    question = {q.id: q for q in mvbench.load(mvbench_main, "option")}["action_antonym/0"]
    indices, record = sampled(Path(question.video), question.sampling, frames=4)
    assert indices == [4, 14, 24, 33]  # 40 frames, max_frame 39, segments of 9.75
    assert record["frame_count_source"] in ("estimated", "scanned")


def test_unique_rule_drops_repeats_and_uniform_keeps_them(tmp_path):
    short = make_indexed_video(tmp_path / "short.mp4", 5, 10, size=(64, 48))
    assert sampled(short, Sampling("unique"), frames=8)[0] == [0, 1, 2, 3, 4]
    assert sampled(short, Sampling("uniform"), frames=8)[0] == [0, 0, 1, 1, 2, 2, 3, 4]


def test_fps_sampling_with_a_cap(tmp_path):
    video = make_indexed_video(tmp_path / "five_seconds.MP4", 50, 10, size=(64, 48))
    assert sampled(video, Sampling("uniform"), fps=1.0)[0] == [0, 12, 24, 36, 49]
    assert sampled(video, Sampling("uniform"), fps=1.0, max_frames=3)[0] == [0, 24, 49]
    # MVBench counts frames from the whole length (5 s: 5 frames), then takes centres of segments of 49 / 5 = 9.8
    assert list(Sampling("segment_centre").chooser(False, None, fps=1.0)(50, 10.0)) == [4, 14, 24, 33, 43]


def test_unreadable_and_missing_videos_are_reported(tmp_path):
    settings = Settings("synth", "data", "model", frames=4)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    items = VideoFrames([(str(broken), Sampling()), (str(tmp_path / "gone.mp4"), Sampling())], settings, FrameTransform(32))
    assert [(items[i][1], items[i][3]) for i in range(2)] == [(None, "unreadable"), (None, "missing")]
    assert "gone.mp4" in items[1][2]["error"]
