"""A training run's folder: `checkpoint-N` folders to resume from, the final model in `model/`, and the
settings of the run that made them in `run.json`.

Every stage goes through `train_and_save`: resume from the newest complete checkpoint unless told
otherwise (only a checkpoint of the same run: `run_settings`, from the same models: `source_digests`), train,
write the final model on the main process, and report how many data rows had to be skipped. A finished run
trains no more.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

from accelerate.utils import gather_object
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from tinyvideo.errors import InputError
from tinyvideo.files import content_sha256, write_text
from tinyvideo.train.common import save_model

logger = logging.getLogger(__name__)

FINAL_MODEL = "model"
TRAINER_STATE = "trainer_state.json"
RUN_FILE = "run.json"
# Settings that may change between a run and its resumption: where the data is (a moved folder: the rows, their
# videos, the texts a new tokenizer is fitted on) and the Trainer's own, except the optimizer, whose saved state only
# fits its own kind.
MOVABLE = frozenset({"data_path", "video_root", "tokenizer_corpus"})
TRAINER_SETTINGS = frozenset(f.name for f in dataclasses.fields(TrainingArguments)) - {"optim"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# The settings that name a model the run starts from, and the key under which `run.json` keeps their digests.
MODEL_SOURCES = ("model_name_or_path", "language_model_path", "vision_tower_path")
SOURCES = "source_sha256"


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


def _run_fields(config) -> list[dataclasses.Field]:
    tuned = {getattr(config, f"tune_{part}", None) for part in ("language_model", "vision_tower", "connector")}
    ignored = TRAINER_SETTINGS | MOVABLE
    if "lora" not in tuned:  # e.g. lora_r of a `linear` run: the rank its change ships at, not what it trains
        ignored |= {f.name for f in dataclasses.fields(config) if f.name.startswith("lora_")}
    return [f for f in dataclasses.fields(config) if f.name not in ignored]


def run_settings(config) -> dict:
    """The settings that make a run what it is, as JSON values: the stage's own (model source and sizes,
    what trains, LoRA where a part trains with it, objective, ...) and the optimizer; not where the data is, nor
    the Trainer's schedule (a run may be resumed with more steps)."""
    return json.loads(json.dumps({f.name: getattr(config, f.name) for f in _run_fields(config)}, default=str))


def default_run_settings(config) -> dict:
    """The settings `run_settings(config)` compares, at their defaults (None where a setting has none): what a run
    recorded before a setting existed ran with."""
    defaults = {f.name: _default(f) for f in _run_fields(config)}
    return json.loads(json.dumps(defaults, default=str))


def _default(item: dataclasses.Field):
    if item.default is not dataclasses.MISSING:
        return item.default
    return None if item.default_factory is dataclasses.MISSING else item.default_factory()


def source_digests(config, names=MODEL_SOURCES) -> dict[str, str]:
    """`content_sha256` of each model the run starts from that is a local file or folder (of `names`, settings in
    `MODEL_SOURCES`), by setting name. The same path may hold another model later (a rebuilt base model, an earlier
    stage trained again): these tell the two apart. `InputError` when one cannot be read."""
    sources = {name: getattr(config, name, None) for name in names}
    try:
        return {name: content_sha256(path) for name, path in sources.items() if path is not None and Path(path).exists()}
    except OSError as error:
        raise InputError(f"cannot read the model the run starts from: {error}") from None


