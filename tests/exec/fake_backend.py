"""A scripted :class:`ExecBackend` for unit tests: no socket, no AWS, no sandbox.

Each target's :class:`Script` says what ExecuteCommand does (errors first, then a
session) and what the session then delivers: channel events from
:mod:`ecsexec.ssm.channel`, the wrapper's markers and the command's output (built with
:mod:`ecsexec.exec.wrap` for the command the runner actually sent, so the nonce
matches), failures, and waits. It behaves as :class:`ecsexec.ssm.session.Session` does
where the runner can tell: the last event is always a :class:`ChannelClosed`, a
failure aborts the channel and is raised by ``wait_closed``, and leaving ``async with``
before the channel closed terminates the session.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from ecsexec.aws.ecs import ExecSession
from ecsexec.errors import EcsexecError
from ecsexec.exec.runner import ContainerTarget
from ecsexec.exec.wrap import WrappedCommand
from ecsexec.ssm.channel import ChannelClosed, Event, OutputReceived
from ecsexec.ssm.session import TerminationOutcome


def pty(data: bytes) -> bytes:
    """What a PTY with default termios (ONLCR) makes of a program's output."""
    return data.replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class Ready:
    """The input wrapper's ready marker (``wrap(..., stdin=...)``); like the wrapper, the
    session then delivers nothing more until the input has been sent."""


@dataclass(frozen=True)
class Begin:
    """The begin marker line, after ``noise`` (a banner, a shell's chatter)."""

    noise: bytes = b""


@dataclass(frozen=True)
class Out:
    """The command prints ``data`` (it reaches the client as the PTY turns it)."""

    data: bytes


@dataclass(frozen=True)
class End:
    """The end marker line carrying the command's exit code."""

    exit_code: int


@dataclass(frozen=True)
class Fail:
    """The session fails here, as the real one reports it: the channel is aborted (a
    :class:`ChannelClosed` with the error's text) and ``wait_closed()`` raises ``error``."""

    error: EcsexecError


@dataclass(frozen=True)
class Wait:
    """Deliver nothing until ``event`` is set; without one, never (a hung session)."""

    event: asyncio.Event | None = None


Step = Event | Ready | Begin | Out | End | Fail | Wait


def runs(output: bytes, exit_code: int, *, noise: bytes = b"") -> list[Step]:
    """A wrapped command that prints ``output`` and exits with ``exit_code``."""
    return [Begin(noise), Out(output), End(exit_code)]


@dataclass
class Script:
    """What happens when a target is run.

    ``start_errors`` are raised by successive ExecuteCommand calls before one succeeds;
    ``start_gate`` holds every ExecuteCommand until it is set. ``steps`` are what the
    session delivers, in order; when they run out the channel closes normally.
    """

    steps: Sequence[Step] = ()
    start_errors: Sequence[EcsexecError] = ()
    start_gate: asyncio.Event | None = None
    terminate: TerminationOutcome | None = None  # how TerminateSession goes (None: confirmed)


