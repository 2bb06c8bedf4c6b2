"""The command line: create a model, answer a question about a video, export to the published format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyvideo.cli import main
from tinyvideo.video import write_video


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
