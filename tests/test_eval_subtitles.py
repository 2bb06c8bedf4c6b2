"""LongVideoBench and Video-MME with subtitles, on hand-made files in the benchmarks' native layouts.

The interleaving is checked against cases worked out by hand from the benchmark's rule (a line goes
after the last frame at or before its midpoint, and only if a frame falls strictly inside it, a line
shorter than a second counting as the second around its midpoint); prompts are compared with the
published strings written out in full; the runs end to end use a tiny model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

from media import make_indexed_video
from tinyvideo.cli import main
from tinyvideo.errors import InputError
from tinyvideo.eval.benchmarks import longvideobench, videomme
from tinyvideo.eval.benchmarks.common import AnnotationError, Sampling
from tinyvideo.eval.harness import evaluate
from tinyvideo.eval.outputs import build_report, check_run_file, run_record
from tinyvideo.eval.predictions import read_predictions
from tinyvideo.eval.settings import Settings, load_questions
from tinyvideo.eval.subtitles import Cue, SubtitleError, interleave, lines_at, read_longvideobench, read_srt
from tinyvideo.processing import chat_prompt
from tinyvideo.scratch import build_tiny

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. "
)
OPTION = "Answer with the option's letter from the given choices directly."


def published(user_text: str) -> str:
    return SYSTEM + "USER: " + user_text + " ASSISTANT:"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- the interleaving rule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "times, cues, expected",
    [
        # midpoint 2: frames at 0, 1, 2 come first; the frame at 2 lies inside (1, 3)
        ([0, 1, 2, 3], [(1, 3, "a")], [0, 1, 2, "a", 3]),
        # a frame exactly at the start or the end is not inside: the line is left out
        ([0, 2, 4], [(2, 4, "edge")], [0, 1, 2]),
        # shorter than a second: the second around its midpoint 5.1, (4.6, 5.6), holds no frame
        ([0, 2, 4, 6], [(5.0, 5.2, "short")], [0, 1, 2, 3]),
        # ... and here (5.5, 6.5) holds the frame at 6, after which the line comes
        ([0, 2, 4, 6], [(5.7, 6.3, "short")], [0, 1, 2, 3, "short"]),
        # a line before the first frame's time goes first
        ([1, 3], [(0, 1.5, "x")], ["x", 0, 1]),
        # lines keep the file's order; a frame is placed once
        ([0, 1, 2, 3], [(2, 3.5, "b"), (0, 1.5, "a")], [0, 1, 2, "b", "a", 3]),
        # no frame inside any line
        ([0, 10], [(2, 4, "a"), (5, 8, "b")], [0, 1]),
    ],
)
def test_interleaving_matches_hand_computed_cases(times, cues, expected):
    assert interleave(times, [Cue(s, e, t) for s, e, t in cues]) == expected


def test_video_mme_lines_are_those_showing_at_the_frames():
    cues = [Cue(0, 0.8, "first"), Cue(1.0, 1.5, "second"), Cue(3, 4, "never"), Cue(1.9, 2.0, "ends at a frame")]
    assert lines_at([0, 0.6, 1.2, 2.0], cues) == ["first", "second"]


# ---- subtitle files --------------------------------------------------------------------------------


def test_both_json_schemas_are_read_on_the_video_clock(tmp_path):
    clock = write(tmp_path / "a.json", json.dumps([
        {"start": "00:00:10.500", "end": "00:01:02.250", "line": "one"},
        {"start": "01:00:00.000", "end": "01:00:01.000", "line": "two"},
    ]))
    stamps = write(tmp_path / "b.json", json.dumps([{"timestamp": [12.0, 13.5], "text": "x"}, {"timestamp": [14, None], "text": "y"}]))
    assert read_longvideobench(clock, offset=10.0, duration=99) == (Cue(0.5, 52.25, "one"), Cue(3590.0, 3591.0, "two"))
    assert read_longvideobench(stamps, offset=10.0, duration=30.0) == (Cue(2.0, 3.5, "x"), Cue(4.0, 30.0, "y"))


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "missing"),
        ("", "empty"),
        ("[]", "empty"),
        ('{"start": "00:00:01.000"}', "unknown schema"),
        ('[{"begin": 1, "finish": 2, "words": "a"}]', "unknown schema"),
        ('[{"start": "1 second", "end": "00:00:02.000", "line": "a"}]', "unknown schema"),
        ("not json", "unknown schema"),
        ('[{"start": "00:00:01.000", "end": "00:00:02.000", "line": null}]', "unknown schema"),
        ('[{"timestamp": [1.0, 2.0], "text": 7}]', "unknown schema"),
        ('[{"start": "00:00:05.000", "end": "00:00:04.000", "line": "a"}]', "end before start"),
        ('[{"timestamp": [5.0, 4.0], "text": "a"}]', "end before start"),
    ],
)
def test_a_bad_subtitle_file_says_why(tmp_path, content, reason):
    path = tmp_path / "subs.json"
    if content is not None:
        write(path, content)
    with pytest.raises(SubtitleError, match=str(path)) as error:
        read_longvideobench(path, 0.0, 10.0)
    assert error.value.reason == reason


def test_srt_lines_lose_their_font_tags(tmp_path):
    path = write(tmp_path / "v.srt", SRT)
    assert read_srt(path) == (Cue(0.0, 0.8, "first line"), Cue(1.0, 1.5, "second"), Cue(3.0, 4.0, "never shown"))
    with pytest.raises(SubtitleError) as error:
        read_srt(write(tmp_path / "bad.srt", "just some text\n"))
    assert error.value.reason == "unknown schema"


SRT = """1
00:00:00,000 --> 00:00:00,800
<font color="white" size=".72c">first line</font>

