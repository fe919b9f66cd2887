"""Benchmark reconnects: one command on N nodes under the sandbox's disconnect fault, verified.

Usage: .venv/bin/python bench/reconnect.py [--nodes 60] [--faults disconnect=0.02,seed=16]
       [--command 'seq 1 20000'] [--threads N] [--drain-timeout S] [--runs K] [--trace N]

Every node's cleaned output is compared with the same command run locally without a PTY,
and its exit code with 0. Prints how many nodes were exact and, for the others, each
distinct reason; the sandbox's disconnects, ResumeSession calls and agent resends; the
client's reconnects (with their durations) and the acks it wrote again; then one JSON
line. ``--trace N`` prints the client-side timeline of up to N nodes that were not exact
(socket lost, ResumeSession, reconnected, duplicates, acks written again,
channel_closed), in seconds since the session started. The sandbox runs as a child
process with the real agent settings (1 s initial wait, 2 s drain) unless told
otherwise. Exit status 1 if any node is not exact.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import DispatchOptions, dispatch
from ecsexec.exec.results import RunResult
from ecsexec.exec.runner import ContainerTarget
from ecsexec.exec.wrap import wrap
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.sandbox import Sandbox
from ecsexec.ssm import session as session_module
from ecsexec.ssm.channel import ChannelClosed

Session = session_module.Session


class Recorder:
    """Wraps a few Session methods to count reconnects and keep a per-session timeline."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.durations: list[float] = []
        self.events: dict[str, list[str]] = collections.defaultdict(list)
        self._t0: dict[str, float] = {}

    def reset(self) -> None:
        self.counts.clear()
        self.durations.clear()
        self.events.clear()
        self._t0.clear()

    def note(self, session: Session, text: str) -> None:
        t0 = self._t0.setdefault(session.session_id, time.perf_counter())
        self.events[session.session_id].append(f"{time.perf_counter() - t0:7.3f}  {text}")

    def install(self) -> None:
        recorder = self
        start, shutdown = Session.start, Session._shutdown
        reconnect, on_message = Session._reconnect, Session._on_message
        dispatch_events = Session._dispatch_events

        async def traced_start(self: Session) -> None:
            recorder.note(self, "start")
            await start(self)

        async def traced_shutdown(self: Session) -> None:
            recorder.counts["sessions"] += 1
            recorder.counts["reconnects"] += self.reconnects
            recorder.counts["reacks"] += self.reacks
            await shutdown(self)

        async def traced_reconnect(self: Session) -> None:
            assert self.channel is not None
            channel = self.channel
            held = channel._reorder  # frames above the gap (a private field, read only)
            missing = max(held) - channel.expected_sequence + 1 - len(held) if held else 0
            recorder.note(
                self,
                f"socket lost: expected seq {channel.expected_sequence}, "
                + (f"{missing} missing below {len(held)} held" if held else "no gap"),
            )
            began = time.perf_counter()
            try:
                await reconnect(self)
            except Exception as exc:
                recorder.note(self, f"not resumed: {exc}")
                raise
            finally:
                recorder.durations.append(time.perf_counter() - began)
            recorder.note(self, f"resumed in {(time.perf_counter() - began) * 1000:.0f} ms")

        def traced_on_message(self: Session, data: bytes) -> None:
            assert self.channel is not None
            duplicates, pending = self.channel.stats.duplicates, len(self._reacks)
            on_message(self, data)
            if self.channel.stats.duplicates != duplicates:
                seq = int.from_bytes(data[48:56], "big", signed=True)
                again = len(self._reacks) - pending
                recorder.note(
                    self, f"duplicate of seq {seq}" + (f", {again} acks again" if again else "")
                )

        def traced_dispatch(self: Session) -> None:
            assert self.channel is not None
            for event in self.channel._events:
                if isinstance(event, ChannelClosed):
                    recorder.note(
                        self,
                        f"channel closed{' (truncated at ' if event.truncated else ''}"
                        f"{event.missing_seq if event.truncated else ''}"
                        f"{')' if event.truncated else ''}: {event.output!r}",
                    )
            dispatch_events(self)

        Session.start = traced_start  # type: ignore[method-assign]
        Session._shutdown = traced_shutdown  # type: ignore[method-assign]
        Session._reconnect = traced_reconnect  # type: ignore[method-assign]
        Session._on_message = traced_on_message  # type: ignore[method-assign]
        Session._dispatch_events = traced_dispatch  # type: ignore[method-assign]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def one_run(args: argparse.Namespace, expected: bytes, recorder: Recorder) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.drain_timeout is not None:
        settings["drain_timeout"] = args.drain_timeout
    recorder.reset()
    with Sandbox(
        tasks=args.nodes,
        seed=1,
        initial_wait=args.initial_wait,
        throttle="off",
        process=True,
        strict=False,
        faults=args.faults,
        **settings,
    ) as sb:
        env = sb.env
        api = EcsApi(session_from_env(env), region="us-east-1")
        nodes, _ = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api).discover()
        targets = [ContainerTarget.from_attributes(n.name, n.attributes) for n in nodes]
        pool = ConnectorPool(lambda r: session_from_env(env, r), default_region="us-east-1")
        pool(targets[0])
        sb.reset_stats()
        wall0 = time.perf_counter()

        async def run() -> RunResult:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(args.workers))
            options = DispatchOptions(threads=args.threads or len(targets), rate=1000, timeout=300)
            async with pool:
                return await dispatch(pool, targets, wrap(args.command), options=options)

        result = asyncio.run(run())
        wall = time.perf_counter() - wall0
        stats = sb.stats()
    reasons: collections.Counter[str] = collections.Counter()
    exact = 0
    for r in result.results.values():
        if r.exit_code == 0 and r.output == expected:
            exact += 1
            continue
        if r.error is not None:
            why = f"error: {r.error}"
        elif r.exit_code == 0:
            why = f"exit 0 but output differs ({len(r.output)} of {len(expected)} bytes)"
        else:
            why = r.reason or f"exit {r.exit_code}"
        # One line per kind: numbers that vary between nodes become N.
        reasons[" ".join("N" if w.strip(":;,.").isdigit() else w for w in why.split())] += 1
        if args.trace > 0:
            args.trace -= 1
            print(f"--- {r.node} {r.session_id}: {why}")
            for line in recorder.events.get(r.session_id, []):
                print(f"    {line}")
    durations = recorder.durations
    return {
        "nodes": len(result.results),
        "exact": exact,
        "reasons": dict(reasons),
        "wall_seconds": round(wall, 2),
        "disconnects": stats["frames"]["a2c"]["disconnects"]
        + stats["frames"]["c2a"]["disconnects"],
        "resumes": stats["sessions"]["resumes"],
        "client_reconnects": recorder.counts["reconnects"],
        "reconnect_ms_p50": round(percentile(durations, 0.5) * 1000),
        "reconnect_ms_p95": round(percentile(durations, 0.95) * 1000),
        "reconnect_ms_max": round(max(durations, default=0.0) * 1000),
        "client_acks_written_again": recorder.counts["reacks"],
        "agent_retransmissions": stats["agent"]["retransmissions"],
        "end_reasons": {k: v for k, v in stats["sessions"]["by_end_reason"].items() if v},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=60)
    parser.add_argument("--faults", default="disconnect=0.02,seed=16")
    parser.add_argument("--command", default="seq 1 20000")
    parser.add_argument("--threads", type=int, default=0, help="default: one per node")
    parser.add_argument("--workers", type=int, default=8, help="threads for boto3 calls")
    parser.add_argument("--initial-wait", type=float, default=1.0)
    parser.add_argument("--drain-timeout", type=float, default=None)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--trace", type=int, default=0, help="timelines of N inexact nodes")
    args = parser.parse_args()
    expected = subprocess.run(["sh", "-c", args.command], check=True, capture_output=True).stdout
    bad = 0
    recorder = Recorder()
    recorder.install()
    for i in range(args.runs):
        figures = one_run(args, expected, recorder)
        bad += figures["nodes"] - figures["exact"]
        print(
            f"run {i + 1}: {figures['exact']}/{figures['nodes']} exact in "
            f"{figures['wall_seconds']} s; sandbox: {figures['disconnects']} disconnects, "
            f"{figures['resumes']} ResumeSession, {figures['agent_retransmissions']} agent "
            f"resends; client: {figures['client_reconnects']} reconnects (ms p50/p95/max "
            f"{figures['reconnect_ms_p50']}/{figures['reconnect_ms_p95']}/"
            f"{figures['reconnect_ms_max']}), {figures['client_acks_written_again']} acks "
            f"written again; sessions ended: {figures['end_reasons']}"
        )
        for reason, n in sorted(figures["reasons"].items(), key=lambda kv: -kv[1]):
            print(f"  {n:4d} x {reason}")
        print(
            json.dumps(
                {"bench": "reconnect", "command": args.command, "faults": args.faults, **figures}
            )
        )
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
