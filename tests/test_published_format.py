"""A published-format checkpoint gives exactly the outputs the original implementation gave for it."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.checkpoints import CheckpointError, export_published
from tinyvideo.processing import pack_videos
from tinyvideo.processing import chat_prompt


@pytest.fixture(scope="module")
def expected(published_dir):
    return json.loads((published_dir / "expected.json").read_text()), load_file(published_dir / "expected.safetensors")


@pytest.fixture(scope="module")
def loaded(published_dir):
    model = TinyVideoForConditionalGeneration.from_pretrained(published_dir).eval()
    return model, TinyVideoProcessor.from_pretrained(published_dir)


def published_ids(ids: torch.Tensor, video_token_id: int) -> list[int]:
    """Collapse each run of video tokens back into the published -200 placeholder."""
    out: list[int] = []
    for token in ids.tolist():
        if token == video_token_id:
            if not out or out[-1] != -200:
                out.append(-200)
        else:
            out.append(token)
    return out


def test_loads_as_float32_with_every_weight(published_dir):
    model, info = TinyVideoForConditionalGeneration.from_pretrained(published_dir, output_loading_info=True)
    assert model.dtype == torch.float32
    assert not info["missing_keys"] and not info["unexpected_keys"]
    lm = model.language_model
    assert lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()


def test_prompt_and_input_ids(loaded, expected):
    model, processor = loaded
    meta, tensors = expected
    prompt = chat_prompt(meta["eval"]["question"])
    assert prompt == meta["eval"]["prompt"]
    batch = processor(text=[prompt], videos=[tensors["video_frames_uint8"].numpy()])
    assert published_ids(batch["input_ids"][0], model.config.video_token_id) == meta["eval"]["input_ids"]
    assert batch["input_ids"].shape[1] == meta["eval"]["spliced_length"]
    assert torch.equal(batch["pixel_values_videos"], tensors["video"])


def test_vision_connector_and_logits(loaded, expected):
    model, processor = loaded
    meta, tensors = expected
    with torch.no_grad():
        features = model.encode_frames(tensors["video"])
        connected = model.connect([features])[0]
        batch = processor(text=[meta["eval"]["prompt"]], videos=[tensors["video_frames_uint8"].numpy()])
        logits = model(**batch).logits
    assert (features - tensors["vision_features"]).abs().max() <= 1e-4
    assert (connected - tensors["connector_out"][0]).abs().max() <= 1e-4
    assert (logits - tensors["logits"]).abs().max() <= 1e-4


def test_greedy_generation(loaded, expected):
    model, processor = loaded
    meta, tensors = expected
    batch = processor(text=[meta["eval"]["prompt"]], videos=[tensors["video_frames_uint8"].numpy()])
    out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert out[0, batch["input_ids"].shape[1] :].tolist() == meta["generate"]["new_token_ids"]


@pytest.mark.parametrize("name", ["train_1round", "train_2round"])
def test_training_ids_labels_and_loss(loaded, expected, name):
    model, processor = loaded
    meta, tensors = expected
    example = meta["train"][name]
    encoded = processor.encode_conversation(example["conversation"], num_frames=4)
    vid = model.config.video_token_id
    assert published_ids(torch.tensor(encoded["input_ids"]), vid) == example["input_ids"]
    labels = [label for token, label in zip(encoded["input_ids"], encoded["labels"]) if token != vid]
    published = [label for token, label in zip(example["input_ids"], example["labels"]) if token != -200]
    assert published == labels
    video = tensors["video"] if example["video"] == "video" else tensors["video"].flip(0)
    batch = processor.pad([encoded])
    with torch.no_grad():
        loss = model(**batch, pixel_values_videos=video).loss
    assert abs(loss.item() - example["loss"]) <= 1e-5


def test_padded_training_batch_loss(loaded, expected):
    model, processor = loaded
    meta, tensors = expected
    examples = [processor.encode_conversation(meta["train"][n]["conversation"], 4) for n in ("train_1round", "train_2round")]
    batch = processor.pad(examples)
    pixels, counts = pack_videos([tensors["video"], tensors["video"].flip(0)])
    with torch.no_grad():
        loss = model(**batch, pixel_values_videos=pixels, video_num_frames=counts).loss
    assert abs(loss.item() - meta["train"]["train_batch"]["loss"]) <= 1e-5


def test_preprocessing_matches_published(published_dir):
    tensors = load_file(published_dir.parent / "preprocess" / "expected.safetensors")
    from tinyvideo.processing import preprocess_frames

    pixels = preprocess_frames(tensors["frame_uint8"].numpy(), 32)[0]
    assert torch.equal(pixels, tensors["pixel_values_pil"])


def test_export_round_trip(loaded, expected, published_dir, tmp_path):
    model, processor = loaded
    meta, tensors = expected
    out = export_published(model, processor, tmp_path / "exported")
    original = load_file(published_dir / "model.safetensors")
    exported = load_file(out / "model.safetensors")
    assert set(exported) == set(original)
    assert all(torch.equal(exported[k], original[k].float()) for k in original)
    assert json.loads((out / "config.json").read_text())["model_type"] == "tinyllava"
    reloaded = TinyVideoForConditionalGeneration.from_pretrained(out).eval()
    batch = processor(text=[meta["eval"]["prompt"]], videos=[tensors["video_frames_uint8"].numpy()])
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, model(**batch).logits)


def test_sharded_checkpoint(loaded, expected, published_dir, tmp_path):
    model, processor = loaded
    meta, tensors = expected
    folder = tmp_path / "sharded"
    shutil.copytree(published_dir, folder, ignore=shutil.ignore_patterns("model.safetensors", "expected*"))
    weights = load_file(published_dir / "model.safetensors")
    names = sorted(weights)
    index = {"metadata": {}, "weight_map": {}}
    for shard, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        file = f"model-0000{shard + 1}-of-00002.safetensors"
        save_file({k: weights[k] for k in part}, str(folder / file), metadata={"format": "pt"})
        index["weight_map"].update(dict.fromkeys(part, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    sharded = TinyVideoForConditionalGeneration.from_pretrained(folder).eval()
    batch = processor(text=[meta["eval"]["prompt"]], videos=[tensors["video_frames_uint8"].numpy()])
    with torch.no_grad():
        assert torch.equal(sharded(**batch).logits, model(**batch).logits)


def test_old_connector_name_loads_as_naive(published_dir, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(published_dir, folder, ignore=shutil.ignore_patterns("expected*", "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config.update(connector_type="resamplerwithpe")
    (folder / "config.json").write_text(json.dumps(config))
    weights = load_file(published_dir / "model.safetensors")
    dim = config["hidden_size"]
    weights["connector._connector.latents"] = torch.randn(config["num_queries"], dim).to(torch.bfloat16)
    save_file(weights, str(folder / "model.safetensors"))
    model = TinyVideoForConditionalGeneration.from_pretrained(folder)
    assert model.config.connector_type == "naive"
    assert model.connector.latents.shape == (config["num_queries"], dim)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "config.json").unlink(), "config.json is missing"),
        (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "model.safetensors").unlink(), "no model*.safetensors"),
    ],
)
def test_broken_checkpoint_folder_gives_clear_error(published_dir, tmp_path, damage, message):
    folder = tmp_path / "broken"
    shutil.copytree(published_dir, folder, ignore=shutil.ignore_patterns("expected*"))
    damage(folder)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        TinyVideoForConditionalGeneration.from_pretrained(folder)


def test_pickle_weights_are_refused(published_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(published_dir, folder, ignore=shutil.ignore_patterns("expected*", "model.safetensors"))
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        TinyVideoForConditionalGeneration.from_pretrained(folder)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: loading is local only."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def edit_config(**changes):
    def damage(folder):
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            section, _, name = key.rpartition("__")
            (config[section] if section else config)[name] = value
        (folder / "config.json").write_text(json.dumps(config))

    return damage


def drop_weights(prefix):
    def damage(folder):
        weights = load_file(folder / "model.safetensors")
        save_file({k: v for k, v in weights.items() if not k.startswith(prefix)}, str(folder / "model.safetensors"))

    return damage


@pytest.mark.parametrize(
    "damage, message",
    [
        (shutil.rmtree, "no such model folder"),
        (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), "pickle files are never loaded"),
        (drop_weights("connector."), "the weights lack .* \\(connector\\."),
        (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:1000]), "not a readable safetensors"),
        (drop_weights("vision_tower.encoder.layers.0."), "the weights lack"),
        (lambda f: (f / "config.json").write_text("{}"), "model_type None"),
        (lambda f: (f / "config.json").write_text("[1, 2]"), "holds a JSON list"),
        (lambda f: (f / "config.json").write_text('"tinyvideo"'), "holds a JSON str"),
        (edit_config(text_config={}), "lacks text_config"),
        (edit_config(vision_config=None), "lacks vision_config"),
        (edit_config(model_type="llava"), "model_type 'llava'"),
        (edit_config(text_config__hidden_size=4096), "has shape"),
        (edit_config(vision_config__num_hidden_layers=12), "the weights lack"),
        (edit_config(text_config__num_hidden_layers=32), "layer_types"),
        (edit_config(connector_type="bogus"), "unknown connector_type"),
        (edit_config(num_queries=15), "divisible"),
    ],
)
def test_a_folder_that_is_not_the_whole_model_is_refused_before_anything_is_built(tiny_dir, tmp_path, no_network, damage, message):
    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    damage(folder)
    with pytest.raises(CheckpointError, match=message) as refused:
        TinyVideoForConditionalGeneration.from_pretrained(folder)
    assert str(folder) in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("name", ["Zhang199/TinyLLaVA-Video-R1", "tiny", "./typo", "/no/such/folder"])
def test_a_missing_folder_is_named_at_once_without_the_network(no_network, name):
    for loader in (TinyVideoForConditionalGeneration, TinyVideoProcessor):
        with pytest.raises(CheckpointError, match=f"{re.escape(str(Path(name)))}: no such model folder"):
            loader.from_pretrained(name)