2
00:00:01,000 --> 00:00:01,500
<font color="white" size=".72c">second</font>

3
00:00:03,000 --> 00:00:04,000
never shown
"""


# ---- LongVideoBench --------------------------------------------------------------------------------

ROWS = [
    # vidA: 40 frames at 10 fps; 4 frames every int(40 / 4) = 10th: at 0, 1, 2 and 3 s
    {"id": "a_0", "video_id": "a", "video_path": "vidA.mp4", "subtitle_path": "vidA_en.json", "duration": 4.0,
     "duration_group": 15, "question": "What comes first?", "candidates": ["one", "two", "three", "four"],
     "correct_choice": 2, "question_category": "S2E", "topic_category": "NP-News-Programs", "level": "L1-Perception",
     "position": [1], "starting_timestamp_for_subtitles": 0.0},
    {"id": "a_1", "video_id": "a", "video_path": "vidA.mp4", "subtitle_path": "vidA_en.json", "duration": 4.0,
     "duration_group": 15, "question": "What comes last?", "candidates": ["v", "w", "x", "y", "z"],
     "correct_choice": 4, "question_category": "T3O", "topic_category": "NP-News-Programs", "level": "L2-Relation",
     "position": [2], "starting_timestamp_for_subtitles": 0.0},
    # vidB: 30 frames at 10 fps; every int(30 / 4) = 7th: at 0, 0.7, 1.4 and 2.1 s; subtitles start at 10 s
    {"id": "b_0", "video_id": "b", "video_path": "vidB.mp4", "subtitle_path": "vidB_en.json", "duration": 3.0,
     "duration_group": 60, "question": "Who speaks?", "candidates": ["he", "she", "it", "they"],
     "correct_choice": 0, "question_category": "E2O", "topic_category": "KS-Knowledge", "level": "L1-Perception",
     "position": [0], "starting_timestamp_for_subtitles": 10.0},
    {"id": "b_1", "video_id": "b", "video_path": "vidB.mp4", "subtitle_path": "gone_en.json", "duration": 3.0,
     "duration_group": 60, "question": "What is said?", "candidates": ["hi", "bye", "yes", "no"],
     "correct_choice": 1, "question_category": "SSS", "topic_category": "KS-Knowledge", "level": "L2-Relation",
     "position": [0], "starting_timestamp_for_subtitles": 10.0},
]
VIDEO_A_SUBTITLES = [
    {"start": "00:00:00.500", "end": "00:00:01.500", "line": "one"},  # midpoint 1: after the frames at 0 and 1 s
    {"start": "00:00:02.200", "end": "00:00:02.400", "line": "short"},  # widened to (1.8, 2.8): the frame at 2 s
    {"start": "00:00:02.500", "end": "00:00:03.900", "line": "late"},  # midpoint 3.2: after the last frame
]
VIDEO_B_SUBTITLES = [
    {"timestamp": [10.0, 10.5], "text": "hi"},  # (0, 0.5), widened to (-0.25, 0.75): after the first frame
    {"timestamp": [11.0, None], "text": "bye"},  # (1, 3), midpoint 2: after the frames at 0.7 and 1.4 s
]
INTERLEAVED = {
    "a_0/subs": "subtitles:[image][image]one[image]short[image]late\nquestion: <image>\n",
    "b_0/subs": "subtitles:[image]hi[image][image]bye[image]\nquestion: <image>\n",
}


@pytest.fixture(scope="module")
def lvb_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("longvideobench")
    make_indexed_video(root / "videos" / "vidA.mp4", 40, 10, size=(64, 48))
    make_indexed_video(root / "videos" / "vidB.mp4", 30, 10, size=(64, 48))
    write(root / "subtitles" / "vidA_en.json", json.dumps(VIDEO_A_SUBTITLES))
    write(root / "subtitles" / "vidB_en.json", json.dumps(VIDEO_B_SUBTITLES))
    write(root / "lvb_val.json", json.dumps(ROWS))
    return root


def repacked(rows: list[dict]) -> pd.DataFrame:
    """The Hugging Face parquet's rows: option0..option4, a four-option question padded with "N/A"."""
    table = []
    for row in rows:
        options = row["candidates"] + ["N/A"] * (5 - len(row["candidates"]))
        table.append({k: v for k, v in row.items() if k != "candidates"} | {f"option{i}": o for i, o in enumerate(options)})
    return pd.DataFrame(table)


