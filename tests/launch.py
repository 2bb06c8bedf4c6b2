"""Several processes on the CPU, started the way users start them on GPUs: `accelerate launch`.

`accelerate launch --cpu --num_processes N` starts a single process (accelerate's launcher needs
mpirun for several CPU processes), so the tests take the data-parallel launcher (`--multi_gpu`,
torchrun underneath) and the processes find no GPU: training runs with `use_cpu` and evaluation
on the CPU, over gloo.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_command(arguments: list[str], processes: int = 2, script: str | None = None) -> list[str]:
    """`accelerate launch` of `tinyvideo ARGUMENTS` (or of a Python file `script`) as `processes` processes."""
    target = [script] if script is not None else ["-m", "tinyvideo.cli"]
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), *target, *arguments,
    ]


def environment() -> dict[str, str]:
    """One thread per process: the test machines have two cores for two processes."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def launch(arguments: list[str], processes: int = 2, script: str | None = None, timeout: float = 300):
    """Run to the end; the completed process, its output captured as text. Fails the test on a non-zero exit."""
    done = subprocess.run(
        launch_command(arguments, processes, script), env=environment(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done
