"""GRPO training: rollouts and log-probs from cached video features, the trainer, its data, config and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import replica_digests
from launch import launch
from safetensors.torch import load_file
from torch.utils.data import SequentialSampler
from transformers import LogitsProcessor, LogitsProcessorList, TopKLogitsWarper

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.cli import main
from tinyvideo.processing import pack_videos
from tinyvideo.processing import preprocess_frames
from tinyvideo.prompts import REASON_INSTRUCTION, SYSTEM
from tinyvideo.scoring import completion_logprobs, token_logprobs
from tinyvideo.scratch import build_tiny
from tinyvideo.train.common import apply_tuning, load_config
from tinyvideo.train.grpo import GRPOConfig, GRPODataset, grpo_prompt
from tinyvideo.train.grpo_rollouts import prompt_batch, prompt_embeddings, rollout_seeds, sample_completions
from tinyvideo.train import grpo_trainer
from tinyvideo.train.grpo_trainer import GRPOTrainer, adapters_disabled, only_adapters_train
from tinyvideo.video import write_video

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": (230, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 240)}
PROBLEM = "What colour is the video?\nOptions:\nA. red\nB. green\nC. blue"
METRICS = (
    "reward", "reward_std", "rewards/accuracy/mean", "rewards/format/mean", "accuracy", "format_rate",
    "completion_length", "kl", "clip_ratio/region_mean", "frac_reward_zero_std", "reflection_rate",
    "rewards/accuracy/frac_zero_std",
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    """Six one-colour clips with GRPO rows about them, and a tiny model."""
    root = tmp_path_factory.mktemp("grpo")
    rows = []
    for index, name in enumerate(list(COLOURS) * 2):
        frames = np.zeros((6, 32, 32, 3), np.uint8) + np.array(COLOURS[name], np.uint8)
        write_video(root / "videos" / f"{index}.mp4", frames)
        letter = "ABC"[list(COLOURS).index(name)]
        solution, video = f"<answer>{letter}</answer>", f"./videos/{index}.mp4"
        rows.append({"problem": PROBLEM, "solution": solution, "video_filename": video, "id": index})
    (root / "grpo.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    model, processor = build_tiny([PROBLEM, "<think> The video is red. </think> <answer>A</answer>"], seed=0)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return root


def settings(suite: Path, out: Path, **overrides) -> dict:
    return {
        "model_name_or_path": str(suite / "model"),
        "data_path": str(suite / "grpo.jsonl"),
        "output_dir": str(out),
        "num_frames": 4,
        "num_generations": 4,
        "max_completion_length": 8,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-2,
        "max_steps": 2,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        **overrides,
    }


@pytest.fixture(scope="module")
def tiny(suite):
    model = TinyVideoForConditionalGeneration.from_pretrained(suite / "model").eval()
    return model, TinyVideoProcessor.from_pretrained(suite / "model")


def clips(processor, names):
    return [preprocess_frames(np.zeros((3, 32, 32, 3), np.uint8) + np.array(COLOURS[n], np.uint8), 32) for n in names]


def published_logprobs(model, prompt_ids, video, completions):
    """The published way (docs/published-format.md 4.4 step 5): the prompt and video repeated per rollout, a forward on
    pixel values without attention mask, full-sequence logits, the last Lc positions kept."""
    group = len(completions)
    ids = torch.cat([torch.tensor(prompt_ids).repeat(group, 1), completions], dim=1)
    pixels, counts = pack_videos([video] * group)
    logits = model(input_ids=ids, pixel_values_videos=pixels, video_num_frames=counts).logits
    return token_logprobs(logits[:, :-1][:, -completions.shape[1] :], completions)


def test_cached_feature_logprobs_equal_a_full_forward_on_pixels_and_each_prompt_uses_its_own_video(tiny):
    model, processor = tiny
    questions = [PROBLEM, "Which colour?\nA. red\nB. blue"]  # different lengths: the first prompt is unpadded
    videos = clips(processor, ["red", "blue"])
    ids = [processor.tokenize(grpo_prompt(q, processor), [len(v)]) for q, v in zip(questions, videos)]
    prompts = prompt_batch(model, processor, ids, videos)
    assert prompts.attention_mask[1].sum() < prompts.attention_mask.shape[1]  # the second is left-padded
    embeds = prompt_embeddings(model, prompts)
    eos = processor.tokenizer.eos_token_id
    completions = sample_completions(model, prompts, embeds, 3, 6, seeds=[0, 1], eos_token_id=eos)
    assert completions.shape == (6, 6)
    with torch.no_grad():
        ours = completion_logprobs(model, embeds, prompts.attention_mask, completions, 3)
        for index in range(2):
            group = completions[3 * index : 3 * index + 3]
            own = published_logprobs(model, ids[index], videos[index], group)
            assert torch.allclose(ours[3 * index : 3 * index + 3], own, atol=1e-5)
        # The published trainer kept only the last prompt's video: that gives other log-probs.
        other = published_logprobs(model, ids[0], videos[1], completions[:3])
        assert not torch.allclose(ours[:3], other, atol=1e-3)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_completions_after_one_shared_prompt_score_and_backpropagate_as_with_a_prompt_each(suite, attention):
    """GRPO's log-probs run each prompt once with its G completions after it in the same row; the log-probs and
    the prompt's gradient are those of the plain layout, the prompt repeated before each completion."""
    model = TinyVideoForConditionalGeneration.from_pretrained(suite / "model").eval()
    processor = TinyVideoProcessor.from_pretrained(suite / "model")
    model.language_model.set_attn_implementation(attention)
    questions = [PROBLEM, "Which colour?\nA. red\nB. blue"]  # the second prompt is left-padded
    videos = clips(processor, ["red", "blue"])
    ids = [processor.tokenize(grpo_prompt(q, processor), [len(v)]) for q, v in zip(questions, videos)]
    prompts = prompt_batch(model, processor, ids, videos)
    completions = sample_completions(model, prompts, prompt_embeddings(model, prompts), 3, 6, seeds=[0, 1])
    embeds = prompt_embeddings(model, prompts).detach().requires_grad_(True)

    shared = completion_logprobs(model, embeds, prompts.attention_mask, completions, 3)
    rows = torch.cat([embeds.repeat_interleave(3, 0), model.get_input_embeddings()(completions)], dim=1)
    mask = torch.cat([prompts.attention_mask.repeat_interleave(3, 0), torch.ones_like(completions)], dim=1)
    logits = model(inputs_embeds=rows, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
    plain = token_logprobs(logits[:, -completions.shape[1] - 1 : -1], completions)
    assert torch.allclose(shared, plain, atol=1e-5)
    weights = torch.randn(shared.shape, generator=torch.Generator().manual_seed(0))
    (from_shared,) = torch.autograd.grad((shared * weights).sum(), embeds)
    (from_plain,) = torch.autograd.grad((plain * weights).sum(), embeds)
    assert from_plain.abs().max() > 0 and torch.allclose(from_shared, from_plain, atol=1e-6)


def test_rollouts_never_sample_the_video_token(tiny):
    """The output head keeps a row for the video token; a rollout holding it would break the log-prob pass."""
    model, processor = tiny
    videos = clips(processor, ["red"])
    prompts = prompt_batch(model, processor, [processor.tokenize(grpo_prompt(PROBLEM, processor), [len(videos[0])])], videos)
    embeds = prompt_embeddings(model, prompts)
    head = model.get_output_embeddings().weight
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head[model.config.video_token_id] = 10 * head.abs().max()  # the video token's logit dominates
            completions = sample_completions(model, prompts, embeds, 4, 8, seeds=[0])
    finally:
        with torch.no_grad():
            head.copy_(saved)
    assert completions.numel() and not (completions == model.config.video_token_id).any()


def test_a_rollout_is_the_same_whichever_prompts_share_its_generate_call(tiny):
    """Each rollout draws from its own seeded generator: two prompts sampled together give the rollouts each
    gives alone (the trainer samples a step's prompts in one call), and another seed gives others."""
    model, processor = tiny
    questions = [PROBLEM, "Which colour?\nA. red\nB. blue"]
    videos = clips(processor, ["red", "blue"])
    ids = [processor.tokenize(grpo_prompt(q, processor), [len(v)]) for q, v in zip(questions, videos)]

    def rollouts(indices, seeds):
        prompts = prompt_batch(model, processor, [ids[i] for i in indices], [videos[i] for i in indices])
        completions = sample_completions(model, prompts, prompt_embeddings(model, prompts), 4, 10, seeds=seeds)
        return [row.tolist() for row in completions]

    together = rollouts([0, 1], [7, 8])
    assert together == rollouts([0], [7]) + rollouts([1], [8])
    assert len({tuple(row) for row in together}) > 1 and rollouts([0], [9]) != together[:4]


class GumbelNoise(LogitsProcessor):
    """The same draws inside `generate`: each row's Gumbel noise from its own generator, for a `do_sample=False` call."""

    def __init__(self, seeds):
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids, scores):
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        return scores - torch.log(-torch.log(uniform))


