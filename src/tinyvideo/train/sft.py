"""Supervised training: captions pretraining, instruction fine-tuning and the reasoning cold start.

    tinyvideo train sft --config configs/finetune.yaml [--key value ...]

One `transformers.Trainer` run on LLaVA-style data; the three stages differ only in their recipe (what
trains, template, learning rate). Checkpoints go to `output_dir/checkpoint-N`; the same command after
a crash resumes from the newest complete one; the final model (LoRA merged, processor included) is
written to `output_dir/model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transformers import Trainer, TrainingArguments, set_seed

from tinyvideo.data.llava import LlavaCollator, LlavaDataset, read_rows
from tinyvideo.errors import InputError
from tinyvideo.processing import TEMPLATES
from tinyvideo.train.common import ModelArguments, load_for_training, require_folder
from tinyvideo.train.runs import SkippedRowsTally, train_and_save


@dataclass
class SFTConfig(ModelArguments, TrainingArguments):
    """A supervised stage: model, tuning, frames and data (`ModelArguments`), the Trainer's settings, and
    the template: `chat` (the model's own chat format, answers supervised), `qwen2_base` or `tokenizer` (that
    format whatever the model's), or `pretrain` (captions, human text dropped)."""

    template: str = field(default="chat", metadata={"help": "chat | qwen2_base | tokenizer | pretrain"})
    connector_lr: float | None = field(
        default=None, metadata={"help": "learning rate of the connector (default: learning_rate)"}
    )
    vision_tower_lr: float | None = field(
        default=None, metadata={"help": "learning rate of the vision tower (default: learning_rate)"}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator needs every column"})

    def __post_init__(self):
        if self.template not in TEMPLATES:
            raise InputError(f"template must be one of {', '.join(TEMPLATES)}; got {self.template!r}")
        if self.data_path is None:
            raise InputError("data_path is required: a LLaVA-style json file")
        super().__post_init__()


class SFTTrainer(SkippedRowsTally, Trainer):
    """The Trainer, plus a tally of the data rows that had to be skipped, and per-module learning rates."""

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, with the connector's and vision tower's own learning rates when set
        (the published `mm_projector_lr`): a new connector between pretrained parts often wants more."""
        model = self.model if model is None else model
        rates = {"connector.": self.args.connector_lr, "vision_tower.": self.args.vision_tower_lr}
        if self.optimizer is None and any(rate is not None for rate in rates.values()):
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple[float, float], list] = {}
            for name, param in model.named_parameters():
                if param.requires_grad:
                    rate = next((r for prefix, r in rates.items() if name.startswith(prefix) and r is not None), None)
                    key = (rate or self.args.learning_rate, self.args.weight_decay if name in decay else 0.0)
                    groups.setdefault(key, []).append(param)
            optimizer_class, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
            self.optimizer = optimizer_class(params, **kwargs)
        return super().create_optimizer(model)


def train(config: SFTConfig, callbacks=None) -> Path:
    """Run one stage and return the final model folder; `callbacks` are `TrainerCallback`s to add."""
    set_seed(config.seed)
    require_folder(config.video_root, "video_root")
    rows = read_rows(config.data_path)  # a bad data file is reported before the model loads
    model, processor = load_for_training(config)
    dataset = LlavaDataset(config.data_path, config.video_root, processor, config, config.template, rows)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        data_collator=LlavaCollator(processor),
        processing_class=processor,
        callbacks=callbacks,
    )
    return train_and_save(trainer, processor, dataset)