def test_longvideobench_json_and_parquet_give_the_same_questions(lvb_dir, tmp_path):
    parquet_dir = tmp_path / "repack"
    parquet_dir.mkdir()
    repacked(ROWS).to_parquet(parquet_dir / "validation-00000-of-00001.parquet", index=False)
    (parquet_dir / "videos").symlink_to(lvb_dir / "videos")
    from_json = longvideobench.load(lvb_dir, "option")
    from_parquet = longvideobench.load(parquet_dir, "option")
    assert [q.id for q in from_json] == ["a_0", "a_1", "b_0", "b_1"]
    assert [(q.prompt, q.options, q.answer, q.categories) for q in from_json] == [
        (q.prompt, q.options, q.answer, q.categories) for q in from_parquet
    ]
    assert from_json[0].options == {"A": "one", "B": "two", "C": "three", "D": "four"}
    assert [q.answer for q in from_json] == ["C", "E", "A", "B"]
    assert from_json[1].categories == {"duration_group": "15", "question_category": "T3O"}
    assert from_json[2].sampling == Sampling("stride", (0.0, 3.0))
    assert from_json[2].video == str(lvb_dir / "videos" / "vidB.mp4")


def test_longvideobench_published_prompt(lvb_dir):
    question = longvideobench.load(lvb_dir, "option")[0]
    assert chat_prompt(question.prompt) == published(
        f"<image>\nWhat comes first?\nA. one\nB. two\nC. three\nD. four\n{OPTION}"
    )
    subtitled, state = longvideobench.load(lvb_dir, "option", subtitles=True)[1].at_frames([0.0, 1.0, 2.0, 3.0])
    # The published script writes the placeholder after "question: "; its chat template moves it to the front.
    assert state == "ok" and chat_prompt(subtitled.prompt) == published(
        "<image>\nsubtitles:[image][image]one[image]short[image]late\nquestion: \n"
        f"What comes first?\nA. one\nB. two\nC. three\nD. four\n{OPTION}"
    )


def test_an_all_na_option_row_is_refused_naming_it(tmp_path):
    rows = repacked(ROWS[:2])
    rows.loc[1, [f"option{i}" for i in range(5)]] = "N/A"
    rows.to_parquet(tmp_path / "validation-00000-of-00001.parquet", index=False)
    with pytest.raises(AnnotationError, match=r"validation-00000-of-00001.parquet, row 1: every option .* is 'N/A'"):
        longvideobench.load(tmp_path, "option")


