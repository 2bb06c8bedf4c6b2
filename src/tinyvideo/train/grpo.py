"""GRPO reinforcement learning on multiple-choice video questions answered in `<think>`/`<answer>` tags.

    tinyvideo train grpo --config configs/grpo_r1.yaml [--key value ...]

`GRPOConfig` extends `TrainingArguments` with TRL's GRPO names (`num_generations`, `beta`,
`max_completion_length`, `loss_type`, `epsilon`, `num_iterations`, `scale_rewards`, `reward_funcs`, ...)
and the published extras (`advantage_noise_std`, `reward_combination`); its defaults are the published
TinyLLaVA-Video-R1 recipe (docs/published-format.md 4.4). Data is the published GRPO jsonl (`problem`, `solution`,
`video_filename`, any other columns go to the reward functions). Checkpoints go to
`output_dir/checkpoint-N` and the same command resumes from the newest complete one; the final model
is written to `output_dir/model`, sampled completions to `output_dir/completions.jsonl`.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments, set_seed
from transformers.integrations import is_deepspeed_zero3_enabled

from tinyvideo.answers import question_options
from tinyvideo.data.row_dataset import RowDataset
from tinyvideo.errors import InputError
from tinyvideo.processing import preprocess_frames
from tinyvideo.prompts import question_with_instruction
from tinyvideo.rows import read_usable_rows
from tinyvideo.train.common import ModelArguments, load_for_training, load_model_and_processor, require_folder
from tinyvideo.train.grpo_loss import LOSS_TYPES, SCALE_REWARDS
from tinyvideo.train.grpo_trainer import GRPOTrainer, only_adapters_train
from tinyvideo.train.rewards import COMBINATIONS, REWARD_FUNCS, combine_rewards
from tinyvideo.train.runs import train_and_save
from tinyvideo.video import FrameSampling, load_video


REQUIRED_FIELDS = ("problem", "solution", "video_filename")
_ANSWER = re.compile(r"<answer>(.*?)</answer>")  # the first answer tag on one line, as the accuracy reward reads it


@dataclass
class GRPOConfig(ModelArguments, TrainingArguments):
    """Model, tuning, frames and data (`ModelArguments`), the Trainer's settings and GRPO's.

    `per_device_train_batch_size` counts prompts; each gets `num_generations` rollouts (TRL counts
    completions instead), all sampled on the process that holds the prompt: a group never spans
    processes, so its rewards are normalised where they were scored. The vision tower stays frozen: its features are computed once per video and
    shared by the rollouts, the policy and the reference.
    """

    num_generations: int = field(default=8, metadata={"help": "rollouts per prompt (G)"})
    max_completion_length: int = field(default=512, metadata={"help": "new tokens per rollout, at most"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass (1.0: off)"})
    top_k: int = field(default=50, metadata={"help": "sample among the k likeliest tokens (0: off)"})
    beta: float = field(default=0.01, metadata={"help": "KL coefficient; 0 drops the reference model"})
    loss_type: str = field(default="grpo", metadata={"help": "grpo | bnpo | dr_grpo | dapo"})
    epsilon: float = field(default=0.2, metadata={"help": "lower clipping bound of the ratio, 1 - epsilon"})
    epsilon_high: float | None = field(
        default=None, metadata={"help": "upper clipping bound 1 + epsilon_high (default: epsilon)"}
    )
    num_iterations: int = field(default=1, metadata={"help": "updates per batch of rollouts (mu)"})
    scale_rewards: str = field(
        default="group", metadata={"help": "divide advantages by the reward std of: group | batch | none"}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"], metadata={"help": f"reward names: {', '.join(REWARD_FUNCS)}"}
    )
    reward_weights: list[float] | None = field(
        default=None, metadata={"help": "weighted_sum: one per reward; r1: one per reward after the first two"}
    )
    reward_combination: str = field(
        default="r1",
        metadata={"help": "r1 (published: a + (2a-1)f, 0 -> -2; further rewards added, weighted) | weighted_sum (TRL)"},
    )
    advantage_noise_std: float = field(default=0.02, metadata={"help": "std of the noise added to advantages"})
    log_completions_steps: int = field(
        default=10, metadata={"help": "write sampled completions every N steps (0: never)"}
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "peak learning rate"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "reward functions need every column"})

    def __post_init__(self):
        choices = (("loss_type", LOSS_TYPES), ("scale_rewards", SCALE_REWARDS), ("reward_combination", COMBINATIONS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        unknown = [name for name in self.reward_funcs if name not in REWARD_FUNCS]
        if unknown:
            raise InputError(f"unknown reward_funcs {unknown}; expected names from {', '.join(REWARD_FUNCS)}")
        # A dry run of the combination raises now, not at the first step, if it does not fit the functions.
        try:
            combine_rewards([[0.0]] * len(self.reward_funcs), self.reward_combination, self.reward_weights)
        except ValueError as error:
            raise InputError(f"reward_funcs, reward_combination and reward_weights do not fit: {error}") from error
        if self.tune_vision_tower != "frozen":
            raise InputError(
                "GRPO keeps the vision tower frozen (its features are cached); set tune_vision_tower: frozen"
            )
        if self.data_path is None:
            raise InputError("data_path is required: a GRPO jsonl with problem, solution and video_filename")
        super().__post_init__()


# ---- data -------------------------------------------------------------------------------------------


def solution_problem(problem: str, solution: str) -> str | None:
    """Why no completion could earn the accuracy reward for this problem, or None: the solution must name
    one of the problem's option letters, as `<answer>B</answer>` (or a bare `B`)."""
    letters = list(question_options(problem)) or list(string.ascii_uppercase)
    tagged = _ANSWER.search(solution)
    if (tagged.group(1) if tagged else solution).strip() not in letters:
        return f"solution {solution!r} names none of the options {', '.join(letters)} (expected <answer>{letters[0]}</answer>)"
    return None


