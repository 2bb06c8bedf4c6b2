"""The answer extractor reads real-looking outputs deterministically and never guesses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyvideo.answers import (
    OPTION_INSTRUCTION,
    REASON_INSTRUCTION,
    extract_answer,
    format_options,
    letter_mentions,
    option_texts,
)

OPTIONS = ["the red circle", "a blue square", "the green triangle", "a yellow star"]
WITH_MAN = ["the red circle", "a blue square", "A man is riding a bike", "a yellow star"]

# response, options, letter (None = invalid), method
CORPUS = [
    ("A", OPTIONS, "A", "leading_letter"),
    ("(B)", OPTIONS, "B", "parenthesised"),
    ("C.", OPTIONS, "C", "leading_letter"),
    ("  D) a yellow star\n", OPTIONS, "D", "leading_letter"),
    ("b", OPTIONS, "B", "leading_letter"),
    ("The best answer is D", OPTIONS, "D", "answer_phrase"),
    ("The answer is (C) because the triangle moves last.", OPTIONS, "C", "answer_phrase"),
    ("Answer: B", OPTIONS, "B", "answer_phrase"),
    ("Therefore, the final answer is: **D**", OPTIONS, "D", "answer_phrase"),
    ("The correct option is B. A is wrong because the circle never moves.", OPTIONS, "B", "answer_phrase"),
    ("Best option:(C) the green triangle", OPTIONS, "C", "parenthesised"),
    ("C) the green triangle", OPTIONS, "C", "leading_letter"),
    ("I think it is B.", OPTIONS, "B", "standalone_letter"),
    ("**B**", OPTIONS, "B", "standalone_letter"),
    (
        "Option A shows a circle, but it stays still. B is a square that never moves. "
        "D appears only at the start. The object that moves last is C.",
        OPTIONS,
        "C",
        "standalone_letter",
    ),
    ("Based on the video, the person picks up the cup and leaves the room.", OPTIONS, None, "no_match"),
    ("Based on the video, the red circle moves first and then stops.", OPTIONS, "A", "option_text"),
    ("A man is riding a bike", WITH_MAN, "C", "option_text"),
    ("A man is riding a bike", OPTIONS, None, "no_match"),
    ("A man is riding a bike along the river.", OPTIONS, None, "no_match"),
    ("I think the man rides away.", OPTIONS, None, "no_match"),
    ("e.g. the one on the left", OPTIONS, None, "no_match"),
    ("A is correct", OPTIONS, "A", "answer_phrase"),
    # An explicit statement wins over letters met on the way, wherever it stands.
    ("A is wrong because the circle never moves, so the correct answer is C.", OPTIONS, "C", "answer_phrase"),
    ("B is a square that never moves, so C is the correct answer.", OPTIONS, "C", "answer_phrase"),
    ("The answer is B, C is wrong.", OPTIONS, "B", "answer_phrase"),
    ("B. A is wrong because it stays still.", OPTIONS, "B", "leading_letter"),
    # A letter ruled out is no candidate.
    ("The answer is not A.", OPTIONS, None, "no_match"),
    ("I think it's B, not A.", OPTIONS, "B", "standalone_letter"),
    ("A is wrong. B is wrong. D is wrong. C.", OPTIONS, "C", "standalone_letter"),
    ("A is incorrect, (B) is not right either, so (C).", OPTIONS, "C", "parenthesised"),
    ("A is wrong.", OPTIONS, None, "no_match"),
    ("A and B are wrong; C.", OPTIONS, "C", "standalone_letter"),
    ("It is not B, it is C", OPTIONS, "C", "standalone_letter"),
    # Lowercase letters count where an answer is expected; "a" before a word is the article.
    ("i choose b.", OPTIONS, "B", "answer_phrase"),
    ("I pick d", OPTIONS, "D", "answer_phrase"),
    ("the answer is b", OPTIONS, "B", "answer_phrase"),
    ("The answer is 'c', it's clear.", OPTIONS, "C", "answer_phrase"),
    ("The answer is probably (d).", OPTIONS, "D", "answer_phrase"),
    ("The answer is a blue square.", OPTIONS, "B", "option_text"),
    ("a", OPTIONS, "A", "leading_letter"),
    ("it is a or b, hard to say", OPTIONS, None, "no_match"),
    # A hedge names no single option (both published parsers read its first letter).
    ("A or B", OPTIONS, None, "hedged"),
    ("A/B/C", OPTIONS, None, "hedged"),
    ("A|B", OPTIONS, None, "hedged"),
    ("A and/or B", OPTIONS, None, "hedged"),
    ("B? or maybe C", OPTIONS, None, "hedged"),
    ("b or c", OPTIONS, None, "hedged"),
    ("(A) and (D)", OPTIONS, None, "hedged"),
    ("B, maybe C", OPTIONS, None, "hedged"),
    ("A, B, or C", OPTIONS, None, "hedged"),
    ("The answer is either A or B.", OPTIONS, None, "hedged"),
    ("It could be **A** or **C**.", OPTIONS, None, "hedged"),
    ("Both A and B move, but only C stops.", OPTIONS, "C", "standalone_letter"),
    ("the red circle", OPTIONS, "A", "option_text"),
    ("The Green Triangle.", OPTIONS, "C", "option_text"),
    # The last-mentioned option wins, even when the sentence rules it out.
    ("It is the blue square, not the red circle, that moves.", OPTIONS, "A", "option_text"),
    ("", OPTIONS, None, "empty"),
    ("!!!!", OPTIONS, None, "empty"),
    ("I cannot tell from the video.", OPTIONS, None, "no_match"),
    ("Answer: E", OPTIONS, None, "no_match"),
    ("E", OPTIONS, None, "no_match"),
    ("Answer: E", OPTIONS + ["a purple heart"], "E", "answer_phrase"),
]


@pytest.mark.parametrize("response, options, letter, method", CORPUS, ids=[c[0][:40] or "empty" for c in CORPUS])
def test_corpus(response, options, letter, method):
    got = extract_answer(response, options)
    assert (got.letter, got.method, got.source, got.reasoning) == (letter, method, "response", None)
    assert got.valid is (letter is not None)


# response, letter, method, source, reasoning
TAGGED = [
    ("<think>The circle moves.</think>\n<answer>A</answer>", "A", "leading_letter", "answer_tag", "The circle moves."),
    ("<answer> c </answer>", "C", "leading_letter", "answer_tag", None),
    ("<think>x</think><answer>(D) a yellow star</answer>", "D", "parenthesised", "answer_tag", "x"),
    ("<think>x</think><answer>the green triangle</answer>", "C", "option_text", "answer_tag", "x"),
    ("<think>x</think><answer>B", "B", "leading_letter", "answer_tag", "x"),
    ("<think>x then <answer>C</answer>", "C", "leading_letter", "answer_tag", "x then"),
    ("<think>A or B? It moves.</think> The answer is B.", "B", "answer_phrase", "response", "A or B? It moves."),
    ("The square moves.</think><answer>B</answer>", "B", "leading_letter", "answer_tag", "The square moves."),
    ("<think>x</think><answer>A</answer><answer>B</answer>", None, "hedged", "answer_tag", "x"),
    ("<think>x</think><answer>A</answer><answer>A.</answer>", "A", "leading_letter", "answer_tag", "x"),
    ("<think>x</think><answer>the answer is d</answer>", "D", "answer_phrase", "answer_tag", "x"),
    ("<think>x</think><answer></answer>", None, "empty_answer", "answer_tag", "x"),
    ("<think>x</think><answer>  \n</answer>", None, "empty_answer", "answer_tag", "x"),
    ("<think>x</think><answer>the man is sad</answer>", None, "no_match", "answer_tag", "x"),
    ("<think>Option A looks right, but B", None, "unclosed_think", "response", "Option A looks right, but B"),
    ("<think>x</think>", None, "empty", "response", "x"),
]


@pytest.mark.parametrize("response, letter, method, source, reasoning", TAGGED, ids=[t[0][:40] for t in TAGGED])
def test_tagged(response, letter, method, source, reasoning):
    got = extract_answer(response, OPTIONS)
    assert (got.letter, got.method, got.source, got.reasoning) == (letter, method, source, reasoning)


def test_option_forms():
    letters = {"A": "", "B": "", "C": "", "D": ""}
    assert option_texts(4) == letters
    assert option_texts(["A. Apples.", "B. Pears.", "C) Figs", "(D) Kiwis"]) == {
        "A": "Apples.",
        "B": "Pears.",
        "C": "Figs",
        "D": "Kiwis",
    }
    assert option_texts(["B. misplaced prefix"]) == {"A": "B. misplaced prefix"}
    assert option_texts({"a": "x", "B": None}) == {"A": "x", "B": ""}
    assert extract_answer("B", 2).letter == "B"
    assert extract_answer("C", 2).letter is None
    for response in ("A man is riding a bike down the road to the shop.", "a", "The answer is b.", "(c) then"):
        assert extract_answer(response, ["A", "B", "C"]) == extract_answer(response, 3)
    # MMVU open-ended items carry empty option texts; they must not match anything.
    assert extract_answer("The answer is unclear from the footage here.", {"A": "", "B": ""}).letter is None


@pytest.mark.parametrize("options", ["ABCD", 0, 27, [], {"AB": "x"}, list("x" * 27)])
def test_bad_options_are_refused(options):
    with pytest.raises((TypeError, ValueError)):
        option_texts(options)


def test_letter_mentions():
    assert letter_mentions("A man saw B. I think C, not the U.S. flag") == [(10, "B"), (21, "C")]
    assert letter_mentions("A or B; I'm sure") == [(0, "A"), (5, "B")]
    assert letter_mentions("a man, i think b or c; a is wrong, it's d") == [(15, "B"), (20, "C"), (23, "A"), (40, "D")]


def test_prompt_pieces():
    assert format_options(["A. red", "B. blue"]) == "A. red\nB. blue"
    assert format_options({"A": "red", "B": "blue"}, style="paren") == "(A) red\n(B) blue"
    with pytest.raises(ValueError):
        format_options(["red"], style="bullets")
    # docs/published-format.md 3.6 and 5
    assert OPTION_INSTRUCTION == "Answer with the option's letter from the given choices directly."
    assert REASON_INSTRUCTION == (
        "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags."
    )


PIECES = ["<think>", "</think>", "<answer>", "</answer>", "A", "b", "(C)", "D.", "answer is ", " or ", "\n", "red"]
RESPONSES = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(PIECES)), max_size=10).map("".join)
OPTION_SETS = st.one_of(
    st.integers(1, 26),
    st.lists(st.text(max_size=15), min_size=1, max_size=8),
    st.dictionaries(st.sampled_from("ABCDEFGH"), st.text(max_size=15), min_size=1),
)


@settings(max_examples=400, deadline=None)
@given(RESPONSES, OPTION_SETS)
def test_never_raises_and_letter_is_an_option(response, options):
    got = extract_answer(response, options)
    assert got.letter is None or got.letter in option_texts(options)
    assert got.valid is (got.letter is not None)
    assert extract_answer(response, options) == got