def require_same_run(output_dir: Path, config) -> None:
    """`InputError` naming what differs when `output_dir` holds a run made with other settings (its `run.json`; a
    setting it does not record counts as that setting's default) or from other models (`source_digests`, where
    recorded: a model found at another path with the same digest is the same model). Resuming it would fail deep in
    the Trainer or mix two runs; reusing its final model would skip the training asked for. A folder written before
    runs recorded their settings is not checked."""
    path = Path(output_dir) / RUN_FILE
    if not path.is_file():
        return
    file = json.loads(path.read_text(encoding="utf-8"))
    recorded = {**default_run_settings(config), **file}
    recorded_sources = file.get(SOURCES, {})
    digests = source_digests(config, [name for name in MODEL_SOURCES if name in recorded_sources])
    moved = {name for name, digest in digests.items() if recorded_sources[name] == digest}
    wanted = {name: value for name, value in run_settings(config).items() if name not in moved}
    differ = [f"{name} {recorded.get(name)!r} there, {value!r} now" for name, value in wanted.items() if recorded.get(name) != value]
    differ += [
        f"another model at {name} {getattr(config, name)!r}: sha256 {recorded_sources[name][:12]} there, {digest[:12]} now"
        for name, digest in digests.items()
        if name not in moved
    ]
    if differ:
        raise InputError(
            f"{output_dir} holds a different run ({'; '.join(differ)}): choose another output_dir, or delete that "
            "folder to start again"
        )


def write_run_file(output_dir: Path, config) -> None:
    """Record the run's settings and its models' digests in its folder, atomically."""
    record = {**run_settings(config), SOURCES: source_digests(config)}
    write_text(output_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")


def is_finished(trainer, checkpoint: Path) -> bool:
    """Whether `checkpoint` is at or past the last step of the run as configured now, counted as the
    Trainer counts it (`max_steps`, or the epochs over the data): resuming from it would still take one
    more step when the run ends inside an epoch."""
    step = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"]
    *_, max_steps = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())
    return step >= max_steps


class _CheckpointLoaded(Exception):
    """Raised by `_StopBeforeTraining` once the Trainer has loaded a checkpoint's weights."""


class _StopBeforeTraining(TrainerCallback):
    """Stops `Trainer.train` after it has loaded the checkpoint it resumes from (into the model as prepared for
    training: one process, DDP or DeepSpeed alike) and before its first step: resumed at its last step, the
    Trainer would take one more step before it checks the step count."""

    def on_train_begin(self, args, state, control, **kwargs):
        raise _CheckpointLoaded


def train_and_save(trainer, processor, dataset, save=save_model) -> Path:
    """Train (resuming when a complete checkpoint of the same run exists), save the final model and return
    its folder. A run whose checkpoint is at its last step trains no more: it returns its final model, or
    writes it from that checkpoint's weights (a run killed after its last checkpoint). `InputError` when the
    checkpoint is of a run with other settings or from other models (`require_same_run`). `save` writes the
    final model (`save_model`'s arguments); `processor` goes with it.

    `trainer.skipped_rows` holds the rows this process had to skip; `dataset.malformed_rows` those
    dropped at load. Every process must call this."""
    config = trainer.args
    output_dir = Path(config.output_dir)
    final = output_dir / FINAL_MODEL
    resume = config.resume_from_checkpoint
    if resume is None:
        resume = last_complete_checkpoint(output_dir, remove_incomplete=trainer.is_world_process_zero())
    finished = False
    if resume is not None:
        require_same_run(Path(resume).parent, config)
        finished = is_finished(trainer, Path(resume))
        if finished and final.is_dir():
            logger.info("the run is finished (%s is at its last step); its final model is %s", resume, final)
            return final
        logger.info("%s from %s", "writing the final model" if finished else "resuming", resume)
    elif trainer.is_world_process_zero():
        write_run_file(output_dir, config)
    if finished:
        trainer.add_callback(_StopBeforeTraining)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    except _CheckpointLoaded:
        pass

    skipped = set().union(*gather_object([trainer.skipped_rows]))
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if trainer.is_world_process_zero():
        save(trainer.model, processor, final, state_dict=state_dict)
        malformed = len(dataset.malformed_rows)
        logger.info(
            "%d of %d data rows skipped (%d malformed, %d with a missing or unusable video or text)",
            malformed + len(skipped), len(dataset) + malformed, malformed, len(skipped),
        )
        logger.info("final model written to %s", final)
    trainer.accelerator.wait_for_everyone()
    return final
