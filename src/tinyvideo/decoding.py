"""Decoding from ready prompt embeddings, each row leaving the batch when it ends.

`generate` carries every row of a batch to the longest answer: a batch of 64 questions decodes 64
rows until the last one stops. Here a row leaves the batch (and its cache rows go) at its end of
sequence, so the batch shrinks as answers finish. The prompt runs once; each prompt's `copies`
continuations (GRPO's G rollouts) start from copies of its cache. Rows draw their tokens through
`choose`: `greedy`, or `RowSeededSampling`, whose draws depend on each row's own seed only, so
batching never changes what a row samples. Evaluation (greedy or sampled answers) and GRPO's
rollouts decode here; `tinyvideo.inference` keeps `generate` for its beams and streaming.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import LogitsProcessorList

from tinyvideo.modeling import FiniteScores
from tinyvideo.scoring import token_positions

Choose = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def greedy(scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The likeliest token [N] for `scores` [N, V]; `rows` is unused (`Choose`'s signature)."""
    return scores.argmax(-1)


class RowSeededSampling:
    """One token per row, drawn from softmax(scores) with the row's own generator: the argmax of the scores
    plus Gumbel noise, -log(-log(u)) with u ~ U(0, 1) (the Gumbel-max trick).

    A row draws once per token it samples, so its tokens depend on its seed and its own scores only, not
    on the other rows of the batch nor on when they finish.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]

    def __call__(self, scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The tokens [N] for `scores` [N, V] (-inf where a token may not be drawn) of the rows `rows` [N]."""
        size, device = scores.shape[-1], scores.device
        generators = [self.generators[row] for row in rows.tolist()]
        uniform = torch.stack([torch.rand(size, generator=generator, device=device) for generator in generators])
        return (scores - torch.log(-torch.log(uniform))).argmax(-1)


@torch.no_grad()
def decode(
    model,
    prompt_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    choose: Choose = greedy,
    *,
    copies: int = 1,
    warpers: LogitsProcessorList | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """New tokens for left-padded prompts: [B * copies, L <= max_new_tokens], `pad_token_id` after a row's EOS.

    `prompt_embeds` [B, Lp, D] are the prompts' token embeddings with their videos spliced in
    (`model.embed_inputs`), so neither the vision tower nor the connector runs here; `attention_mask`
    [B, Lp] marks their real tokens. The copies of prompt b are rows b * copies ... b * copies +
    copies - 1; a row ends at any of the `eos_token_id` tokens. `choose` is called with the scores of
    the rows still decoding and their row numbers. `warpers` shape the scores first (temperature,
    top-k, top-p, as `generate` applies them); the video token is never chosen (the output head still
    has its row). Raises `ValueError` when `max_new_tokens` < 1 and `InputError` at a NaN or infinite
    next-token score, as `model.generate` does. The model is put in eval mode for the call (under
    activation checkpointing the cache is off in train mode) and its mode restored afterwards.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    warpers = LogitsProcessorList([FiniteScores(), *(warpers or [])])
    language_model = model.language_model
    mask = attention_mask.repeat_interleave(copies, 0)
    rows = torch.arange(mask.shape[0], device=mask.device)  # the rows still decoding
    ends = torch.tensor([] if eos_token_id is None else eos_token_id, dtype=torch.long, device=mask.device).reshape(-1)
    pad = pad_token_id if pad_token_id is not None else int(ends[0]) if len(ends) else 0
    tokens = torch.full((len(rows), max_new_tokens), pad, dtype=torch.long, device=mask.device)
    positions = attention_mask.sum(1, keepdim=True).repeat_interleave(copies, 0)
    training = model.training
    model.eval()
    try:
        output = language_model(
            inputs_embeds=prompt_embeds.detach(),
            attention_mask=attention_mask,
            position_ids=token_positions(attention_mask),
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = output.cache, output.logits[:, -1].repeat_interleave(copies, 0)
        cache.batch_repeat_interleave(copies)
        for step in range(max_new_tokens):
            scores = logits.float()
            scores[:, model.config.video_token_id] = -float("inf")
            chosen = choose(warpers(None, scores), rows)
            tokens[rows, step] = chosen
            going = ~torch.isin(chosen, ends)
            if step + 1 == max_new_tokens or not going.any():
                return tokens[:, : step + 1]
            if not going.all():
                rows, chosen, mask, positions = rows[going], chosen[going], mask[going], positions[going]
                cache.batch_select_indices(going.nonzero().squeeze(1))
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            step_inputs = {"input_ids": chosen[:, None], "attention_mask": mask, "position_ids": positions + step}
            logits = language_model(**step_inputs, cache=cache, use_cache=True).logits[:, -1]
    finally:
        model.train(training)
