"""Base language model pretraining: a tiny language model learns multiple-choice symbol binding.

    tinyvideo train language --config src/tinyvideo/recipes/synth/language.yaml [--key value ...]

Option and Reason modes need two skills: knowing the answer, and naming its option's letter. The published
models get the second from Qwen2.5; a tiny language model trained from scratch inside the demo never does
(chance after 1,500 steps of the suite's questions, `benchmarks/letter_binding.py`). This stage gives it
that skill before it ever sees a video, on text alone: each row is one of the suite's train-split questions
with its lettered options and the Option instruction, then "The answer is <option text>.", in the
`qwen2_base` chat template; the target is that option's letter (only the letter is supervised).

What makes it learn, measured on held-out questions (4 layers, width 128, 64 rows a step; chance 22.9%):
- With Qwen2's own tokenizer (" A" one token, "A" another in the option line) the model stayed at chance
  through 2,000 steps (loss flat at 1.48), even with the curriculum below.
- With the letter split from its space (`train_tokenizer(letters_apart=True)`) and the rows ordered (first
  only the questions whose options are single words, then every task), this recipe reaches 31% at step
  1,000, 50% at 1,750, 65% at 5,000 and 70% at 6,750 (55 minutes on one CPU thread).
- Leaving chance is a rare event that depends on the initialisation. The same rows and settings with only
  the tokens' ids permuted (each token starting from another row of the same random embedding matrix)
  stayed at chance through 1,500 steps, and so did every variant tried (another seed, 8 heads, mimetic
  attention initialisation, options as random words or the option list alone first, a next-token loss
  over the whole prompt: 550 to 1,800 steps each). The tokenizer keeps the ids its merges were learnt
  with, so `seed` 0 and the recipe's settings give the initialisation that leaves chance: the run repeats
  step for step (the same losses and gradient norms). Another suite seed or model size is a new draw.

Rows are drawn afresh for every step from a large pool of train-split questions, in a fixed order
(`seed`), so a resumed run sees exactly the rows it would have.

With `caption_rows`, some rows also carry a train-split caption with a next-token loss, so that the base
model also reads the suite's language (trained on letters alone, it has only ever predicted letters).
Captions from the first step held the skill back (val 22.9% at step 2,000); added after 6,750 letter
steps, 1,000 steps with 16 captions each kept it (test 71.4%).

The tokenizer is fit on the texts of every training format of the suite's train split (captions,
questions, reasoning), so the base model reads the later stages' data as they will give it. The recipe reads
the one its curve was measured with (`tokenizer_name`: fit on the suite's texts of version 1), since another
vocabulary starts the same tokens from other embedding rows and is another run. Checkpoints
and resume work as in the other stages; `output_dir/model` is a Qwen2 language model folder with its
tokenizer and model card (`README.md`), which `language_model_path` takes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, Qwen2ForCausalLM, Trainer, TrainerCallback, TrainingArguments, set_seed

from tinyvideo.config import IGNORE_INDEX
from tinyvideo.data.synth import design_split
from tinyvideo.data.synth_formats import told_question, training_records
from tinyvideo.data.synth_questions import FAMILIES, LETTERS, Clip, Question
from tinyvideo.data.synth_text import caption
from tinyvideo.errors import InputError
from tinyvideo.processing import conversation_segments
from tinyvideo.scratch import spare_rows, tiny_config, train_tokenizer
from tinyvideo.train.common import check_ranges, conversation_texts, save_model
from tinyvideo.train.runs import SkippedRowsTally, train_and_save

logger = logging.getLogger(__name__)

TEST_PER_TASK = 40  # the small suite's test split, where the model card's accuracy is measured


@dataclass
class LanguageConfig(TrainingArguments):
    """The suite the questions come from, the curriculum, the model's size, and the Trainer's settings.
    `max_steps` sets the length of the run (rows are drawn afresh each step); `per_device_train_batch_size`
    counts questions."""

    suite_seed: int = field(default=0, metadata={"help": "seed of the synthetic suite whose train split is used"})
    pool_per_task: int = field(default=2000, metadata={"help": "train-split questions per task to draw rows from"})
    single_word_steps: int = field(default=800, metadata={"help": "first steps on single-word-option tasks only"})
    eval_per_task: int = field(default=20, metadata={"help": "val-split questions per task scored at each eval"})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "a tokenizer folder to use; unset: fit one on the suite's train-split texts"}
    )
    tokenizer_per_task: int = field(default=280, metadata={"help": "train-split clips whose texts fit the tokenizer"})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size"})
    hidden_size: int = field(default=128, metadata={"help": "language model width"})
    num_layers: int = field(default=4, metadata={"help": "language model depth"})
    caption_rows: int = field(
        default=0, metadata={"help": "train-split captions per step with a next-token loss (the suite's language)"}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator needs every column"})

    def __post_init__(self):
        check_ranges(self)
        if self.max_steps <= 0:
            raise InputError("max_steps is required: the rows are drawn afresh for every step")
        super().__post_init__()


def binding_prompt(question: Question, chat_format: str = "qwen2_base", tokenizer=None) -> str:
    """The question, its options, the Option instruction and the stated answer, as a generation prompt: a
    `qwen2_base` one that ends with "ASSISTANT:", or one in `tokenizer`'s chat template (`chat_format="tokenizer"`)."""
    return letter_prompt(told_question(question), chat_format, tokenizer)