def _row_problem(row) -> str | None:
    """Why a row cannot be trained on, or None."""
    if not isinstance(row, dict):
        return "not a json object"
    missing = [key for key in REQUIRED_FIELDS if not isinstance(row.get(key), str)]
    if missing:
        return f"no string field(s) {missing}"
    return solution_problem(row["problem"], row["solution"])


def read_rows(path: str | os.PathLike) -> tuple[list[dict], list[int]]:
    """The usable rows of a GRPO jsonl (or json list), each as its index (`row`), place (`where`) and fields
    (`columns`), and the indices of the others, logged with their file and line: lines that are not JSON,
    rows without the string fields, and rows whose solution names no option of their problem (they could
    never be rewarded). Raises `InputError` when no row is usable."""
    return read_usable_rows(
        path,
        _row_problem,
        lambda index, row: {"row": index, "where": row.where, "columns": row.value},
        hint=f"each needs string fields {', '.join(REQUIRED_FIELDS)}, and a solution naming one of the problem's options",
    )


def grpo_prompt(problem: str, processor) -> str:
    """The published GRPO prompt: the problem, a space, the reasoning instruction, in the model's chat format
    (`qwen2_base` for the published models, docs/published-format.md 3.6)."""
    return processor.chat_prompt(question_with_instruction(problem, "reason", separator=" "))


class GRPODataset(RowDataset):
    """GRPO rows -> {prompt, prompt_ids, pixel_values [T,3,S,S], columns, row, skipped}, in DataLoader workers.

    `video_filename` is relative to `video_root` (the published values start with "./"). A row whose
    video cannot be read, or whose prompt plus `max_completion_length` exceeds the model's length, is
    replaced by the next good row (`tinyvideo.data.row_dataset`). `rows` is what `read_rows(data_path)`
    returned, when the caller has read the file already.
    """

    def __init__(self, data_path, video_root, processor, config, rows=None):
        super().__init__(*(rows or read_rows(data_path)), data_path, video_root if video_root is not None else Path(data_path).parent)
        self.processor = processor
        self.config = config
        self.sampling = FrameSampling.from_config(config)

    def encode(self, row: dict) -> dict:
        columns = row["columns"]
        frames = load_video(self.video_root / columns["video_filename"], self.sampling)
        pixels = preprocess_frames(frames, self.processor.frame_transform)
        prompt = grpo_prompt(columns["problem"], self.processor)
        prompt_ids = self.processor.tokenize(prompt, [len(pixels)])
        room = self.processor.model_max_length - self.config.max_completion_length
        if len(prompt_ids) > room:
            raise ValueError(
                f"prompt of {len(prompt_ids)} tokens leaves no room for {self.config.max_completion_length} new tokens "
                f"within model_max_length {self.processor.model_max_length}"
            )
        return {
            "prompt": prompt,
            "prompt_ids": torch.tensor(prompt_ids),
            "pixel_values": pixels,
            "columns": columns,
            "row": row["row"],
        }


# ---- the run ----------------------------------------------------------------------------------------


def train(config: GRPOConfig, callbacks=None, reward_funcs=None) -> Path:
    """Run GRPO and return the final model folder. `callbacks` are `TrainerCallback`s to add;
    `reward_funcs` (names or callables with TRL's signature) replace the config's names."""
    set_seed(config.seed)
    require_folder(config.video_root, "video_root")
    rows = read_rows(config.data_path)  # a bad data file is reported before the model loads
    model, processor = load_for_training(config)
    ref_model = None
    if config.beta and is_deepspeed_zero3_enabled() and not only_adapters_train(model):
        # ZeRO-3 weights are sharded at load: no deep copy
        ref_model, _ = load_model_and_processor(config, seed=config.seed)
    dataset = GRPODataset(config.data_path, config.video_root, processor, config, rows)
    trainer = GRPOTrainer(
        model, config, processor, dataset, reward_funcs=reward_funcs, ref_model=ref_model, callbacks=callbacks
    )
    return train_and_save(trainer, processor, dataset)
