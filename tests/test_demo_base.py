"""`tinyvideo demo --scale smoke` as the README runs it: from the shipped base model (SmolLM2 from its PyPI
package), the three stages after it, each evaluated, and the report saying where the model started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tinyvideo.cli import main
from tinyvideo.demo import plan
from tinyvideo.train.base_model import DEFAULT, SPEC, base_model_folder


@pytest.fixture(scope="module")
def smoke(smollm2_gguf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo-base")
    torch.set_num_threads(2)
    assert main(["demo", "--scale", "smoke", "--out", str(out)]) == 0
    return out


def test_the_demo_fine_tunes_the_shipped_base_model(smoke):
    assert json.loads((smoke / "base" / SPEC).read_text()) == json.loads((base_model_folder(DEFAULT) / SPEC).read_text())
    assert sorted(path.name for path in (smoke / "runs").iterdir()) == ["coldstart", "finetune", "grpo"]
    finetune = json.loads((smoke / "runs" / "finetune" / "run.json").read_text())
    assert Path(finetune["model_name_or_path"]) == smoke / "base"
    report = (smoke / "report.md").read_text()
    assert f"pretrained base model `{DEFAULT}`" in report and f"--base-model {DEFAULT}" in report
    assert "| task | chance | finetune | coldstart | grpo |" in report


def test_each_evaluation_asks_the_scales_first_test_questions(smoke):
    for mode in plan.MODES:
        report = json.loads((smoke / "eval" / f"finetune-{mode}" / "report.json").read_text())
        assert report["questions"] == report["predicted"] == plan.SCALES["smoke"].test_questions
        assert set(report["breakdowns"]["task"]) == set(json.loads((smoke / "synth" / "suite.json").read_text())["tasks"])


def test_a_base_language_model_is_only_for_a_demo_from_scratch(tmp_path, capsys):
    assert main(["demo", "--scale", "smoke", "--out", str(tmp_path), "--language-model", str(tmp_path)]) == 2
    assert "--from-scratch" in capsys.readouterr().err
