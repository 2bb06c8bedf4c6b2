"""The demo's work: each stage trained from its recipe, then evaluated by the harness; a rerun reuses
what is done."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
from accelerate import PartialState

from tinyvideo.config import TinyVideoConfig
from tinyvideo.connectors import CONNECTORS
from tinyvideo.demo import report
from tinyvideo.demo.plan import (
    ABLATION_CONNECTORS,
    ABLATION_MODES,
    CLOZE_OPTIONS,
    CONTROLLED,
    HISTORY,
    MODES,
    OPTION_TOKENS,
    STAGES,
    VISION,
    Stage,
    Workspace,
    task_accuracy,
)
from tinyvideo.errors import InputError
from tinyvideo.eval.harness import evaluate
from tinyvideo.eval.outputs import RUN_FILE as EVAL_RUN_FILE
from tinyvideo.eval.outputs import build_report
from tinyvideo.eval.settings import CONTROLS, Settings
from tinyvideo.files import write_json
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.rows import read_json
from tinyvideo.train import grpo, sft, vision
from tinyvideo.train.base_model import materialise
from tinyvideo.train.common import load_config
from tinyvideo.train.runs import FINAL_MODEL, MODEL_SOURCES, RUN_FILE, last_complete_checkpoint, require_same_run

logger = logging.getLogger(__name__)

# trainer: (its `train(config)`, its config class)
TRAINERS = {
    "vision": (vision.train, vision.VisionConfig),
    "sft": (sft.train, sft.SFTConfig),
    "grpo": (grpo.train, grpo.GRPOConfig),
}


# ---- training ---------------------------------------------------------------------------------------


def stage_data(ws: Workspace, stage: Stage) -> Path:
    """The stage's training file: the suite's one, or its sources' rows joined into the workspace's
    `data/<stage>.json`."""
    if len(stage.data) == 1 and stage.data[0].every == stage.data[0].repeat == 1:
        return ws.suite.path(*stage.data[0].keys)
    rows = [row for source in stage.data for row in read_json(ws.suite.path(*source.keys))[:: source.every] * source.repeat]
    return write_json(ws.root / "data" / f"{stage.name}.json", rows)


def stage_overrides(ws: Workspace, stage: Stage, run: Path, start: str | None) -> list[str]:
    """The recipe's paths pointed into the workspace, the scale's step cap, and the seed. `start` is the
    model to start from: a folder; `tiny`, a new model around the vision stage's tower (its language model
    the workspace's base language model, or one from scratch); or None (the vision stage)."""
    suite = ws.suite
    overrides = [
        "--data_path", str(stage_data(ws, stage)),
        "--video_root", str(suite.video_root),
        "--output_dir", str(run),
        "--seed", str(ws.seed),
        # The Trainer then also saves at the last step, and that checkpoint's state holds the whole log.
        "--save_strategy", "steps",
    ]  # fmt: skip
    if not torch.cuda.is_available():
        overrides += ["--use_cpu", "true"]  # a bf16 recipe then trains under CPU autocast
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
    config_class = TRAINERS[stage.trainer][1]
    overrides = stage_overrides(ws, stage, run, start) + list(extra)
    return load_config(config_class, str(ws.recipes / f"{stage.name}.yaml"), overrides)


def final_model(run: Path) -> Path:
    return run / FINAL_MODEL


def train_stage(ws: Workspace, stage: Stage, run: Path, start: str | None, extra: list[str] = ()) -> tuple[Path, bool]:
    """Train one stage into `run`; returns its model folder and whether a finished run there was reused. A finished
    run (final model and log written) is reused only when it is the same run from the same models
    (`require_same_run`: `InputError` otherwise, e.g. after the base model changed). A run about to train first
    removes what was made from its earlier model (`discard_made_from`)."""
    config = load_stage_config(ws, stage, run, start, extra)
    final = final_model(run)
    require_same_run(run, config)
    if (final / "config.json").is_file() and (run / HISTORY).is_file():
        logger.info("%s: reusing %s", run.name, final)
        return final, True
    discard_made_from(ws, run)
    TRAINERS[stage.trainer][0](config)
    checkpoint = last_complete_checkpoint(run)
    if checkpoint is None:
        raise RuntimeError(f"{run}: training wrote no checkpoint, so its loss log is lost")
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    write_json(run / HISTORY, state["log_history"])
    return final, False


