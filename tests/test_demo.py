"""`tinyvideo demo --scale smoke --from-scratch` end to end: suite, four stages, evaluations after each, report and plots;
then a rerun that reuses everything."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from tinyvideo.cli import main
from tinyvideo.commands import demo as demo_command
from tinyvideo.demo import plan
from tinyvideo.demo.report import GRPO_METRICS, conclusion_lines, pct, series, write_seeds_report
from tinyvideo.demo.run import ablation_extra, eval_dtype, final_model, grpo_recipe, load_stage_config
from tinyvideo.errors import InputError
from tinyvideo.eval.settings import CONTROLS
from tinyvideo.files import content_sha256, write_json
from tinyvideo.rows import read_json

STAGES = [stage.name for stage in plan.STAGES]
EVALUATED = STAGES[1:]  # every stage but the vision tower's makes a language model
# Each of the demo's evaluations as the harness records it: its mode, and whether Cloze mode listed the options.
HARNESS_MODES = {"option": ("option", False), "reason": ("reason", False), "cloze": ("cloze", False), "cloze-options": ("cloze", True)}


def run_demo(out: Path, *options: str) -> int:
    parser = argparse.ArgumentParser()
    demo_command.add_arguments(parser)
    return demo_command.run(parser.parse_args(["--scale", "smoke", "--from-scratch", "--out", str(out), *options]))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    threads = torch.get_num_threads()
    # A model this small gains nothing from a second thread, and a busy machine makes OpenMP threads wait
    # on each other (5x slower on a shared 2-core machine).
    torch.set_num_threads(1)
    try:
        assert run_demo(out) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def tables(markdown: str) -> list[list[list[str]]]:
    """The markdown tables of a report, each as rows of cells (header first, separator dropped)."""
    found, rows = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-:"):
                rows.append(cells)
        elif rows:
            found.append(rows)
            rows = []
    return found


def test_report_and_plots_are_written(smoke):
    out = smoke
    report = (out / "report.md").read_text()
    for plot in ("accuracy.png", "loss.png", "grpo.png"):
        assert f"]({plot})" in report
        with Image.open(out / plot) as image:
            assert image.format == "PNG" and image.width > 300
    strips = sorted((out / "examples").glob("*.png"))
    assert strips and all(f"](examples/{strip.name})" in report for strip in strips)
    assert "self-correction" in report  # one is shown, or the report says none occurred


def test_accuracy_tables_are_the_harness_reports(smoke):
    out = smoke
    accuracy_tables = tables((out / "report.md").read_text())[: len(plan.MODES)]
    for mode, rows in zip(plan.MODES, accuracy_tables, strict=True):
        assert rows[0] == ["task", "chance", *EVALUATED]
        for column, stage in enumerate(EVALUATED, start=2):
            report = json.loads((out / "eval" / f"{stage}-{mode}" / "report.json").read_text())
            assert (report["mode"], report["settings"]["cloze_options"]) == HARNESS_MODES[mode]
            assert report["predicted"] == report["questions"] > 0
            expected = {task: pct(cell["accuracy"]) for task, cell in report["breakdowns"]["task"].items()}
            expected["all"] = pct(report["overall"]["accuracy"])
            expected["invalid answers"] = str(report["invalid_answers"])
            assert {row[0]: row[column] for row in rows[1:]} == expected
        chance = json.loads((out / "demo.json").read_text())["chance"]
        assert {row[0]: row[1] for row in rows[1:-1]} == {task: pct(value) for task, value in chance.items()}


def test_controls_are_the_harness_reports_of_the_fine_tuned_and_last_models(smoke):
    """One control table per stage and mode of `CONTROLLED` (fine-tuning in Option mode, GRPO in Reason mode), in
    that order, each cell the harness's own report."""
    out = smoke
    controlled = [(stage, mode) for stage, modes in plan.CONTROLLED.items() for mode in modes]
    assert controlled == [("finetune", "option"), ("grpo", "reason")]
    control_tables = [t for t in tables((out / "report.md").read_text()) if t[0][3:] == list(CONTROLS)]
    assert [t[0][2] for t in control_tables] == [stage for stage, _ in controlled]
    for (stage, mode), rows in zip(controlled, control_tables, strict=True):
        for column, name in enumerate([mode, *(f"{mode}-{control}" for control in CONTROLS)], start=2):
            report = json.loads((out / "eval" / f"{stage}-{name}" / "report.json").read_text())
            assert (report["mode"], report["settings"]["cloze_options"]) == HARNESS_MODES[mode]
            assert report["settings"]["control"] == (None if name == mode else name.removeprefix(f"{mode}-"))
            assert report["predicted"] == report["questions"] > 0
            cells = {row[0].removesuffix(" (temporal)"): row[column] for row in rows[1:]}
            assert cells["all"] == pct(report["overall"]["accuracy"])
            assert all(cells[task] == pct(cell["accuracy"]) for task, cell in report["breakdowns"]["task"].items())
        assert {row[0] for row in rows[1:]} >= {f"{task} (temporal)" for task in plan.TEMPORAL_TASKS}
    controls = json.loads((out / "demo.json").read_text())["controls"]
    assert {(stage, mode): set(by_name) for stage, by_mode in controls.items() for mode, by_name in by_mode.items()} == {
        pair: {pair[0], *CONTROLS} for pair in controlled
    }


