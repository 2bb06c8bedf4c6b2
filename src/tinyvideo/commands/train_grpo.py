"""`tinyvideo train grpo`: GRPO reinforcement learning (`tinyvideo.train.grpo`)."""

from __future__ import annotations

import argparse

from tinyvideo.commands.stage import add_config_arguments, run_stage
from tinyvideo.train.grpo import GRPOConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, GRPOConfig)


def run(args: argparse.Namespace) -> int:
    return run_stage(args, GRPOConfig, train)
