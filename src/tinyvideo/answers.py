"""Reading the chosen option out of a model's answer to a multiple-choice question.

One deterministic extractor serves both evaluation modes (docs/published-format.md 5), `tinyvideo infer`, the
web page and the strict GRPO reward: Reason mode answers in `<answer>` tags after a `<think>` block,
Option mode answers with a letter, sometimes inside a sentence. The published parsers fall back to a
random letter when they cannot read an answer (docs/published-format.md 6, item 12), crash on an empty response
(item 21), and read "Based on the video..." as B and "A man is..." as A. Here an answer that cannot
be read has no letter: the harness counts it wrong and reports it as invalid, so two runs over the
same outputs always give the same score. An answer that names several options ("A or B", "A/B/C")
has no letter either: it is hedged, counted wrong and reported apart from the invalid ones.

The option lines of a prompt are formatted and read back here too, next to the parser that reads
the answers they ask for; the instructions themselves live in `tinyvideo.prompts`.
"""

from __future__ import annotations

import numbers
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tinyvideo.prompts import OPTION_INSTRUCTION, REASON_INSTRUCTION  # noqa: F401  (re-exported for callers)

LETTERS = string.ascii_uppercase
HEDGED = "hedged"  # the method of an answer that names more than one option

OptionsLike = Sequence[str] | Mapping[str, str] | int


@dataclass(frozen=True)
class Extracted:
    """What a response answered, and how it was read.

    `source` is where the answer was looked for: "answer_tag" (inside `<answer>`) or "response" (the
    text outside any `<think>` block). `method` is the rule that gave the letter ("answer_phrase",
    "leading_letter", "parenthesised", "standalone_letter", "option_text"), or why there is none
    ("hedged", "empty", "empty_answer", "unclosed_think", "no_match").
    """

    letter: str | None
    method: str
    source: str
    reasoning: str | None = None

    @property
    def valid(self) -> bool:
        return self.letter is not None

    @property
    def hedged(self) -> bool:
        return self.method == HEDGED


def option_texts(options: OptionsLike) -> dict[str, str]:
    """Letter -> option text, from the forms the benchmarks use.

    `options` is a count of options (letters only), a list of option texts (Video-MME's already carry
    an "A. " prefix, which is removed), or a letter -> text mapping (MMVU's `choices`). A list of
    the letters themselves reads like a count: a one-letter text is never searched for.
    """
    if isinstance(options, str):
        raise TypeError(f"options must be a list, a mapping or a count, not the string {options!r}")
    if isinstance(options, numbers.Integral):
        if not 1 <= options <= len(LETTERS):
            raise ValueError(f"the number of options must be between 1 and 26, got {options}")
        return dict.fromkeys(LETTERS[: int(options)], "")
    if isinstance(options, Mapping):
        choices = {}
        for key, text in options.items():
            letter = str(key).strip().upper()
            if len(letter) != 1 or letter not in LETTERS:
                raise ValueError(f"option key {key!r} is not a letter A-Z")
            choices[letter] = "" if text is None else str(text)
        return choices
    texts = [str(text) for text in options]
    if not 1 <= len(texts) <= len(LETTERS):
        raise ValueError(f"expected 1 to 26 options, got {len(texts)}")
    return {letter: _without_prefix(text, letter) for letter, text in zip(LETTERS, texts)}


OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.)]\s+(\S.*?)\s*$", re.MULTILINE)


def question_options(question: str) -> dict[str, str]:
    """Letter -> text of the options a question lists, one a line as "A. text", "A) text" or "(A) text".

    The reading of `format_options`' lines, for callers that have only the prompt text (`tinyvideo
    infer`, the web page, the GRPO `problem` column). Empty when the question lists no options.
    """
    return dict(OPTION_LINE.findall(question))


def _without_prefix(text: str, letter: str) -> str:
    prefix = re.match(rf"\s*(?:\({letter}\)|{letter}[.):])(?:\s+|$)", text)
    return text[prefix.end() :] if prefix else text


def format_options(options: OptionsLike, style: str = "dot") -> str:
    """The option lines of a prompt, one per option.

    "dot" gives "A. text" (Video-MME, MMVU and the R1 MVBench prompt), "paren" gives "(A) text"
    (MLVU and the TinyLLaVA-Video MVBench prompt), docs/published-format.md 5.1-5.4.
    """
    templates = {"dot": "{letter}. {text}", "paren": "({letter}) {text}"}
    if style not in templates:
        raise ValueError(f"unknown option style {style!r}; expected one of {sorted(templates)}")
    return "\n".join(
        templates[style].format(letter=letter, text=text) for letter, text in option_texts(options).items()
    )


