"""Shared training pieces: recipes and overrides, what trains, LoRA merge, atomic saves, DeepSpeed files."""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
from pathlib import Path

from dataclasses import fields

import pytest
import torch
import yaml
from peft.tuners.lora import LoraLayer

from tinyvideo.commands.stage import add_config_arguments, config_overrides
from tinyvideo.demo.plan import BASE_RECIPES, SCRATCH_RECIPES as SYNTH_RECIPES
from tinyvideo.errors import InputError
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.scratch import full_size_config
from tinyvideo.train import common
from tinyvideo.train.common import (
    MINIMUMS,
    POSITIVE,
    ModelArguments,
    apply_tuning,
    bf16_is_native,
    load_adapter,
    load_config,
    load_model_and_processor,
    save_adapter,
    save_model,
)
from tinyvideo.train.grpo import GRPOConfig
from tinyvideo.train.language import LanguageConfig
from tinyvideo.train.runs import default_run_settings, require_same_run, run_settings, write_run_file
from tinyvideo.train.sft import SFTConfig
from tinyvideo.train.vision import VisionConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY = dict(
    model_name_or_path="tiny",
    language_model_path=None,
    vision_tower_path=None,
    tokenizer_corpus=None,
    tiny_vocab_size=300,
    connector_type="group",
    image_size=32,
    tiny_patch_size=8,
    num_queries=8,
    group=4,
    tiny_hidden_size=32,
    tiny_num_layers=2,
    tiny_vision_hidden_size=32,
    tiny_vision_layers=3,
    model_max_length=256,
    vision_feature_select_strategy="patch",
    tune_language_model="full",
    tune_vision_tower="frozen",
    tune_connector="full",
    vision_tower_from_layer=1,
    lora_r=4,
    lora_alpha=8,
    lora_dropout=0.0,
    lora_target_modules=None,
)


def tiny(**changes):
    args = ModelArguments(**{**TINY, **changes})
    model, processor = load_model_and_processor(args)
    return apply_tuning(model, args), processor


def trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


RECIPES = [
    *(folder / f"{stage}.yaml" for folder in (CONFIGS, SYNTH_RECIPES) for stage in ("pretrain", "finetune", "coldstart")),
    *(BASE_RECIPES / f"{stage}.yaml" for stage in ("captions", "reading", "questions", "connector", "finetune", "coldstart")),
]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_loads(path):
    overrides = ["--use_cpu", "true"]  # bf16 recipes need a GPU or use_cpu
    recipe = yaml.safe_load(path.read_text())
    if "model_name_or_path" not in recipe and "language_model_path" not in recipe:  # the demo gives the source
        overrides += ["--language_model_path", "base-language"]
    config = load_config(SFTConfig, str(path), overrides)
    assert config.data_path and config.output_dir and config.learning_rate > 0


@pytest.mark.parametrize("native", [True, False])
def test_a_bf16_recipe_trains_in_float32_where_the_machine_has_no_bfloat16_hardware(native, monkeypatch, caplog):
    # Emulated bfloat16 products are two orders of magnitude slower than float32 on an AVX2-only CPU.
    monkeypatch.setattr(common, "bf16_is_native", lambda use_cpu: native)
    common.warn_float32_instead.cache_clear()
    with caplog.at_level(logging.WARNING, logger="tinyvideo"):
        configs = [load_config(SFTConfig, str(BASE_RECIPES / "finetune.yaml"), ["--use_cpu", "true"]) for _ in range(2)]
    assert [config.bf16 for config in configs] == [native, native]
    assert caplog.text.count("so float32 instead") == (0 if native else 1)  # once, however often recipes load


@pytest.mark.skipif(torch.cuda.is_available() or not Path("/proc/cpuinfo").is_file(), reason="reads a Linux CPU's flags")
def test_bfloat16_hardware_is_read_off_the_cpu_flags():
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert bf16_is_native(use_cpu=True) is bool(flags & {"avx512_bf16", "amx_bf16"})


