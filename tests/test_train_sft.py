"""Supervised training end to end: a tiny run, its final folder, and resuming after a hard kill."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import replica_digests
from launch import environment, launch, launch_command
from safetensors.torch import load_file
from test_data_llava import write_toy_data

from tinyvideo.cli import main
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor
from tinyvideo.train.common import apply_tuning, load_config, load_model_and_processor
from tinyvideo.train.runs import FINAL_MODEL, RUN_FILE, is_complete_checkpoint, last_complete_checkpoint
from tinyvideo.train.sft import SFTConfig, SFTTrainer, train

RECIPE = """\
model_name_or_path: tiny
tokenizer_corpus: [{data}]
tiny_vocab_size: 300
image_size: 32
num_queries: 8
group: 4
tiny_hidden_size: 32
tiny_vision_hidden_size: 32
model_max_length: 256
num_frames: 4
data_path: {data}
video_root: {videos}
output_dir: {output}
per_device_train_batch_size: 2
learning_rate: 3.0e-3
lr_scheduler_type: linear
max_steps: {steps}
save_steps: 4
save_total_limit: 2
logging_steps: 1
seed: 3
report_to: none
dataloader_pin_memory: false
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    data = write_toy_data(root)
    rows = json.loads(data.read_text())
    rows.insert(3, {**rows[0], "video": "missing.mp4"})
    rows.append({"video": "0.mp4", "conversations": "malformed"})
    data.write_text(json.dumps(rows))
    return root


def recipe(toy: Path, output: Path, steps: int) -> Path:
    path = output.parent / f"{output.name}.yaml"
    path.write_text(RECIPE.format(data=toy / "qa.json", videos=toy / "videos", output=output, steps=steps))
    return path


