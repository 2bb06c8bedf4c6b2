"""The demo's plan: its stages and scales, the tasks it breaks out, and the workspace folder it fills."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyvideo.data.synth import Suite, open_suite
from tinyvideo.errors import InputError
from tinyvideo.train.base_model import base_model_folder

RECIPES = Path(__file__).resolve().parents[1] / "recipes"  # package data: installed with tinyvideo
SCRATCH_RECIPES = RECIPES / "synth"  # every stage, from random weights
BASE_RECIPES = RECIPES / "base"  # the stages after a base model (`tinyvideo.train.base_model`)
# Every stage's evaluations: the harness's modes and Cloze mode with the lettered options listed under the question
# (`tinyvideo eval --cloze-options`): whether the model reads the video where a multiple-choice prompt shows the options.
CLOZE_OPTIONS = "cloze-options"
MODES = ("option", "reason", "cloze", CLOZE_OPTIONS)
TITLES = {"option": "Option mode", "reason": "Reason mode", "cloze": "Cloze mode", CLOZE_OPTIONS: "Cloze mode, options listed"}
ABLATION_MODES = ("option", "cloze")
OPTION_TOKENS = 16  # an Option-mode answer is a letter
HISTORY = "log_history.json"
ABLATION_CONNECTORS = ("group", "image", "naive")  # the resamplers compared at the same number of visual tokens
# The tasks whose answer needs the order of the frames (see `tinyvideo.data.synth_questions`): no single
# frame shows a direction or a bounce count, and the last frame alone shows no order of events.
# `state_change` and `existence_end` need the first or last frame, not the order.
TEMPORAL_TASKS = ("moving_direction", "counting", "appearance_order", "event_order", "collision")


@dataclass(frozen=True)
class Source:
    """Rows a stage reads: the suite's file with these keys in its manifest (e.g. `("train", "qa")`), every
    `every`-th row of it, `repeat` times over."""

    keys: tuple[str, ...]
    every: int = 1
    repeat: int = 1


@dataclass(frozen=True)
class Stage:
    """A training stage: its recipe `<name>.yaml`, which trainer runs it (a key of `tinyvideo.demo.run.TRAINERS`), and the
    rows it reads (their `Source`s, joined). Each stage starts from the model of the one before; `pretrain` builds a tiny
    language model around the vision stage's tower."""

    name: str
    title: str
    trainer: str
    data: tuple[Source, ...]


STAGES = (
    Stage(
        "vision", "vision tower pretraining on what is where in the frames", "vision", (Source(("splits", "train", "scenes")),)
    ),
    Stage("pretrain", "pretraining on captions", "sft", (Source(("train", "captions")),)),
    # With the questions, text-only ones whose answer is stated, answered with the letter: without them the letter
    # rows wear off naming the letter of a known answer (letter binding 81.8% -> 41.4% in 300 steps from the base).
    # Every fourth keeps it (89.3%) and leaves the video rows their share (Cloze 46.4%; all of them: 98.9%, 37.5%).
    Stage(
        "finetune",
        "fine-tuning on the questions (multiple choice answered with the letter and with the text, short answer) "
        "and on naming a stated answer's letter",
        "sft",
        (Source(("train", "qa")), Source(("train", "binding"), every=4)),
    ),
    Stage("coldstart", "reasoning cold start", "sft", (Source(("train", "coldstart")),)),
    Stage("grpo", "GRPO reinforcement learning", "grpo", (Source(("train", "grpo")),)),
)
VISION, PRETRAIN, FINETUNE = STAGES[:3]
# The evaluations also made under each control, per stage: the fine-tuned model in Option mode (the published
# fine-tuned model's prompt) and the last stage's in Reason mode (so that GRPO's gain is seen to come from the video).
# Each costs an evaluation of the test split per control; `tinyvideo eval synth --control` gives any other.
CONTROLLED = {FINETUNE.name: ("option",), STAGES[-1].name: ("reason",)}
# After a base model, the fine-tuning also reads each question's Option row in every other rotation of its options
# (the letter moves with the option's text): from the base model with its reading stage, 300 steps of the rows above
# leave Option at its shuffled-video control (26.4% / 27.5%) and at 28.6% on the train split itself (it underfits the
# letter rows). With them, 600 steps in `tinyvideo demo`: Option 40.7% (21.8% with another clip's video, 29.3% with
# the last frame only).
FINETUNE_ROTATED = Stage(
    FINETUNE.name,
    FINETUNE.title + ", the options in every rotation",
    FINETUNE.trainer,
    (*FINETUNE.data, Source(("train", "rotated"))),
)
# After a base model, the cold start reads its worked answers 4 times over with fine-tuning rows replayed beside them
# (every 13th question row) and every fourth stated-answer row, so that GRPO has the letter to bind: the letter its
# <answer> names must be that of the answer its reasoning states, which GRPO's consistency reward pays for. Demo suite
# seed 1 (chance 22.9%): Reason 41.1% after it (the letter that of the stated answer 35.6% of the time), 48.6% after
# GRPO's 80 steps (41 gained / 20 lost, exact McNemar p = 0.01; bfloat16 evaluation); seed 2: 48.2% -> 52.5% (21 / 9,
# p = 0.04); seed 0: 45.4% -> 52.5% (34 / 14, p = 0.006; bf16 autocast). The worked
# answers 8 times over and every 26th question row bind the letter in the cold start itself (seed 0: 79.8%, Reason
# 46.4%; seed 1: 75.8%, 48.6%), after which GRPO gains nothing (seed 0: 43.6% after 40 steps; seed 1: 47.5% with
# three times the learning rate and four times the consistency reward's weight). From an earlier base model, the worked
# answers alone (8 epochs) cost more of what fine-tuning taught.
COLDSTART_WITH_REPLAY = Stage(
    "coldstart",
    "reasoning cold start on the worked answers, with fine-tuning and stated-answer rows replayed",
    "sft",
    (Source(("train", "coldstart"), repeat=4), Source(("train", "qa"), every=13), Source(("train", "binding"), every=4)),
)
BASE_STAGES = (FINETUNE_ROTATED, COLDSTART_WITH_REPLAY, STAGES[-1])
# The connectors ablation (`ABLATION_CONNECTORS`): its last two stages are trained once per connector. From scratch:
# the vision tower once, then the pretraining and fine-tuning around it; from a base model: the base model with a new
# connector of that kind in place of its own, trained alone on the captions (the published recipe's pretraining: the
# rest frozen), then the demo's fine-tuning.
CONNECTOR_PRETRAIN = Stage("connector", "pretraining a new connector on captions, the rest frozen", "sft", PRETRAIN.data)
ABLATION_STAGES = (VISION, PRETRAIN, FINETUNE)
BASE_ABLATION_STAGES = (CONNECTOR_PRETRAIN, FINETUNE_ROTATED)


