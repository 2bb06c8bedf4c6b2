"""The GRPO rewards pay exactly the published amounts, never raise, and stay in range."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyvideo.train.rewards import (
    COMBINATIONS,
    REWARD_FUNCS,
    accuracy_reward,
    combine_r1,
    combine_rewards,
    consistency_reward,
    format_reward,
    is_reflective,
    reflection_rate,
    strict_accuracy_reward,
    weighted_sum,
)

SHORT = "The ball rolls left."  # 20 characters: format 0.5 + 0.5 * 20/1200
LONG = "The ball rolls left. " * 60  # 1259 characters once stripped: the whole bonus
SHORT_F = 0.5 + 0.5 * len(SHORT) / 1200
THINK = f"<think>{SHORT}</think>"

# completion, ground truth, published accuracy, strict accuracy, published format, r1 reward
TABLE = [
    ("correct, formatted, short think", f"{THINK}\n<answer>B</answer>", "B", 1, 1, SHORT_F, 1 + SHORT_F),
    ("correct, formatted, long think", f"<think>{LONG}</think><answer>B</answer>", "B", 1, 1, 1.0, 2.0),
    ("600-character think", f"<think>{'x' * 600}</think><answer>B</answer>", "B", 1, 1, 0.75, 1.75),
    ("correct, unformatted", "B", "B", 1, 1, 0.0, 1.0),
    ("wrong, formatted, short think", f"{THINK}<answer>C</answer>", "B", 0, 0, SHORT_F, -SHORT_F),
    ("wrong, formatted, long think", f"<think>{LONG}</think><answer>C</answer>", "B", 0, 0, 1.0, -1.0),
    ("wrong, unformatted", "C", "B", 0, 0, 0.0, -2.0),
    # Published: the first character of the answer is compared, so a hedge pays when it starts right.
    ("hedge, right letter first", f"{THINK}<answer>B or A</answer>", "B", 1, 0, SHORT_F, 1 + SHORT_F),
    ("hedge, right letter second", f"{THINK}<answer>A or B</answer>", "B", 0, 0, SHORT_F, -SHORT_F),
    ("untagged word starting with the letter", "Because the ball rolls left.", "B", 1, 0, 0.0, 1.0),
    ("letter with option text", f"{THINK}<answer>B. the red circle</answer>", "B", 1, 1, SHORT_F, 1 + SHORT_F),
    ("parenthesised letter: first character '('", f"{THINK}<answer>(B)</answer>", "B", 0, 1, SHORT_F, -SHORT_F),
    ("empty answer", f"{THINK}<answer></answer>", "B", 0, 0, SHORT_F, -SHORT_F),
    ("empty think", "<think></think><answer>B</answer>", "B", 1, 1, 0.5, 1.5),
    ("two answer tags", f"{THINK}<answer>B</answer><answer>C</answer>", "B", 1, 0, 0.0, 1.0),
    ("two answer tags, second right", f"{THINK}<answer>C</answer><answer>B</answer>", "B", 0, 0, 0.0, -2.0),
    ("nested think", f"<think><think>{SHORT}</think></think><answer>B</answer>", "B", 1, 1, 0.0, 1.0),
    ("text after the answer", f"{THINK}<answer>B</answer> done", "B", 1, 1, 0.0, 1.0),
    ("answer before think", f"<answer>B</answer><think>{SHORT}</think>", "B", 1, 1, 0.0, 1.0),
    ("whitespace around", f" \n <think>{SHORT}</think>\n\n<answer> B </answer>\n ", "B", 1, 1, SHORT_F, 1 + SHORT_F),
    # Published: `<answer>(.*?)</answer>` without DOTALL misses a multi-line answer, and the
    # whole completion, which starts with "<", is compared instead.
    ("answer on its own line", f"{THINK}<answer>\nB\n</answer>", "B", 0, 1, SHORT_F, -SHORT_F),
    # Published: "b" is not "B"; evaluation, and so the strict reward, reads it as B.
    ("lowercase letter", f"{THINK}<answer>b</answer>", "B", 0, 1, SHORT_F, -SHORT_F),
    ("hedge with a slash", f"{THINK}<answer>B/C</answer>", "B", 1, 0, SHORT_F, 1 + SHORT_F),
    ("explicit statement after a wrong letter", f"{THINK}<answer>A is wrong, so the answer is B</answer>", "B", 0, 1, SHORT_F, -SHORT_F),
    ("empty completion", "", "B", 0, 0, 0.0, -2.0),
]


@pytest.mark.parametrize(
    "completion, truth, accuracy, strict, fmt, r1", [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_published_values(completion, truth, accuracy, strict, fmt, r1):
    for solution in (truth, f"<answer>{truth}</answer>"):
        a = accuracy_reward(completions=[completion], solution=[solution])
        s = strict_accuracy_reward(completions=[completion], solution=[solution])
        f = format_reward(completions=[completion])
        assert (a, s) == ([accuracy], [strict])
        assert f == pytest.approx([fmt])
        assert combine_r1(a, f) == pytest.approx([r1])


def test_conversational_completions_and_trl_keywords():
    text = f"{THINK}<answer>B</answer>"
    completions = [[{"role": "assistant", "content": text}], [{"role": "assistant", "content": "C"}]]
    columns = {"prompts": ["q", "q"], "solution": ["B", "B"], "problem": ["p", "p"], "video_filename": ["v", "v"]}
    assert accuracy_reward(completions=completions, **columns) == [1.0, 0.0]
    assert strict_accuracy_reward(completions=completions, **columns) == [1.0, 0.0]
    assert format_reward(completions=completions, **columns) == pytest.approx([SHORT_F, 0.0])


def test_math_verify_decides_numeric_solutions():
    # A numeric solution parses, so math_verify compares it with any number in the completion:
    # the published reward pays for a wrong letter when the reasoning mentions the number.
    completion = "<think>I count 3 people.</think><answer>B</answer>"
    assert accuracy_reward([completion], ["3"]) == [1.0]
    assert accuracy_reward(["<think>two</think><answer>$\\frac{1}{2}$</answer>"], ["$0.5$"]) == [1.0]
    assert accuracy_reward(["<think>I count 4 people.</think><answer>B</answer>"], ["3"]) == [0.0]


def test_math_verify_off_the_main_thread():
    results = {}

    def score():
        results["value"] = accuracy_reward(["<think>I count 3 people.</think><answer>B</answer>"], ["3"])

    worker = threading.Thread(target=score)
    worker.start()
    worker.join()
    assert results["value"] == [1.0]


def test_solution_must_be_a_string():
    with pytest.raises(TypeError, match="solution column"):
        accuracy_reward(["B"], [None])


def test_solution_without_a_letter_pays_no_strict_accuracy(caplog):
    assert strict_accuracy_reward(["B"], ["the red circle"]) == [0.0]
    assert "names no single option letter" in caplog.text


def test_reward_table_names_are_exact():
    assert REWARD_FUNCS == {
        "accuracy": accuracy_reward,
        "strict_accuracy": strict_accuracy_reward,
        "format": format_reward,
        "consistency": consistency_reward,
    }
    assert COMBINATIONS == ("r1", "weighted_sum")


def test_r1_combination_ordering():
    accuracy = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    fmt = [1.0, 0.5, 0.0, 0.5, 1.0, 0.0]
    assert combine_r1(accuracy, fmt) == [2.0, 1.5, 1.0, -0.5, -1.0, -2.0]
    assert combine_rewards([accuracy, fmt], "r1") == combine_r1(accuracy, fmt)


def test_weighted_sum():
    assert weighted_sum([[1.0, 0.0], [0.5, 0.25]]) == [1.5, 0.25]
    assert weighted_sum([[1.0, 0.0], [0.5, 0.25]], [2.0, 4.0]) == [4.0, 1.0]
    assert combine_rewards([[1.0, 0.0], [0.5, 0.25]], "weighted_sum", [1.0, 0.0]) == [1.0, 0.0]


def test_r1_adds_further_rewards_weighted():
    accuracy, fmt, consistency = [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0, 1.0, 0.0]
    assert combine_rewards([accuracy, fmt, consistency], "r1") == [2.5, 0.5, -2.0]
    assert combine_rewards([accuracy, fmt, consistency], "r1", [0.5]) == [2.0, 0.0, -2.0]


QUESTION = "Which object appears last?\nA. the red circle\nB. the blue square\nC. the red circle turns blue"


@pytest.mark.parametrize(
    "completion, reward",
    [
        # The answer names the option the reasoning ends on, right or wrong.
        ("<think>The blue square appears, then the red circle. So it is the red circle.</think> <answer>A</answer>", 1.0),
        ("<think>The red circle appears first, the blue square last.</think> <answer>B</answer>", 1.0),
        # At the same place the longer text: the reasoning ends on C, not A.
        ("<think>At the end the red circle turns blue.</think> <answer>C</answer>", 1.0),
        ("<think>At the end the red circle turns blue.</think> <answer>A</answer>", 0.0),
        ("<think>So the answer is the blue square.</think> <answer>A</answer>", 0.0),
        # Nothing to agree with: no option in the reasoning, no reasoning, no readable answer.
        ("<think>Something happens at the end.</think> <answer>A</answer>", 0.0),
        ("<answer>A</answer>", 0.0),
        ("<think>So it is the red circle.</think> <answer>A or B</answer>", 0.0),
        ("<think>So it is the red circle.", 0.0),
    ],
)
def test_consistency_reward(completion, reward):
    assert consistency_reward([completion], [QUESTION]) == [reward]
    assert consistency_reward([[{"role": "assistant", "content": completion}]], [QUESTION]) == [reward]


def test_consistency_reward_needs_the_options():
    with pytest.raises(ValueError, match="option lines"):
        consistency_reward(["<think>red</think> <answer>A</answer>"], ["Which object appears last?"])


@pytest.mark.parametrize(
    "rewards, combination, weights",
    [
        ([[1.0]], "r1", None),
        ([[1.0], [0.5]], "r1", [1.0, 1.0]),
        ([[1.0], [0.5], [1.0]], "r1", [1.0, 1.0]),
        ([[1.0], [0.5]], "sum", None),
        ([[1.0], [0.5]], "weighted_sum", [1.0]),
        ([[1.0], [0.5, 0.5]], "weighted_sum", None),
    ],
)
def test_bad_combinations_are_refused(rewards, combination, weights):
    with pytest.raises(ValueError):
        combine_rewards(rewards, combination, weights)


def test_reflection():
    assert is_reflective("<think>The cup is red. Wait, it moved left.</think>")
    assert is_reflective("Hmm, let me check the last frames again.")
    assert is_reflective("I should re-examine the start.")
    assert is_reflective("On second thought, the answer is C.")
    assert not is_reflective("The man waits for the bus, then boards it.")
    assert not is_reflective("The ball rolls left and stops.")
    completions = ["Wait, no.", [{"role": "assistant", "content": "Actually it is B."}], "B", "C"]
    assert reflection_rate(completions) == 0.5
    assert reflection_rate([]) == 0.0


TAGS = ["<think>", "</think>", "<answer>", "</answer>", "A", "B", "(C)", "D.", " or ", "\n", " ", "$", "\\boxed{", "}"]
COMPLETIONS = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(TAGS)), max_size=12).map("".join)
SOLUTIONS = st.sampled_from(["B", "<answer>B</answer>", " <answer> D </answer> ", "A"])


@settings(max_examples=300, deadline=None)
@given(st.lists(COMPLETIONS, min_size=1, max_size=4), SOLUTIONS, st.booleans())
def test_rewards_never_raise_and_stay_in_range(texts, solution, conversational):
    completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
    solutions = [solution] * len(texts)
    accuracy = accuracy_reward(completions, solutions)
    strict = strict_accuracy_reward(completions, solutions)
    fmt = format_reward(completions)
    assert all(a in (0.0, 1.0) for a in accuracy + strict)
    assert all(0.0 <= f <= 1.0 for f in fmt)
    for a, f, r in zip(accuracy, fmt, combine_r1(accuracy, fmt)):
        assert -2.0 <= r <= 2.0
        assert (1.0 <= r <= 2.0) if a else (r == -2.0 or -1.0 <= r <= -0.5)


@settings(max_examples=60, deadline=None)
@given(COMPLETIONS)
def test_math_verify_path_never_raises(text):
    assert accuracy_reward([text], ["2"])[0] in (0.0, 1.0)