def test_decoding_drops_finished_rollouts_and_samples_what_generate_would(tiny, monkeypatch):
    """`generate` carries a finished row to the longest; the decoding drops it from the batch. Given the same
    draws, both give the same rollouts, each row's EOS followed by padding."""
    model, processor = tiny
    questions = [PROBLEM, "Which colour?\nA. red\nB. blue"]
    videos = clips(processor, ["red", "blue"])
    ids = [processor.tokenize(grpo_prompt(q, processor), [len(v)]) for q, v in zip(questions, videos)]
    prompts = prompt_batch(model, processor, ids, videos)
    embeds = prompt_embeddings(model, prompts)
    head = model.get_output_embeddings().weight
    monkeypatch.setattr(head, "data", head.data * 3)  # sharp scores: any slip in positions or cache changes tokens

    def reference(eos):
        output = model.language_model.generate(
            input_ids=prompts.input_ids.repeat_interleave(3, 0),
            inputs_embeds=embeds.repeat_interleave(3, 0),
            attention_mask=prompts.attention_mask.repeat_interleave(3, 0),
            do_sample=False,
            logits_processor=LogitsProcessorList([TopKLogitsWarper(50), GumbelNoise(rollout_seeds([5, 6], 3))]),
            max_new_tokens=12, eos_token_id=eos, pad_token_id=0, suppress_tokens=[model.config.video_token_id],
        )
        return output[:, prompts.input_ids.shape[1] :]

    first = reference(None)[0].tolist()
    eos = next(token for step, token in enumerate(first) if step >= 2 and token not in first[:step])
    ours = sample_completions(model, prompts, embeds, 3, 12, seeds=[5, 6], eos_token_id=eos, pad_token_id=0)
    assert ours.tolist() == reference(eos).tolist()
    ended = first.index(eos)
    assert ours[0, ended] == eos and (ours[0, ended + 1 :] == 0).all() and ours.shape[1] > ended + 1


