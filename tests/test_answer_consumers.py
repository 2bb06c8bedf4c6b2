"""Evaluation, `tinyvideo infer`, the web page and the strict GRPO reward read every answer alike."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyvideo.answers import HEDGED, format_options, option_texts, question_options
from tinyvideo.eval.answering import read_response
from tinyvideo.eval.benchmarks.common import Question
from tinyvideo.eval.predictions import record_of
from tinyvideo.eval.report import Scoring, score
from tinyvideo.inference import read_answer
from tinyvideo.serve import answer_line
from tinyvideo.train.rewards import strict_accuracy_reward

OPTIONS = {"A": "the red circle", "B": "a blue square", "C": "sitting on a bench", "D": "a yellow star"}

# response, the option it chose (None: cannot be read, HEDGED: names several)
READINGS = [
    ("C", "C"),
    ("c", "C"),
    ("(c)", "C"),
    ("C. sitting on a bench", "C"),
    ("sitting on a bench", "C"),
    ("Sitting on a bench.", "C"),
    ("A man is sitting on a bench in the park.", "C"),
    ("a blue square", "B"),
    ("a", "A"),
    ("The answer is B.", "B"),
    ("the answer is b", "B"),
    ("Answer: d", "D"),
    ("The answer is a blue square.", "B"),
    ("A is wrong because the circle never moves, so the correct answer is C.", "C"),
    ("The correct option is B. A is wrong because the circle never moves.", "B"),
    ("C is the correct answer; A never moves.", "C"),
    ("B. A is wrong because it stays still.", "B"),
    ("I think it is D.", "D"),
    ("<think>A or B? The square moves.</think><answer>b</answer>", "B"),
    ("<think>It sits.</think><answer>sitting on a bench</answer>", "C"),
    ("<think>x</think>\n<answer>\nD\n</answer>", "D"),
    ("<think>x</think><answer>(A) the red circle</answer>", "A"),
    ("A or B", HEDGED),
    ("A/B/C", HEDGED),
    ("b or c", HEDGED),
    ("(A) and (D)", HEDGED),
    ("The answer is either A or B.", HEDGED),
    ("<think>x</think><answer>B, maybe C</answer>", HEDGED),
    ("<think>x</think><answer>B</answer><answer>C</answer>", HEDGED),
    ("", None),
    ("I cannot tell from the video.", None),
    ("I think the man rides away.", None),
    ("e.g. the one on the left", None),
    ("Answer: E", None),
    ("<think>x</think><answer></answer>", None),
    ("<think>Option A looks right, but B", None),
]


@pytest.mark.parametrize("style", ["dot", "paren"])
@pytest.mark.parametrize("response, chosen", READINGS, ids=[r[0][:40] or "empty" for r in READINGS])
def test_every_consumer_reads_the_same_option(response, chosen, style):
    question = f"What does the person do?\n{format_options(OPTIONS, style)}"
    letter = chosen if chosen in OPTIONS else None

    for truth in OPTIONS:
        asked = Question(id="q", video="v.mp4", prompt=question, text="", options=OPTIONS, answer=truth)
        record = record_of(asked, "ok", {}, **read_response(asked, response))
        assert (record["letter"], record["method"] == HEDGED, record["correct"]) == (letter, chosen == HEDGED, letter == truth)
        assert strict_accuracy_reward([response], [truth], problem=[question]) == [float(letter == truth)]

    infer = read_answer(response, question, "reason")
    assert (infer.letter, infer.method == HEDGED) == (letter, chosen == HEDGED)

    page = {None: "no option could be read from the reason-mode response", HEDGED: "the reason-mode response names more than one option"}
    assert answer_line(response, question, "reason") == page.get(chosen, f"{chosen}. {OPTIONS.get(chosen)}")


def test_report_counts_hedged_answers_apart_from_invalid_ones():
    question = Question(id="q", video="v.mp4", prompt="", text="", options=OPTIONS, answer="C")
    records = [{**record_of(question, "ok", {}, **read_response(question, r)), "id": str(i)} for i, (r, _) in enumerate(READINGS)]
    report = score(records, Scoring())
    hedged = sum(chosen == HEDGED for _, chosen in READINGS)
    invalid = sum(chosen is None for _, chosen in READINGS)
    assert (report["hedged_answers"], report["invalid_answers"]) == (hedged, invalid)
    assert report["overall"]["correct"] == sum(chosen == "C" for _, chosen in READINGS)


LINE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=20).map(str.strip)


@given(st.lists(LINE_TEXT.filter(bool), min_size=1, max_size=8), st.sampled_from(["dot", "paren"]))
def test_question_options_reads_back_the_option_lines(texts, style):
    assert question_options("Which one?\n" + format_options(texts, style)) == option_texts(texts)
