"""The `tinyvideo` command.

Each subcommand lives in its own module of `tinyvideo.commands`, which provides `add_arguments(parser)` and
`run(args)`. Modules are imported only for the subcommand that runs, so `tinyvideo --help` stays fast.

Numeric flags are checked when they are parsed, by the `type=` validators of `tinyvideo.flags`, which
every command's `add_arguments` shares. Bad input found later (a file, a row, a checkpoint folder) raises
`InputError`: the dispatcher prints its one line and exits with status 2, or, under `--debug`, lets
the traceback through.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys

from tinyvideo.errors import InputError

COMMANDS = {  # name: (its module in tinyvideo.commands, summary)
    "init": ("tinyvideo.commands.init", "create a new tiny model from scratch"),
    "infer": ("tinyvideo.commands.infer", "answer a question about a video"),
    "export": ("tinyvideo.commands.export", "write a checkpoint back in the published TinyLLaVA format"),
    "synth": ("tinyvideo.commands.synth", "generate the synthetic video-reasoning suite"),
    "base": ("tinyvideo.commands.base", "build a pretrained base model (the one tinyvideo ships) from nothing, resumable"),
    "train vision": ("tinyvideo.commands.train_vision", "pretrain a tiny vision tower on frame-caption pairs (from scratch)"),
    "train language": ("tinyvideo.commands.train_language", "pretrain a tiny base language model on multiple-choice letter binding"),
    "train sft": ("tinyvideo.commands.train_sft", "supervised training: pretraining, fine-tuning, cold start"),
    "train grpo": ("tinyvideo.commands.train_grpo", "GRPO reinforcement learning"),
    "eval": ("tinyvideo.commands.eval", "evaluate on a benchmark, or merge shards: eval merge --output DIR"),
    "demo": ("tinyvideo.commands.demo", "train and evaluate a model on the synthetic suite from nothing, with a report"),
    "serve": ("tinyvideo.commands.serve", "a web page that answers questions about a video (needs the 'serve' extra)"),
}
DEBUG_FLAG = "--debug"


# ---- dispatch ---------------------------------------------------------------------------------------


class CommandParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (exit status 2), pointing to `--help` for the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run a command; returns its exit status (2 for bad input, reported in one line on stderr)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = argv[:1] == [DEBUG_FLAG]
    argv = argv[1:] if debug else argv
    name = " ".join(argv[:2]) if " ".join(argv[:2]) in COMMANDS else (argv[0] if argv else "")
    if name not in COMMANDS:
        parser = CommandParser(prog="tinyvideo", description="small video language models that reason")
        parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error (before the command)")
        parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help=", ".join(COMMANDS))
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}")
        parser.print_help()
        return 0 if argv else 2
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = CommandParser(prog=f"tinyvideo {name}", description=summary)
    module.add_arguments(parser)
    with contextlib.suppress(argparse.ArgumentError):  # the training commands have TrainingArguments' --debug
        parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv[len(name.split()) :])
    debug = debug or getattr(args, "debug", None) is True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return module.run(args) or 0
    except (InputError, FileNotFoundError) as error:
        if debug:
            raise
        print(f"tinyvideo {name}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
