"""Run one command on many containers: concurrency, an adaptive rate limit, timeouts, order.

Progress is reported as events to a callback, never printed. Each node that starts
gets :class:`NodeStarted`, then :class:`NodeThrottled` for each throttled ExecuteCommand,
:class:`NodeSessionStarted` with the session ID as soon as ExecuteCommand returns (before
attaching), :class:`NodeOutput` and :class:`NodeNotice` as they arrive, and always
:class:`NodeFinished` last. Interrupting (cancelling) a dispatch terminates every open
session and still returns the partial result.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ecsexec.aws.errors import THROTTLING_CODES
from ecsexec.errors import AwsError, EcsexecError, SessionError, Status
from ecsexec.exec.results import CommandResult, RunResult
from ecsexec.exec.runner import ContainerTarget, ExecBackend, run_on_container
from ecsexec.exec.wrap import WrappedCommand

# Defaults, each with its reason (documented in the README too).
DEFAULT_RATE: Final = 10.0  # ExecuteCommand calls/s: well under ECS's per-account bucket
# ECS throttles with token buckets (a burst, then a sustained rate): start up to this many
# at once, as its bucket allows, then keep to the rate.
DEFAULT_BURST: Final = 50
# Sessions at once: twice the burst. Fewer than the burst would waste it (with 32, 40
# nodes ran in two waves of a whole session each: 3.1 s instead of 2.0 s on the
# sandbox). Sessions are cheap for us (~30 KiB, no CPU while idle); the API rate is the
# real limit.
DEFAULT_THREADS: Final = 2 * DEFAULT_BURST
DEFAULT_TIMEOUT: Final = 600.0  # a stuck command must not hold a session (20 min idle limit)
MAX_THROTTLE_RETRIES: Final = 8
MIN_RATE: Final = 0.5


@dataclass(frozen=True)
class DispatchOptions:
    threads: int = DEFAULT_THREADS
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    timeout: float | None = DEFAULT_TIMEOUT
    keepgoing: bool = True  # a failure on one container must not stop diagnostics on others


# --- progress events -------------------------------------------------------------------


@dataclass(frozen=True)
class NodeStarted:
    node: str


@dataclass(frozen=True)
class NodeSessionStarted:
    """ExecuteCommand returned: the command runs in session ``session_id`` (emitted before
    attaching to it, and once per node: a throttled attempt started nothing).

    The ID is what CloudTrail and SSM know the session by, so a record of it ties a node's
    run to AWS's own logs even if this process dies before the node finishes.
    """

    node: str
    session_id: str


@dataclass(frozen=True)
class NodeOutput:
    node: str
    data: bytes
    line_break_held: bool = False  # see ecsexec.exec.runner.OutputCallback


@dataclass(frozen=True)
class NodeNotice:
    """Out-of-band text for the user (stderr payloads, CustomerMessage)."""

    node: str
    text: bytes


@dataclass(frozen=True)
class NodeThrottled:
    node: str
    delay: float
    rate: float


@dataclass(frozen=True)
class NodeFinished:
    node: str
    outcome: CommandResult


ProgressEvent = (
    NodeStarted | NodeSessionStarted | NodeOutput | NodeNotice | NodeThrottled | NodeFinished
)
ProgressCallback = Callable[[ProgressEvent], None]


class AdaptiveRateLimiter:
    """A token bucket for ExecuteCommand whose rate halves on throttling and creeps back.

    :meth:`reserve` is pure (it takes ``now``); :meth:`acquire` sleeps for what it returns.
    """

    def __init__(self, rate: float, *, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.max_rate = rate
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._last: float | None = None
        self._last_cut: float | None = None

    def reserve(self, now: float) -> float:
        """Take one token; return how long to wait before using it."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1  # may go negative: later callers queue behind earlier ones
        return max(0.0, -self._tokens / self.rate)

    async def acquire(self) -> None:
        delay = self.reserve(asyncio.get_running_loop().time())
        if delay > 0:
            await asyncio.sleep(delay)

    def throttled(self, now: float) -> None:
        """Halve the rate, at most once a second: the calls that were already in flight
        when the bucket ran dry are throttled together and must count as one signal."""
        if self._last_cut is not None and now - self._last_cut < 1.0:
            return
        self._last_cut = now
        self.rate = max(MIN_RATE, self.rate / 2)
        self._tokens = min(self._tokens, 0.0)

    def succeeded(self) -> None:
        self.rate = min(self.max_rate, self.rate * 1.05 + 0.1)


BackendFor = Callable[[ContainerTarget], ExecBackend]
"""The backend for a target: a :class:`~ecsexec.exec.connect.ConnectorPool` picks the
target's region."""

CommandFor = Callable[[ContainerTarget], WrappedCommand]
"""A command built per target (a job step whose text names ``${node.*}`` attributes)."""


