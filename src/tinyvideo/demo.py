"""`tinyvideo demo`: the whole life of a small video reasoning model on the synthetic suite, from nothing
to a report with plots, in minutes on a laptop CPU.

    tinyvideo demo [--scale smoke|small] [--out DIR]
    tinyvideo demo --ablation connectors [--scale smoke|small] [--out DIR]

The first form generates the suite, runs the five recipes of `configs/synth/` (vision, pretrain,
finetune, coldstart, grpo) one after the other with their paths pointed into DIR, has the evaluation
harness answer the suite's test questions in Option, Reason and Cloze modes after each stage that makes
a language model, and writes
`DIR/report.md` with its plots. `smoke` cuts every stage to a few steps (it checks the plumbing; the
model learns little); `small` runs the recipes as written. The second form trains the same model with
the group, image-level and naive video-level resamplers at the same number of visual tokens
(pretraining and fine-tuning, on one shared vision tower) and writes `DIR/ablation.md`: Option and Cloze
accuracy, the temporal tasks broken out.

Nothing is done twice: a rerun reuses the suite, every finished stage (a stage cut short resumes from
its last checkpoint) and every answered question. DIR holds:

    synth/                    the suite
    runs/<run>/               Trainer output: checkpoints, model/, log_history.json
    eval/<run>-<mode>/        harness output: predictions.jsonl, report.json, report.md
    report.md, demo.json, *.png, examples/        (ablation.md, ablation.json, ablation.png)

On a CPU shared with other work, run it as `OMP_NUM_THREADS=1 tinyvideo demo ...`: a model this small
gains little from more threads, and on a busy machine OpenMP threads spend their time waiting on each other.

A run is a stage trained with one connector: `finetune`, or `finetune-naive` in the ablation (the
recipe's own connector keeps the plain name, so the ablation reuses the demo's runs and vice versa).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tinyvideo.data.synth import MANIFEST, Suite, generate_suite, load_suite
from tinyvideo.data.synth_formats import write_json
from tinyvideo.errors import InputError
from tinyvideo.flags import non_negative_int

logger = logging.getLogger(__name__)

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "synth"
MODES = ("option", "reason", "cloze")
ABLATION_MODES = ("option", "cloze")
OPTION_TOKENS = 16  # an Option-mode answer is a letter
HISTORY = "log_history.json"
CONNECTORS = ("group", "image", "naive")
# The tasks whose answer needs the order of the frames (see `tinyvideo.data.synth_questions`): no single
# frame shows a direction or a bounce count, and the last frame alone shows no order of events.
# `state_change` and `existence_end` need the first or last frame, not the order.
TEMPORAL_TASKS = ("moving_direction", "counting", "appearance_order", "event_order", "collision")


@dataclass(frozen=True)
class Stage:
    """A training stage: its recipe `<name>.yaml`, which trainer runs it (a key of `TRAINERS`), and the
    suite's training file it reads (a key of the manifest's `train`). Each stage starts from the model
    of the one before; `pretrain` builds a tiny language model around the vision stage's tower."""

    name: str
    title: str
    trainer: str
    data: str


STAGES = (
    Stage("vision", "vision tower pretraining on frame captions", "vision", "frames"),
    Stage("pretrain", "pretraining on captions", "sft", "captions"),
    Stage("finetune", "fine-tuning on the questions, multiple choice and short answer", "sft", "qa"),
    Stage("coldstart", "reasoning cold start", "sft", "coldstart"),
    Stage("grpo", "GRPO reinforcement learning", "grpo", "grpo"),
)
VISION, PRETRAIN, FINETUNE = STAGES[:3]
# trainer: (module with `train(config)`, its config class)
TRAINERS = {
    "vision": ("tinyvideo.train.vision", "VisionConfig"),
    "sft": ("tinyvideo.train.sft", "SFTConfig"),
    "grpo": ("tinyvideo.train.grpo", "GRPOConfig"),
}


@dataclass(frozen=True)
class Scale:
    """How much work: the suite's scale; per stage, a cap on optimizer steps; a cap on the length of GRPO
    rollouts, which is also the length of Reason-mode answers in evaluation (None: as the recipes say)."""

    suite: str
    max_steps: dict[str, int] | None
    rollout_tokens: int | None