def letter_prompt(asked: str, chat_format: str = "qwen2_base", tokenizer=None) -> str:
    """`asked` as the human turn of a generation prompt in `chat_format` (see `binding_prompt`)."""
    return "".join(s.text for s in conversation_segments([{"from": "human", "value": asked}], chat_format, tokenizer))


def letter_token_ids(tokenizer, chat_format: str = "qwen2_base") -> torch.Tensor:
    """Token ids [5] of the letters as the template answers them: after "ASSISTANT:" with a space
    (`qwen2_base`), first in the reply (a tokenizer's chat template)."""
    space = " " if chat_format == "qwen2_base" else ""
    return torch.tensor([tokenizer(f"{space}{letter}", add_special_tokens=False)["input_ids"][-1] for letter in LETTERS])


def prompt_ids(tokenizer, question: Question | str, chat_format: str = "qwen2_base") -> list[int]:
    """`binding_prompt` of `question` (or `letter_prompt` of a human turn) as token ids, with whatever the reply
    holds before its letter (in `qwen2_base`, the space, where the tokenizer keeps letters apart): the next token
    is the letter."""
    asked = told_question(question) if isinstance(question, Question) else question
    if chat_format != "qwen2_base":  # the template writes every special token itself
        return tokenizer(letter_prompt(asked, chat_format, tokenizer), add_special_tokens=False)["input_ids"]
    return tokenizer(letter_prompt(asked))["input_ids"] + tokenizer(" A")["input_ids"][:-1]


class BindingRows(torch.utils.data.Dataset):
    """Row i of the run: a question drawn with generator (seed, i) from those whose options are single
    words while i < `single_word_rows`, from all after: its prompt ids and the id of its letter. Every
    `caption_every`-th row also carries a clip's caption (ids ending with eos) for a next-token loss."""

    def __init__(
        self, tokenizer, clips: list[Clip], length: int, single_word_rows: int, seed: int, caption_every: int = 0
    ):
        self.length, self.single_word_rows, self.seed, self.caption_every = length, single_word_rows, seed, caption_every
        self.questions = [c.question for c in clips]
        self.prompts = [prompt_ids(tokenizer, q) for q in self.questions]
        eos = [tokenizer.eos_token_id]
        captions = [caption(c.scene) for c in clips] if caption_every else []
        self.captions = [ids + eos for ids in tokenizer(captions)["input_ids"]] if captions else []
        self.single_word = [i for i, q in enumerate(self.questions) if not any(" " in o for o in q.options)]
        self.letters = letter_token_ids(tokenizer)
        self.malformed_rows: list[int] = []

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        pool = self.single_word if i < self.single_word_rows else range(len(self.questions))
        index = pool[int(rng.integers(len(pool)))]
        row = {"input_ids": self.prompts[index], "letter": int(self.letters[self.questions[index].answer_index])}
        if self.caption_every and i % self.caption_every == 0:
            row["caption_ids"] = self.captions[int(rng.integers(len(self.captions)))]
        return row


def left_padded(tokenizer, rows: list[list[int]]) -> dict:
    """input_ids, attention_mask and position_ids [B, L], padded on the left so that every row ends at the
    last position; positions count from each row's first real token, as they would unpadded."""
    batch = dict(tokenizer.pad({"input_ids": rows}, padding_side="left", return_tensors="pt"))
    batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return batch


