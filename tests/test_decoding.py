"""Decoding from prompt embeddings: rows leave the batch at their end and still decode what `generate` does."""

from __future__ import annotations

import pytest
import torch

from tinyvideo.decoding import RowSeededSampling, decode
from tinyvideo.errors import InputError
from tinyvideo.scratch import build_tiny

TEXTS = ["Which colour is the ball?", "The ball is red.", "A. red\nB. blue"]


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_tiny(TEXTS, seed=0)
    # Large random weights: greedy answers that vary from token to token (a fresh tiny model repeats one),
    # so any slip in positions or cache rows changes them.
    generator = torch.Generator().manual_seed(0)
    for weight in model.language_model.parameters():
        if weight.dim() == 2:
            weight.data = torch.randn(weight.shape, generator=generator) * 0.3
    batch = processor.pad([{"input_ids": processor.tokenizer(text)["input_ids"]} for text in TEXTS], padding_side="left")
    return model.eval(), batch


def test_greedy_decoding_equals_generate_with_rows_ending_at_different_steps(tiny):
    model, batch = tiny
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask == 0).any()  # left padding in play

    def generated(eos):
        output = model.language_model.generate(
            input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=10, eos_token_id=eos, pad_token_id=0,
            suppress_tokens=[model.config.video_token_id],
        )
        return output[:, ids.shape[1] :]

    free = generated(None).tolist()
    expected = generated([free[0][2], free[1][5]])  # two end tokens: rows end at different steps
    lengths = [row.index(0) if 0 in row else len(row) for row in expected.tolist()]
    assert len(set(lengths)) > 1 and min(lengths) < 10
    ours = decode(model, model.get_input_embeddings()(ids), mask, 10, eos_token_id=[free[0][2], free[1][5]], pad_token_id=0)
    assert ours.tolist() == expected.tolist()


def test_nan_scores_are_refused(tiny):
    model, batch = tiny
    embeds = torch.full((1, 3, model.config.text_config.hidden_size), float("nan"))
    with pytest.raises(InputError, match="NaN or infinite"):
        decode(model, embeds, torch.ones(1, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="at least 1"):
        decode(model, embeds, torch.ones(1, 3, dtype=torch.long), 0)


def test_row_seeded_sampling_draws_from_the_softmax_of_the_scores():
    """The argmax of the scores plus each row's Gumbel noise is a draw from softmax(scores)."""
    probabilities = torch.tensor([0.6, 0.3, 0.1, 0.0])
    scores = probabilities.log().expand(4000, 4).clone()
    chosen = RowSeededSampling(range(4000))(scores, torch.arange(4000))
    frequencies = torch.bincount(chosen, minlength=4) / 4000
    assert torch.allclose(frequencies, probabilities, atol=0.03) and frequencies[3] == 0
