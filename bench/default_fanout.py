"""Benchmark `ecsexec run` as a user types it: 40 nodes, default settings, default throttling.

Usage: .venv/bin/python bench/default_fanout.py [--tasks N] [--runs R]

Issue 15's target: on a sandbox with `--tasks 40` and its default throttling (burst 50,
20/s), `ecsexec run -F 'ECS:Exec-Agent-Status: RUNNING' --yes -- echo hi` with no tuning
flags finishes in under 2 s with every node succeeding. The node cache is warmed first.
Prints each run's wall time, the median and its ratio to the target, then one JSON line.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ecsexec
from ecsexec.sandbox import Sandbox

ECSEXEC = [str(Path(sys.executable).parent / "ecsexec")]
TARGET = 2.0


def compile_package() -> None:
    """Byte-compile ecsexec as installing a wheel does: an editable checkout run with
    PYTHONDONTWRITEBYTECODE set would otherwise compile every module on each start."""
    compileall.compile_dir(Path(ecsexec.__file__).parent, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    compile_package()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    walls: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, Sandbox(tasks=args.tasks, process=True) as sb:
        env.update(sb.env, XDG_CACHE_HOME=f"{tmp}/cache", ECSEXEC_HISTORY="off")
        subprocess.run([*ECSEXEC, "nodes"], env=env, capture_output=True, check=True)
        argv = [*ECSEXEC, "run", "-F", "ECS:Exec-Agent-Status: RUNNING", "--yes", "--"]
        for _ in range(args.runs):
            started = time.perf_counter()
            done = subprocess.run(
                [*argv, "echo hi"], env=env, capture_output=True, text=True, check=False
            )
            walls.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"run failed ({done.returncode}): {done.stderr[-500:]}")
            print(f"{walls[-1]:.2f} s: {done.stderr.strip().splitlines()[-1]}")
    median = statistics.median(walls)
    print(f"median {median:.2f} s for {args.tasks} nodes ({median / TARGET:.2f}x the 2 s target)")
    print(
        json.dumps(
            {
                "bench": "default_fanout",
                "nodes": args.tasks,
                "walls_s": [round(w, 3) for w in walls],
                "median_s": round(median, 3),
                "ratio": round(median / TARGET, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
