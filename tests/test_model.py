"""Model behaviour users rely on: sizes, connector maths, batching, cached features, clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.checkpoints import export_published
from tinyvideo.config import IGNORE_INDEX, TinyVideoConfig, canonical_connector
from tinyvideo.connectors import CONNECTORS
from tinyvideo.errors import InputError
from tinyvideo.inference import question_prompt
from tinyvideo.processing import SHORTENED, chat_prompt
from tinyvideo.scratch import build_tiny, full_size_config, tiny_config


def video(num_frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_frames, 40, 50, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return TinyVideoForConditionalGeneration.from_pretrained(tiny_dir).eval(), TinyVideoProcessor.from_pretrained(tiny_dir)


def test_full_size_parameter_counts_on_meta_device():
    with torch.device("meta"):
        model = TinyVideoForConditionalGeneration(full_size_config())
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.language_model) == 3_085_938_688  # Qwen2.5-3B, tied embeddings counted once
    assert count(model.vision_tower) == 428_225_600  # SigLIP-so400m-patch14-384 incl. the unused head
    assert count(model.connector) == 115_714_048  # group resampler: 3 layers, 32 shared latents
    assert 3.6e9 < count(model) < 3.65e9
    assert model.config.tokens_per_frame == 728
    assert model.connector.latents.shape == (32, 2048)
    assert model.connector.linear.weight.shape == (2048, 1152)


# ---- connector maths, checked against a direct transcription of the published description -------------


def reference_perceiver(resampler, media):
    """Latents attend to concat(media, latents), explicit softmax with max subtraction (docs/published-format.md 1.5)."""
    latents = resampler.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
    for attention, ff in resampler.layers:
        m, lat = attention.norm_media(media), attention.norm_latents(latents)
        q = attention.to_q(lat)
        k, v = attention.to_kv(torch.cat([m, lat], 1)).chunk(2, -1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], 8, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(q) * 64**-0.5, split(k), split(v)
        sim = q @ k.transpose(-1, -2)
        attn = (sim - sim.amax(-1, keepdim=True).detach()).softmax(-1)
        out = (attn @ v).transpose(1, 2).flatten(2)
        latents = attention.to_out(out) + latents
        latents = ff(latents) + latents
    return resampler.norm(latents)


def reference_pe(length, dim):
    pe = torch.zeros(length, dim, dtype=torch.float16)
    position = torch.arange(length).float().unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe.float()


def small_config(connector, group=4, num_queries=16):
    return tiny_config(128, 0, connector_type=connector, group=group, num_queries=num_queries)


@pytest.mark.parametrize("frames", [4, 5, 7])
def test_group_resampler_uneven_split_matches_reference(frames):
    torch.manual_seed(0)
    model = TinyVideoForConditionalGeneration(small_config("group", group=4)).eval()
    features = torch.randn(frames, 15, 48)
    x = model.connector.linear(features.reshape(1, -1, 48))
    base, rem = divmod(x.shape[1], 4)
    sizes = [base + 1] * rem + [base] * (4 - rem)
    chunks = [reference_perceiver(model.connector, c) for c in torch.split(x, sizes, dim=1)]
    expected = torch.cat(chunks, 1) + reference_pe(16, 64)
    with torch.no_grad():
        assert (model.connect([features])[0] - expected[0]).abs().max() < 1e-5


def test_naive_resampler_matches_reference():
    torch.manual_seed(0)
    model = TinyVideoForConditionalGeneration(small_config("naive")).eval()
    features = torch.randn(3, 15, 48)
    x = model.connector.linear(features.reshape(1, -1, 48))
    expected = reference_perceiver(model.connector, x + reference_pe(x.shape[1], 64))
    with torch.no_grad():
        assert (model.connect([features])[0] - expected[0]).abs().max() < 1e-5


def test_image_resampler_is_per_frame():
    torch.manual_seed(0)
    model = TinyVideoForConditionalGeneration(small_config("image")).eval()
    features = torch.randn(3, 15, 48)
    with torch.no_grad():
        together = model.connect([features])[0]
        alone = torch.cat([model.connect([features[i : i + 1]])[0] for i in range(3)])
    assert together.shape == (3 * 4, 64)
    assert torch.allclose(together, alone, atol=1e-6)


@pytest.mark.parametrize(
    "connector, strategy, frames, tokens",
    [("group", "patch", 3, 16), ("naive", "patch", 3, 16), ("image", "patch", 3, 12), ("mlp", "patch", 3, 45),
     ("group", "cls_patch", 3, 16), ("mlp", "cls_patch", 3, 48)],
)  # fmt: skip
def test_visual_token_count_matches_processor(connector, strategy, frames, tokens):
    model, processor = build_tiny(connector_type=connector, vision_feature_select_strategy=strategy)
    batch = processor(text=[chat_prompt("q")], videos=[video(frames)])
    assert int((batch["input_ids"] == model.config.video_token_id).sum()) == tokens
    with torch.no_grad():
        assert model(**batch).logits.shape[1] == batch["input_ids"].shape[1]


@pytest.mark.parametrize("connector, depth", [("group", None), ("naive", None), ("image", None), *(("mlp", d) for d in (1, 2, 3, 12))])
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_each_connector_reads_back_its_published_name_and_makes_the_tokens_it_declares(connector, depth, frames):
    config = tiny_config(300, 0, connector if depth is None else f"mlp{depth}x_gelu", num_queries=8, group=2)
    assert (config.connector_type, config.mlp_depth if depth else None) == (connector, depth)
    published = CONNECTORS[connector].published_name(config)
    assert canonical_connector(published) == (connector, depth)
    assert canonical_connector(published.upper()) == (connector, depth)  # published names match in any case
    features = torch.randn(1, frames, config.tokens_per_frame, config.vision_config.hidden_size)
    with torch.no_grad():
        out = CONNECTORS[connector](config)(features)
    assert out.shape == (1, config.num_visual_tokens(frames), config.hidden_size)


# ---- batching and cached features ------------------------------------------------------------------


BATCHES = {
    "different frame counts": (["what is first?", "and what is the colour at the end of it all?"], [4, 2]),
    "same frame count": (["q", "what colour is the circle at the end of the video, and where does it go?", "why?"], [3, 3, 3]),
    "text only": (["USER: hi ASSISTANT:", "USER: what colour is the circle at the end of the video ASSISTANT:"], []),
}


@pytest.mark.parametrize("questions, frame_counts", BATCHES.values(), ids=BATCHES.keys())
def test_batched_generate_answers_as_one_by_one(tiny, questions, frame_counts):
    """The processor's default padding is the one `generate` needs: a short prompt answers the same in a batch."""
    model, processor = tiny
    prompts = [chat_prompt(q) for q in questions] if frame_counts else questions
    videos = [video(n, seed) for seed, n in enumerate(frame_counts)]
    batch = processor(text=prompts, videos=videos or None)
    assert len(set((batch["attention_mask"].sum(1)).tolist())) > 1  # the prompts differ in length
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=8, do_sample=False)[:, batch["input_ids"].shape[1] :]
        for row, prompt in enumerate(prompts):
            single = processor(text=[prompt], videos=videos[row : row + 1] or None)
            alone = model.generate(**single, max_new_tokens=8, do_sample=False)[:, single["input_ids"].shape[1] :]
            assert together[row].tolist() == alone[0].tolist()