@dataclass(frozen=True)
class Scale:
    """How much work: the suite's scale; per stage, a cap on optimizer steps; a cap on the length of GRPO
    rollouts, which is also the length of Reason-mode answers in evaluation (None: as the recipes say); the
    test questions each evaluation asks, the first ones of the test split, where the tasks take turns (None: all)."""

    suite: str
    max_steps: dict[str, int] | None
    rollout_tokens: int | None
    test_questions: int | None = None


SCALES = {
    "smoke": Scale(
        "smoke",
        {"vision": 8, "pretrain": 8, "connector": 8, "finetune": 8, "coldstart": 6, "grpo": 2},
        rollout_tokens=64,
        test_questions=14,
    ),
    "small": Scale("small", None, rollout_tokens=None),
}


@dataclass
class Workspace:
    """The demo's folder, its suite, and the recipes the stages come from."""

    root: Path
    suite: Suite
    scale: Scale
    seed: int
    recipes: Path
    language_model: Path | None = None  # the `pretrain` stage's base language model; None: from scratch
    base_model: str | None = None  # the base model (a shipped one's name, or a packed folder) the demo starts from
    ablation: bool = False  # the connectors ablation's stages rather than the demo's

    @property
    def stages(self) -> tuple[Stage, ...]:
        return stages_to_train(self.base_model, self.ablation)

    def run_dir(self, stage: str, connector: str | None = None) -> Path:
        return self.root / "runs" / (stage if connector is None else f"{stage}-{connector}")

    def eval_dir(self, run: Path, mode: str) -> Path:
        return self.root / "eval" / f"{run.name}-{mode}"


def stages_to_train(base_model: str | None, ablation: bool = False) -> tuple[Stage, ...]:
    """All the stages from scratch; after a base model, which has a trained vision tower and was pretrained
    on captions, those from fine-tuning on, the cold start with replay. With `ablation`, the connectors ablation's."""
    if ablation:
        return ABLATION_STAGES if base_model is None else BASE_ABLATION_STAGES
    return STAGES if base_model is None else BASE_STAGES


def open_workspace(
    root: Path,
    scale_name: str,
    seed: int,
    recipes: Path,
    language_model: Path | None = None,
    base_model: str | None = None,
    ablation: bool = False,
) -> Workspace:
    """The folder with its suite, generated unless a finished one of the same scale and seed is there; `ablation`:
    for the connectors ablation. `InputError`, before any suite is generated, for a folder that is a file, a
    missing recipe (each stage's, and the GRPO recipe, whose settings the evaluations read), a base model that is not
    one, or a base language model that is not a model folder."""
    if root.exists() and not root.is_dir():
        raise InputError(f"--out {root} is a file, not a folder")
    if language_model is not None and base_model is not None:
        raise InputError("a base language model (--language-model) is for a demo from scratch (--from-scratch)")
    if language_model is not None and not (language_model / "config.json").is_file():
        raise InputError(f"--language-model {language_model} is not a model folder (no config.json)")
    if base_model is not None:
        base_model_folder(base_model)
    names = dict.fromkeys(s.name for s in (*stages_to_train(base_model, ablation), STAGES[-1]))
    missing = [f"{name}.yaml" for name in names if not (recipes / f"{name}.yaml").is_file()]
    if missing:
        raise InputError(
            f"recipes {', '.join(missing)} not found in {recipes}: pass --recipes, a folder with a recipe per stage "
            f"(tinyvideo ships its own in tinyvideo/recipes/{BASE_RECIPES.name} and, from scratch, tinyvideo/recipes/{SCRATCH_RECIPES.name})"
        )
    scale = SCALES[scale_name]
    suite = open_suite(root / "synth", seed, scale.suite)
    return Workspace(root, suite, scale, seed, recipes, language_model, base_model, ablation)


def task_accuracy(report: dict) -> dict[str, float | None]:
    """Accuracy per task, then over all questions ("all")."""
    tasks = {task: cell["accuracy"] for task, cell in report["breakdowns"]["task"].items()}
    return {**tasks, "all": report["overall"]["accuracy"]}


def group_accuracy(report: dict, tasks) -> float | None:
    """Micro accuracy over the questions of the given tasks."""
    cells = [cell for task, cell in report["breakdowns"]["task"].items() if task in tasks]
    total = sum(cell["total"] for cell in cells)
    return 100.0 * sum(cell["correct"] for cell in cells) / total if total else None
