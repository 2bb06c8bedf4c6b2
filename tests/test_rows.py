"""Annotation files: every reader names the file and the line of a bad row, and never loses count of them."""

from __future__ import annotations

import json

import pytest

from tinyvideo.data import llava
from tinyvideo.errors import InputError
from tinyvideo.rows import Row, read_json, read_json_rows
from tinyvideo.train import grpo, vision

GRPO_ROW = {"problem": "Which?\nOptions:\nA. red\nB. green", "solution": "<answer>B</answer>", "video_filename": "v.mp4"}
LLAVA_ROW = {"video": "v.mp4", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}
VISION_ROW = {"video": "v.mp4", "frames": [{"index": 0, "caption": "red"}]}
READERS = {"sft": (llava.read_rows, LLAVA_ROW), "grpo": (grpo.read_rows, GRPO_ROW), "vision": (vision.read_rows, VISION_ROW)}


def lines_with(tmp_path, row, broken_at: int, count: int = 5, blank_every: int = 0):
    """A JSONL file of `count` rows, the `broken_at`-th (0-based) cut short, with blank lines if asked;
    returns the path and the file line of the broken row."""
    lines = []
    for index in range(count):
        if blank_every and index % blank_every == 0:
            lines.append("")
        text = json.dumps({**row, "n": index})
        lines.append(text[: len(text) // 2] if index == broken_at else text)
        if index == broken_at:
            line = len(lines)
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, line


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("broken_at", [0, 2, 4])
@pytest.mark.parametrize("blank_every", [0, 2])
def test_a_broken_jsonl_line_is_skipped_and_named_by_file_and_line_by_every_reader(tmp_path, caplog, reader, broken_at, blank_every):
    read_rows, row = READERS[reader]
    path, line = lines_with(tmp_path, row, broken_at, blank_every=blank_every)
    rows, dropped = read_rows(path)
    assert dropped == [broken_at] and len(rows) == 4
    assert f"{path} line {line} skipped: not valid JSON" in caplog.text


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("cut", [1, 0.3, 0.6, 0.95, -1])
def test_a_json_list_cut_short_is_refused_naming_the_file_and_line(tmp_path, reader, cut):
    _, row = READERS[reader]
    text = json.dumps([row] * 4, indent=2)
    path = tmp_path / "rows.json"
    path.write_text(text[: int(len(text) * cut) if isinstance(cut, float) else cut])
    with pytest.raises(InputError, match=rf"^{path} line \d+: not valid JSON \(.*cut short"):
        READERS[reader][0](path)


def test_rows_know_where_they_are(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n[2]\n{"b": \n')
    assert read_json_rows(path) == [
        Row(f"{path} line 1", {"a": 1}),
        Row(f"{path} line 3", [2]),
        Row(f"{path} line 4", None, "not valid JSON (Expecting value at column 7)"),
    ]
    (tmp_path / "one.jsonl").write_text('{"a": 1}\n')
    assert [row.value for row in read_json_rows(tmp_path / "one.jsonl")] == [{"a": 1}]
    (tmp_path / "list.json").write_text('[{"a": 1},\n {"b": 2}]')
    assert [row.where for row in read_json_rows(tmp_path / "list.json")] == [f"{tmp_path / 'list.json'} item {i}" for i in (0, 1)]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"\xff\xfe{}", "not UTF-8"),
        ('{\n  "rows": [1, 2]\n}', "one JSON value over 3 lines"),
    ],
)
def test_files_that_hold_no_rows_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "rows.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=f"^{path}: {message}"):
        read_json_rows(path)
    if content is None:
        with pytest.raises(InputError, match="no such file"):
            read_json(path)


@pytest.mark.parametrize("solution", ["B", "<answer>B</answer>", "<answer> B </answer>", "<think>x</think><answer>A</answer>"])
def test_grpo_solutions_that_name_an_option_are_kept(solution):
    assert grpo.solution_problem(GRPO_ROW["problem"], solution) is None


@pytest.mark.parametrize(
    "solution",
    ["The answer is B", "<answer>C</answer>", "<answer>B. green</answer>", "<answer></answer>", "<answer>AB</answer>",
     "", "<answer>b</answer>", "<answer>\nB\n</answer>", "B A"],
)
def test_grpo_rows_that_could_never_be_rewarded_are_skipped_with_the_reason(tmp_path, caplog, solution):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(GRPO_ROW) + "\n" + json.dumps({**GRPO_ROW, "solution": solution}) + "\n")
    rows, dropped = grpo.read_rows(path)
    assert dropped == [1] and len(rows) == 1
    assert f"{path} line 2 skipped: solution {solution!r} names none of the options A, B" in caplog.text