SCALES = {
    "smoke": Scale("smoke", {"vision": 8, "pretrain": 8, "finetune": 8, "coldstart": 6, "grpo": 3}, rollout_tokens=64),
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

    def run_dir(self, stage: str, connector: str | None = None) -> Path:
        return self.root / "runs" / (stage if connector is None else f"{stage}-{connector}")

    def eval_dir(self, run: Path, mode: str) -> Path:
        return self.root / "eval" / f"{run.name}-{mode}"


def open_workspace(
    root: Path, scale_name: str, seed: int, recipes: Path, language_model: Path | None = None
) -> Workspace:
    """The folder with its suite, generated unless a finished one of the same scale and seed is there."""
    missing = [f"{s.name}.yaml" for s in STAGES if not (recipes / f"{s.name}.yaml").is_file()]
    if missing:
        raise InputError(
            f"recipes {', '.join(missing)} not found in {recipes}: pass --recipes, the configs/synth folder of tinyvideo"
        )
    scale = SCALES[scale_name]
    folder = root / "synth"
    if (folder / MANIFEST).is_file():
        suite = load_suite(folder)
        found = (suite.manifest["scale"], suite.manifest["seed"])
        if found != (scale.suite, seed):
            raise InputError(
                f"{root} holds a demo of scale {found[0]} and seed {found[1]}: choose another --out, "
                "or delete that folder to start again"
            )
        logger.info("synthetic suite: reusing %s", folder)
    else:
        logger.info("synthetic suite: generating the %s scale into %s", scale.suite, folder)
        suite = generate_suite(folder, seed=seed, scale=scale.suite)
    if language_model is not None and not (language_model / "config.json").is_file():
        raise InputError(f"--language-model {language_model} is not a model folder (no config.json)")
    return Workspace(root, suite, scale, seed, recipes, language_model)


# ---- training ---------------------------------------------------------------------------------------


def stage_overrides(ws: Workspace, stage: Stage, run: Path, start: str | None) -> list[str]:
    """The recipe's paths pointed into the workspace, the scale's step cap, and the seed. `start` is the
    model to start from: a folder; `tiny`, a new model around the vision stage's tower (its language model
    the workspace's base language model, or one from scratch); or None (the vision stage)."""
    suite = ws.suite
    overrides = [
        "--data_path", str(suite.path("train", stage.data)),
        "--video_root", str(suite.video_root),
        "--output_dir", str(run),
        "--seed", str(ws.seed),
        # The Trainer then also saves at the last step, and that checkpoint's state holds the whole log.
        "--save_strategy", "steps",
    ]  # fmt: skip
    if start == "tiny":
        overrides += ["--vision_tower_path", str(final_model(ws.run_dir(VISION.name)))]
        if ws.language_model is not None:
            overrides += ["--language_model_path", str(ws.language_model)]
        else:
            texts = [str(suite.path("train", key)) for key in ("captions", "qa", "coldstart")]
            overrides += ["--model_name_or_path", start, "--tokenizer_corpus", *texts]
    elif start is not None:
        overrides += ["--model_name_or_path", start]
    if ws.scale.max_steps is not None:
        steps = str(ws.scale.max_steps[stage.name])
        overrides += ["--max_steps", steps, "--save_steps", steps, "--logging_steps", "1", "--dataloader_num_workers", "0"]
    if stage.trainer == "grpo" and ws.scale.rollout_tokens is not None:
        overrides += ["--max_completion_length", str(ws.scale.rollout_tokens)]
    return overrides


def load_stage_config(ws: Workspace, stage: Stage, run: Path, start: str | None, extra: list[str] = ()):
    from tinyvideo.train.common import load_config

    module, config_class = TRAINERS[stage.trainer]
    overrides = stage_overrides(ws, stage, run, start) + list(extra)
    return load_config(getattr(importlib.import_module(module), config_class), str(ws.recipes / f"{stage.name}.yaml"), overrides)


def final_model(run: Path) -> Path:
    from tinyvideo.train.runs import FINAL_MODEL

    return run / FINAL_MODEL


def is_trained(run: Path) -> bool:
    return (final_model(run) / "config.json").is_file() and (run / HISTORY).is_file()


def train_stage(ws: Workspace, stage: Stage, run: Path, start: str | None, extra: list[str] = ()) -> Path:
    """Train one stage into `run` unless its final model and log are there; returns the model folder."""
    from tinyvideo.train.runs import last_complete_checkpoint

    final = final_model(run)
    if is_trained(run):
        logger.info("%s: reusing %s", run.name, final)
        return final
    config = load_stage_config(ws, stage, run, start, extra)
    importlib.import_module(TRAINERS[stage.trainer][0]).train(config)
    checkpoint = last_complete_checkpoint(run)
    if checkpoint is None:
        raise RuntimeError(f"{run}: training wrote no checkpoint, so its loss log is lost")
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    write_json(run / HISTORY, state["log_history"])
    return final


def read_history(run: Path) -> list[dict]:
    return json.loads((run / HISTORY).read_text(encoding="utf-8"))


# ---- evaluation -------------------------------------------------------------------------------------


def reason_tokens(ws: Workspace) -> int:
    """New tokens per Reason-mode answer: as many as a GRPO rollout may have."""
    grpo = STAGES[-1]
    return load_stage_config(ws, grpo, ws.run_dir(grpo.name), "tiny").max_completion_length


def evaluate_run(ws: Workspace, model: Path, run: Path, modes=MODES) -> dict[str, dict]:
    """The harness's report on the suite's test split for each mode; answered questions are kept."""
    from accelerate import PartialState

    from tinyvideo.eval.harness import Settings, build_report, evaluate

    new_tokens = {"option": OPTION_TOKENS, "reason": reason_tokens(ws), "cloze": 0}  # Cloze mode generates nothing
    reports = {}
    for mode in modes:
        settings = Settings(
            benchmark="synth",
            data=str(ws.suite.root.resolve()),
            model=str(model.resolve()),
            mode=mode,
            max_new_tokens=new_tokens[mode],
        )
        folder = ws.eval_dir(run, mode)
        evaluate(settings, folder, batch_size=64, num_workers=0, device=PartialState().device)
        reports[mode] = build_report(folder)
    return reports


def evaluate_subtitles(ws: Workspace, model: Path, run: Path) -> dict:
    """The harness's report on the suite's LongVideoBench files in Option mode, each question asked without
    and with its subtitles (the frames' captions, interleaved with the frames)."""
    from accelerate import PartialState

    from tinyvideo.eval.harness import Settings, build_report, evaluate

    settings = Settings(
        benchmark="longvideobench",
        data=str(ws.suite.path("eval", "longvideobench", "root").resolve()),
        model=str(model.resolve()),
        max_new_tokens=OPTION_TOKENS,
        subtitles=True,
    )
    folder = ws.root / "eval" / f"{run.name}-longvideobench"
    evaluate(settings, folder, batch_size=64, num_workers=0, device=PartialState().device)
    return build_report(folder)


def task_accuracy(report: dict) -> dict[str, float | None]:
    """Accuracy per task, then over all questions ("all")."""
    tasks = {task: cell["accuracy"] for task, cell in report["breakdowns"]["task"].items()}
    return {**tasks, "all": report["overall"]["accuracy"]}


def group_accuracy(report: dict, tasks) -> float | None:
    """Micro accuracy over the questions of the given tasks."""
    cells = [cell for task, cell in report["breakdowns"]["task"].items() if task in tasks]
    total = sum(cell["total"] for cell in cells)
    return 100.0 * sum(cell["correct"] for cell in cells) / total if total else None


# ---- the two commands -------------------------------------------------------------------------------


def run_demo(ws: Workspace, started: float) -> Path:
    """Every stage, each evaluated in both modes, then `report.md`; returns the report's path.
    `started` is when the command began (`time.perf_counter`), for the report's wall time."""
    from tinyvideo import demo_report

    results = {}
    start = None
    for number, stage in enumerate(STAGES, start=1):
        logger.info("stage %d/%d: %s (%s)", number, len(STAGES), stage.name, stage.title)
        begun = time.perf_counter()
        run = ws.run_dir(stage.name)
        reused = is_trained(run)
        final = train_stage(ws, stage, run, start)
        reports = {} if stage is VISION else evaluate_run(ws, final, run)
        seconds = time.perf_counter() - begun
        results[stage.name] = {"run": run, "reports": reports, "history": read_history(run), "seconds": seconds, "reused": reused}
        accuracies = ", ".join(f"{mode} {_pct(task_accuracy(r)['all'])}" for mode, r in reports.items()) or "-"
        logger.info("stage %s done in %.0f s; test accuracy: %s", stage.name, seconds, accuracies)
        start = "tiny" if stage is VISION else str(final)
    subtitles = evaluate_subtitles(ws, final, run)
    return demo_report.write_demo_report(ws, results, time.perf_counter() - started, subtitles)


def ablation_extra(connector: str, recipe_connector: str, num_frames: int, num_queries: int) -> list[str]:
    """Overrides giving `connector` the recipe's number of visual tokens.

    The group and naive resamplers make `num_queries` tokens per video; the image-level one makes
    `num_queries // group` per frame, so `group` = frames gives the same total.
    """
    if connector == recipe_connector:
        return []
    extra = ["--connector_type", connector]
    if connector == "image":
        if num_queries % num_frames:
            raise InputError(f"num_queries {num_queries} is not a multiple of num_frames {num_frames}: no image-level match")
        extra += ["--group", str(num_frames)]
    return extra


def run_ablation(ws: Workspace, started: float) -> Path:
    """Pretraining and fine-tuning with each connector, accuracy per task in `ABLATION_MODES`; returns ablation.md."""
    from tinyvideo import demo_report
    from tinyvideo.config import TinyVideoConfig

    pretrain, finetune = PRETRAIN, FINETUNE
    train_stage(ws, VISION, ws.run_dir(VISION.name), None)
    recipe = load_stage_config(ws, pretrain, ws.run_dir(pretrain.name), "tiny")
    results = {}
    for number, connector in enumerate(CONNECTORS, start=1):
        logger.info("connector %d/%d: %s", number, len(CONNECTORS), connector)
        begun = time.perf_counter()
        name = None if connector == recipe.connector_type else connector
        extra = ablation_extra(connector, recipe.connector_type, recipe.num_frames, recipe.num_queries)
        model = train_stage(ws, pretrain, ws.run_dir(pretrain.name, name), "tiny", extra)
        run = ws.run_dir(finetune.name, name)
        model = train_stage(ws, finetune, run, str(model))
        reports = evaluate_run(ws, model, run, modes=ABLATION_MODES)
        config = TinyVideoConfig.from_pretrained(model)
        results[connector] = {
            "run": run,
            "reports": reports,
            "visual_tokens": config.num_visual_tokens(recipe.num_frames),
            "connector_parameters": _connector_parameters(model),
        }
        accuracies = ", ".join(f"{mode} {_pct(r['overall']['accuracy'])}" for mode, r in reports.items())
        logger.info("connector %s done in %.0f s; test accuracy: %s", connector, time.perf_counter() - begun, accuracies)
    return demo_report.write_ablation_report(ws, results, time.perf_counter() - started)


def _connector_parameters(model: Path) -> int:
    from tinyvideo import TinyVideoForConditionalGeneration

    return sum(p.numel() for p in TinyVideoForConditionalGeneration.from_pretrained(model).connector.parameters())


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


# ---- command line -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale",
        choices=list(SCALES),
        default="small",
        help="smoke: a few steps per stage, to check the whole path in minutes; small (default): the recipes as written",
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), help="folder for everything (default ./demo); reruns reuse it")
    parser.add_argument("--ablation", choices=["connectors"], help="compare the group, image-level and naive resamplers")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the suite and of every stage (default 0)")
    parser.add_argument("--recipes", type=Path, default=RECIPES, help="folder of the stage recipes (default: configs/synth)")
    parser.add_argument(
        "--language-model",
        type=Path,
        help="a base language model folder to start from (e.g. `tinyvideo train language`'s); default: from scratch",
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    ws = open_workspace(args.out, args.scale, args.seed, args.recipes, args.language_model)
    report = run_ablation(ws, started) if args.ablation else run_demo(ws, started)
    print(f"report: {report} ({time.perf_counter() - started:.0f} s)")
    return 0
