"""What the `tinyvideo train` commands share: a YAML recipe, then one `--field VALUE...` option per field of
the stage's config, parsed together by `tinyvideo.train.common.load_config`."""

from __future__ import annotations

import argparse
from dataclasses import fields

from tinyvideo.train.common import load_config, require_joined_processes


def add_config_arguments(parser, config_class) -> None:
    """`--config FILE` plus one `--field VALUE...` option per config field, for a subcommand's parser.

    The options only collect strings; `config_overrides` hands them back to `load_config`, which parses
    them with the field types, so the command line and YAML follow the same rules and `--help` lists
    every field.
    """
    parser.add_argument("--config", help="YAML recipe (see configs/ and tinyvideo/recipes/); the options below override it")
    group = parser.add_argument_group(f"{config_class.__name__} fields (override the recipe)")
    for item in fields(config_class):
        if item.init:
            text = str(item.metadata.get("help", "")).replace("%", "%%")
            group.add_argument(f"--{item.name}", nargs="*", default=argparse.SUPPRESS, metavar="VALUE", help=text)


def config_overrides(args, config_class) -> list[str]:
    """The `--field value...` tokens given on the command line, for `load_config`."""
    names = {item.name for item in fields(config_class)}
    return [token for name, values in vars(args).items() if name in names for token in (f"--{name}", *values)]


def run_stage(args, config_class, train) -> int:
    """A training command: the YAML config with the command line's overrides, trained; prints the model folder."""
    config = load_config(config_class, args.config, config_overrides(args, config_class))
    require_joined_processes(config)
    print(f"final model: {train(config)}")
    return 0
