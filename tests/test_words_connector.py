"""The `words` connector: a new model starts from its tower's attribute head and the language model's own
embeddings of the colour, shape and place words; it saves and loads without the tower folder, refuses a
tower without a head in one line, and trains through `tinyvideo train sft`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from tinyvideo.cli import main
from tinyvideo.connectors import WordsConnector, object_events
from tinyvideo.data.synth import generate_suite
from tinyvideo.data.synth_scenes import COLOURS, OBJECT, SHAPES, where
from tinyvideo.errors import InputError
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor
from tinyvideo.scratch import build_tiny
from tinyvideo.train.common import save_vision_tower, tower_image_processor
from tinyvideo.train.vision_attributes import COLOUR_CLASSES, SHAPE_CLASSES, AttributeTower, save_tower_and_head
from tinyvideo.vision_towers import ATTRIBUTE_HEAD_CONFIG

CONFIDENT = 30.0  # logit margin of the hand-set head: softmax probabilities within e^-30 of 0 or 1


def attribute_tower(hidden_size: int = 32) -> AttributeTower:
    torch.manual_seed(0)
    config = AttributeTower.config_class(
        hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8,
    )  # fmt: skip
    return AttributeTower(config)


OBJECTS = (("red", "triangle"), ("blue", "circle"))  # what the hand-set head sees along feature axes 0 and 1


def confident_head(tower: AttributeTower) -> None:
    """A head that says "none" for a zero feature and `OBJECTS[k]` (colour, shape) for a feature along axis k."""
    head = tower.attribute_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[0] = head.bias[len(COLOUR_CLASSES)] = CONFIDENT  # "none" for both
        for axis, (colour, shape) in enumerate(OBJECTS):
            colour_at, shape_at = COLOUR_CLASSES.index(colour), len(COLOUR_CLASSES) + SHAPE_CLASSES.index(shape)
            head.weight[colour_at, axis] = head.weight[shape_at, axis] = 2 * CONFIDENT


@pytest.fixture(scope="module")
def tower_dir(tmp_path_factory):
    tower = attribute_tower()
    confident_head(tower)
    return save_tower_and_head(tower, tower_image_processor(32), tmp_path_factory.mktemp("towers") / "attributes")


def words_model(tower_dir, connector_type="words", **settings):
    return build_tiny(
        ["a red triangle at the top left"], vocab_size=300, vision_tower_path=tower_dir, connector_type=connector_type,
        vision_feature_select_strategy="cls_patch", hidden_size=32, **settings,
    )  # fmt: skip


def word_embedding(model, processor, text: str) -> torch.Tensor:
    ids = processor.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    return model.get_input_embeddings()(torch.tensor(ids)).sum(0)


def test_the_head_is_saved_beside_the_tower_with_what_it_means(tower_dir):
    meaning = json.loads((tower_dir / ATTRIBUTE_HEAD_CONFIG).read_text())
    assert meaning["colour_classes"] == ["none", *COLOURS] and meaning["shape_classes"] == ["none", *SHAPES]
    assert meaning["grid"] == 4
    # Each patch's place words are those of an object centred on the patch, in the suite's 64-pixel frames.
    centres = [8, 24, 40, 56]
    expected = [where(x - OBJECT // 2, y - OBJECT // 2) for y in centres for x in centres]
    assert meaning["patch_places"] == expected
    assert expected[0] == "top left" and expected[5] == "centre" and expected[15] == "bottom right"


@pytest.fixture(scope="module")
def language_model_dir(tmp_path_factory):
    """A Hugging Face causal LM folder (a tiny Qwen2 and its tokenizer) to assemble a model from."""
    model, processor = build_tiny(["a red triangle at the top left"], vocab_size=300, hidden_size=32, seed=1)
    folder = tmp_path_factory.mktemp("language_model")
    model.language_model.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    return folder


def assembled_by_init(tower_dir, language_model_dir, out):
    """A words model written by `tinyvideo init` from a language model folder and the tower folder."""
    init = ["init", "--out", str(out), "--language-model", str(language_model_dir), "--vision-tower", str(tower_dir)]
    assert main([*init, "--connector", "words", "--vision-feature-select-strategy", "cls_patch"]) == 0
    return TinyVideoForConditionalGeneration.from_pretrained(out), TinyVideoProcessor.from_pretrained(out)


@pytest.mark.parametrize("patch", [0, 6, 13])
@pytest.mark.parametrize("assembly", ["tiny", "init --language-model"])
def test_a_confident_patch_becomes_the_words_for_its_colour_shape_and_place_and_an_empty_one_nothing(
    tower_dir, language_model_dir, tmp_path, assembly, patch
):
    if assembly == "tiny":
        model, processor = words_model(tower_dir)
    else:
        model, processor = assembled_by_init(tower_dir, language_model_dir, tmp_path / "model")
    places = json.loads((tower_dir / ATTRIBUTE_HEAD_CONFIG).read_text())["patch_places"]
    features = torch.zeros(1, 2, 16, model.config.vision_config.hidden_size)
    features[0, :, patch, 0] = 1.0  # the same object at the same place in both frames: nothing happens
    with torch.no_grad():
        tokens = model.connector(features).unflatten(1, (2, 16))
        expected = sum(word_embedding(model, processor, w) for w in ("red", "triangle", places[patch]))
    assert tokens.shape[-1] == model.config.hidden_size == 32
    assert torch.allclose(tokens[0, 0, patch], expected, atol=1e-5)
    assert torch.allclose(tokens[0, 1, patch], expected, atol=1e-5)
    empty = torch.ones(2, 16, dtype=torch.bool)
    empty[:, patch] = False
    assert tokens[0][empty].abs().max() < 1e-5
    assert expected.abs().max() > 0.01  # the check above is not of zeros against zeros


def test_an_object_that_moves_appears_or_disappears_gains_the_words_for_it(tower_dir):
    model, processor = words_model(tower_dir)
    places = json.loads((tower_dir / ATTRIBUTE_HEAD_CONFIG).read_text())["patch_places"]
    features = torch.zeros(1, 4, 16, model.config.vision_config.hidden_size)
    for frame, patch in [(1, 5), (2, 6)]:  # empty, then at patch 5, one patch to the right, then gone
        features[0, frame, patch, 0] = 1.0
    with torch.no_grad():
        tokens = model.connector(features).unflatten(1, (4, 16))[0]

        def words(*ws):
            return sum(word_embedding(model, processor, w) for w in ("red", "triangle", *ws))

    assert torch.allclose(tokens[1, 5], words(places[5], "appears", "moves right"), atol=1e-5)
    assert torch.allclose(tokens[2, 6], words(places[6], "moves right", "disappears"), atol=1e-5)
    assert tokens[0].abs().max() < 1e-5 and tokens[3].abs().max() < 1e-5


def test_object_words_give_each_visible_object_its_colour_shape_place_and_event_word_in_reading_order(tower_dir):
    model, processor = words_model(tower_dir, connector_type="object_words")
    places = json.loads((tower_dir / ATTRIBUTE_HEAD_CONFIG).read_text())["patch_places"]
    features = torch.zeros(1, 3, 16, model.config.vision_config.hidden_size)
    for frame, patch in enumerate([10, 9, 8]):  # the red triangle moves left along the third row
        features[0, frame, patch, 0] = 1.0
    features[0, 1:, 2, 1] = 1.0  # the blue circle appears at the top in the second frame
    with torch.no_grad():
        tokens = model.connector(features)
    assert tokens.shape == (1, 3 * 4 * 4, 32) == (1, model.config.num_visual_tokens(3), 32)

    def phrase(*words):  # None: no word (a still object has no event)
        return torch.stack([torch.zeros(32) if w is None else word_embedding(model, processor, w) for w in words])

    triangle, circle = ("red", "triangle"), ("blue", "circle")
    expected = [
        [phrase(*triangle, places[10], "moves left")],
        [phrase(*circle, places[2], "appears"), phrase(*triangle, places[9], "moves left")],
        [phrase(*circle, places[2], None), phrase(*triangle, places[8], "moves left")],
    ]
    for frame, objects in enumerate(tokens.unflatten(1, (3, 4, 4))[0]):
        seen = [slot for slot in objects if slot.abs().max() > 1e-4]  # empty patches fill the other slots
        assert len(seen) == len(expected[frame])
        for slot, words in zip(seen, expected[frame], strict=True):
            assert torch.allclose(slot, words, atol=1e-5)


def one_hot(classes: int, index: list[list[int]]) -> torch.Tensor:
    """[1, T, P, classes] probabilities from class indices [T][P]."""
    return F.one_hot(torch.tensor(index), classes).float()[None]


def events_of(colours: list[list[int]], shapes: list[list[int]]) -> dict[str, torch.Tensor]:
    weights = object_events(one_hot(len(COLOUR_CLASSES), colours), one_hot(len(SHAPE_CLASSES), shapes))[0]
    return {word: weights[..., k] for k, word in enumerate(WordsConnector.EVENT_WORDS)}


def test_object_events_follow_each_object_by_its_colour_and_shape():
    empty = [0] * 16
    # A red circle moves down a column (patch 1 -> 5 -> 9), a blue square stands at patch 15 and turns green,
    # a yellow cross stands at patch 12 and is gone in the last frame.
    colours = [list(empty) for _ in range(3)]
    shapes = [list(empty) for _ in range(3)]
    red, blue, green, yellow = (COLOUR_CLASSES.index(c) for c in ("red", "blue", "green", "yellow"))
    circle, square, cross = (SHAPE_CLASSES.index(s) for s in ("circle", "square", "cross"))
    for t, patch in enumerate([1, 5, 9]):
        colours[t][patch], shapes[t][patch] = red, circle
    for t, colour in enumerate([blue, blue, green]):
        colours[t][15], shapes[t][15] = colour, square
    for t in (0, 1):
        colours[t][12], shapes[t][12] = yellow, cross
    events = events_of(colours, shapes)
    assert events["moves down"][:, [1, 5, 9]].diagonal().tolist() == [1.0, 1.0, 1.0]
    assert events["turns"][:, 15].tolist() == [0.0, 0.0, 1.0]
    assert events["disappears"][:, 12].tolist() == [0.0, 1.0, 0.0]
    expected = {(t, p, w) for t, p, w in [(0, 1, "moves down"), (1, 5, "moves down"), (2, 9, "moves down"),
                                          (2, 15, "turns"), (1, 12, "disappears")]}  # fmt: skip
    happened = {(t, p, w) for w, weights in events.items() for t, p in weights.nonzero().tolist()}
    assert happened == expected  # nothing else: a still object has no event, the first frame no "appears"


def test_a_move_of_several_patches_counts_as_one_and_a_still_probability_mass_as_none():
    colours = [[0] * 16 for _ in range(2)]
    shapes = [[0] * 16 for _ in range(2)]
    colours[0][4] = colours[1][7] = COLOUR_CLASSES.index("cyan")
    shapes[0][4] = shapes[1][7] = SHAPE_CLASSES.index("triangle")
    events = events_of(colours, shapes)
    assert events["moves right"][0, 4] == events["moves right"][1, 7] == 1.0  # three patches, clipped to 1
    assert events["moves left"].abs().max() == 0 and events["appears"].abs().max() == 0


@pytest.mark.parametrize("frames", [1, 3, 4])
def test_one_embedding_per_patch_token_as_many_as_the_processor_puts_placeholders(tower_dir, frames):
    model, processor = words_model(tower_dir)
    assert model.config.num_visual_tokens(frames) == 16 * frames
    video = torch.randint(0, 255, (frames, 32, 32, 3), dtype=torch.uint8).numpy()
    inputs = processor(["<image>\nwhat is red?"] * 2, videos=[video, video])
    assert int((inputs["input_ids"][0] == model.config.video_token_id).sum()) == 16 * frames
    features = model.encode_frames(inputs["pixel_values_videos"]).unflatten(0, (2, frames))
    with torch.no_grad():
        assert model.connector(features).shape == (2, 16 * frames, 32)
        assert model(**inputs).logits.shape[:2] == inputs["input_ids"].shape


def test_a_saved_model_loads_with_the_same_outputs_without_the_tower_folder(tower_dir, tmp_path):
    tower = shutil.copytree(tower_dir, tmp_path / "tower")
    model, processor = words_model(tower)
    with torch.no_grad():  # move every part off its initial values, so that a reload from the tower would show
        for p in model.connector.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    shutil.rmtree(tower)
    again = TinyVideoForConditionalGeneration.from_pretrained(tmp_path / "model")
    video = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8).numpy()
    inputs = TinyVideoProcessor.from_pretrained(tmp_path / "model")("<image>\nwhat is red?", videos=[video])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, again(**inputs).logits)
    assert again.config.attribute_head["colour_classes"] == list(COLOUR_CLASSES)


def test_a_tower_without_an_attribute_head_is_refused_in_one_line(tmp_path, capsys):
    plain = save_vision_tower(attribute_tower(), tower_image_processor(32), tmp_path / "plain")
    message = f"connector_type words needs a vision tower trained with the attributes objective (no attribute_head.json in {plain})"
    with pytest.raises(InputError) as error:
        words_model(plain)
    assert str(error.value) == message
    assert main(["init", "--out", str(tmp_path / "new"), "--connector", "words", "--vision-tower", str(plain)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)
    with pytest.raises(InputError, match="a new tiny tower has no attribute head"):
        build_tiny(connector_type="words")


def test_the_head_must_cover_the_tokens_the_connector_reads(tower_dir):
    with pytest.raises(InputError, match="knows 16 patches a frame, but the connector reads 15 tokens a frame: set vision_feature_select_strategy cls_patch"):
        build_tiny(vision_tower_path=tower_dir, connector_type="words", vision_feature_select_strategy="patch")


def test_a_words_model_has_no_published_form(tower_dir, tmp_path, capsys):
    model, processor = words_model(tower_dir)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    assert main(["export", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "published")]) == 2
    assert "the words connector has no published form" in capsys.readouterr().err
    assert not (tmp_path / "published").exists()


def test_a_words_model_trains_through_tinyvideo_train_sft_on_the_suite(tmp_path):
    suite = generate_suite(tmp_path / "suite", scale="smoke")
    common = ["--video_root", str(suite.video_root), "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
              "--dataloader_pin_memory", "false"]
    vision = [
        "train", "vision", "--objective", "attributes", "--data_path", str(suite.path("splits", "train", "scenes")),
        "--output_dir", str(tmp_path / "vision"), "--image_size", "32", "--patch_size", "8", "--vision_hidden_size", "32",
        "--vision_layers", "2", "--max_steps", "20", "--learning_rate", "5e-3", "--per_device_train_batch_size", "4",
    ]  # fmt: skip
    assert main([*vision, *common]) == 0
    tower = tmp_path / "vision" / "model"
    sft = [
        "train", "sft", "--model_name_or_path", "tiny", "--vision_tower_path", str(tower), "--connector_type", "words",
        "--vision_feature_select_strategy", "cls_patch", "--data_path", str(suite.path("train", "captions")),
        "--tokenizer_corpus", str(suite.path("train", "captions")), "--tiny_vocab_size", "400", "--tiny_hidden_size", "32",
        "--num_frames", "4", "--output_dir", str(tmp_path / "sft"), "--max_steps", "16", "--learning_rate", "3e-3",
        "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_steps", "16",
    ]  # fmt: skip
    assert main([*sft, *common]) == 0
    state = json.loads((tmp_path / "sft" / "checkpoint-16" / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert sum(losses[-4:]) < sum(losses[:4])

    final = tmp_path / "sft" / "model"
    shutil.rmtree(tower)  # the model needs its tower folder no more
    model = TinyVideoForConditionalGeneration.from_pretrained(final)
    assert model.config.connector_type == "words" and model.config.num_visual_tokens(4) == 64
    assert model.connector.residual.weight.abs().max() > 0  # the connector trained too (it starts at zero)
    processor = TinyVideoProcessor.from_pretrained(final)
    inputs = processor("<image>\nDescribe the video.", videos=[torch.zeros(4, 32, 32, 3, dtype=torch.uint8).numpy()])
    assert model.generate(**inputs, max_new_tokens=3).shape[1] == inputs["input_ids"].shape[1] + 3
