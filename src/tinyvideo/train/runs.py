"""A training run's folder: `checkpoint-N` folders to resume from, and the final model in `model/`.

Both trainers (supervised and GRPO) go through `train_and_save`: resume from the newest complete
checkpoint unless told otherwise, train, write the final model on the main process, and report how many
data rows had to be skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from accelerate.utils import gather_object
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tinyvideo.train.common import save_model

logger = logging.getLogger(__name__)

FINAL_MODEL = "model"
TRAINER_STATE = "trainer_state.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


class SkippedRowsTally:
    """Trainer mix-in: the rows the dataset had to replace (`tinyvideo.data.row_dataset`), which arrive with
    each batch as `skipped_rows` and are taken out before the model sees it; `train_and_save` reports them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped_rows: set[int] = set()

    def _prepare_inputs(self, inputs: dict) -> dict:
        self.skipped_rows.update(inputs.pop("skipped_rows", ()))
        return super()._prepare_inputs(inputs)


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
        action = "; removed" if remove_incomplete else ""
        logger.warning("%s is incomplete (the run stopped while writing it)%s", folder, action)
        if remove_incomplete:
            shutil.rmtree(folder)
    return None


def train_and_save(trainer, processor, dataset) -> Path:
    """Train (resuming when a complete checkpoint exists), save the final model and return its folder.

    `trainer.skipped_rows` holds the rows this process had to skip; `dataset.malformed_rows` those
    dropped at load. Every process must call this."""
    config = trainer.args
    resume = config.resume_from_checkpoint
    if resume is None:
        resume = last_complete_checkpoint(config.output_dir, remove_incomplete=trainer.is_world_process_zero())
    if resume is not None:
        logger.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)

    skipped = set().union(*gather_object([trainer.skipped_rows]))
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