def collate(items: list[dict], tokenizer) -> dict:
    """Left-padded prompts with their letters; right-padded captions with their labels, where rows have them."""
    batch = {
        **left_padded(tokenizer, [item["input_ids"] for item in items]),
        "letters": torch.tensor([item["letter"] for item in items]),
    }
    captions = [item["caption_ids"] for item in items if "caption_ids" in item]
    if captions:
        padded = dict(tokenizer.pad({"input_ids": captions}, padding_side="right", return_tensors="pt"))
        padded["labels"] = padded["input_ids"].masked_fill(padded["attention_mask"] == 0, IGNORE_INDEX)
        batch["captions"] = padded
    return batch


def next_token_logits(model, batch: dict) -> torch.Tensor:
    """Logits [B, vocabulary] of the token after each left-padded prompt: the reply's first token."""
    return model(**batch, logits_to_keep=1).logits[:, -1]


@torch.no_grad()
def binding_accuracy(
    model, tokenizer, questions: list[Question], batch_size: int = 128, chat_format: str = "qwen2_base", asked: list[str] | None = None
) -> dict[str, float]:
    """Percent of questions whose letter, among the letters the question offers, is the most likely
    reply to `binding_prompt` (or to the human turns `asked`, one per question: `synth_formats.reading_question`
    scores reading comprehension); per task and over `all`."""
    letters = letter_token_ids(tokenizer, chat_format).to(model.device)
    asked = asked if asked is not None else questions
    was_training = model.training
    model.eval()
    hits = []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        batch = left_padded(tokenizer, [prompt_ids(tokenizer, a, chat_format) for a in asked[start : start + batch_size]])
        logits = next_token_logits(model, {k: v.to(model.device) for k, v in batch.items()})[:, letters]
        for q, row in zip(chunk, logits, strict=True):
            hits.append((q.task, int(row[: len(q.options)].argmax()) == q.answer_index))
    model.train(was_training)
    per_task = {task: 100.0 * float(np.mean([h for t, h in hits if t == task])) for task in FAMILIES}
    return {**per_task, "all": 100.0 * float(np.mean([h for _, h in hits]))}