# A letter standing alone: not inside a word or a number, not part of an abbreviation ("U.S.",
# "e.g."), not part of a contraction ("I'm", "it's").
_LETTER = re.compile(r"(?<![A-Za-z0-9])(?<![A-Za-z]['’.])[A-Za-z](?![A-Za-z0-9])(?!\.[A-Za-z])(?!['’][a-z])")
_NEXT_WORD = re.compile(r"\s+([a-z]+)")
# Words that follow an option letter but never the article "A" or the pronoun "I".
_AFTER_OPTION_LETTER = frozenset({"is", "was", "or", "and", "because", "since", "seems", "looks"})


def letter_mentions(text: str) -> list[tuple[int, str]]:
    """Positions and letters (as capitals) of the letters in `text` that read as option letters.

    "A" and "I" (or "a" and "i") followed by a lowercase word are the article and the pronoun ("A
    man is riding", "I think"), unless the word is one that follows an option letter ("A is
    correct", "A or B"). Lowercase letters are included; where they count is the reader's choice.
    """
    mentions = []
    for match in _LETTER.finditer(text):
        letter = match.group()
        if letter in "AIai":
            word = _NEXT_WORD.match(text, match.end())
            if word and word.group(1) not in _AFTER_OPTION_LETTER:
                continue
        mentions.append((match.start(), letter.upper()))
    return mentions


def extract_answer(text: str, options: OptionsLike) -> Extracted:
    """The option a response chose, its reasoning, and the rule that read it.

    The first `<answer>` block is read (a missing `</answer>` is tolerated), and the answer is hedged
    when a later block names another option; without a block, the text outside the `<think>` block
    is read. A `<think>` that never closes and no `<answer>` after it means the response was cut off
    while reasoning: it has no answer.
    """
    choices = option_texts(options)
    reasoning, rest, cut_off = _split_think(text)
    blocks = _ANSWER_BLOCK.findall(rest)
    if blocks:
        if not blocks[0].strip():
            return Extracted(None, "empty_answer", "answer_tag", reasoning)
        letter, method = _read(blocks[0], choices)
        if letter is not None and {_read(block, choices)[0] for block in blocks[1:]} - {None, letter}:
            letter, method = None, HEDGED
        return Extracted(letter, method, "answer_tag", reasoning)
    if cut_off:
        return Extracted(None, "unclosed_think", "response", reasoning)
    letter, method = _read(rest, choices)
    return Extracted(letter, method, "response", reasoning)


def _split_think(text: str) -> tuple[str | None, str, bool]:
    """(reasoning, text outside the think block, whether the response stops inside the block)."""
    opening, closing = text.find("<think>"), text.find("</think>")
    if opening < 0 and closing < 0:
        return None, text, False
    if opening < 0 or 0 <= closing < opening:
        # "</think>" alone: the "<think>" was in the prompt, or the model left it out.
        return text[:closing].strip(), text[closing + len("</think>") :], False
    body_start = opening + len("<think>")
    closing = text.find("</think>", body_start)
    if closing >= 0:
        return text[body_start:closing].strip(), text[:opening] + text[closing + len("</think>") :], False
    answer = text.find("<answer>", body_start)
    if answer < 0:
        return text[body_start:].strip(), text[:opening], True
    return text[body_start:answer].strip(), text[:opening] + text[answer:], False


_ANSWER_BLOCK = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL)
_END_CHARS = string.whitespace + ",.!?;:'"
# What may wrap a letter: brackets, markdown emphasis, quotes ("(B)", "**B**", "'B'").
_OPENING = r"""[\s(\[*"'“‘]*"""
_CLOSING = r"""[\s)\]*"'”’]*"""
# An explicit answer statement, before the letter ("the correct answer is probably (b)", "Answer: C",
# "the option would be D", "I choose b") or after it ("C is the correct answer", "B is right").
_STATEMENT_BEFORE = re.compile(
    r"\b(?:(?:answer|option|choice)\s+(?:is|would be|should be|must be|will be)|answer|choose|chose|pick|select"
    r"|go with)\b\s*:?" + _OPENING
    + r"(?:(?:probably|likely|clearly|definitely|either|option|choice)\s+" + _OPENING + ")*",
    re.IGNORECASE,
)
_STATEMENT_AFTER = re.compile(
    _CLOSING + r"\s(?:is|would be|should be|must be)\s+(?:the\s+)?(?:correct|right|best|answer)\b", re.IGNORECASE
)
# A letter ruled out: "not A", "A is wrong", "B is incorrect", "A and B are wrong".
_RULED_OUT_BEFORE = re.compile(r"\bnot" + _OPENING + r"\Z", re.IGNORECASE)
_RULED_OUT_AFTER = re.compile(
    _CLOSING + r"(?:(?:\s+and|\s+or)" + _OPENING + r"[A-Za-z]" + _CLOSING + r")*"
    r"\s(?:is|are)\s+(?:wrong|incorrect|false|not\b)",
    re.IGNORECASE,
)
_PARENTHESISED = re.compile(r"\(([A-Za-z])\)")
# What joins the letters of a hedge: "A or B", "A/B/C", "A|B", "A and/or B", "A, B, or C", "(A) and (B)",
# "B, maybe C", "B? or maybe C".
_HEDGE_JOIN = re.compile(
    _CLOSING + r"\??\s*(?:,|/|\||&|\band/or\b|\bor\b|\band\b|\bmaybe\b|\bperhaps\b|\bpossibly\b)"
    r"(?:[\s,]*\b(?:or|and|maybe|perhaps|possibly|probably)\b)?" + _OPENING,
    re.IGNORECASE,
)
_BARE_COMMA = re.compile(_CLOSING + "," + _OPENING)
_STARTS_CLAUSE = re.compile(_CLOSING + r"\s(?!(?:or|and)\b)[a-z]")  # "B, A is wrong": A starts a new clause
_MIN_WORDS_FOR_TEXT_SEARCH = 6