def test_dataset_builds_the_published_prompt_and_skips_bad_rows(suite, tiny, tmp_path, caplog):
    _, processor = tiny
    rows = [json.loads(line) for line in (suite / "grpo.jsonl").read_text().splitlines()]
    broken = [rows[0], {"problem": PROBLEM}, {**rows[1], "video_filename": "./videos/missing.mp4"}, rows[2]]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in broken) + "not json\n")
    config = GRPOConfig(**settings(suite, tmp_path / "out", data_path=str(data), video_root=str(suite)))
    dataset = GRPODataset(config.data_path, config.video_root, processor, config)
    assert dataset.malformed_rows == [1, 4] and len(dataset) == 3
    example = dataset[1]  # the missing video: replaced by the next row, and reported
    assert example["row"] == 3 and example["skipped"] == [2] and "missing.mp4" in caplog.text
    prompt = dataset[0]["prompt"]
    assert prompt == f"{SYSTEM}USER: <image>\n{PROBLEM} {REASON_INSTRUCTION} ASSISTANT:"
    assert dataset[0]["pixel_values"].shape == (4, 3, 32, 32)
    assert dataset[0]["columns"]["solution"] == "<answer>A</answer>" and dataset[0]["columns"]["id"] == 0


def count_calls(monkeypatch, module, method):
    """A list that grows by one at each call of `module.method` until the test ends."""
    calls = []
    original = getattr(module, method)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, method, counted)
    return calls


