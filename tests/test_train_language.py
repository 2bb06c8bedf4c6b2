"""`tinyvideo train language`: the rows and their curriculum, the scoring, and a run that resumes exactly."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen2ForCausalLM

from tinyvideo.data.synth import design_split
from tinyvideo.data.synth_questions import LETTERS
from tinyvideo.demo.plan import SCRATCH_RECIPES as RECIPES
from tinyvideo.scratch import spare_rows, tiny_config, train_tokenizer
from tinyvideo.train.common import load_config
from tinyvideo.train.language import (
    BindingRows,
    LanguageConfig,
    binding_accuracy,
    binding_prompt,
    left_padded,
    next_token_logits,
    prompt_ids,
    suite_tokenizer,
    train,
)
from tinyvideo.train.runs import FINAL_MODEL


@pytest.fixture(scope="module")
def clips():
    return design_split(0, "train", 12)


@pytest.fixture(scope="module")
def tokenizer(clips):
    return train_tokenizer([binding_prompt(c.question) + " A" for c in clips], vocab_size=400)


def test_prompt_states_the_answer_and_ends_where_the_letter_comes(clips):
    question = clips[1].question
    text = binding_prompt(question)
    assert text.endswith(f"\nThe answer is {question.answer_text}. ASSISTANT:")
    for letter, option in zip(LETTERS, question.options):
        assert f"\n{letter}. {option}\n" in text
    assert "Answer with the option's letter from the given choices directly." in text


def test_rows_start_with_single_word_options_then_draw_from_every_task(clips, tokenizer):
    rows = BindingRows(tokenizer, clips, length=400, single_word_rows=200, seed=3)
    letters = [tokenizer(f" {letter}")["input_ids"][-1] for letter in LETTERS]

    def question(i):
        return next(q for q, ids in zip(rows.questions, rows.prompts) if ids == rows[i]["input_ids"])

    early = [question(i) for i in range(200)]
    late = [question(i) for i in range(200, 400)]
    assert all(" " not in option for q in early for option in q.options)
    assert any(" " in option for q in late for option in q.options)
    assert {q.task for q in late} == {c.question.task for c in clips}
    assert all(rows[i]["letter"] == letters[question(i).answer_index] for i in range(0, 400, 7))
    assert [rows[i]["input_ids"] for i in range(50)] == [rows[i]["input_ids"] for i in range(50)]  # fixed order


def test_left_padding_gives_each_prompt_its_unpadded_logits(clips, tokenizer):
    config = tiny_config(spare_rows(tokenizer), tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config.text_config).eval()
    prompts = [tokenizer(binding_prompt(c.question))["input_ids"] for c in clips[:5]]
    assert len({len(p) for p in prompts}) > 1
    batched = next_token_logits(model, left_padded(tokenizer, prompts))
    for prompt, row in zip(prompts, batched):
        alone = model(input_ids=torch.tensor([prompt])).logits[0, -1]
        torch.testing.assert_close(row, alone, atol=1e-5, rtol=1e-5)


def test_accuracy_is_the_share_whose_likeliest_offered_letter_is_the_answer(clips, tokenizer):
    config = tiny_config(spare_rows(tokenizer), tokenizer.eos_token_id)
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(config.text_config).eval()
    letters = [tokenizer(f" {letter}")["input_ids"][-1] for letter in LETTERS]
    questions = [c.question for c in clips]
    hits = []
    for q in questions:
        logits = model(input_ids=torch.tensor([tokenizer(binding_prompt(q))["input_ids"]])).logits[0, -1]
        hits.append(int(logits[letters[: len(q.options)]].argmax()) == q.answer_index)
    scores = binding_accuracy(model, tokenizer, questions, batch_size=5)
    assert scores["all"] == pytest.approx(100.0 * sum(hits) / len(hits))
    assert 0 < sum(hits) < len(hits)  # the check can tell right from wrong


def recipe(out, steps: int, **extra) -> LanguageConfig:
    settings = {
        "pool_per_task": 8, "single_word_steps": 2, "eval_per_task": 2, "tokenizer_per_task": 4, "vocab_size": 400,
        "hidden_size": 32, "num_layers": 1, "caption_rows": 2, "output_dir": str(out), "max_steps": steps,
        "per_device_train_batch_size": 4, "learning_rate": 1e-3, "lr_scheduler_type": "constant",
        "save_strategy": "steps", "save_steps": 3,
        "eval_steps": 3, "logging_steps": 1, "report_to": "none", "seed": 0, "use_cpu": True, **extra,
    }  # fmt: skip
    return load_config(LanguageConfig, None, [token for k, v in settings.items() for token in (f"--{k}", str(v))])


def test_a_run_stopped_and_resumed_ends_with_the_weights_of_one_that_was_not(tmp_path, caplog):
    straight = train(recipe(tmp_path / "straight", 6))
    train(recipe(tmp_path / "resumed", 3))
    (tmp_path / "resumed" / FINAL_MODEL).rename(tmp_path / "first-half")
    with caplog.at_level("INFO"):
        resumed = train(recipe(tmp_path / "resumed", 6))
    assert "resuming from" in caplog.text
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    first = load_file(tmp_path / "first-half" / "model.safetensors")
    assert not all(torch.equal(first[k], a[k]) for k in a)  # the second half did train
    # The folder is a language model with its tokenizer, as `language_model_path` takes it.
    model = Qwen2ForCausalLM.from_pretrained(straight)
    tokenizer = AutoTokenizer.from_pretrained(straight)
    assert model.config.vocab_size > len(tokenizer)  # a spare row for the video token


def test_letters_apart_tokenizer_names_an_option_with_its_own_letter_token(tmp_path, clips):
    texts = [binding_prompt(c.question) + f" {c.question.answer}" for c in clips] + ["ASSISTANT: A B C D E"] * 50
    together = train_tokenizer(texts, vocab_size=700)
    apart = train_tokenizer(texts, vocab_size=700, letters_apart=True)
    text = "USER: Which?\nA. up\nB. the red circle ASSISTANT: B<|endoftext|>"
    assert [together.decode([i]) for i in together(text)["input_ids"]][-2:] == [" B", "<|endoftext|>"]
    tokens = [apart.decode([i]) for i in apart(text)["input_ids"]]
    assert tokens[-3:] == [" ", "B", "<|endoftext|>"] and tokens.count("B") == 2  # the option's token, repeated
    assert "".join(tokens) == text  # nothing lost: it still encodes any text
    # Only a lone letter loses its space: a longer word keeps it, so no stray letter token precedes a reply.
    assert [apart.decode([i]) for i in apart(" ASSISTANT:")["input_ids"]] == [
        together.decode([i]) for i in together(" ASSISTANT:")["input_ids"]
    ]
    # Saved beside a Qwen2 model, it loads as every loader of that model reads it.
    config = tiny_config(spare_rows(apart), apart.eos_token_id)
    Qwen2ForCausalLM(config.text_config).save_pretrained(tmp_path)
    apart.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text)["input_ids"] == apart(text)["input_ids"] and again.eos_token_id == apart.eos_token_id
    # The rows end with the reply's space, so the next token is the letter.
    assert prompt_ids(apart, clips[0].question)[-1] == apart(" ")["input_ids"][-1]
    assert prompt_ids(together, clips[0].question) == together(binding_prompt(clips[0].question))["input_ids"]


RECIPE = RECIPES / "language.yaml"
# The vocabulary (token -> id) the recipe's measured curve was trained with. Which embedding row each token
# starts from decides whether the run ever leaves chance (see `tinyvideo.train.language`), so another
# vocabulary or another order of ids is another run, whatever its settings.
RECIPE_VOCABULARY_SHA256 = "cc8e2b01f8be786815ee3c0b225de288ee599d1d8bb23eb89782cbe58c98bd2d"


def test_the_recipe_reads_the_vocabulary_its_curve_was_measured_with():
    tokenizer = suite_tokenizer(load_config(LanguageConfig, str(RECIPE), []))
    vocabulary = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert [i for _, i in vocabulary] == list(range(len(vocabulary))) == list(range(730))
    assert hashlib.sha256(json.dumps(vocabulary).encode()).hexdigest() == RECIPE_VOCABULARY_SHA256


def test_the_recipe_loads():
    config = load_config(LanguageConfig, str(RECIPE), [])
    assert config.max_steps > config.single_word_steps > 0 and config.caption_rows == 0
    with pytest.raises(ValueError, match="max_steps"):
        load_config(LanguageConfig, str(RECIPE), ["--max_steps", "-1"])