def test_a_run_learns_writes_a_loadable_model_and_reports_skipped_rows(toy, tmp_path, caplog):
    config = load_config(SFTConfig, str(recipe(toy, tmp_path / "run", steps=12)), ["--tune_language_model", "lora"])
    with caplog.at_level(logging.INFO, logger="tinyvideo.train"):
        final = train(config)
    assert final == tmp_path / "run" / FINAL_MODEL
    assert "2 of 10 data rows skipped (1 malformed, 1 with a missing or unusable video or text)" in caplog.text

    state = json.loads((last_complete_checkpoint(tmp_path / "run") / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert sum(losses[-3:]) < sum(losses[:3])

    model = TinyVideoForConditionalGeneration.from_pretrained(final)
    processor = TinyVideoProcessor.from_pretrained(final)
    assert not any("lora" in key for key in model.state_dict())  # adapters merged into plain weights
    inputs = processor("<image>\nWhat colour is the square?", videos=[torch.zeros(4, 32, 32, 3, dtype=torch.uint8).numpy()])
    assert model.generate(**inputs, max_new_tokens=3).shape[1] == inputs["input_ids"].shape[1] + 3


def test_connector_and_vision_tower_can_have_their_own_learning_rates(toy, tmp_path):
    overrides = ["--tune_vision_tower", "full", "--connector_lr", "1e-2", "--vision_tower_lr", "1e-4", "--weight_decay", "0.1"]
    config = load_config(SFTConfig, str(recipe(toy, tmp_path / "run", steps=1)), overrides)
    model, processor = load_model_and_processor(config)
    trainer = SFTTrainer(model=apply_tuning(model, config), args=config, train_dataset=[0], data_collator=lambda rows: rows)
    names = {id(p): n for n, p in model.named_parameters()}
    rates = {names[id(p)].split(".")[0]: group["lr"] for group in trainer.create_optimizer().param_groups for p in group["params"]}
    assert rates == {"connector": 1e-2, "vision_tower": 1e-4, "language_model": config.learning_rate}
    assert {g["weight_decay"] for g in trainer.optimizer.param_groups} == {0.0, 0.1}


def test_a_half_written_checkpoint_is_never_resumed_from(tmp_path):
    done = tmp_path / "checkpoint-4"
    done.mkdir()
    (done / "model.safetensors").write_bytes(b"weights")
    (done / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    for name, files in {"checkpoint-8": {"model.safetensors": b"half"}, "checkpoint-12": {"trainer_state.json": b'{"glob'}}.items():
        (tmp_path / name).mkdir()
        for file, content in files.items():
            (tmp_path / name / file).write_bytes(content)
    assert is_complete_checkpoint(done) and not is_complete_checkpoint(tmp_path / "checkpoint-8")
    assert last_complete_checkpoint(tmp_path, remove_incomplete=True) == done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]


def test_a_killed_run_resumes_to_the_same_weights(toy, tmp_path):
    steps = 24
    command = [sys.executable, "-m", "tinyvideo.cli", "train", "sft", "--config", str(recipe(toy, tmp_path / "killed", steps))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "checkpoint-8" / "trainer_state.json").exists() and first.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within two minutes"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / FINAL_MODEL).exists()

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stderr

    torch.set_num_threads(1)
    try:
        straight = train(load_config(SFTConfig, str(recipe(toy, tmp_path / "straight", steps)), []))
    finally:
        torch.set_num_threads(2)
    resumed = load_file(tmp_path / "killed" / FINAL_MODEL / "model.safetensors")
    expected = load_file(straight / "model.safetensors")
    assert resumed.keys() == expected.keys()
    worst = max((resumed[k] - expected[k]).abs().max().item() for k in expected)
    assert worst < 1e-5, f"resumed weights differ by up to {worst}"


def logged_losses(run: Path) -> list[float]:
    state = json.loads((last_complete_checkpoint(run) / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_two_processes_train_as_one_with_their_batches_together_and_resume_after_a_kill(tmp_path):
    """2 processes x batch 1 under `accelerate launch`: the replicas hold the same weights after every
    step, the loss curve is that of 1 process x batch 2 (measured: 5e-7 apart, float32 rounding), rank 0
    alone writes each checkpoint folder, and a SIGKILL of the whole launch resumes from the last one.

    The data (8 rows) splits into whole global batches: where an epoch ends on a partial batch, the
    process left short repeats rows from the epoch's start (accelerate's even batches), and the curves
    part there."""
    write_toy_data(tmp_path)
    toy, steps = tmp_path, 24
    overrides = ["--per_device_train_batch_size", "1", "--use_cpu", "true"]
    two = recipe(toy, tmp_path / "two", steps)
    launch(["sft", str(tmp_path / "digests"), "--config", str(two), *overrides], script=replica_digests.__file__)
    digests = [(tmp_path / "digests" / f"digests-{rank}.jsonl").read_text().splitlines() for rank in (0, 1)]
    assert len(digests[0]) == steps and digests[0] == digests[1]

    torch.set_num_threads(1)
    try:
        one = train(load_config(SFTConfig, str(recipe(toy, tmp_path / "one", steps)), []))
    finally:
        torch.set_num_threads(2)
    assert logged_losses(tmp_path / "two") == pytest.approx(logged_losses(tmp_path / "one"), abs=1e-5)
    expected = load_file(one / "model.safetensors")
    together = load_file(tmp_path / "two" / FINAL_MODEL / "model.safetensors")
    assert max((together[k] - expected[k]).abs().max().item() for k in expected) < 1e-5

    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint-20", "checkpoint-24", FINAL_MODEL, RUN_FILE]
    names = sorted(p.name for p in (tmp_path / "two" / "checkpoint-24").iterdir())
    assert names.count("model.safetensors") == 1 and {"rng_state_0.pth", "rng_state_1.pth"} <= set(names)

    command = launch_command(["train", "sft", "--config", str(recipe(toy, tmp_path / "killed", steps)), *overrides])
    first = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (tmp_path / "killed" / "checkpoint-8" / "trainer_state.json").exists() and first.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within three minutes"
        time.sleep(0.02)
    # The launcher and both training processes: torchrun starts each worker in a session of its own, where
    # a signal to the launcher's process group does not reach it (it would train on to the end).
    launcher = psutil.Process(first.pid)
    for process in [launcher, *launcher.children(recursive=True)]:
        process.kill()
    assert first.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / FINAL_MODEL).exists()
    second = launch(["train", "sft", "--config", str(recipe(toy, tmp_path / "killed", steps)), *overrides])
    assert "resuming from" in second.stderr
    resumed = load_file(tmp_path / "killed" / FINAL_MODEL / "model.safetensors")
    assert max((resumed[k] - together[k]).abs().max().item() for k in together) < 1e-6


@pytest.mark.skipif(torch.cuda.is_available(), reason="with GPUs the processes join without use_cpu")
def test_processes_that_cannot_join_are_refused_before_training(toy, tmp_path):
    """Without GPUs and without use_cpu, each launched process would train alone into the same folder."""
    command = launch_command(["train", "sft", "--config", str(recipe(toy, tmp_path / "run", steps=2))])
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "launched as 2 processes, but the run holds 1: without GPUs set use_cpu: true" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_rerun_into_a_folder_of_another_run_is_refused_in_one_line(toy, tmp_path, capsys):
    """A checkpoint of a fully tuned language model cannot be resumed with LoRA (other weights, other
    optimizer groups): the folder's run file says what differs before the Trainer fails on it."""
    config = recipe(toy, tmp_path / "run", steps=2)
    assert main(["train", "sft", "--config", str(config), "--save_steps", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "sft", "--config", str(config), "--save_steps", "2", "--max_steps", "4", "--tune_language_model", "lora"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'run'} holds a different run (tune_language_model 'full' there, 'lora' now)" in error
    assert len(error.splitlines()) == 1 and sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint-2", FINAL_MODEL, RUN_FILE]