class BindingEval(TrainerCallback):
    """Scores `binding_accuracy` on held-out questions every `eval_steps` and logs it as `binding_*`, with
    `wall_seconds`: the run's time so far, resumed runs included."""

    def __init__(self, tokenizer, questions: list[Question]):
        self.tokenizer, self.questions = tokenizer, questions
        self.trainer: Trainer | None = None
        self.started, self.before = time.perf_counter(), 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.before = next((e["wall_seconds"] for e in reversed(state.log_history) if "wall_seconds" in e), 0.0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if args.eval_steps and state.global_step % int(args.eval_steps) == 0:
            scores = binding_accuracy(model, self.tokenizer, self.questions)
            seconds = self.before + time.perf_counter() - self.started
            self.trainer.log({**{f"binding_{k}": round(v, 2) for k, v in scores.items()}, "wall_seconds": round(seconds)})


class LanguageTrainer(SkippedRowsTally, Trainer):
    """Rows in the run's own order: the curriculum is in the dataset, so no shuffling."""

    def _get_train_sampler(self, train_dataset=None):
        return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The letter's cross-entropy over the whole vocabulary, as supervised fine-tuning scores it, plus the
        captions' next-token loss where the batch has captions."""
        letters, captions = inputs.pop("letters"), inputs.pop("captions", None)
        logits = next_token_logits(model, inputs)
        loss = torch.nn.functional.cross_entropy(logits, letters)
        if captions is not None:
            loss = loss + model(**captions).loss
        return (loss, {"logits": logits}) if return_outputs else loss


def suite_tokenizer(config: LanguageConfig):
    """`tokenizer_name`'s tokenizer if one is given, else one fit on the binding prompts and every training text
    of the suite's train split."""
    if config.tokenizer_name is not None:
        return AutoTokenizer.from_pretrained(config.tokenizer_name)
    clips = design_split(config.suite_seed, "train", config.tokenizer_per_task)
    records = training_records(clips, n_coldstart=len(clips), seed=config.suite_seed)
    texts = [binding_prompt(c.question) for c in clips]
    for name in ("captions", "qa", "coldstart"):
        texts += conversation_texts(records[name])
    return train_tokenizer(texts, config.vocab_size, letters_apart=True)


def train(config: LanguageConfig) -> Path:
    """Train the base language model and return its folder."""
    set_seed(config.seed)
    tokenizer = suite_tokenizer(config)
    model_config = tiny_config(
        spare_rows(tokenizer), tokenizer.eos_token_id, hidden_size=config.hidden_size, num_layers=config.num_layers
    )
    model = Qwen2ForCausalLM(model_config.text_config)
    clips = design_split(config.suite_seed, "train", config.pool_per_task)
    batch = config.per_device_train_batch_size * config.gradient_accumulation_steps * config.world_size
    caption_every = config.per_device_train_batch_size // config.caption_rows if config.caption_rows else 0
    rows = BindingRows(
        tokenizer, clips, config.max_steps * batch, config.single_word_steps * batch, config.seed, caption_every
    )
    held_out = [c.question for c in design_split(config.suite_seed, "val", config.eval_per_task)]
    evaluation = BindingEval(tokenizer, held_out)
    trainer = LanguageTrainer(
        model=model,
        args=config,
        train_dataset=rows,
        data_collator=lambda items: collate(items, tokenizer),
        processing_class=tokenizer,
        callbacks=[evaluation],
    )
    evaluation.trainer = trainer

    def save_with_card(model, processor, out_dir, state_dict=None) -> Path:
        """The final model, then its model card with the trained model's test-split scores (main process)."""
        final = save_model(model, processor, out_dir, state_dict=state_dict)
        test = [c.question for c in design_split(config.suite_seed, "test", TEST_PER_TASK)]
        scores = binding_accuracy(model, tokenizer, test)
        card = model_card(config, model, trainer.state.log_history, scores, len(test))
        (final / "README.md").write_text(card, encoding="utf-8")
        logger.info("letter binding on the test split: %.1f%% (%d questions)", scores["all"], len(test))
        return final

    return train_and_save(trainer, tokenizer, rows, save=save_with_card)


def model_card(config: LanguageConfig, model, log_history: list[dict], test_scores: dict, n_test: int) -> str:
    """The model card: how the model was made (data, objective, steps, wall time) and what it can do."""
    curve = [e for e in log_history if "binding_all" in e]
    seconds = curve[-1]["wall_seconds"] if curve else None
    chance = 100.0 * float(np.mean([1 / FAMILIES[t].n_options for t in FAMILIES]))
    lines = [
        "# tinyvideo base language model",
        "",
        f"A tiny Qwen2 language model ({sum(p.numel() for p in model.parameters()):,} parameters: "
        f"{config.num_layers} layers, width {config.hidden_size}, a {config.vocab_size}-token "
        "byte-level BPE tokenizer) trained from random weights by tinyvideo, with no outside weights or data.",
        "",
        "## How it was made",
        "",
        "    tinyvideo train language --config src/tinyvideo/recipes/synth/language.yaml",
        "",
        f"- Data: the synthetic suite's train split (seed {config.suite_seed}), {config.pool_per_task} questions per "
        "task, text only; the tokenizer is fit on the same split's captions, questions and reasoning. It never saw "
        "a test-split question or any video.",
        "- Objective: each row is a question with its lettered options, the Option instruction and \"The answer is "
        "<option text>.\" in the `qwen2_base` chat template; the loss is the letter's cross-entropy"
        + (
            f", plus the next-token loss of {config.caption_rows} train-split captions a step."
            if config.caption_rows
            else " (no other text: it cannot describe a clip)."
        ),
        f"- Curriculum: the first {config.single_word_steps} steps draw only questions whose options are single "
        "words, then every task.",
        f"- {config.max_steps} steps of {config.per_device_train_batch_size} rows, AdamW at {config.learning_rate:g} "
        f"({getattr(config.lr_scheduler_type, 'value', config.lr_scheduler_type)}), seed {config.seed}"
        + (f"; wall time {seconds / 60:.0f} min (to the last evaluation)." if seconds else "."),
        "",
        "## What it can do",
        "",
        f"Letter binding on the test split ({n_test} questions; chance {chance:.1f}%): **{test_scores['all']:.1f}%**.",
        "",
        "| task | accuracy (%) |",
        "|---|---:|",
        *[f"| {task} | {test_scores[task]:.1f} |" for task in FAMILIES],
        "",
        f"On held-out val-split questions ({config.eval_per_task} per task) during training:",
        "",
        "| step | accuracy (%) |",
        "|---:|---:|",
        *[f"| {e['step']} | {e['binding_all']:.1f} |" for e in curve],
        "",
        "It is a base model: it names the letter of a stated answer"
        + (" and knows how the suite's captions go" if config.caption_rows else "")
        + "; the demo's stages teach it to see (`pretrain`) and to answer from the video (`finetune`).",
        "",
    ]
    return "\n".join(lines)
