"""Benchmark CLI start-up: `ecsexec --help` / `--version`, and the first ExecuteCommand.

Usage: .venv/bin/python bench/startup.py [--runs N]

Targets (issue 15): --help and --version in at most 0.15 s; `ecsexec run` sends its first
ExecuteCommand within 0.3 s of starting when the node cache is warm. The second figure is
taken against a sandbox in a child process: the time from spawning `ecsexec run` to the
sandbox counting its first ExecuteCommand (polled every millisecond), with the run
history on (the default: the run is recorded before its first call) and off. Prints
medians, their ratio to the target, then one JSON line.
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
HELP_TARGET = 0.15
FIRST_CALL_TARGET = 0.3


def wall(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, capture_output=True, check=True)
    return time.perf_counter() - started


def execute_calls(sb: Sandbox) -> int:
    ecs = sb.stats()["api"].get("ecs", {})
    return int(ecs.get("ExecuteCommand", {}).get("calls", 0))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far (Linux, clock-tick resolution)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_execute_command(sb: Sandbox, env: dict[str, str]) -> tuple[float, float]:
    """Wall time from spawning `ecsexec run` to the sandbox counting its ExecuteCommand,
    and the CPU the process had used by then (load on the machine inflates the first
    much more than the second)."""
    before = execute_calls(sb)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*ECSEXEC, "run", "-F", "ECS:Service-Name: legacy", "--", "true"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while execute_calls(sb) == before:
        if proc.poll() is not None:
            raise SystemExit("ecsexec run ended before any ExecuteCommand")
        time.sleep(0.001)
    took = time.perf_counter() - started
    cpu = cpu_seconds(proc.pid)
    proc.wait(timeout=60)
    return took, cpu


def compile_package() -> None:
    """Byte-compile ecsexec as installing a wheel does: an editable checkout run with
    PYTHONDONTWRITEBYTECODE set would otherwise compile every module on each start."""
    compileall.compile_dir(Path(ecsexec.__file__).parent, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    compile_package()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    help_s = statistics.median(wall([*ECSEXEC, "--help"], env) for _ in range(args.runs))
    version_s = statistics.median(wall([*ECSEXEC, "--version"], env) for _ in range(args.runs))
    with tempfile.TemporaryDirectory() as tmp, Sandbox(initial_wait=0.05, process=True) as sb:
        env.update(sb.env, XDG_CACHE_HOME=f"{tmp}/cache", XDG_STATE_HOME=f"{tmp}/state")
        subprocess.run([*ECSEXEC, "nodes"], env=env, capture_output=True, check=True)  # warm
        quiet_env = {**env, "ECSEXEC_HISTORY": "off"}
        firsts, quiet = [], []
        for _ in range(args.runs):  # alternately, so load on the machine hits both alike
            firsts.append(first_execute_command(sb, env))
            quiet.append(first_execute_command(sb, quiet_env))
        first_s = statistics.median(wall_s for wall_s, _ in firsts)
        first_cpu_s = statistics.median(cpu_s for _, cpu_s in firsts)
        quiet_s = statistics.median(wall_s for wall_s, _ in quiet)
    print(f"ecsexec --help:    {help_s:.3f} s median ({help_s / HELP_TARGET:.2f}x the target)")
    print(f"ecsexec --version: {version_s:.3f} s ({version_s / HELP_TARGET:.2f}x the target)")
    print(
        f"first ExecuteCommand, warm cache: {first_s:.3f} s "
        f"({first_s / FIRST_CALL_TARGET:.2f}x the {FIRST_CALL_TARGET} s target); "
        f"{first_cpu_s:.2f} s of CPU by then (median; load average {os.getloadavg()[0]:.1f})"
    )
    print(
        f"  the same with ECSEXEC_HISTORY=off: {quiet_s:.3f} s "
        f"({quiet_s / FIRST_CALL_TARGET:.2f}x the target)"
    )
    print(
        json.dumps(
            {
                "bench": "startup",
                "help_s": round(help_s, 4),
                "version_s": round(version_s, 4),
                "first_execute_command_s": round(first_s, 4),
                "first_execute_command_cpu_s": round(first_cpu_s, 3),
                "first_execute_command_history_off_s": round(quiet_s, 4),
                "help_ratio": round(help_s / HELP_TARGET, 3),
                "first_call_ratio": round(first_s / FIRST_CALL_TARGET, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