@pytest.mark.parametrize("value", [5, -1, 1.5, "2", True, None])
def test_a_correct_choice_that_is_no_option_index_is_refused(tmp_path, value):
    write(tmp_path / "lvb_val.json", json.dumps([ROWS[0] | {"correct_choice": value}]))
    with pytest.raises(AnnotationError, match=r"lvb_val.json, item 0: correct_choice"):
        longvideobench.load(tmp_path, "option")


@pytest.mark.parametrize("field", ["duration", "starting_timestamp_for_subtitles"])
def test_a_time_that_is_no_number_is_refused_naming_the_row(tmp_path, field):
    write(tmp_path / "lvb_val.json", json.dumps([ROWS[0], ROWS[1] | {field: "4 s"}]))
    with pytest.raises(AnnotationError, match=rf"lvb_val.json, item 1: {field} '4 s' is not a number of seconds"):
        longvideobench.load(tmp_path, "option", subtitles=True)


def test_a_run_file_written_before_a_setting_existed_still_resumes(lvb_dir, tmp_path):
    settings = Settings("longvideobench", "data", "model")
    questions = longvideobench.load(lvb_dir, "option")
    older = run_record(settings, questions)
    del older["settings"]["subtitles"], older["model_sha256"], older["questions_sha256"]
    write(tmp_path / "run.json", json.dumps(older))
    check_run_file(tmp_path, run_record(settings, questions))
    with pytest.raises(InputError, match=r"other settings \(subtitles differ\)"):
        check_run_file(tmp_path, run_record(dataclasses.replace(settings, subtitles=True), questions))


def test_a_bad_subtitle_file_is_logged_once_and_its_questions_asked_without(lvb_dir, caplog):
    with caplog.at_level(logging.WARNING):
        questions = {q.id: q for q in longvideobench.load(lvb_dir, "option", subtitles=True)}
    assert [r.getMessage() for r in caplog.records if "gone_en.json" in r.getMessage()] == [
        f"{lvb_dir / 'subtitles' / 'gone_en.json'}: no such subtitle file: its questions are asked without subtitles"
    ]
    asked, state = questions["b_1/subs"].at_frames([0.0, 0.7, 1.4, 2.1])
    assert state == "missing" and asked.prompt == questions["b_1"].prompt
    assert questions["b_1"].categories["subtitles"] == "w/o subs" and questions["b_1/subs"].categories["subtitles"] == "w/ subs"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    model, processor = build_tiny(["what comes first"], seed=0)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_longvideobench_with_subtitles_end_to_end(lvb_dir, tiny_checkpoint, tmp_path):
    torch.set_num_threads(1)
    settings = Settings("longvideobench", str(lvb_dir), str(tiny_checkpoint), frames=4, max_new_tokens=3, subtitles=True)
    path = evaluate(settings, tmp_path, batch_size=8)
    records = {r["id"]: r for r in read_predictions(path)}
    assert len(records) == 8 and all(r["status"] == "ok" for r in records.values())
    assert records["a_0"]["frames"]["indices"] == [0, 10, 20, 30] and records["b_0"]["frames"]["indices"] == [0, 7, 14, 21]
    for qid, text in INTERLEAVED.items():  # placed by the decoded frames' own timestamps
        assert records[qid]["prompt"] == text + records[qid.split("/")[0]]["prompt"]
    assert "subtitles" not in records["a_0"] and records["b_1/subs"]["subtitles"] == "missing"
    report = build_report(tmp_path)
    assert report["subtitles"] == {"missing": 1, "ok": 3} and report["questions"] == 4
    assert report["without_subtitles"]["overall"]["total"] == 4 and "subtitles" not in report["without_subtitles"]
    assert list(report["breakdowns"]["duration_group"]) == ["15", "60"]
    assert list(report["breakdowns"]["question_category"]) == ["S2E", "E2O", "SSS", "T3O"]
    markdown = (tmp_path / "report.md").read_text()
    assert "- subtitles: missing 1, ok 3" in markdown and "## w/o subs beside w/ subs" in markdown
    assert "| question_category T3O |" in markdown
    invalid = (report["without_subtitles"]["invalid_answers"], report["invalid_answers"])
    assert f"| invalid answers | {invalid[0]} | {invalid[1]} |" in markdown


