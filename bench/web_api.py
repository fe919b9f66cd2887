"""Benchmark the web console's API: listing 1,000 nodes once the inventory is cached.

Usage: .venv/bin/python bench/web_api.py [--nodes N] [--requests R] [--users U]

A sandbox with N exec-ready tasks runs as a child process, and ``ecsexec server``'s app
(``open_server_app``) as another, so the client measuring here shares no interpreter with
either. After one warm-up request (the discovery), it times R sequential
``GET /api/v1/nodes`` calls, then U concurrent users each making R/U calls, and prints
p50/p95 latency, the response size, requests per second, and p95 against the 100 ms
target (issue 17), then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

TARGET_P95_MS = 100.0


def serve(state_dir: Path, port: int) -> None:
    """The child: the server's app on 127.0.0.1:port over the sandbox in the environment."""
    from aiohttp import web

    from ecsexec.app import Client, SourceOverrides
    from ecsexec.aws.clients import session_from_env
    from ecsexec.config import load_config
    from ecsexec.store.keys import KeyStore
    from ecsexec.store.team import database_path
    from ecsexec.web.app import open_server_app
    from ecsexec.web.keys import ServerSettings

    env = dict(os.environ)
    config = load_config(search=False, environ={})

    async def main() -> None:
        engine = Client(
            config,
            sources=SourceOverrides(regions=("us-east-1",)),
            history=database_path(state_dir),
            session_factory=lambda region: session_from_env(env, region),
        )
        app = open_server_app(
            config, engine, ServerSettings(state_dir=state_dir), keystore=KeyStore(state_dir / "k")
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("READY", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def timed(session: aiohttp.ClientSession, url: str, times: list[float]) -> int:
    started = time.perf_counter()
    async with session.get(url) as response:
        body = await response.read()
        assert response.status == 200, body[:300]
    times.append((time.perf_counter() - started) * 1000)
    return len(body)


async def measure(base: str, token: str, requests: int, users: int) -> dict[str, float]:
    url = f"{base}/api/v1/nodes"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        warm: list[float] = []
        size = await timed(session, url, warm)  # discovery: fills the inventory cache
        async with session.get(url) as response:
            count = (await response.json())["count"]
        sequential: list[float] = []
        for _ in range(requests):
            await timed(session, url, sequential)

    concurrent: list[float] = []

    async def user() -> None:
        async with aiohttp.ClientSession(headers=headers) as own:
            for _ in range(max(1, requests // users)):
                await timed(own, url, concurrent)

    wall0 = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(users)))
    wall = time.perf_counter() - wall0
    return {
        "nodes": count,
        "bytes": size,
        "first_ms": warm[0],
        "p50_ms": percentile(sequential, 0.5),
        "p95_ms": percentile(sequential, 0.95),
        "users": users,
        "concurrent_p50_ms": percentile(concurrent, 0.5),
        "concurrent_p95_ms": percentile(concurrent, 0.95),
        "concurrent_rps": len(concurrent) / wall,
        "mean_ms": statistics.fmean(sequential),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    from ecsexec.sandbox import Sandbox
    from ecsexec.store.team import database_path, open_team_store
    from ecsexec.web.passwords import hash_password, new_api_token, new_secret

    with (
        Sandbox(tasks=args.nodes, seed=1, throttle="off", process=True, strict=False) as sb,
        tempfile.TemporaryDirectory(prefix="ecsexec-bench-") as tmp,
    ):
        state = Path(tmp)
        store = open_team_store(database_path(state))
        store.add_user("bench", "viewer", hash_password(new_secret()))
        token, digest = new_api_token()
        store.add_token("bench", "bench", digest, None)
        store.close()
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | sb.env
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(state), "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if line.strip() != "READY":
                raise SystemExit(f"the server did not start: {line!r}")
            figures = asyncio.run(
                measure(f"http://127.0.0.1:{port}", token, args.requests, args.users)
            )
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"GET /api/v1/nodes: {figures['nodes']} nodes, {figures['bytes'] / 1024:.0f} KiB")
    print(f"  first (discovery): {figures['first_ms']:.0f} ms")
    print(
        f"  cached, one user:  p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms "
        f"({figures['p95_ms'] / TARGET_P95_MS:.2f} x the {TARGET_P95_MS:.0f} ms target)"
    )
    print(
        f"  {args.users} users at once: p50 {figures['concurrent_p50_ms']:.1f} ms, "
        f"p95 {figures['concurrent_p95_ms']:.1f} ms, {figures['concurrent_rps']:.0f} requests/s"
    )
    print(json.dumps(figures | {"target_p95_ms": TARGET_P95_MS}))


if __name__ == "__main__":
    main()
