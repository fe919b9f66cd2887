"""Benchmark one session streaming a large output: client MB/s and CPU per MB, verified.

Usage: .venv/bin/python bench/streaming.py [--lines N]

The remote command is `seq 1 N` (N=12,500,000 prints about 100 MB); the client checks
the cleaned output's SHA-256 against the same `seq` run locally. The sandbox runs as a
child process with agent initial wait 0.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import time

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.runner import ContainerTarget, run_on_container
from ecsexec.exec.wrap import wrap
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.sandbox import Sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=12_500_000)
    args = parser.parse_args()
    expected = hashlib.sha256(
        subprocess.run(["seq", "1", str(args.lines)], check=True, capture_output=True).stdout
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
        digest = hashlib.sha256()
        size = 0

        def on_output(_node: str, data: bytes, _held: bool) -> None:
            nonlocal size
            digest.update(data)
            size += len(data)

        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = asyncio.run(
            run_on_container(
                connector, target, wrap(f"seq 1 {args.lines}"), timeout=3600, on_output=on_output
            )
        )
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        stats = sb.stats()
    megabytes = size / 1e6
    verified = digest.hexdigest() == expected and result.exit_code == 0
    figures = {
        "megabytes": round(megabytes, 1),
        "wall_seconds": round(wall, 2),
        "client_mb_per_s": round(megabytes / wall, 1),
        "client_cpu_ms_per_mb": round(cpu / megabytes * 1000, 1),
        "verified": verified,
        "sandbox_cpu_seconds": stats["cpu_seconds"],
        "agent_retransmissions": stats["agent"]["retransmissions"],
    }
    print(
        f"{figures['megabytes']} MB in {figures['wall_seconds']} s: "
        f"{figures['client_mb_per_s']} MB/s, {figures['client_cpu_ms_per_mb']} ms client CPU "
        f"per MB; checksum {'verified' if verified else 'MISMATCH'}"
    )
    print(f"sandbox: {stats['cpu_seconds']} s CPU, {stats['agent']['retransmissions']} resends")
    print(json.dumps({"bench": "streaming", **figures}))
    if not verified:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
