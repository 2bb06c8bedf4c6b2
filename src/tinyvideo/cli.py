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
    "infer": ("tinyvideo.inference", "answer a question about a video"),
    "export": ("tinyvideo.checkpoints", "write a checkpoint back in the published TinyLLaVA format"),
    "synth": ("tinyvideo.data.synth", "generate the synthetic video-reasoning suite"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="tinyvideo", description="small video language models that reason")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints usage or the error
        return 2
    name, rest = argv[0], argv[1:]
    module_name, summary = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"tinyvideo {name}", description=summary)
    module.add_arguments(sub)
    args = sub.parse_args(rest)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return module.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
