"""Benchmark many concurrent idle sessions: client memory per session, sandbox cost and lag.

Usage: .venv/bin/python bench/idle_sessions.py [--sessions N]

Starts a sandbox as a child process (throttling off, agent initial wait 0) with N
exec-ready tasks, opens one ECS Exec session per task running `sleep`, keeps them all
attached and idle, checks that a fresh command still answers, then terminates them all.
Prints human-readable figures and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import psutil

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.runner import ContainerTarget, run_on_container, start_exec_session
from ecsexec.exec.wrap import raw, wrap
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.sandbox import Sandbox
from ecsexec.ssm.channel import OutputReceived
from ecsexec.ssm.session import Session


async def open_idle(pool: ConnectorPool, targets: list[ContainerTarget]) -> list[Session]:
    async def one(target: ContainerTarget) -> Session:
        connector = pool(target)
        started = await start_exec_session(
            connector, target, raw("sh -c 'echo up; exec sleep 600'")
        )
        session = connector.session(started)
        await session.start()
        while True:  # wait until the command runs and its first output arrived
            event = await session.next_event()
            if isinstance(event, OutputReceived):
                return session

    return await asyncio.gather(*(one(t) for t in targets))


async def main_async(sb: Sandbox, sessions: int) -> dict[str, float]:
    env = sb.env
    api = EcsApi(session_from_env(env), region="us-east-1")
    nodes, _ = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api).discover()
    targets = [ContainerTarget.from_attributes(n.name, n.attributes) for n in nodes]
    probe, targets = targets[0], targets[1 : sessions + 1]
    pool = ConnectorPool(lambda region: session_from_env(env, region), default_region="us-east-1")
    process = psutil.Process(os.getpid())
    pool(probe)  # build clients before measuring
    rss_before = process.memory_info().rss
    cpu_before = time.process_time()
    sb.reset_stats()
    start = time.perf_counter()
    opened = await open_idle(pool, targets)
    open_seconds = time.perf_counter() - start
    client_cpu_open = time.process_time() - cpu_before
    rss_after = process.memory_info().rss
    open_stats = sb.stats()
    sb.reset_stats()
    idle_cpu_start = time.process_time()
    await asyncio.sleep(5)  # everything idle: what do N attached sessions cost?
    client_idle_cpu = time.process_time() - idle_cpu_start
    idle_stats = sb.stats()
    probe_start = time.perf_counter()
    result = await run_on_container(pool(probe), probe, wrap("echo probe"), timeout=60)
    probe_seconds = time.perf_counter() - probe_start
    assert result.output == b"probe\n", result
    sb.reset_stats()
    await asyncio.gather(*(s.terminate("benchmark done") for s in opened))
    await asyncio.gather(*(s.aclose() for s in opened))
    close_stats = sb.stats()
    await pool.aclose()  # ExecuteCommand's HTTP connections, on this loop
    return {
        "sessions": len(opened),
        "open_seconds": round(open_seconds, 2),
        "client_cpu_ms_per_session_open": round(client_cpu_open / len(opened) * 1000, 2),
        "client_rss_kb_per_idle_session": round((rss_after - rss_before) / len(opened) / 1024, 1),
        "client_cpu_percent_idle": round(client_idle_cpu / 5 * 100, 2),
        "sandbox_cpu_percent_idle": round(idle_stats["cpu_seconds"] / 5 * 100, 2),
        "sandbox_loop_lag_p99_ms_idle": idle_stats["loop_lag_ms"]["p99"],
        "probe_command_seconds": round(probe_seconds, 3),
        "sandbox_cpu_ms_per_session_open": round(open_stats["cpu_seconds"] / len(opened) * 1000, 2),
        "sandbox_cpu_ms_per_session_close": round(
            close_stats["cpu_seconds"] / len(opened) * 1000, 2
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    args = parser.parse_args()
    with Sandbox(
        tasks=args.sessions + 1, seed=1, initial_wait=0.0, throttle="off", process=True
    ) as sb:
        sandbox_proc = psutil.Process(int(sb.info["pid"]))
        figures = asyncio.run(main_async(sb, args.sessions))
        figures["sandbox_rss_mb"] = round(sandbox_proc.memory_info().rss / 1e6, 1)
    print(
        f"{figures['sessions']} sessions opened in {figures['open_seconds']} s "
        f"({figures['client_cpu_ms_per_session_open']} ms client CPU each)"
    )
    print(
        f"client memory per idle session: {figures['client_rss_kb_per_idle_session']} KiB; "
        f"client CPU while idle: {figures['client_cpu_percent_idle']} %"
    )
    print(
        f"sandbox while idle: {figures['sandbox_cpu_percent_idle']} % CPU, loop lag p99 "
        f"{figures['sandbox_loop_lag_p99_ms_idle']} ms, RSS {figures['sandbox_rss_mb']} MB"
    )
    print(f"a fresh command with all of them open: {figures['probe_command_seconds']} s")
    print(
        f"sandbox CPU per session: {figures['sandbox_cpu_ms_per_session_open']} ms to open "
        f"(ExecuteCommand, spawn, frames), {figures['sandbox_cpu_ms_per_session_close']} ms "
        "to terminate"
    )
    print(json.dumps({"bench": "idle_sessions", **figures}))


if __name__ == "__main__":
    main()
