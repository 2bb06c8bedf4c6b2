"""`benchmarks/scene_oracle.py`'s scoring: the Cloze score of a reply is its tokens' log-probability after
the prompt, whatever the padding, and the two prompts ask what each mode asks."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import scene_oracle  # noqa: E402

from tinyvideo.data.synth import design_split
from tinyvideo.data.synth_formats import option_lines
from tinyvideo.data.synth_text import caption
from tinyvideo.scratch import spare_rows, tiny_config, train_tokenizer
from tinyvideo.train.language import letter_token_ids

CLIPS = design_split(0, "test", 2)


def tiny_language_model():
    texts = [caption(c.scene) + c.question.question + option_lines(c.question.options) for c in CLIPS]
    tokenizer = train_tokenizer(texts + ["ASSISTANT: A B C D E"], vocab_size=300, letters_apart=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_config(spare_rows(tokenizer), tokenizer.eos_token_id).text_config).eval()
    return model, tokenizer


def test_a_replys_score_is_the_sum_of_its_token_logprobs_in_a_padded_batch():
    model, tokenizer = tiny_language_model()
    prompts = [scene_oracle.prompt_ids(tokenizer, c, "caption", "cloze") for c in CLIPS[:3]]
    replies = [scene_oracle.reply_ids(tokenizer, text) for text in ("left", "the red circle", "2")]
    with torch.no_grad():
        batched = scene_oracle.reply_logprobs(model, tokenizer, prompts, replies)
        for row, (prompt, reply) in enumerate(zip(prompts, replies)):
            ids = torch.tensor([prompt + reply])
            logprobs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            alone = sum(logprobs[len(prompt) - 1 + i, token] for i, token in enumerate(reply))
            torch.testing.assert_close(batched[row], alone, atol=1e-4, rtol=1e-4)


def test_option_prompts_end_before_the_letter_and_cloze_prompts_have_no_options():
    _, tokenizer = tiny_language_model()
    clip = CLIPS[0]
    option = tokenizer.decode(scene_oracle.prompt_ids(tokenizer, clip, "caption", "option"))
    cloze = tokenizer.decode(scene_oracle.prompt_ids(tokenizer, clip, "frames", "cloze"))
    assert option_lines(clip.question.options) in option and option.rstrip().endswith("ASSISTANT:")
    assert caption(clip.scene) in option and "A. " not in cloze and "0: " in cloze
    assert cloze.rstrip().endswith("ASSISTANT:") and clip.question.question in cloze


def test_the_both_objective_is_the_mean_of_its_halves():
    model, tokenizer = tiny_language_model()
    letters = letter_token_ids(tokenizer)
    clips = CLIPS[:4]
    with torch.no_grad():
        both = scene_oracle.training_loss(model, tokenizer, clips, "caption", "both", letters)
        answer = scene_oracle.training_loss(model, tokenizer, clips[:2], "caption", "answer", letters)
        letter = scene_oracle.training_loss(model, tokenizer, clips[2:], "caption", "letter", letters)
    torch.testing.assert_close(both, (answer + letter) / 2, atol=1e-5, rtol=1e-5)
