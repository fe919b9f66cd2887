"""Many containers at once: concurrency, throttling, keepgoing/fail-fast, order, Ctrl-C."""

from __future__ import annotations

import asyncio

import pytest

from ecsexec.errors import Status
from ecsexec.exec.dispatcher import (
    DEFAULT_BURST,
    DEFAULT_THREADS,
    AdaptiveRateLimiter,
    DispatchOptions,
    NodeFinished,
    NodeOutput,
    NodeStarted,
    NodeThrottled,
    ProgressEvent,
    dispatch,
)
from ecsexec.exec.results import CommandResult
from ecsexec.exec.wrap import wrap
from ecsexec.sandbox import Sandbox
from tests.exec.sandbox_nodes import pool, targets, with_pool


def test_fan_out_collects_every_exit_code_in_rank_order(sandbox: Sandbox) -> None:
    chosen = targets(sandbox, "ECS:Service-Name: web,api")
    events: list[ProgressEvent] = []
    result = with_pool(
        sandbox,
        lambda p: dispatch(
            p,
            chosen,
            wrap('echo "$HOSTNAME"; exit 4'),
            options=DispatchOptions(threads=8),
            on_event=events.append,
        ),
    )
    assert list(result.results) == [t.node for t in chosen]
    assert all(isinstance(r, CommandResult) and r.exit_code == 4 for r in result.results.values())
    assert result.exit_status == 1 and len(result.failed) == len(chosen)
    started = {e.node for e in events if isinstance(e, NodeStarted)}
    finished = {e.node for e in events if isinstance(e, NodeFinished)}
    assert started == finished == {t.node for t in chosen}
    # The live chunks add up to each node's recorded output, byte for byte (how the PTY
    # splits them into reads depends on the machine's load).
    for target in chosen:
        live = b"".join(
            e.data for e in events if isinstance(e, NodeOutput) and e.node == target.node
        )
        assert live == result[target.node].output and live.endswith(b"\n")


def test_node_errors_are_kept_beside_results(sandbox: Sandbox) -> None:
    chosen = targets(sandbox, "ECS:Service-Name: worker")
    result = with_pool(sandbox, lambda p: dispatch(p, chosen, wrap("true")))
    statuses = sorted(v.status for v in result.results.values())
    assert statuses == [Status.ERROR, Status.SUCCEEDED]
    error = next(v for v in result.results.values() if v.error is not None)
    assert "STOPPED" in str(error.error) and error.reason == str(error.error)
    assert result.exit_status == 3


def test_fail_fast_stops_starting_new_nodes(sandbox: Sandbox) -> None:
    chosen = targets(sandbox, "ECS:Service-Name: web ECS:Cluster-Name: demo")
    result = with_pool(
        sandbox,
        lambda p: dispatch(
            p, chosen, wrap("exit 1"), options=DispatchOptions(threads=1, keepgoing=False)
        ),
    )
    assert len(result.results) == len(chosen)  # not-started nodes are results too
    assert len(result.not_started) == len(chosen) - 1
    assert result.exit_status == 1


def test_throttled_execute_command_is_retried_and_runs_exactly_once() -> None:
    with Sandbox(initial_wait=0.05, throttle="ExecuteCommand:8/s:2") as sb:
        chosen = targets(sb, "ECS:Cluster-Name: demo ECS:Exec-Agent-Status: RUNNING")
        sb.reset_stats()
        events: list[ProgressEvent] = []
        result = with_pool(
            sb,
            lambda p: dispatch(
                p,
                chosen,
                wrap("echo once"),
                options=DispatchOptions(threads=50, rate=100),
                on_event=events.append,
            ),
        )
        stats = sb.stats()
    assert all(r.ok for r in result.results.values()), result.results
    assert any(isinstance(e, NodeThrottled) for e in events)
    api = stats["api"]["ecs"]["ExecuteCommand"]
    assert api["errors"]["ThrottlingException"] > 0
    # Every node ran its command exactly once: one session per node, no more.
    assert stats["sessions"]["opened"] == len(chosen)
    assert all(r.output == b"once\n" for r in result.results.values())


def test_cancelling_a_dispatch_terminates_every_session_and_keeps_partial_results(
    sandbox: Sandbox,
) -> None:
    chosen = targets(sandbox, "ECS:Service-Name: web ECS:Cluster-Name: demo")
    outputs: set[str] = set()

    async def scenario():  # type: ignore[no-untyped-def]
        all_started = asyncio.Event()

        def on_event(event: ProgressEvent) -> None:
            if isinstance(event, NodeOutput):
                outputs.add(event.node)
                if len(outputs) == len(chosen):
                    all_started.set()

        async with pool(sandbox) as connectors:
            task = asyncio.create_task(
                dispatch(connectors, chosen, wrap("echo up; sleep 60"), on_event=on_event)
            )
            await asyncio.wait_for(all_started.wait(), 30)
            task.cancel()
            return await task

    before = sandbox.stats()["sessions"]["by_end_reason"]["terminated"]
    result = asyncio.run(scenario())
    assert result.interrupted and result.exit_status == 130
    assert {o.status for o in result.results.values()} == {"cancelled"}
    # What arrived before the interruption is kept (the held-back line break may not be).
    assert all(o.output.startswith(b"up") for o in result.results.values())
    assert sandbox.stats()["sessions"]["by_end_reason"]["terminated"] == before + len(chosen)


def test_rate_limiter_spaces_calls_halves_on_throttling_and_recovers() -> None:
    limiter = AdaptiveRateLimiter(8.0)
    delays = [limiter.reserve(0.0) for _ in range(16)]
    assert delays[:8] == [0.0] * 8  # the burst
    assert delays[8:] == pytest.approx([i / 8 for i in range(1, 9)])  # then 8 per second
    assert limiter.reserve(10.0) == 0.0  # the bucket refilled
    limiter.throttled(10.0)
    limiter.throttled(10.5)  # throttles within a second are one signal
    assert limiter.rate == 4.0
    assert limiter.reserve(10.0) == pytest.approx(0.25)  # no tokens left after throttling
    for _ in range(100):
        limiter.succeeded()
    assert limiter.rate == 8.0


def test_default_sessions_at_once_leave_room_for_the_whole_burst() -> None:
    # Fewer sessions at once than the burst would start the nodes past them a whole
    # session later, though the rate limit would let them start now.
    assert DEFAULT_THREADS >= DEFAULT_BURST
    assert DispatchOptions().threads == DEFAULT_THREADS


def test_two_hundred_nodes_with_fifty_threads() -> None:
    with Sandbox(tasks=200, seed=3, initial_wait=0.05) as sb:
        chosen = targets(sb, ".*")
        active = peak = 0

        def on_event(event: ProgressEvent) -> None:
            nonlocal active, peak
            if isinstance(event, NodeStarted):
                active += 1
                peak = max(peak, active)
            elif isinstance(event, NodeFinished):
                active -= 1

        result = with_pool(
            sb,
            lambda p: dispatch(
                p,
                chosen,
                wrap('echo "$HOSTNAME"; exit 3'),
                options=DispatchOptions(threads=50, rate=100),
                on_event=on_event,
            ),
        )
        stats = sb.stats()
    assert len(chosen) == 200
    assert {r.exit_code for r in result.results.values()} == {3}  # type: ignore[union-attr]
    assert peak == 50
    assert stats["sessions"]["opened"] == 200 and stats["sessions"]["active"] == 0