def _read(response: str, choices: dict[str, str]) -> tuple[str | None, str]:
    """The MMMU-style option rules of docs/published-format.md 5, made careful and with no random fallback.

    In order: an explicit statement ("the answer is X", "X is correct"), a leading letter, "(X)", a
    standalone capital letter, then the option text (the whole response equal to it, or contained in
    a response of six words or more). Within a rule, the mention that comes last wins. A lowercase
    letter counts only where an answer is expected: after a statement, at the start, in brackets.
    A letter ruled out ("not A", "A is wrong") is no candidate. A letter joined to another option's
    ("A or B") makes the answer hedged.
    """
    response = response.strip(_END_CHARS)
    if not response:
        return None, "empty"
    mentions = [
        (pos, letter)
        for pos, letter in letter_mentions(response)
        if letter in choices
        and not _RULED_OUT_BEFORE.search(response, 0, pos)
        and not _RULED_OUT_AFTER.match(response, pos + 1)
    ]
    at = dict(mentions)
    stated = [m.end() for m in _STATEMENT_BEFORE.finditer(response) if m.end() in at]
    stated += [pos for pos, _ in mentions if _STATEMENT_AFTER.match(response, pos + 1)]
    parenthesised = [m.start(1) for m in _PARENTHESISED.finditer(response) if m.start(1) in at]
    capitals = [pos for pos, _ in mentions if response[pos].isupper()]
    rules = (
        ("answer_phrase", stated),
        ("leading_letter", [0] if 0 in at else []),
        ("parenthesised", parenthesised),
        ("standalone_letter", capitals),
    )
    for method, positions in rules:
        if positions:
            position = max(positions)
            if _hedged(response, mentions, position):
                return None, HEDGED
            return response[position].upper(), method
    letter = _by_option_text(response, choices)
    return (letter, "option_text") if letter else (None, "no_match")


def _hedged(response: str, mentions: list[tuple[int, str]], position: int) -> bool:
    """Whether the letter at `position` is joined to another option's letter ("A or B", "A/B/C")."""
    index = next((i for i, (pos, _) in enumerate(mentions) if pos == position), None)
    if index is None:
        return False
    first = last = index
    while first > 0 and _joined(response, mentions[first - 1][0], mentions[first][0]):
        first -= 1
    while last + 1 < len(mentions) and _joined(response, mentions[last][0], mentions[last + 1][0]):
        last += 1
    return len({letter for _, letter in mentions[first : last + 1]}) > 1


def _joined(response: str, left: int, right: int) -> bool:
    between = response[left + 1 : right]
    if not _HEDGE_JOIN.fullmatch(between):
        return False
    return not (_BARE_COMMA.fullmatch(between) and _STARTS_CLAUSE.match(response, right + 1))


def _by_option_text(response: str, choices: dict[str, str]) -> str | None:
    said = _normalise(response)
    if len(said.split()) < _MIN_WORDS_FOR_TEXT_SEARCH:
        return next((letter for letter, text in _option_phrases(choices).items() if text == said), None)
    return concluded_option(response, choices)


def concluded_option(text: str, options: OptionsLike) -> str | None:
    """The letter of the option whose text `text` mentions last, or None when it mentions none.

    Matching ignores case and spacing and needs whole words; at the same place the longer option
    text wins ("the red circle" over "red"). One-letter option texts are never matched.
    """
    said, best, best_key = _normalise(text), None, (-1, -1)
    for letter, phrase in _option_phrases(option_texts(options)).items():
        found = [m.start() for m in re.finditer(rf"(?<!\w){re.escape(phrase)}(?!\w)", said)]
        if found and (found[-1], len(phrase)) > best_key:
            best, best_key = letter, (found[-1], len(phrase))
    return best


def _option_phrases(choices: dict[str, str]) -> dict[str, str]:
    texts = {letter: _normalise(text) for letter, text in choices.items()}
    # A one-letter text ("a") would match the article everywhere.
    return {letter: text for letter, text in texts.items() if text and not (len(text) == 1 and text.isalpha())}


def _normalise(text: str) -> str:
    return " ".join(text.lower().split()).strip(_END_CHARS)