def test_overrides_parse_like_the_command_line(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: tiny\ndata_path: d.json\nlearning_rate: 1.0e-4\nbf16: false\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, SFTConfig)
    args = parser.parse_args(
        ["--config", str(recipe), "--learning_rate", "3e-5", "--use_cpu", "--lora_target_modules", "q_proj", "v_proj", "--fps", "1"]
    )
    config = load_config(SFTConfig, args.config, config_overrides(args, SFTConfig))
    assert config.learning_rate == 3e-5 and config.use_cpu is True and config.bf16 is False
    assert config.lora_target_modules == ["q_proj", "v_proj"] and config.fps == 1.0
    assert config.num_frames == 16 and config.template == "chat"

    recipe.write_text("model_name_or_path: tiny\ndata_path: d.json\nlearning_rat: 1.0e-4\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(SFTConfig, str(recipe), [])
    with pytest.raises(ValueError, match="tune_connector"):
        load_config(SFTConfig, None, ["--model_name_or_path", "tiny", "--data_path", "d", "--tune_connector", "partial"])
    with pytest.raises(InputError, match="vision_feature_select_strategy must be one of patch, cls_patch; got 'cls'"):
        load_config(SFTConfig, None, ["--model_name_or_path", "tiny", "--data_path", "d", "--vision_feature_select_strategy", "cls"])
    with pytest.raises(ValueError, match="model_name_or_path"):
        ModelArguments()


def test_tuning_sets_what_trains_and_frozen_parts_stay_in_eval():
    model, _ = tiny()
    names = trainable(model)
    assert any(n.startswith("language_model.") for n in names) and any(n.startswith("connector.") for n in names)
    assert not any(n.startswith("vision_tower.") for n in names)
    model.train()
    assert not model.vision_tower.training and model.connector.training

    model, _ = tiny(tune_vision_tower="full", tune_language_model="frozen")
    vision = {n for n in trainable(model) if n.startswith("vision_tower.")}
    # feature layer -2 of 3: layer 2, the post layer norm and the pooling head never get a gradient
    assert any(".layers.1." in n for n in vision) and not any(".layers.2." in n or "head" in n or "post" in n for n in vision)
    assert not any(n.startswith("language_model.") for n in trainable(model))

    model, _ = tiny(tune_vision_tower="partial", vision_tower_from_layer=1)
    vision = {n for n in trainable(model) if n.startswith("vision_tower.")}
    assert vision and all(".layers.1." in n for n in vision)


def test_lora_merges_into_a_plain_checkpoint_and_adapters_round_trip(tmp_path):
    model, processor = tiny(tune_language_model="lora", tune_vision_tower="lora", lora_target_modules=["q_proj", "v_proj", "fc1"])
    names = trainable(model)
    assert {n for n in names if not n.startswith("connector.")} == {n for n in names if "lora_" in n}
    assert any(n.startswith("vision_tower.") for n in names) and not any("lm_head" in n for n in names)
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_()  # B starts at zero: make the adapters matter
    model.eval()
    inputs = processor("<image>\nhello", videos=[torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8).numpy()])
    with torch.no_grad():
        expected = model(**inputs).logits

    folder = save_model(model, processor, tmp_path / "merged")
    merged = TinyVideoForConditionalGeneration.from_pretrained(folder).eval()
    assert not any("lora" in k for k in merged.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, expected, atol=1e-4, rtol=1e-4)

    adapter = save_adapter(model, tmp_path / "adapter")
    targets = json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    assert len(targets) > 1 and targets == sorted(targets)  # the same adapter writes the same file, whatever the hash seed
    fresh, _ = tiny(tune_language_model="frozen", tune_connector="frozen")
    fresh.connector.load_state_dict(model.connector.state_dict())
    load_adapter(fresh, adapter)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(**inputs).logits, expected, atol=1e-5, rtol=1e-5)