def test_the_reasoning_conclusion_is_the_option_it_names_last(smoke, tmp_path):
    """Of the answers whose reasoning names an option, the share whose letter is the option named last, and the share
    where that option is the key; reasoning that names none, or no reasoning, is left out."""
    ws = dataclasses.replace(plan.open_workspace(smoke, "smoke", 0, plan.SCRATCH_RECIPES), root=tmp_path)
    first, second, third, fourth = ws.suite.records("test")[:4]

    def text(question, letter):
        return question["options"]["ABCDE".index(letter)]

    def other(question):
        return next(letter for letter in "ABCDE" if letter != question["answer"])

    said = [
        (first, f"<think>It is {text(first, first['answer'])}.</think> <answer>{first['answer']}</answer>", first["answer"]),
        (second, f"<think>{text(second, second['answer'])}? No: {text(second, other(second))}.</think> "
                 f"<answer>{second['answer']}</answer>", second["answer"]),
        (third, "<think>I cannot tell.</think> <answer>A</answer>", "A"),
        (fourth, f"{text(fourth, fourth['answer'])}", fourth["answer"]),
    ]
    predictions = [{"id": q["id"], "answer": q["answer"], "letter": letter, "response": response} for q, response, letter in said]
    run = ws.run_dir("grpo")
    (ws.eval_dir(run, "reason")).mkdir(parents=True)
    (ws.eval_dir(run, "reason") / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    text_lines, summary = conclusion_lines(ws, {"grpo": run})
    # The first concludes with the key and answers it; the second concludes with another option and answers the key.
    assert summary == {"grpo": {"concluded": 2, "letter_follows": 50.0, "conclusion_right": 50.0}}
    (rows,) = tables("\n".join(text_lines))
    assert rows[1] == ["grpo", "2", "50.0", "50.0"]
    assert json.loads((smoke / "demo.json").read_text())["conclusions"].keys() == set(EVALUATED)


def test_evaluations_run_in_the_precision_the_recipes_train_in(smoke, bf16_hardware):
    # From scratch the recipes train in float32; after the base model under bf16 autocast where the machine has
    # bfloat16 hardware, and bfloat16 evaluations answer 2.4x faster on such a CPU at the same accuracy.
    recorded = {json.loads(path.read_text())["settings"]["dtype"] for path in (smoke / "eval").glob("*/run.json")}
    assert recorded == {"float32"}
    ws = plan.open_workspace(smoke, "smoke", 0, plan.BASE_RECIPES, base_model="smollm2-words")
    assert all(load_stage_config(ws, stage, smoke / "unused", None).bf16 for stage in ws.stages)
    assert eval_dtype(grpo_recipe(ws)) == "bfloat16"


def test_subtitles_section_is_the_harness_report(smoke):
    out = smoke
    report = json.loads((out / "eval" / f"{STAGES[-1]}-longvideobench" / "report.json").read_text())
    rows = next(t for t in tables((out / "report.md").read_text()) if t[0][0] == "setting")
    assert rows[1:] == [
        ["w/o subs", pct(report["without_subtitles"]["headline"]["value"]), str(report["without_subtitles"]["invalid_answers"])],
        ["w/ subs", pct(report["headline"]["value"]), str(report["invalid_answers"])],
    ]
    assert report["subtitles"] == {"ok": report["questions"]} and report["predicted"] == report["questions"] > 0
    assert json.loads((out / "demo.json").read_text())["subtitles"]["files"] == {"ok": report["questions"]}


def test_training_and_grpo_numbers_are_the_logged_ones(smoke):
    out = smoke
    found = tables((out / "report.md").read_text())
    losses = next(t for t in found if t[0][0] == "stage")
    grpo = next(t for t in found if t[0][0] == "metric")
    for row in losses[1:]:
        steps, values = series(json.loads((out / "runs" / row[0] / "log_history.json").read_text()), "loss")
        assert row[1:4] == [str(plan.SCALES["smoke"].max_steps[row[0]]), f"{values[0]:.3f}", f"{values[-1]:.3f}"]
        assert steps[-1] == int(row[1])
    history = json.loads((out / "runs" / "grpo" / "log_history.json").read_text())
    assert [row[0] for row in grpo[1:]] == list(GRPO_METRICS)
    for row in grpo[1:]:
        _, values = series(history, row[0])
        assert row[1:] == ([f"{values[0]:.3f}", f"{values[-1]:.3f}"] if values else ["-", "-"])
    assert all(series(history, metric)[1] for metric in GRPO_METRICS if metric != "rewards/consistency/mean")
    summary = json.loads((out / "demo.json").read_text())
    assert summary["grpo"]["reward"]["last"] == series(history, "reward")[1][-1]


def test_fine_tuning_reads_the_questions_and_the_stated_answer_rows(smoke):
    # Without the stated-answer rows, fine-tuning on letter answers wears off naming a known answer's letter.
    ws = plan.open_workspace(smoke, "smoke", 0, plan.SCRATCH_RECIPES)
    questions, told = (json.loads(ws.suite.path("train", key).read_text()) for key in ("qa", "binding"))
    expected = questions + told[::4]
    rows = json.loads(Path(load_stage_config(ws, plan.FINETUNE, smoke / "runs" / "finetune", None).data_path).read_text())
    assert rows == expected
    assert any(row["id"].endswith("-told") and "video" not in row for row in rows)


def test_the_cold_start_after_a_base_model_replays_fine_tuning_rows_beside_the_worked_answers(smoke):
    # The worked answers alone cost what fine-tuning taught; 4 times over beside every 13th question row, GRPO then
    # gains (seed 1: Reason 41.1% -> 47.5%); 8 times over beside every 26th, the cold start binds the letter itself
    # (48.6%) and GRPO gains nothing.
    ws = plan.open_workspace(smoke, "smoke", 0, plan.BASE_RECIPES, base_model="smollm2-words")
    assert [stage.name for stage in ws.stages] == STAGES[2:]
    worked, questions, told = (json.loads(ws.suite.path("train", key).read_text()) for key in ("coldstart", "qa", "binding"))
    config = load_stage_config(ws, plan.COLDSTART_WITH_REPLAY, smoke / "runs" / "coldstart", str(smoke / "finetune"))
    assert json.loads(Path(config.data_path).read_text()) == worked * 4 + questions[::13] + told[::4]
    assert config.num_train_epochs == 1


def test_fine_tuning_after_a_base_model_also_reads_the_option_rows_in_every_rotation(smoke):
    # Without them 300 steps from the base model underfit the letter rows (Option 28.6% on the train split itself).
    ws = plan.open_workspace(smoke, "smoke", 0, plan.BASE_RECIPES, base_model="smollm2-words")
    finetune = ws.stages[0]
    questions, told, rotated = (json.loads(ws.suite.path("train", key).read_text()) for key in ("qa", "binding", "rotated"))
    config = load_stage_config(ws, finetune, smoke / "runs" / "finetune", None)
    assert json.loads(Path(config.data_path).read_text()) == questions + told[::4] + rotated
    assert finetune.name == plan.FINETUNE.name


def test_rerun_reuses_every_stage(smoke, caplog):
    out = smoke
    before = (out / "demo.json").read_text()
    with caplog.at_level(logging.INFO, logger="tinyvideo"):
        assert run_demo(out) == 0
    reused = {record.getMessage().split(":")[0] for record in caplog.records if "reusing" in record.getMessage()}
    assert reused == {"synthetic suite", *STAGES}
    assert not any(record.getMessage().startswith("answered ") for record in caplog.records)  # nothing asked again
    after = json.loads((out / "demo.json").read_text())
    assert after["accuracy"] == json.loads(before)["accuracy"]
    assert all(stage["reused"] for stage in after["training"].values())


def test_several_seeds_make_a_demo_each_and_their_mean_and_spread(smoke, tmp_path, caplog):
    """`--seed 0 1`: a demo per seed in OUT/seed-N (seed 0's moved there from another folder is reused whole), then
    seeds.md with each seed's overall accuracy as its demo.json has it and the mean ± sample standard deviation."""
    shutil.copytree(smoke, tmp_path / "seed-0")
    away = smoke.rename(smoke.with_name(smoke.name + "-away"))  # the folder moved: its old paths lead nowhere
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with caplog.at_level(logging.INFO, logger="tinyvideo"):
            assert run_demo(tmp_path, "--seed", "0", "1", "0") == 0
    finally:
        torch.set_num_threads(threads)
        away.rename(smoke)
    trained = [m.getMessage() for m in caplog.records if m.getMessage().startswith("stage ") and "done" in m.getMessage()]
    assert len(trained) == 2 * len(STAGES)  # each seed once, though seed 0 was asked twice
    runs = [json.loads((tmp_path / f"seed-{seed}" / "demo.json").read_text()) for seed in (0, 1)]
    assert [run["seed"] for run in runs] == [0, 1]
    assert all(run["training"][stage]["reused"] for run in runs[:1] for stage in STAGES)
    (header, *rows), = tables((tmp_path / "seeds.md").read_text())
    assert header == ["", "seed 0", "seed 1", "mean ± sd"]
    cells = {row[0]: row[1:] for row in rows}
    reason = [run["accuracy"]["reason"] for run in runs]
    expected = {
        "chance": [run["chance"]["all"] for run in runs],
        "Option mode, after finetune": [run["accuracy"]["option"]["finetune"]["all"] for run in runs],
        "Reason mode, grpo minus coldstart": [r["grpo"]["all"] - r["coldstart"]["all"] for r in reason],
        "Reason mode after grpo minus Option mode after finetune": [
            r["grpo"]["all"] - run["accuracy"]["option"]["finetune"]["all"] for r, run in zip(reason, runs)
        ],
        "Reason answers not well-formed, after coldstart": [run["invalid_answers"]["reason"]["coldstart"] for run in runs],
        "Reason mode, after grpo, shuffled-video": [run["controls"]["grpo"]["reason"]["shuffled-video"]["all"] for run in runs],
    }
    for name, (a, b) in expected.items():
        mean, sd = (a + b) / 2, abs(a - b) / 2**0.5
        assert cells[name] == [f"{a:.1f}", f"{b:.1f}", f"{mean:.1f} ± {sd:.1f}"], name


def test_a_demo_file_from_before_chance_was_recorded_is_refused_in_one_line(tmp_path):
    for seed in (0, 1):
        write_json(tmp_path / f"seed-{seed}" / "demo.json", {"scale": "small", "accuracy": {}, "controls": {"grpo": {}}})
    with pytest.raises(InputError, match=r"seed-0/demo.json was written by an earlier tinyvideo: run the demo there again$"):
        write_seeds_report(tmp_path, {seed: tmp_path / f"seed-{seed}" for seed in (0, 1)})


def test_the_seeds_report_gives_each_seeds_reasoning_conclusions(tmp_path):
    """Rows for a stage whose reasoning concludes with an option in any seed: the count, then the two shares, '-' for
    a seed where none concludes (no share) and so for the mean; a stage where none ever concludes has no rows."""
    conclusions = {
        0: {"coldstart": {"concluded": 200, "letter_follows": 70.0, "conclusion_right": 60.0}},
        1: {"coldstart": {"concluded": 0, "letter_follows": None, "conclusion_right": None}},
    }
    for seed in (0, 1):
        stages = {"finetune": {"all": 50.0}, "coldstart": {"all": 40.0 + seed}, "grpo": {"all": 45.0}}
        write_json(tmp_path / f"seed-{seed}" / "demo.json", {
            "scale": "small", "chance": {"all": 22.9}, "accuracy": {mode: stages for mode in plan.MODES},
            "invalid_answers": {"reason": {"coldstart": 1}}, "controls": {},
            "conclusions": {"finetune": {"concluded": 0, "letter_follows": None, "conclusion_right": None}, **conclusions[seed]},
        })
    write_seeds_report(tmp_path, {seed: tmp_path / f"seed-{seed}" for seed in (0, 1)})
    (header, *rows), = tables((tmp_path / "seeds.md").read_text())
    cells = {row[0]: row[1:] for row in rows if "conclu" in row[0]}
    assert cells == {
        "Reason answers whose reasoning concludes with an option, after coldstart": ["200.0", "0.0", "100.0 ± 141.4"],
        "of those, letter = the conclusion (%), after coldstart": ["70.0", "-", "-"],
        "of those, the conclusion right (%), after coldstart": ["60.0", "-", "-"],
    }


def test_the_ablation_takes_one_seed(tmp_path, capsys):
    assert main(["demo", "--ablation", "connectors", "--seed", "0", "1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().endswith("--ablation takes one seed: run it once per seed, each with its own --out")


@pytest.mark.parametrize(
    "options, error",
    [
        (["--base-model", "smollm2-words", "--from-scratch"], "--base-model and --from-scratch exclude each other"),
        (["--base-model", "no-such-model"], "no-such-model: not a base model"),
        (["--from-scratch", "--ablation", "connectors", "--recipes", "{recipes}"], "recipes grpo.yaml not found in"),
        (["--out", "{file}"], "is a file, not a folder"),
    ],
)
def test_a_bad_option_is_refused_in_one_line_before_any_suite_is_made(options, error, tmp_path, capsys):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for stage in plan.ABLATION_STAGES:  # every recipe the from-scratch ablation trains with, not the GRPO one
        shutil.copy(plan.SCRATCH_RECIPES / f"{stage.name}.yaml", recipes)
    (tmp_path / "file").write_text("")
    options = [o.format(recipes=recipes, file=tmp_path / "file") for o in options]
    out = ["--out", str(tmp_path / "demo")] if "--out" not in options else []
    assert main(["demo", "--scale", "smoke", *out, *options]) == 2
    message = capsys.readouterr().err.strip()
    assert error in message and "\n" not in message
    assert not (tmp_path / "demo").exists()


def test_another_scale_in_the_same_folder_is_refused(smoke, capsys):
    out = smoke
    assert main(["demo", "--scale", "small", "--out", str(out)]) == 2
    assert "holds a suite of scale smoke" in capsys.readouterr().err


def test_ablation_connectors_make_the_same_number_of_visual_tokens():
    from tinyvideo.scratch import tiny_config

    tokens = {}
    for connector in plan.ABLATION_CONNECTORS:
        extra = ablation_extra(connector, "group", num_frames=16, num_queries=32)
        settings = {"connector_type": "group", "group": 8} | {k.lstrip("-"): v for k, v in zip(extra[::2], extra[1::2])}
        config = tiny_config(300, 0, num_queries=32, connector_type=settings["connector_type"], group=int(settings["group"]))
        tokens[config.connector_type] = config.num_visual_tokens(16)
    assert tokens == {"group": 32, "image": 32, "naive": 32}
    with pytest.raises(InputError, match="not a multiple"):
        ablation_extra("image", "group", num_frames=12, num_queries=32)


def test_a_base_language_model_is_what_pretraining_starts_from(smoke, tmp_path):
    """`--language-model DIR`: the pretrain stage's new model carries that folder's language model and
    tokenizer, with the demo's vision tower; a folder that is not a model is refused in one line."""
    from transformers import Qwen2ForCausalLM

    from tinyvideo.scratch import spare_rows, tiny_config, train_tokenizer
    from tinyvideo.train.common import load_model_and_processor

    tokenizer = train_tokenizer(["Which object appears first? ASSISTANT: B"], vocab_size=300, letters_apart=True)
    base = Qwen2ForCausalLM(tiny_config(spare_rows(tokenizer), tokenizer.eos_token_id).text_config)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    ws = plan.open_workspace(smoke, "smoke", 0, plan.SCRATCH_RECIPES, language_model=tmp_path / "base")
    config = load_stage_config(ws, plan.PRETRAIN, tmp_path / "run", "tiny")
    model, processor = load_model_and_processor(config)
    for name, weight in base.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[name], weight), name
    assert processor.tokenizer("ASSISTANT: B")["input_ids"] == tokenizer("ASSISTANT: B")["input_ids"]
    assert config.vision_tower_path == str(final_model(ws.run_dir(plan.VISION.name)))
    with pytest.raises(InputError, match="not a model folder"):
        plan.open_workspace(smoke, "smoke", 0, plan.SCRATCH_RECIPES, language_model=tmp_path)


def test_a_stage_run_from_a_changed_earlier_model_is_refused_not_reused(smoke, capsys):
    """The vision tower trained again (or a new base model) at the same path: the stages after it were made from
    the old one, and reusing them would report a model that was never trained from the new one."""
    weights = final_model(smoke / "runs" / plan.VISION.name) / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-4] + b"    ")
        assert main(["demo", "--scale", "smoke", "--from-scratch", "--out", str(smoke)]) == 2
        error = capsys.readouterr().err.strip()
        assert f"{smoke / 'runs' / plan.PRETRAIN.name} holds a different run (another model at vision_tower_path" in error
        assert "\n" not in error
    finally:
        weights.write_bytes(original)


