"""The suite's own files and its training data, each in the layout its consumer already reads.

- `annotations/<split>.jsonl`: the project-native question records (`id, video, task, question,
  options, answer` letter, `answer_text`), one per clip; `scenes/<split>.jsonl` holds each clip's
  tracks and event log, the ground truth behind every answer.
- `train/captions.json`, `train/qa.json`, `train/coldstart.json`: LLaVA-style conversation lists
  (pretraining captions, questions with and without options (`qa_records`), cold-start reasoning), video
  paths relative to the video root.
- `train/rotated.json`: each question's Option-mode row again with its options rotated, once per other start
  (`rotated_records`): the letter moves with the option's text. With `qa.json`'s Option-mode rows, what a
  continued fine-tuning of the whole language model learns Option mode from (docs/demo-measurements.md).
- `train/binding.json`: text-only rows (no video) that state the answer after the lettered options and the
  Option instruction, answered with its letter: multiple-choice symbol binding, which a base model learns.
- `train/reading.json`: text-only rows that give the clip's caption in place of its video, then its Option-mode
  question in every rotation of its options, answered with the letter (`reading_records`): reading comprehension,
  which a base model learns before it reads the same facts from a video.
- `train/frames.json`: frame-caption pairs (`video`, `frames`: [{`index`, `caption`}]) on which a
  vision tower trained from scratch first learns to see (`tinyvideo train vision`).
- `train/grpo.jsonl`: the published GRPO fields `problem`, `solution`, `video_filename` (starting with
  `./`, since the published loader does `root + video_filename[1:]`), plus `id`, `task`, `answer`.
See `docs/published-format.md` 3.6 and 3.7.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from tinyvideo.data.synth_questions import LETTERS, Clip, Question
from tinyvideo.data.synth_scenes import FRAMES
from tinyvideo.data.synth_text import CAPTION_PROMPTS, caption, frame_caption, reasoning
from tinyvideo.files import write_json, write_jsonl
from tinyvideo.prompts import question_with_instruction


def option_lines(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))


def lettered_question(question: Question) -> str:
    """The question, then its options one a line as `A. text`."""
    return f"{question.question}\n{option_lines(question.options)}"


def option_prompt(question: Question) -> str:
    """The lettered question with the Option-mode instruction: what a letter answers."""
    return question_with_instruction(lettered_question(question), "option")


def problem(question: Question) -> str:
    """The question with its lettered options, as the GRPO `problem` column and the cold start use it."""
    return f"{question.question}\nOptions:\n{option_lines(question.options)}"


def native_record(clip: Clip) -> dict:
    q = clip.question
    return {
        "id": clip.id,
        "video": clip.video,
        "task": q.task,
        "question": q.question,
        "options": q.options,
        "answer": q.answer,
        "answer_text": q.answer_text,
    }


def scene_record(clip: Clip) -> dict:
    return {"id": clip.id, "video": clip.video, "task": clip.question.task, **clip.scene.to_dict()}


def _conversation(clip: Clip, human: str, gpt: str) -> dict:
    return {
        "id": clip.id,
        "video": clip.video,
        "conversations": [{"from": "human", "value": "<image>\n" + human}, {"from": "gpt", "value": gpt}],
    }


def caption_record(clip: Clip, rng: np.random.Generator) -> dict:
    return _conversation(clip, CAPTION_PROMPTS[int(rng.integers(len(CAPTION_PROMPTS)))], caption(clip.scene))


# Frames whose captions train the vision tower: first, last and two between, as the clip moves.
CAPTIONED_FRAMES = tuple(int(t) for t in np.linspace(0, FRAMES - 1, 4).round())


def frames_record(clip: Clip) -> dict:
    frames = [{"index": t, "caption": frame_caption(clip.scene, t)} for t in CAPTIONED_FRAMES]
    return {"id": clip.id, "video": clip.video, "frames": frames}


# Multiple choice answered with the option's text: the answer read from the video where options are listed. Without
# these rows a model fine-tuned on the other two ignores the video whenever a prompt lists options: after the demo's
# fine-tuning from the base model, Cloze accuracy is 65.7% with the bare question and 25.0% (chance) with the options
# listed (`tinyvideo eval synth --mode cloze --cloze-options`); with them, 62.1% and 53.9%.
OPTION_TEXT_INSTRUCTION = "Answer with the option's text from the given choices directly."


def qa_records(clip: Clip) -> list[dict]:
    """The clip's question three times, as instruction data mixes them: multiple choice answered with the letter,
    multiple choice answered with the option's text (`OPTION_TEXT_INSTRUCTION`), and short answer, answered with
    the option's text (what Cloze-mode evaluation scores)."""
    q = clip.question
    choice = _conversation(clip, option_prompt(q), q.answer)
    choice_text = _conversation(clip, f"{lettered_question(q)}\n{OPTION_TEXT_INSTRUCTION}", q.answer_text)
    short = _conversation(clip, question_with_instruction(q.question, "cloze"), q.answer_text)
    return [choice, {**choice_text, "id": f"{clip.id}-text"}, {**short, "id": f"{clip.id}-short"}]


