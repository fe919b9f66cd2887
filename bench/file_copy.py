"""Benchmark ``ecsexec cp``'s engine: a binary file up to a sandbox container and back.

Usage: .venv/bin/python bench/file_copy.py [--megabytes N]

Uploads N MB (50) of random bytes with ``Client.copy`` to one container, downloads it
again, checks the round trip byte for byte, and prints MB/s each way, the ratio to the
10 MB/s target of issue 16, and the client's CPU per MB. Each copy is checked end to end
by ecsexec itself (SHA-256). The sandbox runs as a child process with agent initial wait 0,
so it does not compete for the client's GIL; times include ExecuteCommand and attaching.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from ecsexec.app import Client, SourceOverrides
from ecsexec.aws.clients import session_from_env
from ecsexec.config import load_config
from ecsexec.exec.results import RunResult
from ecsexec.sandbox import Sandbox

TARGET_MB_PER_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    size = args.megabytes * 1_000_000
    with (
        tempfile.TemporaryDirectory() as scratch,
        Sandbox(
            tasks=1, seed=1, initial_wait=0.0, throttle="off", process=True, strict=False
        ) as sb,
    ):
        original = Path(scratch) / "original.bin"
        back = Path(scratch) / "back.bin"
        original.write_bytes(os.urandom(size))
        client = Client(
            load_config(search=False, environ={}),
            sources=SourceOverrides(regions=("us-east-1",)),
            history=False,
            session_factory=lambda region: session_from_env(sb.env, region),
        )

        async def timed(node: str, download: bool) -> tuple[float, float, RunResult]:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if download:
                run = client.copy([node], "/tmp/bench.bin", str(back), download=True)
            else:
                run = client.copy([node], str(original), "/tmp/bench.bin")
            result = await run
            return time.perf_counter() - wall0, time.process_time() - cpu0, result

        async def both() -> dict[str, tuple[float, float, RunResult]]:
            async with client:
                node = (await client.nodes()).names[0]
                return {"up": await timed(node, False), "down": await timed(node, True)}

        runs = asyncio.run(both())
        exact = back.exists() and back.read_bytes() == original.read_bytes()
    figures: dict[str, object] = {"megabytes": args.megabytes, "byte_exact": exact}
    for way, (wall, cpu, result) in runs.items():
        if not result.ok:
            raise SystemExit(f"{way}: {[(r.status, r.output, r.reason) for r in result]}")
        rate = size / 1e6 / wall
        figures[way] = {
            "mb_per_s": round(rate, 1),
            "vs_target": round(rate / TARGET_MB_PER_S, 2),
            "seconds": round(wall, 2),
            "client_cpu_ms_per_mb": round(cpu / (size / 1e6) * 1000, 1),
        }
        print(
            f"{way:>4}: {args.megabytes} MB in {wall:.2f} s = {rate:.1f} MB/s "
            f"({rate / TARGET_MB_PER_S:.1f}x the {TARGET_MB_PER_S:g} MB/s target), "
            f"client CPU {cpu / (size / 1e6) * 1000:.1f} ms/MB"
        )
    print(f"round trip byte-exact: {exact}")
    print(json.dumps({"bench": "copy", **figures}))
    if not exact:
        raise SystemExit("the file did not come back byte for byte")


if __name__ == "__main__":
    main()
