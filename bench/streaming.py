"""Benchmark one session streaming a large output: client MB/s and CPU per MB, verified.

Usage: .venv/bin/python bench/streaming.py [--producer logs|seq] [--megabytes N]
       .venv/bin/python bench/streaming.py --command 'any shell command'

The default producer prints N MB (100) of 104-byte log lines through `yes | head -c`.
`--producer seq` prints `seq 1 N` (8-byte lines, about 100 MB for N=12,500,000); it is
bound by the kernel, not by ecsexec: the PTY's ONLCR output processing costs per newline.
bench/pty_ceiling.py measures what a PTY alone carries of each producer.

The client checks the cleaned output's SHA-256 against the same command run locally
without a PTY (after the clock stops: the check is the benchmark's, not the client's
work). The sandbox runs as a child process with agent initial wait 0. Client CPU covers
ExecuteCommand, the session and the output cleaner, split into user and system time,
with its ratio to issue 15's target (10 ms per MB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import subprocess
import time

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.results import CommandResult
from ecsexec.exec.runner import ContainerTarget, run_on_container
from ecsexec.exec.wrap import wrap
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.sandbox import Sandbox

CPU_TARGET_MS_PER_MB = 10.0  # issue 15: client CPU per MB of the log-line producer
LOG_LINE = (
    "2026-11-30T05:33:00.123Z INFO [orders-3] request handled in 12 ms "
    "path=/api/v1/orders/123456789 status=200"
)


def producer_command(producer: str, megabytes: int) -> str:
    if producer == "seq":
        return f"seq 1 {megabytes * 125_000}"
    return f"yes '{LOG_LINE}' | head -c {megabytes * 1_000_000}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producer", choices=["logs", "seq"], default="logs")
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--command", help="any shell command instead of a producer")
    args = parser.parse_args()
    command = args.command or producer_command(args.producer, args.megabytes)
    expected = hashlib.sha256(
        subprocess.run(["sh", "-c", command], check=True, capture_output=True).stdout
    ).hexdigest()
    with Sandbox(
        tasks=1, seed=1, initial_wait=0.0, throttle="off", process=True, strict=False
    ) as sb:
        env = sb.env
        api = EcsApi(session_from_env(env), region="us-east-1")
        nodes, _ = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api).discover()
        target = ContainerTarget.from_attributes(nodes[0].name, nodes[0].attributes)
        pool = ConnectorPool(lambda r: session_from_env(env, r), default_region="us-east-1")
        connector = pool(target)
        connector.ecs.prepare_exec()  # once per run, not per MB
        size = 0

        def on_output(_node: str, data: bytes, _held: bool) -> None:
            # What a consumer gets live; the checksum is taken after the clock stops (it
            # is the benchmark's check, not the client's work).
            nonlocal size
            size += len(data)

        sandbox_cpu0 = sb.stats()["cpu_seconds"]
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0, wall0 = time.process_time(), time.perf_counter()

        async def run() -> CommandResult:
            async with pool:  # its HTTP connections are closed on this loop
                return await run_on_container(
                    connector, target, wrap(command), timeout=3600, on_output=on_output
                )

        result = asyncio.run(run())
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stats = sb.stats()
    megabytes = size / 1e6
    sandbox_cpu = stats["cpu_seconds"] - sandbox_cpu0
    user_ms = (usage.ru_utime - usage0.ru_utime) / megabytes * 1000
    system_ms = (usage.ru_stime - usage0.ru_stime) / megabytes * 1000
    received = hashlib.sha256(result.output).hexdigest()
    verified = received == expected and len(result.output) == size and result.exit_code == 0
    figures = {
        "command": command,
        "megabytes": round(megabytes, 1),
        "wall_seconds": round(wall, 2),
        "client_mb_per_s": round(megabytes / wall, 1),
        "client_cpu_ms_per_mb": round(cpu / megabytes * 1000, 1),
        "client_user_ms_per_mb": round(user_ms, 1),
        "client_system_ms_per_mb": round(system_ms, 1),
        "cpu_ratio": round(cpu / megabytes * 1000 / CPU_TARGET_MS_PER_MB, 2),
        "sandbox_cpu_ms_per_mb": round(sandbox_cpu / megabytes * 1000, 1),
        "verified": verified,
        "agent_retransmissions": stats["agent"]["retransmissions"],
    }
    print(f"command: {command}")
    print(
        f"{figures['megabytes']} MB in {figures['wall_seconds']} s: "
        f"{figures['client_mb_per_s']} MB/s, {figures['client_cpu_ms_per_mb']} ms client CPU "
        f"per MB; checksum {'verified' if verified else 'MISMATCH'}"
    )
    print(
        f"client CPU: {figures['client_user_ms_per_mb']} ms/MB user + "
        f"{figures['client_system_ms_per_mb']} ms/MB system; {figures['cpu_ratio']}x the "
        f"target of {CPU_TARGET_MS_PER_MB} ms per MB"
    )
    print(
        f"sandbox: {figures['sandbox_cpu_ms_per_mb']} ms CPU per MB, "
        f"{figures['agent_retransmissions']} resends"
    )
    print(json.dumps({"bench": "streaming", **figures}))
    if not verified:
        raise SystemExit(
            f"not verified: exit code {result.exit_code}, {result.reason or 'no reason given'}"
        )


if __name__ == "__main__":
    main()
