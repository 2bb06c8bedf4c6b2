"""The reports of `tinyvideo demo`: markdown tables and PNG plots.

Every number comes from the files the run left behind (the Trainer's log history, the harness's
`report.json` and predictions), and each report has a JSON twin with the same numbers for programs.
Plots use matplotlib's object API (`Figure`), which needs no GUI backend and touches no global state.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tinyvideo.answers import concluded_option, extract_answer
from tinyvideo.demo.plan import (
    ABLATION_MODES,
    FINETUNE,
    MODES,
    STAGES,
    TEMPORAL_TASKS,
    TITLES,
    Workspace,
    group_accuracy,
    task_accuracy,
)
from tinyvideo.errors import InputError
from tinyvideo.eval.predictions import read_predictions
from tinyvideo.files import write_json, write_text
from tinyvideo.rows import read_json
from tinyvideo.train.base_model import base_model_folder
from tinyvideo.train.rewards import is_reflective
from tinyvideo.video import read_frames

# The consistency reward's mean is logged only by recipes that use it (the base model's).
GRPO_METRICS = (
    "reward", "accuracy", "format_rate", "rewards/consistency/mean", "reflection_rate", "completion_length", "kl"
)
STRIP_FRAMES = 8
EXAMPLES = 3


# ---- plots ------------------------------------------------------------------------------------------


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of a metric in a Trainer log history."""
    points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def plot_losses(histories: dict[str, list[dict]], path: Path) -> Path:
    figure = Figure(figsize=(3.2 * len(histories), 2.8), layout="constrained")
    for ax, (name, history) in zip(figure.subplots(1, len(histories), squeeze=False)[0], histories.items()):
        ax.plot(*series(history, "loss"), marker=".")
        ax.set(title=name, xlabel="step", ylabel="training loss")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def plot_grpo(history: list[dict], path: Path) -> Path:
    figure = Figure(figsize=(3.2 * len(GRPO_METRICS), 2.8), layout="constrained")
    for ax, metric in zip(figure.subplots(1, len(GRPO_METRICS)), GRPO_METRICS):
        steps, values = series(history, metric)
        if steps:
            ax.plot(steps, values, marker=".")
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=metric.replace("_", " "), xlabel="GRPO step")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def plot_accuracy(panels: dict[str, dict[str, dict[str, float | None]]], path: Path) -> Path:
    """Grouped bars: one panel per title, one group per task, one bar per series (stage or connector)."""
    figure = Figure(figsize=(11, 3.2 * len(panels)), layout="constrained")
    for ax, (title, table) in zip(figure.subplots(len(panels), 1, squeeze=False)[:, 0], panels.items()):
        names = list(table)
        tasks = list(next(iter(table.values())))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            heights = [table[name][task] or 0.0 for task in tasks]
            ax.bar(np.arange(len(tasks)) + (i - (len(names) - 1) / 2) * width, heights, width, label=name)
        ax.set_xticks(np.arange(len(tasks)), [t.replace("_", "\n") for t in tasks], fontsize=8)
        ax.set(title=title, ylabel="accuracy (%)", ylim=(0, 100))
        ax.legend(fontsize=8, ncols=len(names))
        ax.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=100)
    return path