def rotated(question: Question, shift: int) -> Question:
    """The question with its options rotated `shift` places (option `i` becomes option `i - shift`) and its answer's
    letter moved with its text."""
    n = len(question.options)
    options = question.options[shift:] + question.options[:shift]
    return replace(question, options=options, answer=LETTERS[(question.answer_index - shift) % n])


def rotated_records(clip: Clip) -> list[dict]:
    """The clip's Option-mode row (the first of `qa_records`) once for every other rotation of its options, so that
    each letter answers it once: with a fixed order a model can answer from the letter's place, not its text."""
    q = clip.question
    turns = (rotated(q, shift) for shift in range(1, len(q.options)))
    return [
        {**_conversation(clip, option_prompt(t), t.answer), "id": f"{clip.id}-rot{shift}"}
        for shift, t in enumerate(turns, start=1)
    ]


def told_question(question: Question) -> str:
    """The question, its lettered options and the Option instruction, then "The answer is <option text>.":
    what a model answers with the letter by matching the stated answer to its option line."""
    told = option_prompt(question)
    return f"{told}\nThe answer is {question.answer_text}."


def _text_only(row_id: str, human: str, gpt: str) -> dict:
    return {"id": row_id, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}


def binding_record(clip: Clip) -> dict:
    """`told_question` answered with its letter, without the clip's video."""
    return _text_only(f"{clip.id}-told", told_question(clip.question), clip.question.answer)


def reading_question(clip: Clip, question: Question | None = None) -> str:
    """The clip's caption where its video would be, then `option_prompt` of `question` (default: the clip's)."""
    return f"{caption(clip.scene)}\n{option_prompt(question or clip.question)}"


def reading_records(clip: Clip) -> list[dict]:
    """`reading_question` answered with its letter, without the video, once for every rotation of the options
    (`rotated`): the letter must come from the caption and the option's text, not from the letter's place."""
    turns = (rotated(clip.question, shift) for shift in range(len(clip.question.options)))
    return [_text_only(f"{clip.id}-read{shift}", reading_question(clip, t), t.answer) for shift, t in enumerate(turns)]


def coldstart_record(clip: Clip, second_look: bool) -> dict:
    # The R1 cold-start prompt joins the problem and the instruction with a space (docs/published-format.md 3.6).
    prompt = question_with_instruction(problem(clip.question), "reason", separator=" ")
    return _conversation(clip, prompt, reasoning(clip.question, second_look))


def grpo_record(clip: Clip) -> dict:
    q = clip.question
    return {
        "id": clip.id,
        "problem": problem(q),
        "solution": f"<answer>{q.answer}</answer>",
        "video_filename": "./" + clip.video,
        "task": q.task,
        "answer": q.answer,
    }


def coldstart_pick(clips: list[Clip], n: int) -> list[Clip]:
    """The first `n` clips taken round-robin over tasks, so every task is in the cold-start set."""
    by_task: dict[str, list[Clip]] = {}
    for clip in clips:
        by_task.setdefault(clip.question.task, []).append(clip)
    picked, depth = [], 0
    while len(picked) < n and any(depth < len(v) for v in by_task.values()):
        picked += [v[depth] for v in by_task.values() if depth < len(v)][: n - len(picked)]
        depth += 1
    return picked


def write_split(root: Path, split: str, clips: list[Clip]) -> dict:
    """The native question records and the scene records of one split."""
    return {
        "annotations": str(
            write_jsonl(root / "annotations" / f"{split}.jsonl", map(native_record, clips)).relative_to(root)
        ),
        "scenes": str(write_jsonl(root / "scenes" / f"{split}.jsonl", map(scene_record, clips)).relative_to(root)),
    }


def training_records(clips: list[Clip], n_coldstart: int, seed: int) -> dict[str, list[dict]]:
    """Every training format's rows, from the train split; one in five cold-start examples takes a second look."""
    rng = np.random.default_rng([seed, 3])
    cold = coldstart_pick(clips, n_coldstart)
    return {
        "captions": [caption_record(c, rng) for c in clips],
        "frames": [frames_record(c) for c in clips],
        "qa": [row for c in clips for row in qa_records(c)],
        "rotated": [row for c in clips for row in rotated_records(c)],
        "binding": [binding_record(c) for c in clips],
        "reading": [row for c in clips for row in reading_records(c)],
        "coldstart": [coldstart_record(c, i % 5 == 4) for i, c in enumerate(cold)],
        "grpo": [grpo_record(c) for c in clips],
    }


def write_training(root: Path, clips: list[Clip], n_coldstart: int, seed: int) -> dict:
    """Every training format (`training_records`) written under `root/train/`."""
    records = training_records(clips, n_coldstart, seed)
    paths = {name: write_json(root / "train" / f"{name}.json", rows) for name, rows in records.items() if name != "grpo"}
    paths["grpo"] = write_jsonl(root / "train" / "grpo.jsonl", records["grpo"])
    return {k: str(p.relative_to(root)) for k, p in paths.items()}
