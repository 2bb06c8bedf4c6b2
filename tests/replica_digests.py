"""`tinyvideo train sft|grpo` with a callback that records a digest of this process's weights after
every optimizer step, one file per process: run under `accelerate launch`, the files must agree.

    python replica_digests.py sft|grpo DIGESTS_DIR --config FILE.yaml [--key value ...]

GRPO is rewarded by the share of distinct tokens in each completion: a tiny model's rollouts earn the
same published rewards (wrong and unformatted), which would leave every advantage at 0.
"""

from __future__ import annotations

import hashlib
import json
import sys
from functools import partial
from pathlib import Path

from transformers import TrainerCallback

from tinyvideo.train import grpo, sft
from tinyvideo.train.common import load_config



def distinct_tokens(completions, completion_ids, **columns) -> list[float]:
    """The share of a completion's tokens that differ from its earlier ones."""
    return [len(set(ids)) / max(len(ids), 1) for ids in completion_ids]


STAGES = {
    "sft": (sft.SFTConfig, sft.train),
    "grpo": (grpo.GRPOConfig, partial(grpo.train, reward_funcs=[distinct_tokens])),
}


class WeightDigests(TrainerCallback):
    """After every optimizer step, the sha256 of every weight's bytes, to `folder/digests-RANK.jsonl`."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_step_end(self, args, state, control, model=None, **kwargs):
        digest = hashlib.sha256()
        for name, parameter in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"digests-{args.process_index}.jsonl", "a") as f:
            f.write(json.dumps({"step": state.global_step, "sha256": digest.hexdigest()}) + "\n")


def main(argv: list[str]) -> None:
    stage, folder, _, recipe, *overrides = argv
    config_class, train = STAGES[stage]
    train(load_config(config_class, recipe, overrides), callbacks=[WeightDigests(Path(folder))])


if __name__ == "__main__":
    main(sys.argv[1:])