def discard_made_from(ws: Workspace, run: Path) -> list[Path]:
    """Remove what the demo's folder holds that was made from the model of `run`, which is about to train anew: every
    run that starts from a model in `run` or in a run removed (its `run.json`'s `MODEL_SOURCES`: the later stages, the
    ablation's runs on a vision tower trained again) and every evaluation of those models (`eval/*/run.json`). Each
    would be refused as made from another model, one folder per rerun. A recorded path counts by its part from the
    demo's `runs/` folder on (`_made_from`), so a demo folder moved or linked elsewhere is cleaned the same. Returns
    the folders removed."""
    made_from, stale = [run.relative_to(ws.root)], []
    records = {record.parent: read_json(record) for record in sorted((ws.root / "runs").glob(f"*/{RUN_FILE}"))}
    records.pop(run, None)
    while later := [folder for folder, record in records.items() if _made_from(record, MODEL_SOURCES, made_from)]:
        stale += later
        made_from += [folder.relative_to(ws.root) for folder in later]
        for folder in later:
            del records[folder]
    for record in sorted((ws.root / "eval").glob(f"*/{EVAL_RUN_FILE}")):
        if _made_from(read_json(record).get("settings", {}), ("model",), made_from):
            stale.append(record.parent)
    for folder in stale:
        logger.info("%s: made from an earlier %s model, removed", folder, run.name)
        folder.unlink() if folder.is_symlink() else shutil.rmtree(folder)
    return stale


def _made_from(settings: dict, names: tuple[str, ...], runs: list[Path]) -> bool:
    """Whether a path that `settings` gives under one of `names` lies in one of `runs` (folders relative to the demo's
    folder, e.g. `runs/coldstart`), wherever that folder was when the path was recorded: its parts hold the run's."""
    paths = [Path(settings[name]).parts for name in names if settings.get(name)]
    return any(path[start : start + len(run.parts)] == run.parts for path in paths for run in runs for start in range(len(path)))


def read_history(run: Path) -> list[dict]:
    return json.loads((run / HISTORY).read_text(encoding="utf-8"))


# ---- evaluation -------------------------------------------------------------------------------------


def grpo_recipe(ws: Workspace):
    """The GRPO stage's settings: its rollouts' length is the Reason-mode answers' cap, and its frames per
    video and precision (which every stage's recipe shares) are the evaluations' too."""
    last = STAGES[-1]
    return load_stage_config(ws, last, ws.run_dir(last.name), None)


def eval_dtype(recipe) -> str:
    """The evaluations' weights: bfloat16 where the recipes train under bf16 autocast (on a machine with bfloat16
    hardware: `tinyvideo.train.common.bf16_is_native`), else float32. On a
    CPU with AVX512-BF16, bfloat16 answers 2.4x as many questions a second (one thread, 64 questions) at the same
    accuracy (the demo's fine-tuned model from the base model, 280 test questions, float32 / bfloat16: Option
    20.4 / 22.1, Cloze 62.1 / 61.4, Cloze with the options listed 53.9 / 54.6)."""
    return "bfloat16" if recipe.bf16 else "float32"


def evaluate_run(ws: Workspace, model: Path, run: Path, modes=MODES, control: str | None = None) -> dict[str, dict]:
    """The harness's report on the suite's test split for each of `modes` (`MODES`' names), under `control` if one
    is given (`tinyvideo.eval.settings.CONTROLS`); answered questions are kept."""
    recipe = grpo_recipe(ws)
    new_tokens = {"option": OPTION_TOKENS, "reason": recipe.max_completion_length, "cloze": 0}  # Cloze generates nothing
    reports = {}
    for mode in modes:
        harness_mode = "cloze" if mode == CLOZE_OPTIONS else mode
        settings = Settings(
            benchmark="synth",
            data=str(ws.suite.root.resolve()),
            model=str(model.resolve()),
            mode=harness_mode,
            cloze_options=mode == CLOZE_OPTIONS,
            frames=recipe.num_frames,
            max_new_tokens=new_tokens[harness_mode],
            dtype=eval_dtype(recipe),
            control=control,
            limit=ws.scale.test_questions,
        )
        folder = ws.eval_dir(run, mode if control is None else f"{mode}-{control}")
        evaluate(settings, folder, batch_size=64, num_workers=0, device=PartialState().device)
        reports[mode] = build_report(folder)
    return reports


def evaluate_subtitles(ws: Workspace, model: Path, run: Path) -> dict:
    """The harness's report on the suite's LongVideoBench files in Option mode, each question asked without
    and with its subtitles (the frames' captions, interleaved with the frames)."""
    recipe = grpo_recipe(ws)
    settings = Settings(
        benchmark="longvideobench",
        data=str(ws.suite.path("eval", "longvideobench", "root").resolve()),
        model=str(model.resolve()),
        frames=recipe.num_frames,
        dtype=eval_dtype(recipe),
        max_new_tokens=OPTION_TOKENS,
        subtitles=True,
        limit=ws.scale.test_questions,
    )
    folder = ws.eval_dir(run, "longvideobench")
    evaluate(settings, folder, batch_size=64, num_workers=0, device=PartialState().device)
    return build_report(folder)


