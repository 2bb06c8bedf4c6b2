"""`tinyvideo train sft`: supervised training: pretraining, fine-tuning, cold start (`tinyvideo.train.sft`)."""

from __future__ import annotations

import argparse

from tinyvideo.commands.stage import add_config_arguments, run_stage
from tinyvideo.train.sft import SFTConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, SFTConfig)


def run(args: argparse.Namespace) -> int:
    return run_stage(args, SFTConfig, train)