def test_a_stage_trained_again_discards_what_was_made_from_its_earlier_model(smoke, caplog):
    """The cold start deleted (e.g. to train it again) in a demo folder since moved: it trains, and the GRPO run and
    every evaluation made from the earlier cold start or GRPO model (recorded at the old place) are removed and made
    again, not refused one folder per rerun; answers of a run whose name merely starts the same are kept."""
    grpo_answers = smoke / "eval" / "grpo-option" / "predictions.jsonl"
    neighbour = smoke / "eval" / "coldstart-naive-option"
    write_json(neighbour / "run.json", {"settings": {"model": str(smoke / "runs" / "coldstart-naive" / "model")}})
    shutil.rmtree(smoke / "runs" / "coldstart")
    moved = smoke.rename(smoke.with_name(smoke.name + "-moved"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with caplog.at_level(logging.INFO, logger="tinyvideo"):
            assert run_demo(moved) == 0
    finally:
        torch.set_num_threads(threads)
        moved.rename(smoke)
    removed = {Path(r.getMessage().split(":")[0]).name for r in caplog.records if r.getMessage().endswith("removed")}
    assert {"grpo", "coldstart-option", "grpo-option", "grpo-longvideobench"} <= removed
    assert not removed & {"finetune", "finetune-option", "finetune-option-shuffled-video", neighbour.name}
    training = json.loads((smoke / "demo.json").read_text())["training"]
    assert [name for name, stage in training.items() if not stage["reused"]] == ["coldstart", "grpo"]
    assert read_json(grpo_answers.parent / "run.json")["model_sha256"] == content_sha256(final_model(smoke / "runs" / "grpo"))
    assert grpo_answers.is_file() and neighbour.is_dir()