def test_save_model_replaces_a_folder_whole_or_not_at_all(tmp_path, monkeypatch):
    model, processor = tiny()
    target = save_model(model, processor, tmp_path / "model")
    before = sorted(p.name for p in target.iterdir())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(processor), "save_pretrained", broken)
    with pytest.raises(OSError):
        save_model(model, processor, target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left behind


PUBLISHED_RECIPES = {"pretrain.yaml": SFTConfig, "finetune.yaml": SFTConfig, "coldstart.yaml": SFTConfig, "grpo_r1.yaml": GRPOConfig}


@pytest.mark.parametrize("recipe", PUBLISHED_RECIPES)
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_files_resolve_every_auto_value_against_each_published_recipe(stage, recipe, tmp_path, bf16_hardware):
    """What the Trainer does with a DeepSpeed file (transformers' `HfTrainerDeepSpeedConfig`): every "auto"
    is filled from the recipe's arguments and the full-size model's width, and nothing disagrees with them."""
    pytest.importorskip("deepspeed")
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    path = CONFIGS / "deepspeed" / f"zero{stage}.json"
    raw = json.loads(path.read_text())
    assert raw["zero_optimization"]["stage"] == stage
    assert "optimizer" not in raw and "scheduler" not in raw  # the Trainer's AdamW and schedule are used
    args = load_config(PUBLISHED_RECIPES[recipe], str(CONFIGS / recipe), ["--use_cpu", "true", "--output_dir", str(tmp_path)])
    with torch.device("meta"):
        model = TinyVideoForConditionalGeneration(full_size_config())
    config = HfTrainerDeepSpeedConfig(str(path))  # also marks DeepSpeed as on, process-wide
    try:
        config.trainer_config_process(args)
        config.trainer_config_finalize(args, model, num_training_steps=1000)  # raises on a mismatch
    finally:
        unset_hf_deepspeed_config()
    filled = config.config
    assert '"auto"' not in json.dumps(filled)
    assert filled["train_micro_batch_size_per_gpu"] == args.per_device_train_batch_size
    assert filled["gradient_accumulation_steps"] == args.gradient_accumulation_steps
    assert filled["train_batch_size"] == args.per_device_train_batch_size * args.gradient_accumulation_steps
    assert filled["gradient_clipping"] == args.max_grad_norm
    assert filled["bf16"]["enabled"] is args.bf16 is True and filled["fp16"]["enabled"] is False
    zero = filled["zero_optimization"]
    assert zero["reduce_bucket_size"] == 2048**2  # Qwen2.5-3B's width, squared
    if stage == 3:
        assert zero["stage3_prefetch_bucket_size"] == int(0.9 * 2048**2)
        assert zero["stage3_param_persistence_threshold"] == 10 * 2048
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("config_class", [SFTConfig, GRPOConfig, VisionConfig, LanguageConfig])
def test_every_bounded_setting_is_refused_below_its_floor(tmp_path, config_class):
    required = ["--output_dir", str(tmp_path), "--max_steps", "1"]
    if config_class in (SFTConfig, GRPOConfig):
        required += ["--model_name_or_path", "tiny"]
    if config_class is not LanguageConfig:  # which draws its rows from a suite
        required += ["--data_path", "rows.json"]
    bounded = [f.name for f in fields(config_class) if f.name in MINIMUMS or f.name in POSITIVE]
    assert len(bounded) >= 10
    for name in bounded:
        below = 0 if name in POSITIVE else MINIMUMS[name] - 1
        with pytest.raises(InputError, match=f"^{name} must be"):
            load_config(config_class, None, [*required, f"--{name}", str(below)])
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        with pytest.raises(InputError, match=name):
            load_config(config_class, None, [*required, f"--{name}", "0"])


def test_max_frames_needs_fps():
    with pytest.raises(InputError, match="max_frames caps fps"):
        load_config(SFTConfig, None, ["--model_name_or_path", "tiny", "--data_path", "x", "--max_frames", "4"])


def test_the_word_tiny_is_refused_when_a_folder_tiny_is_there_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = ["--data_path", "rows.json", "--output_dir", "out"]
    assert load_config(SFTConfig, None, ["--model_name_or_path", "tiny", *settings]).model_name_or_path == "tiny"
    (tmp_path / "tiny").mkdir()
    with pytest.raises(InputError, match="write ./tiny"):
        load_config(SFTConfig, None, ["--model_name_or_path", "tiny", *settings])
    assert load_config(SFTConfig, None, ["--model_name_or_path", "./tiny", *settings]).model_name_or_path == "./tiny"


@pytest.mark.parametrize("config_class", [SFTConfig, GRPOConfig, VisionConfig, LanguageConfig])
def test_a_checkpoint_of_a_run_with_any_other_setting_is_refused_naming_it(tmp_path, config_class):
    names = {f.name for f in fields(config_class)}
    required = ["--output_dir", str(tmp_path / "run"), "--max_steps", "4"]
    required += ["--data_path", "rows.json"] if "data_path" in names else []
    required += ["--model_name_or_path", "tiny"] if "model_name_or_path" in names else []
    config = load_config(config_class, None, required)
    write_run_file(tmp_path / "run", config)
    run = tmp_path / "run"
    recorded = run_settings(config)
    assert {"optim"} < recorded.keys() and not {"data_path", "video_root", "max_steps", "learning_rate"} & recorded.keys()
    # The same run, resumed with more steps, another rate or its data moved, is the same run.
    changed = ["--max_steps", "8", "--learning_rate", "0.5"]
    changed += ["--data_path", "moved/rows.json", "--video_root", str(tmp_path)] if "data_path" in names else []
    require_same_run(run, load_config(config_class, None, [*required, *changed]))
    for name, value in recorded.items():
        (tmp_path / "run" / "run.json").write_text(json.dumps({**recorded, name: ["another", value]}))
        with pytest.raises(InputError) as refused:
            require_same_run(run, config)
        message = str(refused.value)
        assert message.startswith(f"{run} holds a different run ({name} ") and "\n" not in message
        assert "choose another output_dir" in message
    # A run recorded before a setting existed ran with its default: the same run only at that value.
    defaults = default_run_settings(config)
    for name, value in recorded.items():
        (tmp_path / "run" / "run.json").write_text(json.dumps({k: v for k, v in recorded.items() if k != name}))
        if value == defaults[name]:
            require_same_run(run, config)
        else:
            with pytest.raises(InputError, match=re.escape(f"different run ({name} {defaults[name]!r} there, {value!r} now)")):
                require_same_run(run, config)


@pytest.mark.parametrize("tune", ["lora", "linear"])
def test_another_lora_rank_is_another_run_only_where_lora_trains(tmp_path, tune):
    settings = ["--output_dir", str(tmp_path / "run"), "--data_path", "rows.json", "--model_name_or_path", "tiny"]
    settings += ["--tune_language_model", tune, "--lora_r", "16"]
    write_run_file(tmp_path / "run", load_config(SFTConfig, None, settings))
    other_rank = load_config(SFTConfig, None, [*settings, "--lora_r", "8"])
    if tune == "lora":
        with pytest.raises(InputError, match=re.escape("different run (lora_r 16 there, 8 now)")):
            require_same_run(tmp_path / "run", other_rank)
    else:  # a `linear` run's lora_r is the rank its change ships at
        require_same_run(tmp_path / "run", other_rank)


@pytest.mark.parametrize("source", ["model_name_or_path", "language_model_path", "vision_tower_path"])
def test_a_run_from_another_model_at_the_same_path_is_refused(tmp_path, source):
    """A model the run starts from that was rewritten in place (a rebuilt base model, an earlier stage trained
    again) makes another run; a run recorded before runs kept their models' digests is not checked."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.bin").write_bytes(b"\x00" * 8)
    starts = {"model_name_or_path": ["--model_name_or_path", str(model)]}
    starts["language_model_path"] = ["--language_model_path", str(model / "sub" / "weights.bin"), "--vision_tower_path", "v"]
    starts["vision_tower_path"] = ["--model_name_or_path", "tiny", "--vision_tower_path", str(model)]
    config = load_config(SFTConfig, None, ["--output_dir", str(tmp_path / "run"), "--data_path", "d", *starts[source]])
    write_run_file(tmp_path / "run", config)
    assert set(json.loads((tmp_path / "run" / "run.json").read_text())["source_sha256"]) == {source}
    require_same_run(tmp_path / "run", config)
    copy = tmp_path / "copy"  # the same files at another path: the same model
    shutil.copytree(model, copy)
    (copy / ".cache").mkdir()  # what a download tool keeps beside the files is not the model
    (copy / ".cache" / "lock").write_text("")
    moved = [str(copy / Path(arg).relative_to(model)) if arg.startswith(str(model)) else arg for arg in starts[source]]
    require_same_run(tmp_path / "run", load_config(SFTConfig, None, ["--output_dir", str(tmp_path / "run"), "--data_path", "d", *moved]))
    (model / "sub" / "weights.bin").write_bytes(b"\x00" * 7 + b"\x01")
    with pytest.raises(InputError, match=re.escape(f"different run (another model at {source} ")):
        require_same_run(tmp_path / "run", config)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    del recorded["source_sha256"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(recorded))
    require_same_run(tmp_path / "run", config)


def test_the_settings_a_tester_changed_are_among_those_compared():
    sft = run_settings(load_config(SFTConfig, None, ["--model_name_or_path", "tiny", "--data_path", "d", "--tune_language_model", "lora"]))
    vision = run_settings(load_config(VisionConfig, None, ["--data_path", "d"]))
    assert {"tiny_hidden_size", "tiny_num_layers", "lora_r", "lora_alpha", "tune_language_model", "template"} <= sft.keys()
    # LoRA's settings make a run only where a part trains with LoRA (a `linear` run's lora_r is the rank it ships at)
    for tune in ("full", "linear"):
        config = load_config(SFTConfig, None, ["--model_name_or_path", "tiny", "--data_path", "d", "--tune_language_model", tune])
        settings = run_settings(config)
        assert not any(name.startswith("lora_") for name in settings) and settings["tune_language_model"] == tune
    assert {"objective", "vision_hidden_size", "vision_layers", "patch_size"} <= vision.keys()


def test_written_files_and_folders_get_the_usual_permissions(tmp_path):
    """Atomic writes go through `tempfile`, whose files and folders only their owner may read: the final
    ones must have the permissions a plain write gives (other users load a shared model folder)."""
    from tinyvideo.files import write_json
    from tinyvideo.scratch import build_tiny

    plain_file, plain_folder = tmp_path / "plain.json", tmp_path / "plain"
    plain_file.write_text("{}")
    plain_folder.mkdir()
    written = write_json(tmp_path / "written.json", {})
    model, processor = build_tiny(["a red circle"], seed=0)
    folder = save_model(model, processor, tmp_path / "model")
    assert written.stat().st_mode == plain_file.stat().st_mode
    assert folder.stat().st_mode == plain_folder.stat().st_mode
    assert {path.stat().st_mode for path in folder.iterdir()} == {plain_file.stat().st_mode}


def test_an_adapter_loads_onto_exactly_the_layers_it_was_saved_from(tmp_path):
    # peft shortens a saved list of 20 or more target names (here 3 layers of 7) to suffixes ("1.self_attn.q_proj"),
    # which a deeper vision tower's layers also end with: the language model's adapter must not be injected into them
    model, _ = tiny(tune_language_model="lora", tiny_num_layers=3, tiny_vision_layers=1, vision_tower_from_layer=0)
    adapter = save_adapter(model, tmp_path / "adapter")
    deeper, _ = tiny(tune_language_model="frozen", tiny_num_layers=3, tiny_vision_layers=3, vision_tower_from_layer=0)
    load_adapter(deeper, adapter)
    injected = {name for name, module in deeper.named_modules() if isinstance(module, LoraLayer)}
    assert injected == {name for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def test_a_new_connector_replaces_a_folders_own_and_keeps_the_rest(tmp_path):
    trained, processor = tiny()  # group: 8 visual tokens a video
    save_model(trained, processor, tmp_path / "trained")
    source = dict(model_name_or_path=str(tmp_path / "trained"), new_connector=True, connector_type="image", group=2)
    model, processor = tiny(**source)  # image-level: 8 // 2 = 4 visual tokens a frame
    assert model.config.connector_type == "image" and type(model.connector).__name__ == "ImageResampler"
    assert processor.num_visual_tokens(6) == model.config.num_visual_tokens(6) == 24
    kept = {**trained.language_model.state_dict(), **{f"tower.{k}": v for k, v in trained.vision_tower.state_dict().items()}}
    found = {**model.language_model.state_dict(), **{f"tower.{k}": v for k, v in model.vision_tower.state_dict().items()}}
    assert kept.keys() == found.keys() and all(torch.equal(kept[key], found[key]) for key in kept)
    frames = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8).numpy()
    batch = processor(text=["<image>A red circle"], videos=[frames])
    assert int((batch["input_ids"] == model.config.video_token_id).sum()) == 24
    assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]
    save_model(model, processor, tmp_path / "swapped")  # it reloads as an image-level model
    assert tiny(model_name_or_path=str(tmp_path / "swapped"))[1].num_visual_tokens(6) == 24
    with pytest.raises(InputError, match="divisible"):
        tiny(**{**source, "group": 3})
    with pytest.raises(InputError, match="attribute head"):
        tiny(**{**source, "connector_type": "words"})
    with pytest.raises(InputError, match="model folder"):
        tiny(new_connector=True)
