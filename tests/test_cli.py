"""The command line: create a model, answer a question about a video, export to the published format."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil

import numpy as np
import pytest

from tinyvideo import TinyVideoProcessor, cli, flags
from tinyvideo.cli import main
from tinyvideo.commands import eval as eval_command
from tinyvideo.errors import InputError
from tinyvideo.processing import trained_frame_sampling
from tinyvideo.video import FrameSampling, write_video


def test_init_infer_export(tmp_path, capsys):
    model_dir, video = tmp_path / "model", tmp_path / "clip.mp4"
    assert main(["init", "--out", str(model_dir)]) == 0
    write_video(video, np.random.default_rng(0).integers(0, 256, (12, 48, 64, 3), dtype=np.uint8))
    question = "Which shape moves?\nA. a circle\nB. a square"
    args = ["infer", "--model", str(model_dir), "--video", str(video), "--question", question]
    assert main([*args, "--mode", "reason", "--max-new-tokens", "6", "--frames", "4"]) == 0
    printed = capsys.readouterr().out
    assert "answer:" in printed and "option:" in printed
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "published")]) == 0
    assert json.loads((tmp_path / "published" / "config.json").read_text())["model_type"] == "tinyllava"
    assert main([*args, "--model", str(tmp_path / "published"), "--max-new-tokens", "3"]) == 0


def test_unknown_command_fails(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["nonsense"])
    assert exited.value.code == 2 and "unknown command" in capsys.readouterr().err


# ---- numeric flags --------------------------------------------------------------------------------

VALIDATORS = {flags.positive_int, flags.non_negative_int, flags.positive_float, flags.non_negative_float, flags.port_number}


def command_parsers():
    for name, (module_name, _) in cli.COMMANDS.items():
        if not name.startswith("train"):  # training settings are dataclass fields, checked by check_ranges
            parser = argparse.ArgumentParser(prog=name)
            importlib.import_module(module_name).add_arguments(parser)
            yield name, parser


def test_every_numeric_flag_of_every_command_has_a_range():
    for name, parser in command_parsers():
        for action in parser._actions:
            assert action.type not in (int, float), f"tinyvideo {name} {action.option_strings}: unchecked number"


@pytest.mark.parametrize("text", ["0", "-3", "-0.5", "nan", "inf", "-inf", "three", "", "1e400"])
def test_positive_flags_refuse_what_is_not_positive(text):
    for parse in (flags.positive_int, flags.positive_float):
        with pytest.raises(argparse.ArgumentTypeError) as refused:
            parse(text)
        assert repr(text) in str(refused.value)


@pytest.mark.parametrize("value", [0, 1, 2, 17, 10**6])
def test_flags_accept_every_value_in_range(value):
    assert flags.non_negative_int(str(value)) == value
    assert flags.non_negative_float(str(value / 4)) == value / 4
    if value:
        assert flags.positive_int(str(value)) == value and flags.positive_float(f"{value}e-3") == value / 1000
    with pytest.raises(argparse.ArgumentTypeError):
        flags.non_negative_int(str(-value - 1))


REQUIRED = {  # each command's required arguments (their values are never used: the flag is refused first)
    "infer": ["--model", "m", "--video", "v.mp4", "--question", "q"],
    "eval synth": [],
    "init": ["--out", "m"],
    "serve": ["--model", "m"],
    "synth": ["--out", "s"],
}


@pytest.mark.parametrize(
    "command, flag",
    [
        ("infer", "--frames"), ("infer", "--fps"), ("infer", "--max-frames"), ("infer", "--max-new-tokens"),
        ("eval synth", "--frames"), ("eval synth", "--fps"), ("eval synth", "--max-frames"),
        ("eval synth", "--batch-size"), ("eval synth", "--limit"), ("eval synth", "--max-new-tokens"),
        ("init", "--num-queries"), ("init", "--group"), ("init", "--image-size"), ("serve", "--frames"),
        ("synth", "--workers"),
    ],
)
@pytest.mark.parametrize("value", ["0", "-3"])
def test_commands_refuse_a_count_below_one_at_the_door(capsys, command, flag, value):
    with pytest.raises(SystemExit) as exited:
        main([*command.split(), *REQUIRED[command], flag, value])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and f"argument {flag}" in error and repr(value) in error
    assert len(error.strip().splitlines()) == 1 and "usage:" not in error


def test_max_frames_without_fps_is_refused_by_infer_as_by_eval(tmp_path, capsys):
    for command in (["infer", "--video", "v.mp4", "--question", "q"], ["eval", "synth", "--data", str(tmp_path)]):
        assert main([*command, "--model", str(tmp_path / "none"), "--max-frames", "4"]) == 2
        error = capsys.readouterr().err.strip()
        assert "max_frames caps fps" in error and len(error.splitlines()) == 1


def test_eval_and_infer_sample_the_frames_the_model_was_trained_on(tiny_dir, tmp_path):
    processor = TinyVideoProcessor.from_pretrained(tiny_dir)
    assert processor.frame_sampling == FrameSampling(16)  # none recorded: the published models' 16
    eval_flags = argparse.ArgumentParser()
    eval_command.add_arguments(eval_flags)
    for trained in (FrameSampling(4), FrameSampling(None, fps=2.0, max_frames=6)):
        processor.frame_sampling = trained
        processor.save_pretrained(tmp_path)
        shutil.copy(tiny_dir / "config.json", tmp_path)
        assert TinyVideoProcessor.from_pretrained(tmp_path).frame_sampling == trained
        assert trained_frame_sampling(tmp_path) == trained
        settings = eval_command.settings_from(eval_flags.parse_args(["synth", "--model", str(tmp_path), "--data", "d"]))
        assert (settings.frames, settings.fps, settings.max_frames) == (trained.num_frames, trained.fps, trained.max_frames)
        told = eval_flags.parse_args(["synth", "--model", str(tmp_path), "--data", "d", "--frames", "8"])
        assert (eval_command.settings_from(told).frames, eval_command.settings_from(told).fps) == (8, None)


# ---- errors a person can read ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, named",
    [
        (["infer", "--model", "{tmp}/model", "--video", "{tmp}/gone.mp4", "--question", "q"], "gone.mp4"),
        (["export", "--model", "{tmp}/model", "--out", "{tmp}/out"], "model"),
        (["serve", "--model", "{tmp}/model"], "model"),
        (["train", "sft", "--model_name_or_path", "tiny", "--data_path", "{tmp}/rows.json", "--num_frames", "0"], "num_frames"),
        (["train", "grpo", "--config", "{tmp}/recipe.yaml"], "recipe.yaml"),
        (["train", "sft", "--model_name_or_path", "{tmp}/model", "--data_path", "{tmp}/rows.json"], "rows.json: no such"),
        (["train", "grpo", "--model_name_or_path", "{tmp}/model", "--data_path", "{tmp}/rows.json"], "rows.json: no such"),
        (["eval", "synth", "--model", "{tmp}/model", "--data", "{tmp}/suite"], "suite"),
        (["init", "--out", "{tmp}/model", "--texts", "{tmp}/texts.txt"], "texts.txt: no such file"),
        (["synth", "--out", "{tmp}"], "holds no synthetic suite"),
        (["serve", "--model", "{tmp}/model", "--samples", "{tmp}/suite"], "suite.json not found"),
        (["train", "sft", "--config", "{tmp}/bad.yaml"], "bad.yaml: not valid YAML"),
        (["init", "--out", "{tmp}/new", "--group", "3"], "divisible by group (3)"),
        (["train", "sft", "--model_name_or_path", "tiny", "--data_path", "{tmp}/rows.json", "--fps", "inf"], "fps must be a finite"),
        (["train", "sft", "--model_name_or_path", "tiny", "--data_path", "{tmp}/rows.json", "--max_grad_norm", "nan"], "max_grad_norm must be a finite"),
        (["train", "sft", "--model_name_or_path", "tiny", "--data_path", "{tmp}/rows.json", "--max_steps", "-5"], "max_steps must be at least -1"),
        (["train", "sft", "--model_name_or_path", "tiny", "--data_path", "{tmp}/rows.json", "--seed", "abc"], "--seed: invalid int value"),
        (["train", "sft", "--model_name_or_path", "tiny", "--data_path", "{tmp}/notes.json", "--video_root", "{tmp}/videos"], "video_root"),
        (["train", "grpo", "--model_name_or_path", "tiny", "--data_path", "{tmp}/notes.json", "--video_root", "{tmp}/videos"], "video_root"),
        (["train", "vision", "--data_path", "{tmp}/notes.json", "--video_root", "{tmp}/videos"], "video_root"),
    ],
)
def test_bad_input_is_one_line_and_status_2_with_the_traceback_behind_debug(tmp_path, capsys, argv, named):
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    (tmp_path / "notes.txt").write_text("not a suite")
    (tmp_path / "notes.json").write_text("[]")
    (tmp_path / "bad.yaml").write_text("learning_rate: [1e-5\n")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert named in captured.err and len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    with pytest.raises((InputError, FileNotFoundError)):
        main(["--debug", *argv])
    if argv[0] != "train":  # the training commands' own --debug is the Trainer's
        with pytest.raises((InputError, FileNotFoundError)):
            main([*argv, "--debug"])


def test_init_refuses_to_overwrite_a_folder_without_overwrite(tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert main(["init", "--out", str(model_dir)]) == 0
    trained = (model_dir / "model.safetensors").read_bytes()
    assert main(["init", "--out", str(model_dir), "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (model_dir / "model.safetensors").read_bytes() == trained
    assert main(["init", "--out", str(model_dir), "--seed", "1", "--overwrite"]) == 0
    assert (model_dir / "model.safetensors").read_bytes() != trained


BLANK_QUESTIONS = ["", " ", "\n", "\t \n  ", "\u3000", "\r\n\r\n"]


@pytest.mark.parametrize("question", BLANK_QUESTIONS)
def test_an_empty_question_is_refused_in_one_line_before_the_model_loads(tmp_path, capsys, question):
    argv = ["infer", "--model", str(tmp_path / "model"), "--video", str(tmp_path / "gone.mp4"), "--question", question]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "the question is empty" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize("question", BLANK_QUESTIONS)
def test_the_python_api_and_the_web_page_refuse_an_empty_question_too(tiny_dir, question):
    from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
    from tinyvideo.inference import answer_question
    from tinyvideo.serve import stream_answer

    model, processor = TinyVideoForConditionalGeneration.from_pretrained(tiny_dir), TinyVideoProcessor.from_pretrained(tiny_dir)
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="the question is empty"):
        answer_question(model, processor, frames, question, max_new_tokens=2)
    with pytest.raises(InputError, match="the question is empty"):
        next(stream_answer(model, processor, frames, question, "option", 2))
