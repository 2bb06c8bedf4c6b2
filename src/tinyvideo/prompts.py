"""The published prompt strings, character for character (docs/published-format.md 3.2, 3.6 and 5).

Kept free of heavy imports: data generation, rewards and answer reading use them without torch.
"""

from __future__ import annotations

# The `qwen2_base` template: note the trailing space of the system prompt.
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions. "
)
END_OF_TURN = "<|endoftext|>"

# Mode instructions appended to a multiple-choice question.
OPTION_INSTRUCTION = "Answer with the option's letter from the given choices directly."
REASON_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags."
)
# Cloze mode asks the bare question; the harness scores each option's text as the short answer.
SHORT_ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."
MODE_INSTRUCTIONS = {"option": OPTION_INSTRUCTION, "reason": REASON_INSTRUCTION, "cloze": SHORT_ANSWER_INSTRUCTION}


def question_with_instruction(question: str, mode: str | None, separator: str = "\n") -> str:
    """Append the mode's instruction (Option, Reason or Cloze); evaluation joins with a newline, GRPO training with a space."""
    if mode is None:
        return question
    if mode not in MODE_INSTRUCTIONS:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODE_INSTRUCTIONS)}")
    return question + separator + MODE_INSTRUCTIONS[mode]
