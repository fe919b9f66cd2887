"""Benchmark fan-out: one command on N containers in one asyncio process.

Usage: .venv/bin/python bench/fanout.py [--nodes N] [--initial-wait S] [--rate R] [--threads T]
                                       [--cold-containers]

The sandbox runs as a child process with throttling off, so the client's own rate limit
(--rate ExecuteCommand calls/s) and the agent's initial wait are the only floors:
floor = initial_wait + N / rate. The containers are started before timing, as on ECS,
where a container runs before anyone execs into it; --cold-containers leaves each to start
at its first exec (its own namespaces: an init and its mounts), inside the timed run.
Prints wall time, client CPU per node, peak client RSS, sessions per second and
wall/floor, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import DispatchOptions, dispatch
from ecsexec.exec.results import RunResult
from ecsexec.exec.runner import ContainerTarget
from ecsexec.exec.wrap import wrap
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.sandbox import Sandbox


def children_cpu_seconds(pid: int) -> float:
    """CPU of ``pid``'s reaped descendants (cutime + cstime): the containers' processes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every core has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--initial-wait", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--threads", type=int, default=0, help="default: one per node")
    parser.add_argument(
        "--workers", type=int, default=6, help="threads for the blocking boto3 calls left"
    )
    parser.add_argument(
        "--cold-containers",
        action="store_true",
        help="leave each container to start at its first exec, timed (default: start them "
        "before timing, as on ECS, where a container runs before anyone execs into it)",
    )
    args = parser.parse_args()
    threads = args.threads or args.nodes
    with Sandbox(
        tasks=args.nodes,
        seed=1,
        initial_wait=args.initial_wait,
        throttle="off",
        process=True,
        strict=False,
    ) as sb:
        env = sb.env
        api = EcsApi(session_from_env(env), region="us-east-1")
        nodes, _ = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api).discover()
        targets = [ContainerTarget.from_attributes(n.name, n.attributes) for n in nodes]
        pool = ConnectorPool(lambda r: session_from_env(env, r), default_region="us-east-1")
        # Clients built before timing, as in a warm CLI process (they are built on first use).
        pool(targets[0]).ecs.prepare_exec()
        # The containers' namespaces (an init each, ~1.5 ms of CPU) are started before
        # timing unless asked: on ECS they exist before ExecuteCommand.
        started_in = time.perf_counter()
        containers_started = 0 if args.cold_containers else sb.start_containers()
        started_in = time.perf_counter() - started_in
        # What start-up loaded is frozen out of the collector's scans, as `ecsexec` does
        # once its command is loaded (cli/main.py).
        gc.freeze()
        sb.reset_stats()
        sandbox_pid = int(sb.info["pid"])
        children0 = children_cpu_seconds(sandbox_pid)
        busy0 = machine_busy_seconds()
        cpu0, wall0 = time.process_time(), time.perf_counter()

        async def run() -> RunResult:
            # ExecuteCommand runs on the loop; TerminateSession and KMS are blocking boto3
            # calls in worker threads.
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(args.workers))
            options = DispatchOptions(threads=threads, rate=args.rate, timeout=120)
            async with pool:  # its HTTP connections are closed on this loop
                return await dispatch(pool, targets, wrap("echo ok"), options=options)

        result = asyncio.run(run())
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        machine_busy = machine_busy_seconds() - busy0
        stats = sb.stats()
        # Sessions end when their process exits, so by now the sandbox has reaped them all.
        processes_cpu = children_cpu_seconds(sandbox_pid) - children0
    ok = sum(1 for r in result.results.values() if r.ok)
    failures = Counter(
        f"{r.status.value}: {r.reason}" for r in result.results.values() if not r.ok
    ).most_common(3)
    for reason, count in failures:  # a failed node is no figure: say why
        print(f"{count} node(s) failed: {reason}")
    floor = args.initial_wait + len(targets) / args.rate
    figures = {
        "nodes": len(targets),
        "succeeded": ok,
        "initial_wait": args.initial_wait,
        "rate": args.rate,
        "threads": threads,
        "containers_started_before": containers_started,
        "wall_seconds": round(wall, 3),
        "floor_seconds": round(floor, 3),
        "wall_over_floor": round(wall / floor, 2),
        "client_cpu_ms_per_node": round(cpu / len(targets) * 1000, 2),
        "peak_client_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sessions_per_second": round(len(targets) / wall, 1),
        "sandbox_cpu_seconds": stats["cpu_seconds"],
        "container_processes_cpu_seconds": round(processes_cpu, 2),
        "sandbox_loop_lag_p99_ms": stats["loop_lag_ms"]["p99"],
        "machine_busy_cpu_seconds": round(machine_busy, 2),
    }
    print(
        f"{ok}/{len(targets)} nodes ok in {wall:.2f} s (floor {floor:.2f} s: initial wait "
        f"{args.initial_wait} s + {len(targets)} / {args.rate:g} per s) -> "
        f"{figures['wall_over_floor']}x floor"
    )
    if args.cold_containers:
        print("containers: each started at its first exec, inside the timed run")
    else:
        print(
            f"containers: {containers_started} started before timing (in {started_in:.2f} s), "
            "as on ECS"
        )
    print(
        f"client: {figures['client_cpu_ms_per_node']} ms CPU per node, peak RSS "
        f"{figures['peak_client_rss_mb']} MB, {figures['sessions_per_second']} sessions/s"
    )
    print(
        f"sandbox: {stats['cpu_seconds']} s CPU, loop lag p99 "
        f"{stats['loop_lag_ms']['p99']} ms"
        + (" (sandbox-bound)" if stats["loop_lag_ms"]["p99"] > 100 else "")
    )
    total = cpu + stats["cpu_seconds"] + processes_cpu
    print(
        f"machine: the containers' processes (sh, stty, sh) used {processes_cpu:.2f} s "
        f"CPU; client + sandbox + processes = {total:.2f} s CPU in {wall:.2f} s on "
        f"{os.cpu_count()} cores; the machine was busy {machine_busy:.2f} s CPU meanwhile "
        + (
            "(the rest: other processes, and the containers' inits, not yet reaped)"
            if args.cold_containers
            else "(the rest: other processes)"
        )
    )
    print(json.dumps({"bench": "fanout", **figures}))


if __name__ == "__main__":
    main()