# ---- Video-MME with subtitles ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def videomme_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videomme")
    rows = []
    for n, stem in enumerate(["yt_AAA", "yt_BBB"]):
        make_indexed_video(root / "data" / f"{stem}.mp4", 20, 10, size=(64, 48))
        rows.append({
            "video_id": f"{n + 1:03d}", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
            "url": "", "videoID": stem, "question_id": f"{n + 1:03d}-1", "task_type": "Counting Problem",
            "question": f"What is said in {stem}?", "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "A",
        })
    (root / "videomme").mkdir()
    pd.DataFrame(rows).to_parquet(root / "videomme" / "test-00000-of-00001.parquet", index=False)
    write(root / "subtitle" / "yt_AAA.srt", SRT)  # yt_BBB has none, as some real videos
    return root


def test_videomme_with_subtitles_from_the_command_line(videomme_dir, tiny_checkpoint, tmp_path, capsys):
    torch.set_num_threads(1)
    output = tmp_path / "out"
    assert main(["eval", "videomme", "--model", str(tiny_checkpoint), "--data", str(videomme_dir), "--frames", "4",
                 "--max-new-tokens", "2", "--num-workers", "0", "--subtitles", "--output", str(output)]) == 0
    records = {r["id"]: r for r in read_predictions(output / "predictions.jsonl")}
    options = f"A. a\nB. b\nC. c\nD. d\n{OPTION}"
    # 20 frames, 4 kept: 0, 6, 12, 19, at 0, 0.6, 1.2 and 1.9 s: the first two lines show
    assert records["001-1"]["frames"]["timestamps"] == pytest.approx([0, 0.6, 1.2, 1.9])
    assert chat_prompt(records["001-1/subs"]["prompt"]) == published(
        f"<image>\nThis video's subtitles are listed below: \nfirst line\nsecond\nWhat is said in yt_AAA?\n{options}"
    )
    assert chat_prompt(records["002-1/subs"]["prompt"]) == published(
        f"<image>\nThis video's subtitles are listed below: \nNo subtitles available\nWhat is said in yt_BBB?\n{options}"
    )
    assert chat_prompt(records["002-1"]["prompt"]) == published(f"<image>\nWhat is said in yt_BBB?\n{options}")
    report = json.loads((output / "report.json").read_text())
    assert report["subtitles"] == {"missing": 1, "ok": 1} and report["without_subtitles"]["questions"] == 2
    assert "w/o subs:" in capsys.readouterr().out


def test_subtitles_are_refused_for_a_benchmark_without_them():
    with pytest.raises(InputError, match="mvbench takes no --subtitles: --subtitles is for videomme, longvideobench"):
        Settings("mvbench", "data", "model", subtitles=True)


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("subtitles", [False, True])
@pytest.mark.parametrize("mode", ["option", "reason", "cloze"])
def test_limit_counts_questions_with_or_without_subtitles(lvb_dir, limit, subtitles, mode):
    settings = Settings("longvideobench", str(lvb_dir), "model", mode=mode, subtitles=subtitles, limit=limit)
    ids = [q.id for q in load_questions(settings)]
    first = [row["id"] for row in ROWS][:limit]
    assert ids == ([i for qid in first for i in (qid, f"{qid}/subs")] if subtitles else first)


def test_videomme_logs_how_many_videos_have_no_subtitle_file(videomme_dir, caplog):
    with caplog.at_level(logging.WARNING):
        videomme.load(videomme_dir, "option", subtitles=True)
    assert [r.getMessage() for r in caplog.records] == [
        "1 of 2 videos have no subtitle file (subtitle/<videoID>.srt): their questions get 'No subtitles available'"
    ]
    caplog.clear()
    videomme.load(videomme_dir, "option")
    assert caplog.records == []