def frame_strip(video: str | Path, path: Path) -> Path:
    """A row of frames spread over the clip, as the model sees them in order."""
    frames, _ = read_frames(video, num_frames=STRIP_FRAMES)
    gap = np.full((frames.shape[1], 2, 3), 255, dtype=np.uint8)
    row = np.concatenate([part for frame in frames for part in (frame, gap)][:-1], axis=1)
    figure = Figure(figsize=(row.shape[1] / 40, row.shape[0] / 40 + 0.3), layout="constrained")
    ax = figure.subplots()
    ax.imshow(row, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title("time →", fontsize=8, loc="left")
    figure.savefig(path, dpi=80)
    return path


# ---- tables -----------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def chance(report: dict, tasks: dict) -> dict[str, float]:
    """The accuracy of guessing, per task and over the questions asked."""
    cells = report["breakdowns"]["task"]
    per_task = {task: 100.0 / tasks[task]["options"] for task in cells}
    total = sum(cell["total"] for cell in cells.values())
    overall = sum(per_task[task] * cell["total"] for task, cell in cells.items()) / total if total else None
    return {**per_task, "all": overall}


def accuracy_rows(reports: dict[str, dict], tasks: dict) -> tuple[list[str], list[list[str]]]:
    """Tasks down, `reports` (name -> harness report) across, with chance and the invalid answers."""
    names = list(reports)
    accuracy = {name: task_accuracy(report) for name, report in reports.items()}
    guess = chance(next(iter(reports.values())), tasks)
    rows = [[task, pct(guess[task]), *(pct(accuracy[n][task]) for n in names)] for task in accuracy[names[0]]]
    rows.append(["invalid answers", "", *(str(reports[n]["invalid_answers"]) for n in names)])
    return ["task", "chance", *names], rows


def control_lines(evaluated: dict[str, dict], controls: dict[str, dict[str, dict]], tasks: dict) -> tuple[list[str], dict]:
    """Per stage and mode of `controls` (stage -> mode -> control -> harness report), the stage's model as evaluated
    (`evaluated`: stage -> {"reports": mode -> report}) beside the same model under each control, temporal tasks
    marked."""
    text = [
        "## Controls",
        "",
        "A stage's model as above, then with each question asked about another test clip's video "
        "(shuffled-video: what it gets right without the video) and with only the last sampled frame, repeated "
        "(last-frame: the temporal tasks need the order of the frames).",
        "",
    ]
    summary = {}
    for stage, by_mode in controls.items():
        for mode, reports in by_mode.items():
            compared = {stage: evaluated[stage]["reports"][mode], **reports}
            header, rows = accuracy_rows(compared, tasks)
            rows = [[f"{row[0]} (temporal)" if row[0] in TEMPORAL_TASKS else row[0], *row[1:]] for row in rows]
            text += [f"{TITLES[mode]}, after {stage}:", "", *table(header, rows), ""]
            summary.setdefault(stage, {})[mode] = {name: task_accuracy(report) for name, report in compared.items()}
    return text, summary


def conclusion_lines(ws: Workspace, runs: dict[str, Path]) -> tuple[list[str], dict]:
    """Per stage (`runs`: stage -> run folder), its Reason-mode test answers read against their own reasoning: how
    many reasoning blocks conclude with an option (the one they name last, `answers.concluded_option`, as GRPO's
    consistency reward reads it), how often the answer's letter is that option, and how often that option is right.
    Shares are percentages of the answers that conclude with an option (None where none does)."""
    questions = {record["id"]: record for record in ws.suite.records("test")}
    summary = {}
    for stage, run in runs.items():
        concluded = follows = right = 0
        for prediction in read_predictions(ws.eval_dir(run, "reason") / "predictions.jsonl"):
            options = questions[prediction["id"]]["options"]
            reasoning = extract_answer(prediction.get("response") or "", options).reasoning
            option = concluded_option(reasoning or "", options)
            if option is not None:
                concluded += 1
                follows += option == prediction["letter"]
                right += option == prediction["answer"]
        summary[stage] = {
            "concluded": concluded,
            "letter_follows": 100.0 * follows / concluded if concluded else None,
            "conclusion_right": 100.0 * right / concluded if concluded else None,
        }
    text = [
        "## The reasoning's conclusion",
        "",
        "Reason mode, per stage: the answers whose reasoning concludes with an option (the one it names last), how "
        "often the answer's letter is that option, and how often that option is right (% of those answers). A stage "
        "can gain accuracy by answering what its reasoning concludes, or by concluding right more often.",
        "",
        *table(
            ["after", "reasoning concludes with an option", "letter = its conclusion (%)", "conclusion right (%)"],
            [[s, str(c["concluded"]), pct(c["letter_follows"]), pct(c["conclusion_right"])] for s, c in summary.items()],
        ),
        "",
    ]
    return text, summary


# ---- examples ---------------------------------------------------------------------------------------


def pick_examples(ws: Workspace, runs: dict[str, Path]) -> list[tuple[str, dict]]:
    """(stage, prediction) pairs from the last stage's Reason-mode answers: a self-correction first if one
    occurred (in the last stage, else the one before), then the first answers of other tasks."""
    stages = list(runs)
    predictions = {s: read_predictions(ws.eval_dir(runs[s], "reason") / "predictions.jsonl") for s in stages[-2:]}
    picked = []
    for stage in reversed(stages[-2:]):
        reflective = [p for p in predictions[stage] if p.get("response") and is_reflective(p["response"])]
        if reflective:
            picked.append((stage, max(reflective, key=lambda p: p["correct"])))
            break
    for record in predictions[stages[-1]]:
        if len(picked) == EXAMPLES:
            break
        if record.get("response") and record["categories"]["task"] not in {p["categories"]["task"] for _, p in picked}:
            picked.append((stages[-1], record))
    return picked


def example_lines(ws: Workspace, examples: list[tuple[str, dict]], folder: Path) -> tuple[list[str], list[dict]]:
    questions = {record["id"]: record for record in ws.suite.records("test")}
    folder.mkdir(exist_ok=True)
    lines, summary = [], []
    for stage, prediction in examples:
        question = questions[prediction["id"]]
        # The suite's own video, not the path the answer recorded: the demo's folder may have moved since.
        strip = frame_strip(ws.suite.video_root / question["video"], folder / f"{prediction['id']}.png")
        reflective = is_reflective(prediction["response"])
        verdict = "correct" if prediction["correct"] else "incorrect"
        options = "  \n".join(f"{letter}. {text}" for letter, text in zip("ABCDE", question["options"]))
        lines += [
            f"### {question['task']}: {prediction['id']}" + (" (self-correction)" if reflective else ""),
            "",
            f"![frames of {prediction['id']}]({strip.relative_to(ws.root).as_posix()})",
            "",
            f"**{question['question']}**  \n{options}",
            "",
            f"Model after {stage}, Reason mode: answered {prediction['letter'] or 'nothing readable'} "
            f"({verdict}; the key is {question['answer']}).",
            "",
            "```text",
            *textwrap.wrap(prediction["response"], 110),
            "```",
            "",
        ]
        summary.append({"id": prediction["id"], "stage": stage, "correct": prediction["correct"], "self_correction": reflective})
    return lines, summary


# ---- the reports ------------------------------------------------------------------------------------


def origin(ws: Workspace) -> str:
    """Where the model starts, in a sentence."""
    if ws.base_model is not None:
        return (
            f"It starts from the pretrained base model `{ws.base_model}` (its model card: "
            f"`{base_model_folder(ws.base_model) / 'README.md'}`): a vision tower and a language model that already "
            "describe the suite's clips."
        )
    if ws.language_model is not None:
        return f"It starts from random weights, but for the base language model in `{ws.language_model}`."
    return "It starts from random weights."


def demo_command(ws: Workspace) -> str:
    """The command that makes this demo."""
    options = f" --base-model {ws.base_model}" if ws.base_model is not None else " --from-scratch"
    if ws.language_model is not None:
        options += f" --language-model {ws.language_model}"
    return f"tinyvideo demo --scale {ws.scale.suite} --seed {ws.seed}{options} --out {ws.root}"


def write_demo_report(
    ws: Workspace, results: dict[str, dict], seconds: float, subtitles: dict, controls: dict[str, dict[str, dict]]
) -> Path:
    """`report.md`, `demo.json` and the plots, from each stage's run folder, history and evaluation reports;
    `subtitles` is the last stage's report on the suite's LongVideoBench files without and with subtitles;
    `controls` the reports of `plan.CONTROLLED`'s stages under each control (stage -> mode -> control -> harness
    report)."""
    root, tasks = ws.root, ws.suite.manifest["tasks"]
    histories = {stage: result["history"] for stage, result in results.items()}
    plot_losses(histories, root / "loss.png")
    grpo = histories[STAGES[-1].name]
    plot_grpo(grpo, root / "grpo.png")
    evaluated = {stage: result for stage, result in results.items() if result["reports"]}  # not the vision tower
    panels = {TITLES[mode]: {s: task_accuracy(r["reports"][mode]) for s, r in evaluated.items()} for mode in MODES}
    plot_accuracy(panels, root / "accuracy.png")

    counts = ws.suite.manifest["counts"]
    lines = [
        f"# tinyvideo demo ({ws.scale.suite} scale)",
        "",
        f"A model trained on the synthetic suite (seed {ws.seed}: {counts['train']} training "
        f"clips, {counts['test']} test clips, {len(tasks)} tasks), stage after stage, and evaluated on the test "
        f"split after each stage. This run took {seconds:.0f} s; a rerun reuses the stages already done.",
        "",
        origin(ws),
        "",
        f"Made with `{demo_command(ws)}` from the recipes in `{ws.recipes}`.",
        "",
        "## Test accuracy (%) per task and stage",
        "",
        "Option and Reason modes generate an answer and read its letter (the published prompts). Cloze mode "
        "asks the bare question and picks the option whose text the model finds likeliest as the answer: "
        "whether it knows the answer, letter or not; with the options listed, the same under the question with its "
        "lettered options: whether it still reads the video where a multiple-choice prompt shows them.",
        "",
    ]
    for mode in MODES:
        header, rows = accuracy_rows({s: r["reports"][mode] for s, r in evaluated.items()}, tasks)
        lines += [f"{TITLES[mode]}:", "", *table(header, rows), ""]
    lines += ["![accuracy per task and stage](accuracy.png)", ""]
    control_text, control_summary = control_lines(evaluated, controls, tasks)
    lines += control_text
    conclusion_text, conclusions = conclusion_lines(ws, {s: r["run"] for s, r in evaluated.items()})
    lines += conclusion_text
    lines += ["## Training loss", "", "![training loss](loss.png)", ""]
    training = {}
    for stage, history in histories.items():
        steps, losses = series(history, "loss")
        training[stage] = {
            "steps": steps[-1] if steps else 0,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "seconds": results[stage]["seconds"],
            "reused": results[stage]["reused"],
        }
    lines += table(
        ["stage", "optimizer steps", "first logged loss", "last logged loss", "seconds in this run (training + evaluation)"],
        [
            [s, str(t["steps"]), _num(t["first_loss"]), _num(t["last_loss"]), _num(t["seconds"], 0) + (" (reused)" if t["reused"] else "")]
            for s, t in training.items()
        ],
    )
    grpo_table = {}
    for metric in GRPO_METRICS:
        steps, values = series(grpo, metric)
        grpo_table[metric] = {"first": values[0], "last": values[-1], "steps": len(steps)} if values else None
    lines += ["", "## GRPO", "", "![GRPO metrics over steps](grpo.png)", ""]
    lines += table(
        ["metric", "first logged step", "last logged step"],
        [[m, _num(v and v["first"]), _num(v and v["last"])] for m, v in grpo_table.items()],
    )
    with_subs, without_subs = subtitles["headline"]["value"], subtitles["without_subtitles"]["headline"]["value"]
    lines += [
        "",
        "## Subtitles (LongVideoBench layout)",
        "",
        f"The last stage's model on the suite's test clips in LongVideoBench's files, Option mode, each question "
        "asked without and with subtitles (the frames' captions, interleaved with the frames as LongVideoBench "
        "defines it):",
        "",
        *table(["setting", "accuracy (%)", "invalid answers"], [
            ["w/o subs", pct(without_subs), str(subtitles["without_subtitles"]["invalid_answers"])],
            ["w/ subs", pct(with_subs), str(subtitles["invalid_answers"])],
        ]),
        "",
        "Subtitle files: " + ", ".join(f"{k} {v}" for k, v in subtitles.get("subtitles", {}).items()) + ".",
    ]
    examples = pick_examples(ws, {s: r["run"] for s, r in evaluated.items()})
    example_text, example_summary = example_lines(ws, examples, root / "examples")
    if not any(e["self_correction"] for e in example_summary):
        example_text = ["No answer of the last two stages re-checked itself (no self-correction occurred).", "", *example_text]
    else:
        example_text = ["A self-correction is an answer whose reasoning re-checks itself (\"wait\", \"let me check\", ...).", "", *example_text]
    lines += ["", "## Test videos and the model's reasoning", "", *example_text]
    write_text(root / "report.md", "\n".join(lines))
    write_json(
        root / "demo.json",
        {
            "scale": ws.scale.suite,
            "seed": ws.seed,
            "seconds": seconds,
            "suite": counts,
            "chance": chance(next(iter(evaluated.values()))["reports"][MODES[0]], tasks),
            "accuracy": {mode: {s: task_accuracy(r["reports"][mode]) for s, r in evaluated.items()} for mode in MODES},
            "invalid_answers": {mode: {s: r["reports"][mode]["invalid_answers"] for s, r in evaluated.items()} for mode in MODES},
            "training": training,
            "grpo": grpo_table,
            "controls": control_summary,
            "conclusions": conclusions,
            "subtitles": {"w/o subs": without_subs, "w/ subs": with_subs, "files": subtitles.get("subtitles", {})},
            "examples": example_summary,
        },
    )
    return root / "report.md"


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _spread(values: list[float | None]) -> str:
    """Mean ± sample standard deviation of the values given (`-` where one is missing)."""
    if any(v is None for v in values):
        return "-"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def write_seeds_report(root: Path, demos: dict[int, Path]) -> Path:
    """`seeds.md` and `seeds.json` in `root`: each demo's overall test accuracy (`demos`: seed -> its folder, which
    holds its `demo.json`) per mode and stage, GRPO's gain in Reason mode over the cold start and its distance to the
    fine-tuned model's Option accuracy, the Reason answers not well-formed, their reasoning's conclusions (for stages
    whose reasoning concludes with an option in any seed, `conclusion_lines`), and the controls, every number per seed
    and as the mean ± sample standard deviation over the seeds (at least two). `InputError` for a `demo.json` written
    before demos recorded their chance level, controls per mode and the reasoning's conclusions (the demo run again
    rewrites it)."""
    runs = {seed: read_json(folder / "demo.json") for seed, folder in demos.items()}
    for seed, run in runs.items():
        if "conclusions" not in run:
            raise InputError(f"{demos[seed] / 'demo.json'} was written by an earlier tinyvideo: run the demo there again")
    first = next(iter(runs.values()))
    rows: dict[str, list[float | None]] = {"chance": [run["chance"]["all"] for run in runs.values()]}
    for mode in MODES:
        for stage, accuracy in first["accuracy"][mode].items():
            rows[f"{TITLES[mode]}, after {stage}"] = [run["accuracy"][mode][stage]["all"] for run in runs.values()]
    *_, before, last = first["accuracy"]["reason"]
    rows[f"Reason mode, {last} minus {before}"] = [
        _minus(run["accuracy"]["reason"][last]["all"], run["accuracy"]["reason"][before]["all"]) for run in runs.values()
    ]
    rows[f"Reason mode after {last} minus Option mode after {FINETUNE.name}"] = [
        _minus(run["accuracy"]["reason"][last]["all"], run["accuracy"]["option"][FINETUNE.name]["all"]) for run in runs.values()
    ]
    for stage in first["invalid_answers"]["reason"]:
        rows[f"Reason answers not well-formed, after {stage}"] = [run["invalid_answers"]["reason"][stage] for run in runs.values()]
    for stage in first["conclusions"]:
        conclusions = [run["conclusions"][stage] for run in runs.values()]
        if any(c["concluded"] for c in conclusions):
            rows[f"Reason answers whose reasoning concludes with an option, after {stage}"] = [c["concluded"] for c in conclusions]
            rows[f"of those, letter = the conclusion (%), after {stage}"] = [c["letter_follows"] for c in conclusions]
            rows[f"of those, the conclusion right (%), after {stage}"] = [c["conclusion_right"] for c in conclusions]
    for stage, by_mode in first["controls"].items():
        for mode, by_name in by_mode.items():
            for name in by_name:
                if name != stage:
                    rows[f"{TITLES[mode]}, after {stage}, {name}"] = [
                        run["controls"][stage][mode][name]["all"] for run in runs.values()
                    ]
    lines = [
        f"# tinyvideo demo over {len(runs)} seeds ({first['scale']} scale)",
        "",
        "Each seed is a demo of its own (its own suite, its training and test clips, every stage's seed): "
        f"{', '.join(f'[seed {seed}]({folder.name}/report.md)' for seed, folder in demos.items())}. Overall test "
        "accuracy (%) and its differences (points), and the counts of answers not well-formed, per seed, then the "
        "mean ± the sample standard deviation over the seeds.",
        "",
        *table(
            ["", *(f"seed {seed}" for seed in runs), "mean ± sd"],
            [[name, *(_num(v, 1) for v in values), _spread(values)] for name, values in rows.items()],
        ),
    ]
    write_text(root / "seeds.md", "\n".join(lines))
    write_json(root / "seeds.json", {"seeds": list(runs), "rows": {name: dict(zip(runs, v)) for name, v in rows.items()}})
    return root / "seeds.md"


def _ablation_section(mode: str, reports: dict[str, dict], tasks, sizes: list[list[str]]) -> tuple[list[str], dict]:
    """One mode's table (temporal tasks marked and grouped) and its reading against sampling noise."""
    header, rows = accuracy_rows(reports, tasks)
    rows = [[f"{row[0]} (temporal)" if row[0] in TEMPORAL_TASKS else row[0], *row[1:]] for row in rows]
    other = [task for task in tasks if task not in TEMPORAL_TASKS]
    groups = {
        "temporal": {n: group_accuracy(r, TEMPORAL_TASKS) for n, r in reports.items()},
        "other": {n: group_accuracy(r, other) for n, r in reports.items()},
    }
    rows[-1:-1] = [[f"{name} tasks", "", *(pct(values[n]) for n in reports)] for name, values in groups.items()]
    top = max(value or 0.0 for value in groups["temporal"].values())
    leaders = [n for n, value in groups["temporal"].items() if (value or 0.0) == top]
    first = next(iter(reports.values()))["breakdowns"]["task"]
    temporal_questions = sum(cell["total"] for task, cell in first.items() if task in TEMPORAL_TASKS)
    noise = 200 * math.sqrt(top / 100 * (1 - top / 100) / max(temporal_questions, 1))
    lines = [
        f"## {TITLES[mode]}",
        "",
        *table(header, sizes + rows),
        "",
        f"Highest accuracy on the temporal tasks: {pct(top)}%, by {', '.join(leaders)}"
        + (" (a tie)" if len(leaders) > 1 else "")
        + f"; two standard errors of an accuracy over those {temporal_questions} questions are "
        f"{pct(noise)} points, and a smaller gap between connectors is sampling noise.",
        "",
    ]
    return lines, groups


def write_ablation_report(ws: Workspace, results: dict[str, dict], seconds: float) -> Path:
    """`ablation.md`, `ablation.json` and `ablation.png`: accuracy per connector in each of `ABLATION_MODES`."""
    root, tasks = ws.root, ws.suite.manifest["tasks"]
    names = list(results)
    sizes = [
        ["visual tokens per video", "", *(str(results[n]["visual_tokens"]) for n in names)],
        ["connector parameters", "", *(f"{results[n]['connector_parameters']:,}" for n in names)],
    ]
    by_mode = {mode: {n: results[n]["reports"][mode] for n in names} for mode in ABLATION_MODES}
    per_task = {cell["total"] for r in by_mode[ABLATION_MODES[0]].values() for cell in r["breakdowns"]["task"].values()}
    model = "A tiny model from scratch" if ws.base_model is None else f"The base model {ws.base_model}"
    lines = [
        f"# Connector ablation ({ws.scale.suite} scale)",
        "",
        f"{model} with each connector, new, at the same number of visual tokens, pretrained and fine-tuned, "
        f"evaluated on the test split in {' and '.join(TITLES[m] for m in ABLATION_MODES)} "
        f"({', '.join(map(str, sorted(per_task)))} questions per task, so one question moves a task's accuracy by "
        f"{', '.join(pct(100 / n) for n in sorted(per_task))} points). Cloze mode scores each option's text as "
        f"the answer: what the model knows, whether or not it can name the letter. This run took {seconds:.0f} s.",
        "",
    ]
    groups = {}
    for mode, reports in by_mode.items():
        section, groups[mode] = _ablation_section(mode, reports, tasks, sizes)
        lines += section
    plot_accuracy(
        {f"{TITLES[mode]}, after fine-tuning": {n: task_accuracy(r) for n, r in reports.items()} for mode, reports in by_mode.items()},
        root / "ablation.png",
    )
    lines += ["![accuracy per task and connector](ablation.png)", ""]
    write_text(root / "ablation.md", "\n".join(lines))
    write_json(
        root / "ablation.json",
        {
            "scale": ws.scale.suite,
            "seed": ws.seed,
            "base_model": ws.base_model,
            "seconds": seconds,
            "temporal_tasks": list(TEMPORAL_TASKS),
            "connectors": {
                n: {
                    "visual_tokens": results[n]["visual_tokens"],
                    "connector_parameters": results[n]["connector_parameters"],
                    **{
                        mode: {
                            "accuracy": task_accuracy(reports[n]),
                            **{key: values[n] for key, values in groups[mode].items()},
                            "invalid_answers": reports[n]["invalid_answers"],
                        }
                        for mode, reports in by_mode.items()
                    },
                }
                for n in names
            },
        },
    )
    return root / "ablation.md"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