class NodeRunner:
    """One command on one target with a shared rate limiter, throttling retries and events.

    :func:`dispatch` uses it for each node; the job executor uses it directly because it
    orders commands itself (node-first, step-first). Errors become results with ``error``
    set; on cancellation the cancelled result (with the output received so far) is kept in
    :attr:`cancelled`, reported as :class:`NodeFinished`, and the cancellation propagates.
    """

    def __init__(
        self,
        connectors: BackendFor,
        options: DispatchOptions | None = None,
        on_event: ProgressCallback | None = None,
    ) -> None:
        self.connectors = connectors
        self.options = options or DispatchOptions()
        self.emit: ProgressCallback = on_event or (lambda _event: None)
        self.limiter = AdaptiveRateLimiter(self.options.rate, burst=self.options.burst)
        self.cancelled: dict[str, CommandResult] = {}

    async def run(self, target: ContainerTarget, wrapped: WrappedCommand) -> CommandResult:
        emit = self.emit
        emit(NodeStarted(target.node))
        started = datetime.now(UTC)
        output: list[bytes] = []  # the runner appends to it: kept if we are cancelled
        ended: list[str] = []  # and says here how the session was ended
        try:
            outcome = await _run_with_retries(
                self.connectors(target),
                target,
                wrapped,
                self.options,
                self.limiter,
                emit,
                output,
                ended,
            )
        except EcsexecError as exc:
            outcome = CommandResult.failure(
                target.node, wrapped.user_command, exc, started, datetime.now(UTC)
            )
        except asyncio.CancelledError:
            cancelled = CommandResult.failure(
                target.node,
                wrapped.user_command,
                SessionError(
                    "interrupted; " + (ended[0] if ended else "before its session was attached")
                ),
                started,
                datetime.now(UTC),
                output=b"".join(output),
                status=Status.CANCELLED,
            )
            self.cancelled[target.node] = cancelled
            emit(NodeFinished(target.node, cancelled))
            raise
        emit(NodeFinished(target.node, outcome))
        return outcome


async def dispatch(
    connectors: BackendFor,
    targets: Sequence[ContainerTarget],
    wrapped: WrappedCommand | CommandFor,
    *,
    options: DispatchOptions | None = None,
    on_event: ProgressCallback | None = None,
    command: str | None = None,
) -> RunResult:
    """Run ``wrapped`` on every target (in the given order) and collect every outcome.

    ``wrapped`` may be a function building each target's command; ``command`` then names
    the run in the :class:`RunResult` (default: the command's ``user_command``).
    """
    opts = options or DispatchOptions()
    if command is None:
        command = wrapped.user_command if isinstance(wrapped, WrappedCommand) else ""
    name = command
    runner = NodeRunner(connectors, opts, on_event)
    semaphore = asyncio.Semaphore(max(1, opts.threads))
    outcomes: dict[str, CommandResult] = {}
    stop = asyncio.Event()

    async def one(target: ContainerTarget) -> None:
        async with semaphore:
            if stop.is_set():
                return
            outcome: CommandResult
            try:
                this = wrapped if isinstance(wrapped, WrappedCommand) else wrapped(target)
            except EcsexecError as exc:
                now = datetime.now(UTC)
                outcome = CommandResult.failure(target.node, name, exc, now, now)
                outcomes[target.node] = outcome
                runner.emit(NodeFinished(target.node, outcome))
            else:
                try:
                    outcome = await runner.run(target, this)
                except asyncio.CancelledError:
                    outcomes[target.node] = runner.cancelled[target.node]
                    raise
                outcomes[target.node] = outcome
            if not outcome.ok and not opts.keepgoing:
                stop.set()

    interrupted = False
    try:
        async with asyncio.TaskGroup() as group:
            for target in targets:
                group.create_task(one(target))
    except asyncio.CancelledError:
        # Ctrl-C: the TaskGroup has cancelled every node; each runner terminated its session.
        interrupted = True
    now = datetime.now(UTC)
    ordered = {
        t.node: outcomes.get(t.node)
        or CommandResult(t.node, name, Status.NOT_STARTED, None, b"", now, now)
        for t in targets
    }
    return RunResult(name, ordered, interrupted)


async def _run_with_retries(
    backend: ExecBackend,
    target: ContainerTarget,
    wrapped: WrappedCommand,
    opts: DispatchOptions,
    limiter: AdaptiveRateLimiter,
    emit: ProgressCallback,
    output: list[bytes],
    ended: list[str],
) -> CommandResult:
    attempt = 0
    while True:
        await limiter.acquire()
        try:
            result = await run_on_container(
                backend,
                target,
                wrapped,
                timeout=opts.timeout,
                on_output=lambda node, data, held: emit(NodeOutput(node, data, held)),
                on_notice=lambda node, text: emit(NodeNotice(node, text)),
                on_started=lambda started: emit(
                    NodeSessionStarted(target.node, started.session_id)
                ),
                output=output,
                ended=ended,
            )
        except AwsError as exc:
            # Only a throttled ExecuteCommand certainly started nothing, so only it is retried:
            # a command must never run twice on a node.
            if exc.operation != "ExecuteCommand" or exc.code not in THROTTLING_CODES:
                raise
            attempt += 1
            if attempt > MAX_THROTTLE_RETRIES:
                raise
            limiter.throttled(asyncio.get_running_loop().time())
            delay = min(10.0, 0.1 * 2**attempt) * (0.5 + random.random())
            emit(NodeThrottled(target.node, delay, limiter.rate))
            await asyncio.sleep(delay)
            continue
        limiter.succeeded()
        return result
