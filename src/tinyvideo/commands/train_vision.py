"""`tinyvideo train vision`: pretrain a tiny vision tower on the synthetic suite's frames (`tinyvideo.train.vision`)."""

from __future__ import annotations

import argparse

from tinyvideo.commands.stage import add_config_arguments, run_stage
from tinyvideo.train.vision import VisionConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, VisionConfig)


def run(args: argparse.Namespace) -> int:
    return run_stage(args, VisionConfig, train)
