"""GRPO rewards for multiple-choice video QA answered in `<think>`/`<answer>` tags.

Each reward follows TRL's reward-function convention, `f(completions, **dataset_columns) ->
list[float]` (TRL also passes `prompts`, which lands in the keyword arguments), so the same
functions serve TRL's GRPOTrainer and ours. A completion is a string or TRL's conversational form
`[{"role": "assistant", "content": "..."}]`; the ground truth comes in the `solution` column, as
`"<answer>B</answer>"` or a bare letter. Like the published trainer, every reward reads the
completion with surrounding whitespace stripped.

`accuracy_reward`, `format_reward` and `combine_r1` are the TinyLLaVA-Video-R1 rewards, loose spots
included (docs/published-format.md 4.4 step 7): the accuracy reward pays for any answer whose first character
is the right letter, so "A or B" earns 1.0 when A is right, and so does an untagged "Because...".
`strict_accuracy_reward` reads the answer as evaluation does and pays only for one clear option.
`consistency_reward` is tinyvideo's own: it pays when the answer names the option the reasoning concludes
with, right or wrong, so a reasoning that works out one option and answers another earns nothing.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence

from math_verify import parse, verify
from math_verify.errors import TimeoutException

from tinyvideo.answers import LETTERS, concluded_option, extract_answer, question_options

logger = logging.getLogger(__name__)

Completion = str | list[dict]

# math_verify's own default. Its timeout is a SIGALRM, which only the main thread may set.
MATH_VERIFY_TIMEOUT_S = 5
FULL_THINK_CHARS = 1200  # think length that earns the whole format bonus
FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")

_FIRST_ANSWER = re.compile(r"<answer>(.*?)</answer>")  # no DOTALL, as published
_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def completion_text(completion: Completion) -> str:
    """The stripped text of one completion, plain or conversational."""
    text = completion if isinstance(completion, str) else completion[0]["content"]
    return text.strip()


def accuracy_reward(completions: Sequence[Completion], solution: Sequence[str], **kwargs) -> list[float]:
    """1.0 for a right answer, else 0.0, exactly as published.

    math_verify first (it only fires when the solution parses as maths, never for a bare letter),
    then string matching: the first `<answer>...</answer>` on one line of the completion (else the
    whole completion) against that of the solution; equal, or its first character equal to the
    solution's answer. A hedge keeps that first-letter reading: "A or B" and "A/B/C" earn 1.0 when
    A is right (evaluation counts them hedged, and `strict_accuracy_reward` pays nothing for them).
    """
    return [_accuracy(completion_text(c), _check_solution(s)) for c, s in zip(completions, solution, strict=True)]


def strict_accuracy_reward(
    completions: Sequence[Completion], solution: Sequence[str], problem: Sequence[str] | None = None, **kwargs
) -> list[float]:
    """1.0 when evaluation would count the answer right, else 0.0.

    The completion and the solution are read by `tinyvideo.answers.extract_answer` against the
    options listed in the `problem` column ("A. text" lines), or the letters A-Z when there is no
    such column or it lists none. So "B", "<answer>b</answer>", "(B)", "The answer is B." and the
    text of option B all earn 1.0 when B is right; a hedge ("A or B", "A/B/C", two answer blocks
    naming different options) or an answer that cannot be read earns nothing.
    """
    problems = [""] * len(completions) if problem is None else problem
    rewards = []
    for completion, sol, question in zip(completions, solution, problems, strict=True):
        options = question_options(question) or len(LETTERS)
        truth = extract_answer(_check_solution(sol), options).letter
        if truth is None:
            logger.warning("solution %r names no single option letter; strict accuracy is 0", sol)
        answer = extract_answer(completion_text(completion), options).letter
        rewards.append(1.0 if truth is not None and answer == truth else 0.0)
    return rewards


def format_reward(completions: Sequence[Completion], **kwargs) -> list[float]:
    """0.5 for `<think>...</think> <answer>...</answer>` and nothing else, plus up to 0.5 for thinking.

    Exactly as published: the completion must be the two blocks, with each tag exactly once; the
    bonus grows with the characters of the stripped think text, in full at 1200.
    """
    return [_format(completion_text(c)) for c in completions]


def consistency_reward(completions: Sequence[Completion], problem: Sequence[str], **kwargs) -> list[float]:
    """1.0 when the answer's letter is the option the reasoning concludes with, else 0.0, whether or not it is right.

    The options are the "A. text" lines of the `problem` column; the reasoning's option is the one
    whose text its `<think>` block mentions last (`tinyvideo.answers.concluded_option`), the answer's
    is read as evaluation reads it. No think block, no option named in it, or no readable answer: 0.0.
    Raises `ValueError` for a problem that lists no options.
    """
    rewards = []
    for completion, question in zip(completions, problem, strict=True):
        options = question_options(question)
        if not options:
            raise ValueError(f"the consistency reward needs the problem's option lines; none in {question!r}")
        extracted = extract_answer(completion_text(completion), options)
        concluded = concluded_option(extracted.reasoning or "", options)
        rewards.append(1.0 if concluded is not None and extracted.letter == concluded else 0.0)
    return rewards


REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "accuracy": accuracy_reward,
    "strict_accuracy": strict_accuracy_reward,
    "format": format_reward,
    "consistency": consistency_reward,
}


def combine_r1(accuracy: Sequence[float], format_score: Sequence[float]) -> list[float]:
    """The published combination: r = a + (2a - 1)·f, and -2 where that is 0.

    A right answer earns 1 + f, a wrong one -f; a wrong and unformatted one (r = 0) gets -2.
    """
    combined = [a + (2 * a - 1) * f for a, f in zip(accuracy, format_score, strict=True)]
    return [-2.0 if r == 0 else r for r in combined]


def weighted_sum(rewards_per_func: Sequence[Sequence[float]], weights: Sequence[float] | None = None) -> list[float]:
    """TRL's combination: sum over reward functions, each times its weight (default 1)."""
    weights = [1.0] * len(rewards_per_func) if weights is None else list(weights)
    if len(weights) != len(rewards_per_func):
        raise ValueError(f"{len(weights)} reward weights for {len(rewards_per_func)} reward functions")
    return [sum(w * r for w, r in zip(weights, column, strict=True)) for column in zip(*rewards_per_func, strict=True)]


