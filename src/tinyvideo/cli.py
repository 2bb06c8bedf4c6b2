"""The `tinyvideo` command.

Each subcommand lives in its own module, which provides `add_arguments(parser)` and `run(args)`.
Modules are imported only for the subcommand that runs, so `tinyvideo --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = {
    "init": ("tinyvideo.scratch", "create a new tiny model from scratch"),
    "infer": ("tinyvideo.inference", "answer a question about a video"),
    "export": ("tinyvideo.checkpoints", "write a checkpoint back in the published TinyLLaVA format"),
    "synth": ("tinyvideo.data.synth", "generate the synthetic video-reasoning suite"),
    "train vision": ("tinyvideo.train.vision", "pretrain a tiny vision tower on frame-caption pairs (from scratch)"),
    "train language": ("tinyvideo.train.language", "pretrain a tiny base language model on multiple-choice letter binding"),
    "train sft": ("tinyvideo.train.sft", "supervised training: pretraining, fine-tuning, cold start"),
    "train grpo": ("tinyvideo.train.grpo", "GRPO reinforcement learning"),
    "eval": ("tinyvideo.eval.harness", "evaluate on a benchmark, or merge shards: eval merge --output DIR"),
    "demo": ("tinyvideo.demo", "train and evaluate a model on the synthetic suite from nothing, with a report"),
    "serve": ("tinyvideo.serve", "a web page that answers questions about a video (needs the 'serve' extra)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = " ".join(argv[:2]) if " ".join(argv[:2]) in COMMANDS else (argv[0] if argv else "")
    if name not in COMMANDS:
        parser = argparse.ArgumentParser(prog="tinyvideo", description="small video language models that reason")
        parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help=", ".join(COMMANDS))
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}")
        parser.print_help()
        return 0 if argv else 2
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"tinyvideo {name}", description=summary)
    module.add_arguments(parser)
    args = parser.parse_args(argv[len(name.split()) :])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return module.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
