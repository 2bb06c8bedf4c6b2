"""Supervised training: captions pretraining, instruction fine-tuning and the reasoning cold start.

    tinyvideo train sft --config configs/finetune.yaml [--key value ...]

One `transformers.Trainer` run on LLaVA-style data; the three stages differ only in their recipe (what
trains, template, learning rate). Checkpoints go to `output_dir/checkpoint-N`; the same command after
a crash resumes from the newest complete one; the final model (LoRA merged, processor included) is
written to `output_dir/model`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from accelerate.utils import gather_object
from transformers import Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tinyvideo.data.llava import LlavaCollator, LlavaDataset
from tinyvideo.train.common import (
    ModelArguments,
    add_config_arguments,
    apply_tuning,
    config_overrides,
    load_config,
    load_model_and_processor,
    save_model,
)

logger = logging.getLogger(__name__)

FINAL_MODEL = "model"
TRAINER_STATE = "trainer_state.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


@dataclass
class SFTConfig(ModelArguments, TrainingArguments):
    """A supervised stage: model, tuning, frames and data (`ModelArguments`), the Trainer's settings, and
    the chat template: `qwen2_base` (answers supervised) or `pretrain` (captions, human text dropped)."""

    template: str = field(default="qwen2_base", metadata={"help": "qwen2_base | pretrain"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator needs every column"})

    def __post_init__(self):
        if self.template not in ("qwen2_base", "pretrain"):
            raise ValueError(f"template must be 'qwen2_base' or 'pretrain'; got {self.template!r}")
        if self.data_path is None:
            raise ValueError("data_path is required: a LLaVA-style json file")
        super().__post_init__()


class SFTTrainer(Trainer):
    """The Trainer, plus a tally of the data rows that had to be skipped (they arrive with each batch)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped_rows: set[int] = set()

    def compute_loss(self, model, inputs, *args, **kwargs):
        self.skipped_rows.update(inputs.pop("skipped_rows", ()))
        return super().compute_loss(model, inputs, *args, **kwargs)

    def all_skipped_rows(self) -> set[int]:
        """The union over all processes (every process must call this)."""
        return set().union(*gather_object([self.skipped_rows]))


def is_complete_checkpoint(folder: Path) -> bool:
    """The Trainer writes `trainer_state.json` last; a checkpoint whose state file parses and names its own
    step, next to the weights (or DeepSpeed's `global_stepN` shards), was finished. A run killed mid-save
    leaves one without it."""
    try:
        step = json.loads((folder / TRAINER_STATE).read_text())["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    weights = [*WEIGHT_FILES, f"global_step{step}"]
    return folder.name == f"{PREFIX_CHECKPOINT_DIR}-{step}" and any((folder / name).exists() for name in weights)


def last_complete_checkpoint(output_dir: str | Path, remove_incomplete: bool = False) -> Path | None:
    """The newest finished checkpoint in `output_dir`; newer unfinished ones are removed when asked
    (so that a new save never lands on top of stale files)."""
    candidates = []
    for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if folder.is_dir() and folder.name.rsplit("-", 1)[-1].isdigit():
            candidates.append((int(folder.name.rsplit("-", 1)[-1]), folder))
    for _, folder in sorted(candidates, reverse=True):
        if is_complete_checkpoint(folder):
            return folder
        logger.warning("%s is incomplete (the run stopped while writing it)%s", folder, "; removed" if remove_incomplete else "")
        if remove_incomplete:
            shutil.rmtree(folder)
    return None


def train(config: SFTConfig) -> Path:
    """Run one stage and return the final model folder."""
    set_seed(config.seed)
    model, processor = load_model_and_processor(config)
    model = apply_tuning(model, config)
    dataset = LlavaDataset(config.data_path, config.video_root, processor, config, template=config.template)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        data_collator=LlavaCollator(processor),
        processing_class=processor,
    )
    resume = config.resume_from_checkpoint
    if resume is None:
        resume = last_complete_checkpoint(config.output_dir, remove_incomplete=trainer.is_world_process_zero())
    if resume is not None:
        logger.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)

    skipped = trainer.all_skipped_rows()
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    final = Path(config.output_dir) / FINAL_MODEL
    if trainer.is_world_process_zero():
        save_model(trainer.model, processor, final, state_dict=state_dict)
        malformed = len(dataset.malformed_rows)
        logger.info(
            "%d of %d data rows skipped (%d malformed, %d with a missing or unusable video or text)",
            malformed + len(skipped), len(dataset) + malformed, malformed, len(skipped),
        )
        logger.info("final model written to %s", final)
    trainer.accelerator.wait_for_everyone()
    return final


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, SFTConfig)


def run(args: argparse.Namespace) -> int:
    config = load_config(SFTConfig, args.config, config_overrides(args, SFTConfig))
    print(f"final model: {train(config)}")
    return 0