# ---- the two runs ---------------------------------------------------------------------------------------


def run_demo(ws: Workspace, started: float) -> Path:
    """Every stage, each evaluated in every mode and, in its `CONTROLLED` modes, under each control, then
    `report.md`; returns the report's path. `started` is when the command began
    (`time.perf_counter`), for the report's wall time."""
    results, controls = {}, {}
    start = None if ws.base_model is None else str(materialise(ws.base_model, ws.root / "base"))
    for number, stage in enumerate(ws.stages, start=1):
        logger.info("stage %d/%d: %s (%s)", number, len(ws.stages), stage.name, stage.title)
        begun = time.perf_counter()
        run = ws.run_dir(stage.name)
        final, reused = train_stage(ws, stage, run, start)
        reports = {} if stage is VISION else evaluate_run(ws, final, run)
        for mode in CONTROLLED.get(stage.name, ()):
            controls.setdefault(stage.name, {})[mode] = {c: evaluate_run(ws, final, run, (mode,), c)[mode] for c in CONTROLS}
        seconds = time.perf_counter() - begun
        results[stage.name] = {"run": run, "reports": reports, "history": read_history(run), "seconds": seconds, "reused": reused}
        accuracies = ", ".join(f"{mode} {report.pct(task_accuracy(r)['all'])}" for mode, r in reports.items()) or "-"
        logger.info("stage %s done in %.0f s; test accuracy (%%): %s", stage.name, seconds, accuracies)
        start = "tiny" if stage is VISION else str(final)
    subtitles = evaluate_subtitles(ws, final, run)
    return report.write_demo_report(ws, results, time.perf_counter() - started, subtitles, controls)


def ablation_extra(connector: str, recipe_connector: str, num_frames: int, num_queries: int) -> list[str]:
    """Overrides giving `connector` the recipe's number of visual tokens, `num_queries` for videos of
    `num_frames` frames (the connector says which settings do)."""
    if connector == recipe_connector:
        return []
    try:
        settings = CONNECTORS[connector].settings_for_tokens(num_queries, num_frames)
    except ValueError as error:
        raise InputError(str(error)) from None
    return ["--connector_type", connector, *(token for key, value in settings.items() for token in (f"--{key}", str(value)))]


def run_ablation(ws: Workspace, started: float) -> Path:
    """The connectors ablation (`ws.stages`: what is trained once, then per connector the last two stages: pretraining
    and fine-tuning), accuracy per task in `ABLATION_MODES`; returns ablation.md. From a base model each connector is
    new (`--new_connector`) on the base model."""
    *once, pretrain, finetune = ws.stages
    if ws.base_model is None:
        for stage in once:
            train_stage(ws, stage, ws.run_dir(stage.name), None)
        start, new = "tiny", []
    else:
        start, new = str(materialise(ws.base_model, ws.root / "base")), ["--new_connector", "true"]
    recipe = load_stage_config(ws, pretrain, ws.run_dir(pretrain.name), start)
    results = {}
    for number, connector in enumerate(ABLATION_CONNECTORS, start=1):
        logger.info("connector %d/%d: %s", number, len(ABLATION_CONNECTORS), connector)
        begun = time.perf_counter()
        # From scratch the recipe's own connector is the demo's and keeps its runs' plain names; from a base model
        # each connector is new, and the demo's `finetune` (the base model's own connector) is another run.
        name = None if connector == recipe.connector_type and ws.base_model is None else connector
        extra = new + ablation_extra(connector, recipe.connector_type, recipe.num_frames, recipe.num_queries)
        model, _ = train_stage(ws, pretrain, ws.run_dir(pretrain.name, name), start, extra)
        run = ws.run_dir(finetune.name, name)
        model, _ = train_stage(ws, finetune, run, str(model))
        reports = evaluate_run(ws, model, run, modes=ABLATION_MODES)
        config = TinyVideoConfig.from_pretrained(model)
        results[connector] = {
            "run": run,
            "reports": reports,
            "visual_tokens": config.num_visual_tokens(recipe.num_frames),
            "connector_parameters": _connector_parameters(model),
        }
        accuracies = ", ".join(f"{mode} {report.pct(r['overall']['accuracy'])}" for mode, r in reports.items())
        logger.info("connector %s done in %.0f s; test accuracy (%%): %s", connector, time.perf_counter() - begun, accuracies)
    return report.write_ablation_report(ws, results, time.perf_counter() - started)


def _connector_parameters(model: Path) -> int:
    return sum(p.numel() for p in TinyVideoForConditionalGeneration.from_pretrained(model).connector.parameters())