@dataclass
class FakeSession:
    """One scripted session; records what the runner sent it."""

    backend: FakeBackend
    session_id: str
    node: str
    wrapped: WrappedCommand
    steps: Sequence[Step]
    sent: list[tuple[str, object]] = field(default_factory=list)  # ("size"|"gate"|"input", ...)
    delivered: list[bytes] = field(default_factory=list)  # output as it was delivered
    closed: ChannelClosed | None = None
    failure: EcsexecError | None = None
    entered: bool = False
    exited: bool = False
    input_sent: asyncio.Event = field(default_factory=asyncio.Event)
    # What TerminateSession answers when the runner gives up: confirmed unless scripted.
    terminate_outcome: TerminationOutcome = field(
        default_factory=lambda: TerminationOutcome(confirmed=True, closed=True)
    )
    termination: TerminationOutcome | None = None
    at: int = 0  # the next step to deliver

    async def __aenter__(self) -> FakeSession:
        self.entered = True
        self.backend.attached(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.closed is None:  # the caller gave up first: never leave it running
            self.backend.terminated.append(self.session_id)
            self.termination = self.terminate_outcome
            self.closed = ChannelClosed("client gave up")
        self.exited = True
        self.backend.detached(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        # Like the real session's queue, a second iteration goes on where the first
        # stopped (the runner reads on after typing ^C).
        while self.at < len(self.steps):
            step = self.steps[self.at]
            self.at += 1
            if isinstance(step, Wait):
                await (step.event.wait() if step.event is not None else asyncio.Event().wait())
                continue
            if isinstance(step, Fail):
                self.failure = step.error
            event = self._event(step)
            if isinstance(event, OutputReceived):
                self.delivered.append(event.data)
            if isinstance(event, ChannelClosed):
                self.closed = event
            yield event
            if isinstance(event, ChannelClosed):
                return
            if isinstance(step, Ready):
                await self.input_sent.wait()  # the wrapper reads its input
        self.closed = ChannelClosed("")
        yield self.closed

    def _event(self, step: Step) -> Event:
        wrapped = self.wrapped
        if isinstance(step, Ready):
            return OutputReceived(b"\r\n" + wrapped.ready_marker + b"\r\n")
        if isinstance(step, Begin):
            return OutputReceived(step.noise + b"\r\n" + wrapped.begin_marker + b"\r\n")
        if isinstance(step, Out):
            return OutputReceived(pty(step.data))
        if isinstance(step, End):
            return OutputReceived(b"\r\n" + wrapped.end_marker(step.exit_code) + b"\r\n")
        if isinstance(step, Fail):
            return ChannelClosed(str(step.error))  # the channel aborted with the error's text
        assert not isinstance(step, Wait)
        return step

    def send_size(self, cols: int, rows: int) -> None:
        self.sent.append(("size", (cols, rows)))

    def open_input_gate(self, reason: str) -> None:
        self.sent.append(("gate", reason))

    async def send_input(self, data: bytes) -> None:
        self.sent.append(("input", data))
        self.input_sent.set()

    async def wait_closed(self) -> ChannelClosed:
        if self.failure is not None:
            raise self.failure
        assert self.closed is not None, "wait_closed() before the channel closed"
        return self.closed


class FakeBackend:
    """An :class:`~ecsexec.exec.runner.ExecBackend` playing a :class:`Script` per target.

    ``scripts`` maps node names to scripts, or is a function of the target. It counts
    ExecuteCommand calls, sessions open at once (``peak``) and TerminateSession calls.
    """

    def __init__(self, scripts: Mapping[str, Script] | Callable[[ContainerTarget], Script]) -> None:
        self._scripts = scripts
        self._ids = itertools.count(1)
        self.calls: list[str] = []  # node of every ExecuteCommand call, failed ones too
        self.sessions: dict[str, FakeSession] = {}  # by session id, in start order
        self.terminated: list[str] = []
        self.active = 0
        self.peak = 0
        self._errors: dict[str, list[EcsexecError]] = {}

    def script(self, target: ContainerTarget) -> Script:
        if callable(self._scripts):
            return self._scripts(target)
        return self._scripts[target.node]

    def for_target(self, _target: ContainerTarget) -> FakeBackend:
        """The ``connectors`` argument of dispatch: every target on this backend."""
        return self

    async def start(self, target: ContainerTarget, wrapped: WrappedCommand) -> ExecSession:
        self.calls.append(target.node)
        script = self.script(target)
        if script.start_gate is not None:
            await script.start_gate.wait()
        errors = self._errors.setdefault(target.node, list(script.start_errors))
        if errors:
            raise errors.pop(0)
        session_id = f"fake-{target.node}-{next(self._ids)}"
        session = FakeSession(self, session_id, target.node, wrapped, script.steps)
        if script.terminate is not None:
            session.terminate_outcome = script.terminate
        self.sessions[session_id] = session
        return ExecSession(
            session_id=session_id,
            stream_url=f"wss://fake/{session_id}",
            token_value="token",
            cluster_arn=target.cluster,
            task_arn=target.task,
            container_name=target.container,
            target=f"ecs:{target.node}",
        )

    def session(self, started: ExecSession) -> FakeSession:
        return self.sessions[started.session_id]

    async def terminate(self, session_id: str) -> None:
        self.terminated.append(session_id)

    def attached(self, _session: FakeSession) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)

    def detached(self, _session: FakeSession) -> None:
        self.active -= 1

    def session_of(self, node: str) -> FakeSession:
        """The (last) session started for ``node``."""
        return [s for s in self.sessions.values() if s.node == node][-1]


def target(node: str) -> ContainerTarget:
    return ContainerTarget(
        node=node,
        cluster="arn:aws:ecs:us-east-1:123456789012:cluster/c",
        task=f"arn:aws:ecs:us-east-1:123456789012:task/c/{node}",
        container="app",
        runtime_id=f"{node}-runtime",
    )
