"""`tinyvideo eval BENCHMARK` and `tinyvideo eval merge`: the harness (`tinyvideo.eval.harness`) from the
command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from accelerate import PartialState

from tinyvideo.checkpoints import DTYPES
from tinyvideo.errors import InputError
from tinyvideo.eval.benchmarks.common import WITH_SUBTITLES, WITHOUT_SUBTITLES
from tinyvideo.eval.harness import evaluate
from tinyvideo.eval.outputs import build_report
from tinyvideo.eval.settings import BENCHMARKS, CONTROLS, MODES, Settings, refuse_unused_options
from tinyvideo.flags import add_frame_arguments, frame_sampling, non_negative_float, non_negative_int, positive_int
from tinyvideo.processing import trained_frame_sampling


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=[*BENCHMARKS, "merge"], help="benchmark to run, or 'merge' to score shards")
    parser.add_argument("--model", help="checkpoint folder (tinyvideo or published TinyLLaVA format)")
    parser.add_argument("--data", help="the benchmark's folder, as downloaded (see each adapter for its layout)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="option",
        help="option, reason: the published prompts, answers generated; cloze: each option's text scored as the answer",
    )
    add_frame_arguments(parser)
    parser.add_argument("--duration", choices=["short", "medium", "long", "all"], help="Video-MME durations (default all)")
    parser.add_argument("--split", help="NExT-QA / synthetic-suite split (default test)")
    parser.add_argument(
        "--subtitles",
        action="store_true",
        help="Video-MME, LongVideoBench: ask every question without and with its subtitles, scored side by side",
    )
    parser.add_argument(
        "--control",
        choices=CONTROLS,
        help="a control run: each question asked with another question's video (shuffled-video), or with only "
        "its last sampled frame (last-frame); scored as usual",
    )
    parser.add_argument(
        "--cloze-options",
        action="store_true",
        help="Cloze mode with the lettered options listed under the question: does the model find the answer "
        "where a multiple-choice prompt shows the options",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="questions per generate call")
    parser.add_argument("--limit", type=positive_int, help="only the first N questions")
    parser.add_argument("--shard", help="i/n: answer the i-th of n deterministic parts (0-based)")
    parser.add_argument("--output", help="results folder (default outputs/eval/<benchmark>-<mode>)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy; sampling needs --seed")
    parser.add_argument("--seed", type=non_negative_int, help="seed for sampling")
    parser.add_argument("--max-new-tokens", type=positive_int, default=1024)
    parser.add_argument("--num-workers", type=non_negative_int, default=2, help="DataLoader workers decoding videos")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps, ... (default: accelerate's choice)")


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard takes i/n (for example 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise InputError(f"--shard {text}: i must be between 0 and n-1")
    return index, count


def settings_from(args: argparse.Namespace) -> Settings:
    """The run's settings from the flags (the frames: as the model was trained unless the flags say); `InputError`
    for an adapter option the benchmark does not take, even at its default value."""
    sampling = frame_sampling(args, trained_frame_sampling(args.model))
    given = {name: getattr(args, name) for name in ("duration", "split") if getattr(args, name) is not None}
    refuse_unused_options(args.benchmark, given)
    return Settings(
        benchmark=args.benchmark,
        data=str(Path(args.data).resolve()),
        model=str(Path(args.model).resolve()),
        mode=args.mode,
        frames=sampling.num_frames,
        fps=sampling.fps,
        max_frames=sampling.max_frames,
        subtitles=args.subtitles,
        limit=args.limit,
        temperature=args.temperature,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        dtype=args.dtype,
        control=args.control,
        cloze_options=args.cloze_options,
        **given,
    )


def run(args: argparse.Namespace) -> int:
    """The command; problems the user must fix (arguments, files, folders) raise `InputError`."""
    if args.benchmark == "merge":
        if not args.output:
            raise InputError("merge needs --output, the folder the runs wrote to")
        output = Path(args.output)
    else:
        if not args.model or not args.data:
            raise InputError(f"tinyvideo eval {args.benchmark} needs --model and --data")
        settings = settings_from(args)
        shard = parse_shard(args.shard) if args.shard else None
        # Launched processes join (over gloo) on the CPU too, where accelerate needs to be told.
        state = PartialState(cpu=(args.device or "").startswith("cpu") or not torch.accelerator.is_available())
        if shard is None and state.num_processes > 1:
            shard = (state.process_index, state.num_processes)
        suffix = "".join(
            [
                "-options" if args.cloze_options else "",
                "-subs" if args.subtitles else "",
                f"-{args.control}" if args.control else "",
            ]
        )
        output = Path(args.output or f"outputs/eval/{args.benchmark}-{args.mode}{suffix}")
        device = args.device or state.device
        evaluate(settings, output, shard=shard, batch_size=args.batch_size, num_workers=args.num_workers, device=device)
    # No barrier between processes (one would time out when the shards take very different times): each
    # scores what is there when it finishes, and the last one to finish writes the complete report.
    return _print_summary(build_report(output), output)


def _print_summary(report: dict, output: Path) -> int:
    value = report["headline"]["value"]
    print(
        f"{report['benchmark']} {report['headline']['name']}: {'-' if value is None else f'{value:.1f}'} "
        f"({report['predicted']} of {report['questions']} questions, {report['invalid_answers']} invalid and "
        f"{report['hedged_answers']} hedged answers, "
        f"status {report['status']}); report in {output / 'report.md'}"
    )
    if "without_subtitles" in report:
        value = report["without_subtitles"]["headline"]["value"]
        print(f"  that is {WITH_SUBTITLES}; {WITHOUT_SUBTITLES}: {'-' if value is None else f'{value:.1f}'} (subtitles: {report.get('subtitles', {})})")
    if report["pending"]:
        print(f"{report['pending']} question(s) not answered yet: run the remaining shards, then `tinyvideo eval merge --output {output}`")
    return 0
