"""SigLIP, CLIP and DINOv2 vision towers: feature selection, frame preprocessing, and each tower tiny end to end
(forward, generate, save and load, a training step), built from a tiny config or from a tower's folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.checkpoints import CheckpointError, export_published
from tinyvideo.cli import main
from tinyvideo.processing import chat_prompt
from tinyvideo.scratch import TINY_TOWERS, build_tiny, tiny_config
from tinyvideo.train.common import ModelArguments, apply_tuning
from tinyvideo.vision_towers import IMAGENET_MEAN, IMAGENET_STD, FrameTransform, build_vision_tower, frame_transform

# tokens before the patches that the 'patch' strategy drops: SigLIP's first patch (the published quirk),
# CLIP's and DINOv2's class token, and the four register tokens of the tiny DINOv2 with registers
DROPPED = {"siglip": 1, "clip": 1, "dinov2": 1, "dinov2_with_registers": 5}
LEADING = {"siglip": 0, "clip": 1, "dinov2": 1, "dinov2_with_registers": 5}
MODEL_TYPES = {"siglip": "siglip_vision_model", "clip": "clip_vision_model", "dinov2": "dinov2", "dinov2_with_registers": "dinov2_with_registers"}
PATCHES = (32 // 8) ** 2


def frames(count: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 40, 52, 3), dtype=np.uint8)


@pytest.mark.parametrize("strategy", ["patch", "cls_patch"])
@pytest.mark.parametrize("tower", list(TINY_TOWERS))
def test_features_are_the_hidden_state_of_the_chosen_layer_less_the_dropped_tokens(tower, strategy):
    """'patch' drops the leading tokens (SigLIP's first patch), 'cls_patch' keeps every token; the connector
    (mlp: one embedding per token) and the processor count the tokens the tower gives."""
    torch.manual_seed(0)
    config = tiny_config(128, 0, connector_type="mlp", vision_tower=tower, vision_feature_select_strategy=strategy)
    model = TinyVideoForConditionalGeneration(config).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.encode_frames(pixels)
        hidden = model.vision_tower(pixel_values=pixels, output_hidden_states=True).hidden_states
        embeddings = model.connect(list(features.unsqueeze(1)))
    assert len(hidden) == 4  # the embeddings and three layers
    assert hidden[-2].shape == (2, PATCHES + LEADING[tower], 48)
    dropped = DROPPED[tower] if strategy == "patch" else 0
    torch.testing.assert_close(features, hidden[-2][:, dropped:])
    assert config.tokens_per_frame == features.shape[1] == PATCHES + LEADING[tower] - dropped
    assert embeddings[0].shape[0] == config.num_visual_tokens(1) == features.shape[1]


@pytest.mark.parametrize("tower", list(TINY_TOWERS))
def test_each_tower_tiny_end_to_end(tower, tmp_path):
    torch.manual_seed(0)
    model, processor = build_tiny(["what is shown"], vision_tower=tower, connector_type="mlp", image_size=32, seed=1)
    assert model.config.vision_config.model_type == MODEL_TYPES[tower]
    batch = processor(text=[chat_prompt("What is shown?")], videos=[frames()], return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["input_ids"] == model.config.video_token_id, -100)

    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
        generated = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, batch["input_ids"].shape[1] + 3)

    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = TinyVideoForConditionalGeneration.from_pretrained(tmp_path).eval()
    reloaded = TinyVideoProcessor.from_pretrained(tmp_path)
    assert type(loaded.vision_tower) is type(model.vision_tower) and reloaded.frame_transform == processor.frame_transform
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, logits)

    args = ModelArguments(model_name_or_path="tiny", tune_vision_tower="full", tiny_vision_tower=tower)
    apply_tuning(model, args)
    used = [p for layer in model.used_vision_layers() for p in layer.parameters()]
    before = [p.detach().clone() for p in used]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    model(**batch, labels=labels).loss.backward()
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, used))
    assert all(p.grad is None for p in model.vision_tower.encoder.parameters() if not any(p is q for q in used))


def test_clip_and_dinov2_frames_are_prepared_as_their_image_processors_do():
    image = frames(1, seed=3)[0]
    clip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    dinov2 = BitImageProcessor(  # facebook/dinov2-*'s settings
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    )
    clip_config = tiny_config(128, 0, vision_tower="clip").vision_config
    for processor, vision, size in ((clip, clip_config, 32), (dinov2, Dinov2Config(), 224)):
        expected = torch.from_numpy(processor(images=image, return_tensors="np")["pixel_values"])
        torch.testing.assert_close(frame_transform(vision, size)(image[None]), expected, atol=1e-5, rtol=0)
    squashed = FrameTransform(32)(image[None])  # SigLIP's: no crop, [-1, 1]
    assert squashed.shape == (1, 3, 32, 32) and squashed.min() >= -1 and squashed.max() <= 1


def test_a_two_tower_clip_folder_gives_its_vision_half_and_image_processor(tmp_path):
    sizes = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    clip = CLIPModel(CLIPConfig(text_config={**sizes, "vocab_size": 99}, vision_config={**sizes, "image_size": 32, "patch_size": 8}))
    clip.save_pretrained(tmp_path / "clip")
    mean = [0.25, 0.5, 0.75]
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=mean).save_pretrained(tmp_path / "clip")
    model, processor = build_tiny(["x"], vision_tower_path=tmp_path / "clip", connector_type="mlp")
    torch.testing.assert_close(model.vision_tower.embeddings.patch_embedding.weight, clip.vision_model.embeddings.patch_embedding.weight)
    assert processor.frame_transform == FrameTransform(32, 32, tuple(mean), processor.image_std)
    assert model.config.tokens_per_frame == (32 // 8) ** 2


def test_dinov2_sees_crops_of_its_image_processor_not_its_config_size(tmp_path):
    tower = build_vision_tower(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, patch_size=8))
    tower.save_pretrained(tmp_path / "dinov2")  # image_size 518, no preprocessor_config.json: DINOv2's 224 crops
    model, processor = build_tiny(["x"], vision_tower_path=tmp_path / "dinov2", connector_type="mlp")
    assert processor.frame_transform == FrameTransform(224, 256, IMAGENET_MEAN, IMAGENET_STD)
    assert model.config.tokens_per_frame == (224 // 8) ** 2
    batch = processor(text=[chat_prompt("Shown?")], videos=[frames(1)], return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]


def test_init_takes_a_tower_family_or_folder(tmp_path, capsys):
    assert main(["init", "--out", str(tmp_path / "clip"), "--vision-tower", "clip"]) == 0
    config = json.loads((tmp_path / "clip" / "config.json").read_text())
    assert config["vision_config"]["model_type"] == "clip_vision_model"
    assert type(TinyVideoForConditionalGeneration.from_pretrained(tmp_path / "clip").vision_tower).__name__ == "CLIPVisionModel"
    tower = build_vision_tower(tiny_config(128, 0, vision_tower="dinov2").vision_config)
    tower.save_pretrained(tmp_path / "tower")
    assert main(["init", "--out", str(tmp_path / "dino"), "--vision-tower", str(tmp_path / "tower")]) == 0
    assert TinyVideoProcessor.from_pretrained(tmp_path / "dino").image_mean == IMAGENET_MEAN
    assert main(["init", "--out", str(tmp_path / "bad"), "--vision-tower", "vit"]) == 2
    assert "--vision-tower vit: neither a tiny tower (siglip, clip, dinov2" in capsys.readouterr().err
    for strategy, tokens in (("patch", PATCHES - 1), ("cls_patch", PATCHES)):  # a tiny SigLIP: its first patch, or none
        out = tmp_path / strategy
        assert main(["init", "--out", str(out), "--vision-feature-select-strategy", strategy]) == 0
        model = TinyVideoForConditionalGeneration.from_pretrained(out)
        assert model.config.vision_feature_select_strategy == strategy and model.config.tokens_per_frame == tokens
    with pytest.raises(SystemExit) as exited:
        main(["init", "--out", str(tmp_path / "bad"), "--vision-feature-select-strategy", "cls"])
    assert exited.value.code == 2
    assert "invalid choice: 'cls'" in capsys.readouterr().err


def test_the_published_format_is_refused_for_a_tower_other_than_siglip(tmp_path):
    model, processor = build_tiny(["x"], vision_tower="clip")
    with pytest.raises(CheckpointError, match="published TinyLLaVA format is written for SigLIP towers only"):
        export_published(model, processor, tmp_path)


def test_a_folder_without_the_towers_weights_is_refused_not_used_at_random(tiny_dir, tmp_path):
    from tinyvideo.errors import InputError
    from tinyvideo.vision_towers import load_vision_tower

    # A whole tinyvideo model folder holds a SigLIP vision config, but its tower weights sit under another prefix.
    with pytest.raises(InputError, match="tower's weights are not in this folder"):
        load_vision_tower(tiny_dir)
    model = TinyVideoForConditionalGeneration.from_pretrained(tiny_dir)
    model.vision_tower.save_pretrained(tmp_path / "tower")
    tower = load_vision_tower(tmp_path / "tower")
    assert all(torch.equal(p, model.vision_tower.state_dict()[k]) for k, p in tower.state_dict().items())
