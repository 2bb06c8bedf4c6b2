"""The synthetic-suite recipes end to end: what a tiny model learns from scratch, and how long it takes.

Runs, in a working folder that holds the generated suite as `synth/` (`tinyvideo synth --out synth`):

    tinyvideo train sft --config configs/synth/pretrain.yaml     # captions, from scratch
    tinyvideo train sft --config configs/synth/finetune.yaml     # Option-form QA
    tinyvideo eval synth --model runs/synth/finetune/model --data synth --mode option
    tinyvideo train sft --config configs/synth/coldstart.yaml    # reasoning format
    tinyvideo eval synth --model runs/synth/coldstart/model --data synth --mode reason

and records each step's wall time, the test accuracy per task (chance is 1/4 or 1/5 per task), and after
the cold start the share of test outputs in the `<think>...</think> <answer>X</answer>` format.
Training commands resume, so a finished stage is only re-saved when the script runs again.

    python benchmarks/train_synth.py [--workdir DIR] [--output JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "synth"
REASONED = re.compile(r"<think>.+?</think>\s*<answer>\s*\(?[A-E]\)?\.?\s*</answer>", re.DOTALL)
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def timed(command: list[str], cwd: Path) -> float:
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True)
    return time.perf_counter() - started


def evaluate(model: str, mode: str, max_new_tokens: int, cwd: Path) -> tuple[float, dict]:
    output = f"runs/synth/eval-{Path(model).parent.name}-{mode}"
    command = ["tinyvideo", "eval", "synth", "--model", model, "--data", "synth", "--mode", mode]
    command += ["--output", output, "--max-new-tokens", str(max_new_tokens), "--batch-size", "16"]
    seconds = timed(command, cwd)
    report = json.loads((cwd / output / "report.json").read_text())
    tasks = {name: round(row["accuracy"], 4) for name, row in report["breakdowns"]["task"].items()}
    result = {"command": " ".join(command), "accuracy": report["overall"]["accuracy"], "per_task": tasks}
    result["invalid_rate"] = report["invalid_rate"]
    if mode == "reason":
        responses = [json.loads(line)["response"] for line in (cwd / output / "predictions.jsonl").read_text().splitlines()]
        formatted = [REASONED.fullmatch(r.strip()) is not None and all(r.count(t) == 1 for t in TAGS) for r in responses]
        result["format_rate"] = sum(formatted) / len(responses)
    return seconds, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=".", help="folder holding the suite as synth/ (runs/ is written there)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "train_synth.json"))
    args = parser.parse_args()
    cwd = Path(args.workdir).resolve()
    if not (cwd / "synth" / "suite.json").is_file():
        raise SystemExit(f"{cwd}/synth holds no suite: run `tinyvideo synth --out {cwd}/synth --scale small`")

    stages = {}
    for stage in ("pretrain", "finetune"):
        stages[stage] = {"seconds": timed(["tinyvideo", "train", "sft", "--config", str(CONFIGS / f"{stage}.yaml")], cwd)}
    seconds, option = evaluate("runs/synth/finetune/model", "option", 8, cwd)
    stages["finetune"]["eval_option"] = {"seconds": seconds, **option}
    stages["coldstart"] = {"seconds": timed(["tinyvideo", "train", "sft", "--config", str(CONFIGS / "coldstart.yaml")], cwd)}
    seconds, reason = evaluate("runs/synth/coldstart/model", "reason", 384, cwd)
    stages["coldstart"]["eval_reason"] = {"seconds": seconds, **reason}

    manifest = json.loads((cwd / "synth" / "suite.json").read_text())
    report = {
        "benchmark": "train_synth",
        "suite": {"scale": manifest["scale"], "seed": manifest["seed"], "counts": manifest["counts"]},
        "chance": {name: 1 / task["options"] for name, task in manifest["tasks"].items()},
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "stages": stages,
        "training_seconds": sum(stage["seconds"] for stage in stages.values()),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(partial, output)
    print(json.dumps({k: report[k] for k in ("training_seconds",)} | {"option": option["per_task"], "format_rate": reason.get("format_rate")}))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
