"""Many containers against a scripted backend: concurrency, retries, fail-fast, order and
interruption, each produced exactly (tests/exec/fake_backend.py), with no socket.

tests/exec/test_dispatcher.py runs the same dispatcher end to end on the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from ecsexec.errors import AwsError, Status
from ecsexec.exec.dispatcher import (
    AdaptiveRateLimiter,
    DispatchOptions,
    NodeFinished,
    NodeOutput,
    NodeSessionStarted,
    NodeStarted,
    NodeThrottled,
    ProgressEvent,
    dispatch,
)
from ecsexec.exec.results import RunResult
from ecsexec.exec.runner import ContainerTarget
from ecsexec.exec.wrap import WrappedCommand, wrap
from tests.exec.fake_backend import Begin, FakeBackend, Out, Script, Wait, runs, target

T = TypeVar("T")
FAST = DispatchOptions(rate=1000.0, timeout=30)  # no rate-limiter waits in these tests


def nodes(count: int) -> list[ContainerTarget]:
    return [target(f"n{i}") for i in range(count)]


def run(
    backend: FakeBackend,
    targets: list[ContainerTarget],
    *,
    options: DispatchOptions = FAST,
    command: WrappedCommand | Callable[[ContainerTarget], WrappedCommand] | None = None,
    events: list[ProgressEvent] | None = None,
) -> RunResult:
    return asyncio.run(
        dispatch(
            backend.for_target,
            targets,
            command or wrap("cmd"),
            options=options,
            on_event=None if events is None else events.append,
        )
    )


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (no clock involved; bounded)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


def test_every_node_gets_its_own_exit_code_in_the_given_order_whatever_finishes_first() -> None:
    release = asyncio.Event()
    chosen = nodes(4)
    finished: list[str] = []

    def script(t: ContainerTarget) -> Script:
        code = int(t.node[1:])
        if t.node == "n0":  # the first node finishes last
            return Script([Begin(), Out(b"first\n"), Wait(release), *runs(b"", code)[2:]])
        return Script(runs(f"{t.node}\n".encode(), code))

    def on_event(event: ProgressEvent) -> None:
        if isinstance(event, NodeFinished):
            finished.append(event.node)
            if len(finished) == 3:
                release.set()

    backend = FakeBackend(script)
    result = asyncio.run(
        dispatch(backend.for_target, chosen, wrap("cmd"), options=FAST, on_event=on_event)
    )
    assert finished[-1] == "n0"
    assert list(result.results) == ["n0", "n1", "n2", "n3"]
    assert {n: r.exit_code for n, r in result.results.items()} == {
        "n0": 0,
        "n1": 1,
        "n2": 2,
        "n3": 3,
    }
    assert result["n0"].output == b"first\n" and result["n2"].output == b"n2\n"
    assert result.exit_status == 1 and not result.interrupted


@pytest.mark.parametrize("threads", [1, 3, 7])
def test_no_more_sessions_at_once_than_threads(threads: int) -> None:
    release = asyncio.Event()
    chosen = nodes(7)
    backend = FakeBackend(lambda _t: Script([Wait(release), *runs(b"ok\n", 0)]))

    async def main() -> RunResult:
        task = asyncio.create_task(
            dispatch(
                backend.for_target,
                chosen,
                wrap("cmd"),
                options=DispatchOptions(threads=threads, rate=1000.0, timeout=30),
            )
        )
        await until(lambda: backend.active >= threads)
        for _ in range(100):  # give any node beyond the limit every chance to start
            await asyncio.sleep(0)
        release.set()
        return await task

    result = run_async(main)
    assert backend.peak == threads
    assert all(r.ok for r in result) and len(backend.calls) == 7


def test_a_throttled_execute_command_is_retried_until_it_starts() -> None:
    throttled = AwsError("slow down", code="ThrottlingException", operation="ExecuteCommand")
    backend = FakeBackend(
        {
            "n0": Script(runs(b"once\n", 0), start_errors=[throttled]),
            "n1": Script(runs(b"once\n", 0)),
        }
    )
    events: list[ProgressEvent] = []
    result = run(backend, nodes(2), events=events)
    assert all(r.ok and r.output == b"once\n" for r in result)
    assert backend.calls.count("n0") == 2 and backend.calls.count("n1") == 1
    assert len(backend.sessions) == 2  # one session per node: nothing ran twice
    (event,) = [e for e in events if isinstance(e, NodeThrottled)]
    assert event.node == "n0" and event.delay > 0


@pytest.mark.parametrize(
    "error",
    [
        AwsError("denied", code="AccessDeniedException", operation="ExecuteCommand"),
        AwsError("boom", code="ServerException", operation="ExecuteCommand", retryable=True),
        # ExecuteCommand succeeded (the command runs) and then looking up the runtime id was
        # throttled: retrying would run the command a second time.
        AwsError("slow down", code="ThrottlingException", operation="DescribeTasks"),
    ],
)
def test_only_throttling_of_execute_command_is_retried(error: AwsError) -> None:
    backend = FakeBackend({"n0": Script(runs(b"", 0), start_errors=[error])})
    events: list[ProgressEvent] = []
    result = run(backend, nodes(1), events=events)
    assert backend.calls == ["n0"]  # one call: never a second run
    assert result["n0"].status is Status.ERROR and result["n0"].error is error
    assert not any(isinstance(e, NodeThrottled) for e in events)
    assert result.exit_status == 3


def test_fail_fast_leaves_later_nodes_not_started() -> None:
    backend = FakeBackend(
        lambda t: Script(runs(b"", 1 if t.node == "n1" else 0)),
    )
    result = run(
        backend, nodes(5), options=DispatchOptions(threads=1, keepgoing=False, rate=1000.0)
    )
    assert [r.status for r in result] == [
        Status.SUCCEEDED,
        Status.FAILED,
        Status.NOT_STARTED,
        Status.NOT_STARTED,
        Status.NOT_STARTED,
    ]
    assert backend.calls == ["n0", "n1"]
    assert result.not_started == ("n2", "n3", "n4") and result.exit_status == 1


def test_keepgoing_runs_every_node_after_a_failure() -> None:
    backend = FakeBackend(lambda t: Script(runs(b"", 1 if t.node == "n0" else 0)))
    result = run(backend, nodes(3), options=DispatchOptions(threads=1, rate=1000.0))
    assert [r.status for r in result] == [Status.FAILED, Status.SUCCEEDED, Status.SUCCEEDED]


def test_cancelling_keeps_partial_output_and_terminates_every_session() -> None:
    chosen = nodes(3)
    backend = FakeBackend(lambda t: Script([Begin(), Out(f"{t.node} up\n".encode()), Wait()]))
    seen: set[str] = set()

    def on_event(event: ProgressEvent) -> None:
        if isinstance(event, NodeOutput):
            seen.add(event.node)

    async def main() -> RunResult:
        task = asyncio.create_task(
            dispatch(backend.for_target, chosen, wrap("cmd"), options=FAST, on_event=on_event)
        )
        await until(lambda: len(seen) == 3)
        task.cancel()
        return await task

    result = run_async(main)
    assert result.interrupted and result.exit_status == 130
    assert [r.status for r in result] == [Status.CANCELLED] * 3
    for t in chosen:
        # The line break is held back (it could be the end marker's) when we give up.
        assert result[t.node].output == f"{t.node} up".encode()
    assert sorted(backend.terminated) == sorted(backend.sessions)
    # Said only because the fake's TerminateSession confirmed it.
    assert {r.reason for r in result} == {"interrupted; the session was terminated"}


def test_cancelling_before_some_nodes_started_reports_them_not_started() -> None:
    chosen = nodes(3)
    backend = FakeBackend(lambda _t: Script([Begin(), Out(b"up\n"), Wait()]))

    async def main() -> RunResult:
        task = asyncio.create_task(
            dispatch(
                backend.for_target,
                chosen,
                wrap("cmd"),
                options=DispatchOptions(threads=1, rate=1000.0, timeout=30),
            )
        )
        await until(lambda: backend.active == 1)
        task.cancel()
        return await task

    result = run_async(main)
    assert [r.status for r in result] == [Status.CANCELLED, Status.NOT_STARTED, Status.NOT_STARTED]
    assert backend.calls == ["n0"]


def test_a_timeout_is_per_node_and_keeps_the_others_going() -> None:
    backend = FakeBackend(
        lambda t: Script([Begin(), Out(b"stuck\n"), Wait()] if t.node == "n1" else runs(b"", 0))
    )
    result = run(backend, nodes(3), options=DispatchOptions(rate=1000.0, timeout=0.05))
    assert [r.status for r in result] == [Status.SUCCEEDED, Status.TIMEOUT, Status.SUCCEEDED]
    assert result["n1"].output == b"stuck\n"
    assert backend.terminated == [backend.session_of("n1").session_id]


def test_events_bracket_each_node_and_live_output_adds_up_to_the_result() -> None:
    backend = FakeBackend(lambda t: Script(runs(f"{t.node}\nsecond\n".encode(), 0)))
    events: list[ProgressEvent] = []
    result = run(backend, nodes(2), events=events)
    for name in ("n0", "n1"):
        mine = [e for e in events if getattr(e, "node", None) == name]
        assert isinstance(mine[0], NodeStarted) and isinstance(mine[-1], NodeFinished)
        assert mine[-1].outcome is result[name]
        live = b"".join(e.data for e in mine if isinstance(e, NodeOutput))
        assert live == result[name].output == f"{name}\nsecond\n".encode()


def test_a_per_target_command_that_cannot_be_built_is_that_nodes_error() -> None:
    from ecsexec.errors import ConfigurationError

    def command_for(t: ContainerTarget) -> WrappedCommand:
        if t.node == "n1":
            raise ConfigurationError("no such attribute")
        return wrap(f"echo {t.node}")

    backend = FakeBackend(lambda _t: Script(runs(b"", 0)))
    result = run(backend, nodes(2), command=command_for)
    assert result["n0"].ok
    assert result["n1"].status is Status.ERROR and "no such attribute" in result["n1"].reason
    assert backend.calls == ["n0"] and result.exit_status == 2


def test_each_session_id_is_reported_as_soon_as_execute_command_returns() -> None:
    throttled = AwsError("slow down", code="ThrottlingException", operation="ExecuteCommand")
    gate = asyncio.Event()
    backend = FakeBackend(
        {
            "n0": Script([Wait(gate), *runs(b"out\n", 0)], start_errors=[throttled]),
            "n1": Script(start_errors=[AwsError("no", code="InvalidParameterException")]),
        }
    )
    events: list[ProgressEvent] = []

    def on_event(event: ProgressEvent) -> None:
        events.append(event)
        if isinstance(event, NodeSessionStarted):
            # Before attaching: the session has delivered nothing yet.
            assert not backend.sessions[event.session_id].entered
            gate.set()

    result = asyncio.run(
        dispatch(backend.for_target, nodes(2), wrap("cmd"), options=FAST, on_event=on_event)
    )
    reported = [e for e in events if isinstance(e, NodeSessionStarted)]
    assert reported == [NodeSessionStarted("n0", result["n0"].session_id)]  # once, retries or not
    mine = [type(e) for e in events if e.node == "n0" and not isinstance(e, NodeThrottled)]
    assert mine[:3] == [NodeStarted, NodeSessionStarted, NodeOutput]
    assert set(mine[3:-1]) <= {NodeOutput} and mine[-1] is NodeFinished
    assert result["n1"].session_id == ""  # nothing started there


def test_the_default_rate_limit_is_a_burst_then_a_sustained_rate() -> None:
    """As ECS throttles (a token bucket): DEFAULT_BURST calls at once, then DEFAULT_RATE/s."""
    options = DispatchOptions()
    limiter = AdaptiveRateLimiter(options.rate, burst=options.burst)
    delays = [limiter.reserve(0.0) for _ in range(options.burst + 3)]
    assert delays[: options.burst] == [0.0] * options.burst
    assert delays[options.burst :] == pytest.approx([i / options.rate for i in (1, 2, 3)])
    limiter.throttled(0.0)  # throttling halves the rate; the next call waits at it
    assert limiter.rate == options.rate / 2
    assert limiter.reserve(0.0) == pytest.approx(4 / (options.rate / 2))
