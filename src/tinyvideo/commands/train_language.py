"""`tinyvideo train language`: pretrain a tiny base language model on multiple-choice letter binding (`tinyvideo.train.language`)."""

from __future__ import annotations

import argparse

from tinyvideo.commands.stage import add_config_arguments, run_stage
from tinyvideo.train.language import LanguageConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, LanguageConfig)


def run(args: argparse.Namespace) -> int:
    return run_stage(args, LanguageConfig, train)
