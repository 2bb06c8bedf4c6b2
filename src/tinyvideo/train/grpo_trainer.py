"""`GRPOTrainer`: GRPO as a `transformers.Trainer` whose loss samples its own rollouts.

Generation happens inside `compute_loss`, as in the published trainer, so checkpoints, resume,
logging, mixed precision, gradient accumulation and accelerate/DeepSpeed come from the Trainer. Each
step, per process, at its first micro-batch: every prompt's video goes through the vision tower once,
the G rollouts of all the step's prompts come from one batched decoding (TRL's generation batch),
the rewards are combined and turned into group advantages, and the reference scores the completion
tokens; each micro-batch then takes its share for the policy's loss and backward. A prompt runs once
for its G rollouts in every pass (see `grpo_rollouts`).

Batches are lists of examples (identity collator). `per_device_train_batch_size` counts prompts, and
a prompt's G rollouts stay on the process that holds the prompt: a group is sampled, rewarded and
normalised in one place. Rewards are gathered from every process before the advantages (so `batch`
scaling sees the whole step) and every metric before it is logged.

Reproducible by construction: each rollout and each prompt's advantage noise are seeded from the seed
and the prompt's place in the run, so a run resumed from a checkpoint samples what the uninterrupted
run would have, and N processes sample what one process with N accumulation steps would.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import gather_object
from peft.tuners.lora import LoraLayer
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer

from tinyvideo.scoring import completion_logprobs
from tinyvideo.train import rewards as reward_lib
from tinyvideo.train.grpo_loss import completion_mask, group_advantages, policy_loss, zero_std_fraction
from tinyvideo.train.grpo_rollouts import (
    Prompts,
    prompt_batch,
    prompt_embeddings,
    sample_completions,
    select_prompts,
)

logger = logging.getLogger(__name__)

COMPLETIONS_FILE = "completions.jsonl"
RESERVED_COLUMNS = ("prompts", "completions", "completion_ids")


@dataclass
class Rollouts:
    """One micro-batch of prompts with their sampled completions, scored; reused `num_iterations` times."""

    rows: list[int]  # the prompts' dataset rows
    prompts: Prompts
    completion_ids: torch.Tensor  # [B*G, Lc]
    completion_mask: torch.Tensor  # [B*G, Lc]
    advantages: torch.Tensor  # [B*G]
    num_items: torch.Tensor  # completion tokens over all processes / number of processes (the dapo normaliser)
    ref_logp: torch.Tensor | None = None
    old_logp: torch.Tensor | None = None


class RepeatingSampler(Sampler[int]):
    """A seeded shuffle of the dataset in which each chunk of `chunk` indices is yielded `repeat` times.

    A chunk is one optimizer step's prompts on all processes (per-device batch x accumulation x
    processes), dealt as one batch per process. `GRPOTrainer` repeats it once per micro-batch (each
    takes its share of the rollouts sampled at the first) and again for the next `num_iterations - 1`
    steps, which reuse the rollouts (TRL's `num_iterations`). A last chunk shorter than the others is
    dropped (it cannot be split between processes and micro-batches). The order depends only on the
    seed and the epoch, so a resumed run skips into the same sequence.
    """

    def __init__(self, size: int, chunk: int, repeat: int, seed: int):
        if size < chunk:
            raise ValueError(f"one optimizer step takes {chunk} prompts; the data set has {size}")
        self.size, self.chunk, self.repeat, self.seed = size, chunk, repeat, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.chunk * self.chunk * self.repeat

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        for start in range(0, self.size - self.chunk + 1, self.chunk):
            for _ in range(self.repeat):
                yield from order[start : start + self.chunk]


def identity_collator(examples: list[dict]) -> list[dict]:
    return examples


def gathered_for_generation(model):
    """A context in which the rollouts are generated: for a DeepSpeed ZeRO-3 engine (each process holds a
    shard of every weight), DeepSpeed's `unwrap_model_for_generation`, which gathers every weight once
    and lifts the per-module fetch/release hooks until it exits (with them, every layer's weights would
    be gathered again for every new token); for any other model nothing is needed."""
    stage = getattr(model, "zero_optimization_stage", None)
    if stage is None or stage() != 3:
        return nullcontext()
    from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation  # present wherever an engine is

    return unwrap_model_for_generation(model)


@contextmanager
def adapters_disabled(model):
    """The base weights: every LoRA adapter switched off for the duration (the reference policy)."""
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def only_adapters_train(model) -> bool:
    """True when the trainable weights are all LoRA weights: the base model then *is* the reference."""
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    return bool(trainable) and all("lora_" in name for name in trainable)


class GRPOTrainer(Trainer):
    """GRPO on video questions; `args` is a `GRPOConfig`, `processor` a `TinyVideoProcessor`.

    `reward_funcs` defaults to the config's names (see `rewards.REWARD_FUNCS`); callables with TRL's
    signature work too. The reference policy is `ref_model` if given, else the base weights with LoRA
    switched off when only adapters train, else a frozen copy of `model`; with `beta` 0 there is none.
    """

    def __init__(self, model, args, processor, train_dataset, reward_funcs=None, ref_model=None, callbacks=None):
        funcs = list(args.reward_funcs if reward_funcs is None else reward_funcs)
        self.reward_funcs = [reward_lib.REWARD_FUNCS[f] if isinstance(f, str) else f for f in funcs]
        self.reward_names = [f if isinstance(f, str) else f.__name__ for f in funcs]
        if args.beta and ref_model is None and not only_adapters_train(model):
            ref_model = copy.deepcopy(model)
        super().__init__(
            model=model,
            args=args,
            data_collator=identity_collator,
            train_dataset=train_dataset,
            processing_class=processor,
            callbacks=callbacks,
        )
        self.processor = processor
        # The loss is a mean over this micro-batch; let the Trainer divide it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.ref_model = ref_model.requires_grad_(False).eval() if args.beta and ref_model is not None else None
        self._ref_placed = False
        self._buffer: list[Rollouts] = []  # the step's rollouts, one entry per micro-batch
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._micro_step: int | None = None
        self.skipped_rows: set[int] = set()

    # ---- data ---------------------------------------------------------------------------------------

    def get_train_dataloader(self) -> DataLoader:
        """Batches of one optimizer step's prompts (this process's share), each dealt once per micro-batch."""
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Training",
            batch_size=self._train_batch_size * self.args.gradient_accumulation_steps,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    def _get_train_sampler(self, train_dataset=None) -> Sampler:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        args = self.args
        chunk = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        seed = args.data_seed if args.data_seed is not None else args.seed
        return RepeatingSampler(len(dataset), chunk, args.gradient_accumulation_steps * args.num_iterations, seed)

    def _place_reference(self, ref_model):
        """On the device, or as a DeepSpeed inference engine (sharded under ZeRO-3). Done at first use, once
        the Trainer has filled in the DeepSpeed config's "auto" values."""
        if not self.is_deepspeed_enabled:
            return ref_model.to(self.accelerator.device)
        import deepspeed

        config = copy.deepcopy(self.accelerator.state.deepspeed_plugin.deepspeed_config)
        if config["zero_optimization"]["stage"] != 3:
            config["zero_optimization"]["stage"] = 0  # a whole copy per device; only ZeRO-3 shards it
        for key in ("optimizer", "scheduler"):
            config.pop(key, None)
        engine, *_ = deepspeed.initialize(model=ref_model, config=config)
        engine.eval()
        return engine.module

    # ---- one step -----------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("GRPOTrainer computes a loss only")
        args = self.args
        policy = self.accelerator.unwrap_model(model)
        if self._micro_step is None:  # first step of this run, possibly resumed
            self._micro_step = self.state.global_step * args.gradient_accumulation_steps
        self._micro_step += 1
        self.skipped_rows.update(row for item in inputs for row in item["skipped"])

        # As TRL's `_prepare_inputs`: each batch holds the whole step's prompts; the first micro-batch of the
        # first of the `num_iterations` updates that see them samples the step's rollouts, and every
        # micro-batch trains on its share. A run resumed in between samples them again, from the same seeds.
        accumulation, per_device = args.gradient_accumulation_steps, args.per_device_train_batch_size
        micro_batch = (self._micro_step - 1) % accumulation
        iteration = (self._micro_step - 1) // accumulation % args.num_iterations
        if micro_batch == 0 and (iteration == 0 or not self._buffer):
            self._buffer = self._generate_and_score(policy, inputs)
        rollouts = self._buffer[micro_batch]
        rows = [item["row"] for item in inputs[micro_batch * per_device : (micro_batch + 1) * per_device]]
        if rollouts.rows != rows:
            raise RuntimeError(f"rollouts sampled for rows {rollouts.rows} would be reused for rows {rows}")

        embeds = prompt_embeddings(policy, rollouts.prompts)
        logp = completion_logprobs(
            policy, embeds, rollouts.prompts.attention_mask, rollouts.completion_ids, args.num_generations,
            args.temperature, forward=model,
        )
        loss, stats = policy_loss(
            logp,
            rollouts.advantages,
            rollouts.completion_mask,
            old_logp=rollouts.old_logp,
            ref_logp=rollouts.ref_logp,
            beta=args.beta,
            epsilon=args.epsilon,
            epsilon_high=args.epsilon_high,
            loss_type=args.loss_type,
            max_completion_length=args.max_completion_length,
            num_items=rollouts.num_items,
        )
        if iteration + 1 < args.num_iterations and rollouts.old_logp is None:
            rollouts.old_logp = logp.detach()
        for name, value in stats.items():
            self._record(name, self.accelerator.gather(value.detach().reshape(1)).mean().item())
        return loss

    def _prompts(self, policy, inputs: list[dict]) -> Prompts:
        prompt_ids = [item["prompt_ids"].tolist() for item in inputs]
        return prompt_batch(policy, self.processor, prompt_ids, [item["pixel_values"] for item in inputs])

    def _prompt_seeds(self, count: int) -> list[int]:
        """The seed of each of this process's `count` prompts in the current step, from the seed and the
        prompt's place in the run's sequence of prompts. A step deals its prompts to the processes in
        consecutive blocks, so the same prompt draws the same rollouts whether processes or accumulation
        steps share a step; the place counts rollout generations, so a resumed run draws what the
        uninterrupted one did."""
        generation = self.state.global_step // self.args.num_iterations
        first = (generation * self.accelerator.num_processes + self.accelerator.process_index) * count
        return [int(np.random.SeedSequence([self.args.seed, first + i]).generate_state(1)[0]) for i in range(count)]

    @torch.no_grad()
    def _generate_and_score(self, policy, inputs: list[dict]) -> list[Rollouts]:
        """The rollouts of the step's prompts on this process, scored, split into its micro-batches."""
        args, group = self.args, self.args.num_generations
        tokenizer = self.processor.tokenizer
        prompts = self._prompts(policy, inputs)
        seeds = self._prompt_seeds(len(inputs))
        with gathered_for_generation(self.model_wrapped):
            completion_ids = sample_completions(
                policy, prompts, prompt_embeddings(policy, prompts), group, args.max_completion_length, seeds=seeds,
                temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=self.processor.pad_token_id,
            )
        mask = completion_mask(completion_ids, tokenizer.eos_token_id)

        texts = self.processor.batch_decode(completion_ids)
        per_func = self._rewards(inputs, texts, completion_ids, mask)
        rewards = torch.tensor(
            reward_lib.combine_rewards(per_func, args.reward_combination, args.reward_weights), dtype=torch.float32
        )
        all_rewards = self.accelerator.gather(rewards.to(policy.device)).cpu()
        start = self.accelerator.process_index * len(rewards)
        advantages = group_advantages(all_rewards, group, args.scale_rewards)[start : start + len(rewards)]
        # The published noise, drawn for each prompt's rollouts from the prompt's own seed.
        noise = torch.cat([torch.randn(group, generator=torch.Generator().manual_seed(seed)) for seed in seeds])
        advantages = (advantages + noise * args.advantage_noise_std).to(policy.device)
        self._record_rollouts(all_rewards, rewards, per_func, texts, mask, completion_ids, inputs, advantages)

        micro_batches = []
        for first in range(0, len(inputs), args.per_device_train_batch_size):
            last = first + args.per_device_train_batch_size
            part = select_prompts(prompts, first, last)
            part_mask = mask[first * group : last * group]
            width = max(1, int(part_mask.sum(1).max()))  # without the columns only other micro-batches need
            part_mask, part_ids = part_mask[:, :width], completion_ids[first * group : last * group, :width]
            num_items = self.accelerator.gather(part_mask.sum().reshape(1)).sum() / self.accelerator.num_processes
            ref_logp = self._reference_logprobs(policy, part, part_ids) if args.beta else None
            rows = [item["row"] for item in inputs[first:last]]
            advantage = advantages[first * group : last * group]
            micro_batches.append(Rollouts(rows, part, part_ids, part_mask, advantage, num_items, ref_logp=ref_logp))
        return micro_batches

    def _rewards(self, inputs: list[dict], texts: list[str], completion_ids, mask) -> list[list[float]]:
        """Each reward function on every completion, with the dataset columns repeated per rollout (TRL's call)."""
        group = self.args.num_generations
        columns = defaultdict(list)
        for item in inputs:
            for name, value in item["columns"].items():
                if name not in RESERVED_COLUMNS:
                    columns[name] += [value] * group
        ids = [row[: int(n)].tolist() for row, n in zip(completion_ids, mask.sum(1))]
        prompts = [item["prompt"] for item in inputs for _ in range(group)]
        return [
            [float(r) for r in func(prompts=prompts, completions=texts, completion_ids=ids, **columns)]
            for func in self.reward_funcs
        ]

    def _reference_logprobs(self, policy, prompts: Prompts, completion_ids: torch.Tensor) -> torch.Tensor:
        """The reference policy scores the same completions from the same cached frame features."""
        if self.ref_model is not None and not self._ref_placed:
            self.ref_model, self._ref_placed = self._place_reference(self.ref_model), True
        model = policy if self.ref_model is None else self.ref_model
        context = adapters_disabled(policy) if self.ref_model is None else nullcontext()
        with context:
            embeds = prompt_embeddings(model, prompts)
            return completion_logprobs(
                model, embeds, prompts.attention_mask, completion_ids, self.args.num_generations, self.args.temperature
            )

    # ---- metrics ------------------------------------------------------------------------------------

    def _record(self, name: str, value: float) -> None:
        self._metrics[name].append(value)

    def _record_rollouts(self, all_rewards, rewards, per_func, texts, mask, completion_ids, inputs, advantages) -> None:
        """Reward, accuracy, format, length and reflection statistics over the rollouts of all processes."""
        group = self.args.num_generations
        solutions = [item["columns"].get("solution", "") for item in inputs for _ in range(group)]
        accuracy = self._reuse_or_score("accuracy", per_func, texts, solutions)
        formatted = [float(f > 0) for f in self._reuse_or_score("format", per_func, texts, solutions)]
        lengths = mask.sum(1).float().cpu()
        truncated = ~(completion_ids == self.processor.tokenizer.eos_token_id).any(1)
        reflective = [float(reward_lib.is_reflective(t)) for t in texts]
        local = {
            "accuracy": torch.tensor(accuracy),
            "format_rate": torch.tensor(formatted),
            "completion_length": lengths,
            "completions/clipped_ratio": truncated.float().cpu(),
            "reflection_rate": torch.tensor(reflective),
        }
        columns = [*local.values(), *(torch.tensor(values) for values in per_func)]
        table = self.accelerator.gather(torch.stack(columns, dim=1).to(mask.device)).cpu().unbind(1)
        gathered = dict(zip(local, table))  # every process's rollouts, by metric
        per_reward = table[len(local) :]  # and by reward function, in `reward_names` order
        self._record("reward", all_rewards.mean().item())
        self._record("reward_std", all_rewards.view(-1, group).std(1).mean().item())
        self._record("frac_reward_zero_std", zero_std_fraction(all_rewards, group))
        for name, values in gathered.items():
            self._record(name, values.mean().item())
        self._record("completions/min_length", gathered["completion_length"].min().item())
        self._record("completions/max_length", gathered["completion_length"].max().item())
        for name, values in zip(self.reward_names, per_reward):
            self._record(f"rewards/{name}/mean", values.mean().item())
            self._record(f"rewards/{name}/std", values.std().item())
            # Groups where this reward alone cannot tell the rollouts apart (all right, or all wrong, for accuracy).
            self._record(f"rewards/{name}/frac_zero_std", zero_std_fraction(values, group))
        self._write_samples(texts, rewards, per_func, advantages, inputs)

    def _reuse_or_score(self, name: str, per_func, texts, solutions) -> list[float]:
        if name in self.reward_names:
            return per_func[self.reward_names.index(name)]
        return reward_lib.REWARD_FUNCS[name](completions=texts, solution=solutions)

    def _write_samples(self, texts, rewards, per_func, advantages, inputs) -> None:
        """Every `log_completions_steps` steps, the rollouts of every process go to `output_dir/completions.jsonl`
        (written by the main process)."""
        every = self.args.log_completions_steps
        step = self.state.global_step + 1
        if not every or step % every:
            return
        group = self.args.num_generations
        rows = []
        for index, text in enumerate(texts):
            item = inputs[index // group]
            rows.append({
                "step": step,
                "row": item["row"],
                "problem": item["columns"].get("problem"),
                "solution": item["columns"].get("solution"),
                "completion": text,
                "reward": float(rewards[index]),
                **{f"rewards/{name}": values[index] for name, values in zip(self.reward_names, per_func)},
                "advantage": float(advantages[index]),
            })
        rows = gather_object(rows)
        if not self.is_world_process_zero():
            return
        path = Path(self.args.output_dir) / COMPLETIONS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the means of the GRPO metrics gathered since the last log."""
        if self._metrics and "loss" in logs:
            logs = {**logs, **{name: float(np.mean(values)) for name, values in self._metrics.items()}}
            self._metrics.clear()
        super().log(logs, start_time)