def test_training_changes_the_weights_logs_every_metric_and_encodes_each_video_once(suite, tmp_path, monkeypatch):
    """Two micro-batches of two prompts a step: the step's four prompts share one vision pass and one decoding."""
    config = GRPOConfig(
        **settings(
            suite, tmp_path / "out", report_to="tensorboard", log_completions_steps=1, gradient_accumulation_steps=2
        )
    )
    model = TinyVideoForConditionalGeneration.from_pretrained(config.model_name_or_path)
    processor = TinyVideoProcessor.from_pretrained(config.model_name_or_path)
    model = apply_tuning(model, config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = GRPOTrainer(model, config, processor, GRPODataset(config.data_path, None, processor, config))
    assert trainer.ref_model is not None and not any(p.requires_grad for p in trainer.ref_model.parameters())
    vision_calls = count_calls(monkeypatch, model.vision_tower.embeddings, "forward")
    sampling_calls = count_calls(monkeypatch, grpo_trainer, "sample_completions")
    trainer.train()

    assert len(vision_calls) == 2 and len(sampling_calls) == 2  # per step: one vision pass, one decoding
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert any(name.startswith("language_model") for name in changed)
    assert any(name.startswith("connector") for name in changed)
    assert not any(name.startswith("vision_tower") for name in changed)
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        missing = [name for name in METRICS if name not in entry]
        assert not missing, f"not logged: {missing}"
        assert entry["completion_length"] <= 8 and 0 <= entry["format_rate"] <= 1
    samples = [json.loads(line) for line in (tmp_path / "out" / "completions.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 4 * 4 and {"completion", "reward", "advantage", "solution"} <= set(samples[0])
    assert all(len({s["row"] for s in samples if s["step"] == step}) == 4 for step in (1, 2))
    solutions = [json.loads(line)["solution"] for line in (suite / "grpo.jsonl").read_text().splitlines()]
    assert all(sample["solution"] == solutions[sample["row"]] for sample in samples)  # scored on its own row
    for step, entry in enumerate(logged, 1):
        right = [s["rewards/accuracy"] for s in samples if s["step"] == step]
        uniform = [len(set(right[first : first + 4])) == 1 for first in range(0, len(right), 4)]
        assert entry["rewards/accuracy/frac_zero_std"] == sum(uniform) / len(uniform)
    assert list((tmp_path / "out" / "runs").rglob("events.out.tfevents*"))


def test_beta_zero_builds_no_reference_model(suite, tmp_path, monkeypatch):
    def no_reference(*args, **kwargs):
        raise AssertionError("the reference policy was used")

    monkeypatch.setattr(GRPOTrainer, "_reference_logprobs", no_reference)
    config = GRPOConfig(**settings(suite, tmp_path / "out", beta=0.0, max_steps=1))
    model = apply_tuning(TinyVideoForConditionalGeneration.from_pretrained(config.model_name_or_path), config)
    processor = TinyVideoProcessor.from_pretrained(config.model_name_or_path)
    trainer = GRPOTrainer(model, config, processor, GRPODataset(config.data_path, None, processor, config))
    assert trainer.ref_model is None
    trainer.train()
    assert "kl" not in trainer.state.log_history[0]


def test_with_only_lora_training_the_reference_is_the_adapter_free_model(suite, tiny, tmp_path):
    base, processor = tiny
    config = GRPOConfig(
        **settings(suite, tmp_path, tune_language_model="lora", tune_connector="frozen", lora_r=4, max_steps=1)
    )
    model = apply_tuning(TinyVideoForConditionalGeneration.from_pretrained(config.model_name_or_path), config)
    assert only_adapters_train(model)
    trainer = GRPOTrainer(model, config, processor, GRPODataset(config.data_path, None, processor, config))
    assert trainer.ref_model is None  # no copy: the reference is the model with its adapters off
    trainer.train()
    assert "kl" in trainer.state.log_history[0] and only_adapters_train(model)  # adapters back on, still training
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a trained adapter
    ids = torch.tensor([processor.tokenize(grpo_prompt(PROBLEM, processor), [3])])
    video = clips(processor, ["green"])[0]
    with torch.no_grad():
        adapted = model(input_ids=ids, pixel_values_videos=video).logits
        with adapters_disabled(model):
            reference = model(input_ids=ids, pixel_values_videos=video).logits
        original = base(input_ids=ids, pixel_values_videos=video).logits
    assert torch.allclose(reference, original, atol=1e-5) and not torch.allclose(adapted, original, atol=1e-3)


def test_num_iterations_reuses_each_batch_of_rollouts(suite, tmp_path, monkeypatch):
    config = GRPOConfig(**settings(suite, tmp_path / "out", num_iterations=2, max_steps=4, epsilon=0.1))
    model = apply_tuning(TinyVideoForConditionalGeneration.from_pretrained(config.model_name_or_path), config)
    processor = TinyVideoProcessor.from_pretrained(config.model_name_or_path)
    trainer = GRPOTrainer(model, config, processor, GRPODataset(config.data_path, None, processor, config))
    sampling_calls = count_calls(monkeypatch, grpo_trainer, "sample_completions")
    trainer.train()
    assert len(sampling_calls) == 2  # 4 updates on 2 batches of rollouts
    entries = [e for e in trainer.state.log_history if "loss" in e]
    assert "reward" in entries[0] and "reward" not in entries[1]  # scored once, when sampled
    assert all("clip_ratio/region_mean" in e for e in entries)


def test_reused_rollouts_must_belong_to_the_same_prompts(suite, tmp_path):
    """Rollouts are reused by their micro-batch's place in the step: a sampler that does not repeat the
    step's prompts is an error, not answers scored against another question."""
    config = GRPOConfig(**settings(suite, tmp_path / "out", num_iterations=2, max_steps=2))
    model = apply_tuning(TinyVideoForConditionalGeneration.from_pretrained(config.model_name_or_path), config)
    processor = TinyVideoProcessor.from_pretrained(config.model_name_or_path)
    dataset = GRPODataset(config.data_path, None, processor, config)
    trainer = GRPOTrainer(model, config, processor, dataset)
    trainer._get_train_sampler = lambda *args: SequentialSampler(dataset)  # no repeats
    with pytest.raises(RuntimeError, match="would be reused for rows"):
        trainer.train()


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_resume_from_a_checkpoint_continues_the_same_run(suite, tmp_path):
    """Killed after the step-2 checkpoint: the same command finishes with the very weights and rollouts of
    a run that never stopped (same data order, same seeded sampling)."""
    values = settings(suite, tmp_path / "full", max_steps=4, save_strategy="steps", save_steps=2)
    full = write_yaml(tmp_path / "full.yaml", values)
    assert main(["train", "grpo", "--config", str(full)]) == 0
    killed = tmp_path / "killed"
    (killed / "checkpoint-2").mkdir(parents=True)
    for item in (tmp_path / "full" / "checkpoint-2").iterdir():
        (killed / "checkpoint-2" / item.name).write_bytes(item.read_bytes())
    assert main(["train", "grpo", "--config", str(full), "--output_dir", str(killed)]) == 0

    history = {}
    for run in ("full", "killed"):
        state = json.loads((tmp_path / run / "checkpoint-4" / "trainer_state.json").read_text())
        history[run] = {e["step"]: e for e in state["log_history"] if "loss" in e}
    assert sorted(history["killed"]) == [1, 2, 3, 4]
    for step in (3, 4):
        assert history["killed"][step]["reward"] == history["full"][step]["reward"]
        assert history["killed"][step]["completion_length"] == history["full"][step]["completion_length"]
    first = load_file(tmp_path / "full" / "model" / "model.safetensors")
    second = load_file(killed / "model" / "model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_published_recipe_config():
    config = load_config(GRPOConfig, REPO / "configs" / "grpo_r1.yaml", ["--use_cpu", "true", "--bf16", "false"])
    assert (config.num_generations, config.beta, config.num_frames, config.max_completion_length) == (8, 0.01, 16, 512)
    assert (config.temperature, config.top_k, config.top_p) == (1.0, 50, 1.0)
    assert (config.loss_type, config.scale_rewards, config.reward_combination) == ("grpo", "group", "r1")
    assert config.reward_funcs == ["accuracy", "format"] and config.advantage_noise_std == 0.02
    assert config.learning_rate == 1e-6 and config.lr_scheduler_type == "cosine" and config.warmup_steps == 0.03
    assert config.num_iterations == 1 and config.num_train_epochs == 1 and config.activation_checkpointing
    assert config.tune_vision_tower == "frozen" and config.tune_language_model == config.tune_connector == "full"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"loss_type": "ppo"}, "loss_type"),
        ({"scale_rewards": "max"}, "scale_rewards"),
        ({"reward_funcs": ["accuracy", "length"]}, "reward_funcs"),
        ({"num_generations": 1}, "num_generations"),
        ({"reward_funcs": ["accuracy"]}, "an accuracy and a format"),
        ({"reward_funcs": ["accuracy", "format"], "reward_weights": [1.0]}, "there are none"),
        ({"reward_combination": "weighted_sum", "reward_weights": [1.0]}, "1 reward weights for 2"),
        ({"tune_vision_tower": "full"}, "vision tower"),
        ({"data_path": None}, "data_path"),
    ],
)
def test_bad_settings_are_refused(suite, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        GRPOConfig(**{**settings(suite, tmp_path), **override})


def test_a_step_that_needs_more_prompts_than_the_data_set_has_is_refused(suite, tmp_path):
    values = settings(suite, tmp_path / "out", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="one optimizer step takes 8 prompts; the data set has 6"):
        main(["train", "grpo", "--config", str(write_yaml(tmp_path / "big.yaml", values))])


def test_two_processes_sample_score_and_step_as_one_process_accumulating_two_batches(suite, tmp_path):
    """`accelerate launch` with 2 processes x 1 prompt against 1 process x 1 prompt x 2 accumulation
    steps: the same rollouts, rewards and advantages (each group scored whole on its process, the noise
    drawn per rollout), the logged reward the mean over both processes' rollouts, the same loss
    (measured: at most 2e-9 apart), and replicas holding the same weights after every step. Rewarded by
    `replica_digests.distinct_tokens`, which varies within a group."""
    values = settings(
        suite, tmp_path / "two", per_device_train_batch_size=1, max_steps=3, log_completions_steps=1, save_strategy="steps",
        save_steps=3, reward_combination="weighted_sum", max_completion_length=12,
    )
    two = write_yaml(tmp_path / "two.yaml", values)
    launch(["grpo", str(tmp_path / "digests"), "--config", str(two)], script=replica_digests.__file__)
    digests = [(tmp_path / "digests" / f"digests-{rank}.jsonl").read_text().splitlines() for rank in (0, 1)]
    assert len(digests[0]) == 3 and digests[0] == digests[1]

    torch.set_num_threads(1)
    try:
        one = {**values, "output_dir": str(tmp_path / "one"), "gradient_accumulation_steps": 2}
        replica_digests.main(["grpo", str(tmp_path / "alone"), "--config", str(write_yaml(tmp_path / "one.yaml", one))])
    finally:
        torch.set_num_threads(2)

    def samples(run):
        rows = [json.loads(line) for line in (tmp_path / run / "completions.jsonl").read_text().splitlines()]
        return sorted(rows, key=lambda r: (r["step"], r["row"], r["completion"], r["advantage"]))

    def logged(run):
        state = json.loads((tmp_path / run / "checkpoint-3" / "trainer_state.json").read_text())
        return [e for e in state["log_history"] if "loss" in e]

    together, alone = samples("two"), samples("one")
    assert [(r["step"], r["row"], r["completion"], r["reward"]) for r in together] == [
        (r["step"], r["row"], r["completion"], r["reward"]) for r in alone
    ]
    assert [r["advantage"] for r in together] == pytest.approx([r["advantage"] for r in alone], abs=1e-6)
    for step, entry in enumerate(logged("two"), start=1):
        rollouts = [r for r in together if r["step"] == step]
        groups = {r["row"] for r in rollouts}
        assert len(groups) == 2 and len(rollouts) == 2 * 4  # one prompt from each process, G = 4 each
        assert entry["reward"] == pytest.approx(np.mean([r["reward"] for r in rollouts]), abs=1e-6)
        for row in groups:
            rewards = torch.tensor([r["reward"] for r in rollouts if r["row"] == row])
            advantages = torch.tensor([r["advantage"] for r in rollouts if r["row"] == row])
            normalised = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
            assert torch.allclose(advantages, normalised, atol=0.1)  # the group's own statistics, plus N(0, 0.02^2)
    for mine, theirs in zip(logged("two"), logged("one"), strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-6) and mine["kl"] == pytest.approx(theirs["kl"], abs=1e-6)
        assert mine["reward"] == pytest.approx(theirs["reward"], abs=1e-6)
    first = load_file(tmp_path / "two" / "model" / "model.safetensors")
    second = load_file(tmp_path / "one" / "model" / "model.safetensors")
    assert max((first[k] - second[k]).abs().max().item() for k in first) < 1e-5


def test_zero3_rollouts_gather_the_weights_once_not_for_every_token(tmp_path):
    """Under ZeRO-3 (`configs/deepspeed/zero3.json`, 2 CPU processes over gloo) the rollouts are sampled
    from weights gathered once: DeepSpeed fetches no module's weights while generating (without the
    context it fetches every layer's at every token), the rollouts are the unsharded model's, and the
    weights are sharded again and training goes on afterwards."""
    pytest.importorskip("deepspeed")
    launch([str(tmp_path)], script=str(Path(__file__).parent / "zero3_generation.py"))
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank-{rank}.json").read_text())
        assert report["sharded"] and report["sharded_after"]
        assert report["hooks/8"]["fetches"] > report["hooks/4"]["fetches"] > 0
        assert report["gathered/4"]["fetches"] == report["gathered/8"]["fetches"] == 0
        for tokens in (4, 8):
            assert report[f"gathered/{tokens}"]["ids"] == report[f"hooks/{tokens}"]["ids"] == report["whole"][str(tokens)]
        assert report["training_fetches"] > 0  # the hooks are back: the training step ran on sharded weights