@pytest.mark.parametrize("cached", [False, True])
def test_return_sequences_repeat_each_rows_own_videos(tiny, cached):
    """Videos are not batched (flat frames): `generate` repeats each row's videos with the row (two in the first)."""
    model, processor = tiny
    texts, videos = ["USER: <image> then <image> what changed? ASSISTANT:", chat_prompt("q")], [video(3), video(2, 1), video(4, 2)]
    batch = processor(text=texts, videos=videos)
    repeated = processor(text=[texts[0], texts[0], texts[1], texts[1]], videos=videos[:2] * 2 + videos[2:] * 2)
    settings = dict(max_new_tokens=1, do_sample=True, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        if cached:
            batch["frame_features"] = model.encode_frames(batch.pop("pixel_values_videos"))
        expanded = model.generate(**batch, num_return_sequences=2, **settings).logits[0]
        one_by_one = model.generate(**repeated, **settings).logits[0]
    torch.testing.assert_close(expanded, one_by_one)


def test_precomputed_frame_features_give_the_same_outputs(tiny):
    model, processor = tiny
    batch = processor(text=[chat_prompt("describe")], videos=[video(4)])
    with torch.no_grad():
        features = model.encode_frames(batch["pixel_values_videos"])
        from_pixels = model(**batch).logits
        cached = {k: v for k, v in batch.items() if k != "pixel_values_videos"}
        from_features = model(**cached, frame_features=features).logits
        generated = model.generate(**cached, frame_features=features, max_new_tokens=5, do_sample=False)
    assert torch.equal(from_pixels, from_features)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 5


def test_text_only_sample_next_to_a_video_sample(tiny):
    model, processor = tiny
    batch = processor(text=["USER: hello ASSISTANT:", chat_prompt("describe")], videos=[video(4)])
    with torch.no_grad():
        assert model(**batch).logits.shape[0] == 2


def test_save_and_load_round_trip(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again = TinyVideoForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = TinyVideoProcessor.from_pretrained(tmp_path)(text=[chat_prompt("q")], videos=[video(3)])
    with torch.no_grad():
        assert torch.equal(again(**batch).logits, model(**batch).logits)
    assert isinstance(again.config, TinyVideoConfig)


@pytest.mark.parametrize("strategy", ["patch", "cls_patch"])
def test_the_feature_select_strategy_survives_save_load_and_export(strategy, tmp_path):
    """Both formats keep it: a reloaded model reads as many tower tokens per frame as the one saved."""
    model, processor = build_tiny(connector_type="mlp", vision_feature_select_strategy=strategy)
    model.save_pretrained(tmp_path / "own")
    processor.save_pretrained(tmp_path / "own")
    export_published(model, processor, tmp_path / "published")
    pixels = torch.randn(2, 3, 32, 32)
    for folder in ("own", "published"):
        assert json.loads((tmp_path / folder / "config.json").read_text())["vision_feature_select_strategy"] == strategy
        again = TinyVideoForConditionalGeneration.from_pretrained(tmp_path / folder).eval()
        assert again.config.vision_feature_select_strategy == strategy
        with torch.no_grad():
            assert again.encode_frames(pixels).shape[1] == model.config.tokens_per_frame == (16 if strategy == "cls_patch" else 15)
        assert TinyVideoProcessor.from_pretrained(tmp_path / folder).num_visual_tokens(3) == model.config.num_visual_tokens(3)


def test_bfloat16_loading(tiny_dir):
    model = TinyVideoForConditionalGeneration.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    processor = TinyVideoProcessor.from_pretrained(tiny_dir)
    batch = processor(text=[chat_prompt("q")], videos=[video(2)])
    with torch.no_grad():
        assert model(**batch).logits.dtype == torch.bfloat16


# ---- bad input -----------------------------------------------------------------------------------


def test_prompt_without_placeholder_but_with_video(tiny):
    _, processor = tiny
    with pytest.raises(ValueError, match="0 <image> placeholder"):
        processor(text=["USER: no video here ASSISTANT:"], videos=[video(2)])


def test_two_placeholders_one_video(tiny):
    _, processor = tiny
    with pytest.raises(ValueError, match="2 <image> placeholder"):
        processor(text=["<image> and <image>"], videos=[video(2)])


def test_more_videos_than_placeholders(tiny):
    _, processor = tiny
    with pytest.raises(ValueError, match="1 <image> placeholder.*2 video"):
        processor(text=[chat_prompt("q")], videos=[video(2), video(3)])


def test_zero_frame_video(tiny):
    _, processor = tiny
    with pytest.raises(ValueError, match="zero frames"):
        processor(text=[chat_prompt("q")], videos=[np.zeros((0, 8, 8, 3), np.uint8)])


def test_video_tokens_without_visual_input(tiny):
    model, processor = tiny
    batch = processor(text=[chat_prompt("q")], videos=[video(2)])
    with pytest.raises(ValueError, match="no pixel_values_videos or frame_features"):
        model(input_ids=batch["input_ids"])


def test_too_long_prompt_is_cut_before_the_model_with_a_warning(tiny, caplog):
    _, processor = tiny
    processor.model_max_length = 60
    try:
        encoded = processor.encode_conversation(
            [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a very long answer " * 20}], 2
        )
        assert len(encoded["input_ids"]) == 60 and "truncated" in caplog.text
        with pytest.raises(ValueError, match="inside the video tokens"):
            processor(text=["x " * 80 + "<image>"], videos=[video(2)])
    finally:
        processor.model_max_length = 2048


def test_generation_never_emits_the_video_token(tiny):
    model, processor = tiny
    batch = processor(text=[chat_prompt("q")], videos=[video(2)])
    with torch.no_grad():
        model.get_output_embeddings().weight[model.config.video_token_id] += 100.0  # make it the favourite
        try:
            out = model.generate(**batch, max_new_tokens=4, do_sample=False)
        finally:
            model.get_output_embeddings().weight[model.config.video_token_id] -= 100.0
    assert model.config.video_token_id not in out[0, batch["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("do_sample", [False, True])
def test_non_finite_scores_stop_generation_with_a_clear_error(tiny_dir, bad, do_sample):
    model = TinyVideoForConditionalGeneration.from_pretrained(tiny_dir).eval()
    processor = TinyVideoProcessor.from_pretrained(tiny_dir)
    batch = processor(text=[chat_prompt("q")], videos=[video(2)])
    with torch.no_grad():
        model.language_model.model.norm.weight[0] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        model.generate(**batch, max_new_tokens=4, do_sample=do_sample)


@pytest.mark.parametrize("text", ["What colour?", "what colour " * 50, "what colour is the circle " * 800, "x" * 20_000])
@pytest.mark.parametrize("mode", [None, "option", "reason"])
@pytest.mark.parametrize("where", ["before the options", "after the options"])
def test_a_long_question_loses_the_middle_of_its_text_never_its_options_instruction_or_turn(tiny, caplog, text, mode, where):
    _, processor = tiny
    text = text.strip()  # a question's text as the prompt holds it
    question = f"{text}\nA. red\nB. blue" if where == "before the options" else f"Which?\nA. red\nB. blue\n{text}"
    full = chat_prompt(question, mode)
    prompt = question_prompt(processor, question, mode, 4)
    assert len(processor.tokenize(prompt, [4])) <= processor.model_max_length
    if len(processor.tokenize(full, [4])) <= processor.model_max_length:
        assert prompt == full and "shortened" not in caplog.text
        return
    before, after = full.split(text)
    assert prompt.startswith(before) and prompt.endswith(after) and after.endswith(" ASSISTANT:")
    middle = prompt[len(before) : len(prompt) - len(after)]
    head, tail = middle.split(SHORTENED)
    assert text.startswith(head) and text.endswith(tail) and len(head) > 100 and len(tail) > 100
    assert "shortened" in caplog.text


def test_a_prompt_that_cannot_fit_without_cutting_more_than_its_text_is_refused(tiny):
    _, processor = tiny
    processor.model_max_length = processor.num_visual_tokens(4) + 5
    try:
        with pytest.raises(InputError, match="fewer frames"):
            question_prompt(processor, "What colour?\nA. red\nB. blue", "option", 4)
    finally:
        processor.model_max_length = 2048


def test_training_loss_is_the_full_vocabulary_next_token_loss_over_the_supervised_tokens(tiny):
    """The output head runs only where a label is; the loss and its gradient must be those of every position."""
    model, processor = tiny
    conversations = [
        [{"from": "human", "value": "<image>\nwhat moves?"}, {"from": "gpt", "value": "the red square, to the left"}],
        [{"from": "human", "value": "<image>\nhow many objects are there at the end of the clip?"}, {"from": "gpt", "value": "2"}],
    ]
    rows = [processor.encode_conversation(c, num_frames=4) for c in conversations]
    batch = processor.pad(rows)
    pixels = processor(text=[chat_prompt("a"), chat_prompt("b")], videos=[video(4, 0), video(4, 1)])  # the frames only
    inputs = {**batch, "pixel_values_videos": pixels["pixel_values_videos"], "video_num_frames": pixels["video_num_frames"]}
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    connector = next(model.connector.parameters())
    grad = connector.grad.clone()
    model.zero_grad()
    embeds = model.embed_inputs(inputs["input_ids"], inputs["pixel_values_videos"], inputs["video_num_frames"])
    full = model.language_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], labels=inputs["labels"]).loss
    full.backward()
    assert torch.allclose(loss, full, atol=1e-6)
    assert torch.allclose(grad, connector.grad, atol=1e-6)
    supervised = int((inputs["labels"] != IGNORE_INDEX).sum())
    assert torch.allclose(model(**inputs, num_items_in_batch=torch.tensor(4 * supervised)).loss, full / 4, atol=1e-6)