COMBINATIONS = ("r1", "weighted_sum")


def combine_rewards(
    rewards_per_func: Sequence[Sequence[float]], combination: str = "r1", weights: Sequence[float] | None = None
) -> list[float]:
    """One reward per completion from the rewards of each function (one list per function).

    "r1" combines an accuracy then the format as the published trainer does, and adds any further
    rewards times their weights (`weights`: one per further function, default 1); "weighted_sum"
    takes any number of functions, one weight each. Raises `ValueError` when they do not fit.
    """
    if combination == "weighted_sum":
        return weighted_sum(rewards_per_func, weights)
    if combination != "r1":
        raise ValueError(f"unknown reward combination {combination!r}; expected one of {COMBINATIONS}")
    if len(rewards_per_func) < 2:
        raise ValueError("the r1 combination needs an accuracy and a format reward first")
    published = combine_r1(*rewards_per_func[:2])
    further = rewards_per_func[2:]
    if not further:
        if weights is not None:
            raise ValueError("the r1 combination weighs only the rewards after accuracy and format; there are none")
        return published
    return [r + extra for r, extra in zip(published, weighted_sum(further, weights), strict=True)]


# The paper's "aha moments": the model stops to doubt or re-check its reasoning.
REFLECTION_PATTERNS = (
    r"wait",
    r"h+m+",
    r"actually",
    r"on second thought",
    r"let me (?:check|re-?check|check again|verify|double[- ]check|re-?examine|reconsider|re-?think)",
    r"let me (?:think|look) again",
    r"re-?examin\w*",
    r"reconsider\w*",
    r"re-?evaluat\w*",
    r"double[- ]check\w*",
    r"on (?:closer|further) (?:inspection|look)",
    r"looking (?:again|more closely)",
    r"i (?:made a mistake|was wrong)",
)
_REFLECTION = re.compile(r"\b(?:" + "|".join(REFLECTION_PATTERNS) + r")\b", re.IGNORECASE)


def is_reflective(text: str) -> bool:
    """Whether the text doubts or re-checks itself ("wait", "let me check", "hmm", ...)."""
    return _REFLECTION.search(text) is not None


def reflection_rate(completions: Sequence[Completion]) -> float:
    """The fraction of completions with at least one reflective phrase (0.0 for none)."""
    if not completions:
        return 0.0
    return sum(is_reflective(completion_text(c)) for c in completions) / len(completions)


def _check_solution(solution: str) -> str:
    if not isinstance(solution, str):
        raise TypeError(f"the solution column must hold strings, got {type(solution).__name__}: {solution!r}")
    return solution


def _accuracy(content: str, solution: str) -> float:
    if _math_verified(content, solution):
        return 1.0
    truth, answer = _published_answer(solution), _published_answer(content)
    return 1.0 if answer and (answer == truth or truth == answer[0]) else 0.0


def _published_answer(text: str) -> str:
    match = _FIRST_ANSWER.search(text)
    return (match.group(1) if match else text).strip()


def _math_verified(content: str, solution: str) -> bool:
    """`verify(parse(completion), parse(solution))`, published argument order, never raising.

    A solution that does not parse (every option letter) cannot verify, so the completion is not
    parsed then: same result, no time spent. Outside the main thread math_verify cannot time out.
    """
    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        truth = parse(solution, parsing_timeout=timeout)
        return bool(truth) and bool(verify(parse(content, parsing_timeout=timeout), truth, timeout_seconds=timeout))
    except (Exception, TimeoutException):
        logger.debug("math_verify failed on %r", content, exc_info=True)
        return False


def _format(content: str) -> float:
    if not _FORMAT.fullmatch(content) or any(content.count(tag) != 1 for tag in FORMAT_TAGS):
        return 0.0
    think = _THINK.search(content).group(1).strip()
    return 0.5 + 0.5 * min(len(think) / FULL_THINK_CHARS, 1)
