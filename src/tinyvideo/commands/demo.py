"""`tinyvideo demo`: the synthetic suite, the stages and their evaluations, and a report
(`tinyvideo.demo` says what each form does)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tinyvideo.demo.plan import BASE_RECIPES, SCALES, SCRATCH_RECIPES, open_workspace
from tinyvideo.demo.report import write_seeds_report
from tinyvideo.demo.run import run_ablation, run_demo
from tinyvideo.errors import InputError
from tinyvideo.flags import non_negative_int
from tinyvideo.train.base_model import DEFAULT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale",
        choices=list(SCALES),
        default="small",
        help="smoke: a few steps per stage, to check the whole path in minutes; small (default): the recipes as written",
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), help="folder for everything (default ./demo); reruns reuse it")
    parser.add_argument(
        "--ablation",
        choices=["connectors"],
        help="compare the group, image-level and naive resamplers, each new on the base model (from scratch with --from-scratch)",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        nargs="+",
        default=[0],
        help="seed of the suite and of every stage (default 0); several seeds: a demo per seed in OUT/seed-N, then "
        "OUT/seeds.md with every number's mean and spread over them",
    )
    parser.add_argument(
        "--base-model",
        help=f"the pretrained base model to fine-tune: a shipped one's name or a folder from `tinyvideo base` (default {DEFAULT})",
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="no base model: train a vision tower and a tiny language model from random weights first",
    )
    parser.add_argument(
        "--recipes",
        type=Path,
        help=f"folder of the stage recipes (default: the package's own, tinyvideo/recipes/{BASE_RECIPES.name}, or "
        f"tinyvideo/recipes/{SCRATCH_RECIPES.name} from scratch)",
    )
    parser.add_argument(
        "--language-model",
        type=Path,
        help="with --from-scratch: a base language model folder to start from (e.g. `tinyvideo train language`'s)",
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.from_scratch and args.base_model is not None:
        raise InputError("--base-model and --from-scratch exclude each other: a demo from scratch starts from no base model")
    base_model = None if args.from_scratch else args.base_model or DEFAULT
    recipes = args.recipes or (SCRATCH_RECIPES if base_model is None else BASE_RECIPES)
    ablation = args.ablation is not None
    seeds = list(dict.fromkeys(args.seed))
    if ablation and len(seeds) > 1:
        raise InputError("--ablation takes one seed: run it once per seed, each with its own --out")
    folders = {seed: args.out if len(seeds) == 1 else args.out / f"seed-{seed}" for seed in seeds}
    for seed, folder in folders.items():
        begun = time.perf_counter()
        ws = open_workspace(folder, args.scale, seed, recipes, args.language_model, base_model, ablation)
        report = run_ablation(ws, begun) if ablation else run_demo(ws, begun)
        print(f"report: {report} ({time.perf_counter() - begun:.0f} s)")
    if len(seeds) > 1:
        print(f"over the seeds: {write_seeds_report(args.out, folders)} ({time.perf_counter() - started:.0f} s)")
    return 0
