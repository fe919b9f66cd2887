"""Run one command on one container: ExecuteCommand, attach at once, clean output, exit code."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Protocol

from ecsexec.aws.ecs import EcsApi, ExecSession
from ecsexec.errors import ConfigurationError, EcsexecError, Status
from ecsexec.exec.results import CommandResult, command_status
from ecsexec.exec.wrap import INPUT_FAILED, OutputCleaner, ReadyScanner, WrappedCommand
from ecsexec.nodes import ecs_attributes as attrs
from ecsexec.ssm.channel import (
    ChannelClosed,
    Event,
    HandshakeCompleted,
    OutputReceived,
    StderrReceived,
)
from ecsexec.ssm.session import (
    DataKeyProvider,
    Session,
    SessionControl,
    SessionOptions,
    TerminationOutcome,
)

PTY_SIZE: Final = (300, 100)  # wide enough that tools formatting to the width don't wrap
_INPUT_PIECE: Final = 1024 * 1024  # input handed to the channel at a time (whole frames)
INTERRUPT: Final = b"\x03"  # ^C: the PTY's line discipline makes it SIGINT (ISIG)
INTERRUPT_GRACE: Final = 2.0  # seconds an interrupted wrapper has to clean up and say so


@dataclass(frozen=True)
class ContainerTarget:
    """Which container to exec into, taken from a node's ``ECS:*`` attributes."""

    node: str
    cluster: str
    task: str
    container: str
    region: str = ""
    runtime_id: str = ""
    agent_status: str = ""
    exec_enabled: str = ""

    @classmethod
    def from_attributes(cls, node: str, attributes: Mapping[str, str]) -> ContainerTarget:
        missing = [
            key
            for key in (attrs.CLUSTER_ARN, attrs.TASK_ARN, attrs.CONTAINER_NAME)
            if not attributes.get(key)
        ]
        if missing:
            raise ConfigurationError(
                f"node {node!r} lacks {', '.join(missing)}: it is not an ECS container node"
            )
        return cls(
            node=node,
            cluster=attributes[attrs.CLUSTER_ARN],
            task=attributes[attrs.TASK_ARN],
            container=attributes[attrs.CONTAINER_NAME],
            region=attributes.get(attrs.REGION, ""),
            runtime_id=attributes.get(attrs.RUNTIME_ID, ""),
            agent_status=attributes.get(attrs.EXEC_AGENT_STATUS, ""),
            exec_enabled=attributes.get(attrs.EXEC_ENABLED, ""),
        )


class SessionLike(Protocol):
    """What the runner uses of a data-channel session (:class:`ecsexec.ssm.session.Session`).

    ``async with`` attaches (and, when left before the channel closed, terminates the
    session); iterating yields the channel's events, the last one a :class:`ChannelClosed`;
    :meth:`wait_closed` then raises the session's failure, if it had one.
    """

    @property
    def session_id(self) -> str: ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    def send_size(self, cols: int, rows: int) -> None: ...

    def open_input_gate(self, reason: str) -> None: ...

    @property
    def termination(self) -> TerminationOutcome | None:
        """How ending the session went, once it had to be ended (None: it ended itself)."""
        ...

    async def send_input(self, data: bytes) -> None: ...

    async def wait_closed(self) -> ChannelClosed: ...


class ExecBackend(Protocol):
    """Where exec sessions come from: :class:`Connector` on AWS, a scripted fake in tests.

    :meth:`start` is ExecuteCommand: the command runs from then on, whether or not anyone
    attaches (docs/ssm-protocol.md §1). :meth:`session` attaches to what it started;
    :meth:`terminate` ends a session nobody will attach to.
    """

    async def start(self, target: ContainerTarget, wrapped: WrappedCommand) -> ExecSession: ...

    def session(self, started: ExecSession) -> SessionLike: ...

    async def terminate(self, session_id: str) -> None: ...


@dataclass
class Connector:
    """The AWS side of one region: ECS, SSM resume/terminate and KMS, same credentials.

    The :class:`ExecBackend` of real containers.
    """

    ecs: EcsApi
    control: SessionControl
    data_key_provider: DataKeyProvider | None = None
    session_options: SessionOptions = field(default_factory=SessionOptions)
    # The TLS context for wss:// stream URLs, built when the first one is met (a plain
    # ws:// endpoint, like the sandbox's, never needs one; each costs 20-45 ms of CPU).
    tls_context: Callable[[], ssl.SSLContext] | None = None

    async def start(self, target: ContainerTarget, wrapped: WrappedCommand) -> ExecSession:
        """ExecuteCommand for ``wrapped`` in ``target`` (on the event loop, no thread)."""
        return await self.ecs.execute_command_async(
            cluster=target.cluster,
            task=target.task,
            container=target.container,
            command=wrapped.ecs_command,
            runtime_id=target.runtime_id,
            agent_status=target.agent_status,
            exec_enabled=target.exec_enabled,
        )

    def session(self, started: ExecSession) -> Session:
        """The data-channel session for what ExecuteCommand started, on these credentials."""
        options = self.session_options
        if (
            self.tls_context is not None
            and options.ssl_context is None
            and started.stream_url.startswith("wss:")
        ):
            options = self.session_options = replace(options, ssl_context=self.tls_context())
        return Session(
            started.session_id,
            started.stream_url,
            started.token_value,
            target=started.target,
            control=self.control,
            data_key_provider=self.data_key_provider,
            options=options,
        )

    async def terminate(self, session_id: str) -> None:
        """ssm:TerminateSession (blocking boto3, in a worker thread)."""
        await asyncio.to_thread(self.control.terminate_session, session_id)


OutputCallback = Callable[[str, bytes, bool], None]
"""Called with (node name, cleaned output chunk, line break held back) as output arrives.

The flag says the cleaner holds back a line break right after the chunk (it could still
be the end marker's, §12): a live display may end the line now; the recorded output
stays byte-exact.
"""
NoticeCallback = Callable[[str, bytes], None]


async def start_exec_session(
    backend: ExecBackend, target: ContainerTarget, wrapped: WrappedCommand
) -> ExecSession:
    """Call ExecuteCommand; if we are cancelled meanwhile, terminate what it started.

    ExecuteCommand starts the command at once (docs/ssm-protocol.md §1); a session we never
    attach to would run until the idle timeout, so it must not be abandoned.
    """
    call = asyncio.ensure_future(backend.start(target, wrapped))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        with contextlib.suppress(EcsexecError):
            started = await call
            await backend.terminate(started.session_id)
        raise


def how_it_ended(session: SessionLike) -> str:
    """A clause for a result's reason: terminated only if TerminateSession succeeded."""
    outcome = session.termination
    return outcome.describe() if outcome is not None else "the session had ended"


async def run_on_container(
    backend: ExecBackend,
    target: ContainerTarget,
    wrapped: WrappedCommand,
    *,
    timeout: float | None = None,
    on_output: OutputCallback | None = None,
    on_notice: NoticeCallback | None = None,
    on_started: Callable[[ExecSession], None] | None = None,
    output: list[bytes] | None = None,
    ended: list[str] | None = None,
) -> CommandResult:
    """Run ``wrapped`` in ``target`` and return its result.

    Raises :class:`EcsexecError` subclasses when the command could not be started
    (ExecuteCommand failed). Once it started, every ending is a result that keeps the
    output received so far: a session error (``error`` set), a timeout (the session is
    terminated, never left running). Once the wrapper's end marker has arrived the result
    is final: an error, a gap or a timeout after it leaves output and exit code as they
    are. If we are cancelled, the output so far is in
    ``output`` when the caller passed that list. A command with input
    (``wrap(..., stdin=...)``) gets it sent as soon as the wrapper's ready marker arrives.
    If we are cancelled, ``ended`` (when given) gets how the session was ended: only a
    confirmed ``ssm:TerminateSession`` may be called terminated.
    ``on_started`` is called once ExecuteCommand has returned, before attaching: from then
    on the command runs, and the session ID names it (CloudTrail, ``ssm:TerminateSession``).
    """
    started_at = datetime.now(UTC)
    cleaner = OutputCleaner(wrapped)
    ready = ReadyScanner(wrapped) if wrapped.has_input else None
    output_filter = wrapped.output_filter() if wrapped.output_filter is not None else None
    sender: asyncio.Task[None] | None = None
    if output is None:
        output = []  # joined once at the end: no reallocation as output grows
    exec_session = await start_exec_session(backend, target, wrapped)
    if on_started is not None:
        on_started(exec_session)
    session = backend.session(exec_session)

    def emit(chunk: bytes) -> None:
        if output_filter is not None and chunk:
            chunk = output_filter.feed(chunk)
        if chunk:
            output.append(chunk)
            if on_output is not None:
                on_output(target.node, chunk, cleaner.line_break_held)

    closed: ChannelClosed | None = None
    timed_out = False
    failure: EcsexecError | None = None
    interrupted = False  # we typed ^C: an end marker after it does not make the result
    moved: Callable[[], None] | None = None  # a copy's data moved: the timeout restarts

    def handle(event: Event) -> None:
        nonlocal sender, closed
        if isinstance(event, OutputReceived):
            if ready is not None and not cleaner.begin_seen and ready.feed(event.data):
                # A task of its own: send_input waits for acks (backpressure)
                # while this loop must keep reading output.
                session.open_input_gate("ready marker")
                sender = asyncio.create_task(_send_input(session, wrapped, moved))
            gate_was_closed = not cleaner.begin_seen
            emit(cleaner.feed(event.data))
            if gate_was_closed and cleaner.begin_seen:
                session.open_input_gate("begin marker")  # §7 gate rule 3
        elif isinstance(event, StderrReceived | HandshakeCompleted) and on_notice:
            text = (
                event.data if isinstance(event, StderrReceived) else event.customer_message.encode()
            )
            if text:
                on_notice(target.node, text)
        elif isinstance(event, ChannelClosed):
            closed = event

    try:
        async with asyncio.timeout(timeout) as deadline, session:
            if wrapped.transfer and timeout is not None:
                # A copy's timeout counts from the last data moved: a big file may take
                # as long as it keeps moving.
                moved = functools.partial(_restart, deadline, timeout)
            session.send_size(*PTY_SIZE)
            try:
                async for event in session:
                    handle(event)
                    if moved is not None and isinstance(event, OutputReceived):
                        moved()
            except asyncio.CancelledError:
                # Interrupted or timed out while the input was still going in, or in a
                # copy: the wrapper gets to clean up (a partial file) before the session
                # is terminated, which kills it with SIGKILL.
                if (sender is not None and not cleaner.begin_seen) or (
                    wrapped.transfer and not cleaner.end_seen
                ):
                    interrupted = True
                    await _interrupt(session, sender, handle, lambda: cleaner.end_seen)
                raise
            await session.wait_closed()
    except TimeoutError:
        timed_out = True
    except EcsexecError as exc:
        failure = exc
    except asyncio.CancelledError:
        if ended is not None:
            ended.append(how_it_ended(session))
        if output_filter is not None:
            output_filter.finish(None)  # a download removes its partial local file
        raise
    finally:
        if sender is not None:
            sender.cancel()  # a no-op once it is done; awaiting retrieves its outcome
            with contextlib.suppress(asyncio.CancelledError, EcsexecError):
                await sender
    # Once the end marker is complete the command has exited and everything it printed
    # has arrived, in order (§11): the result is final, and what happens to the socket,
    # ResumeSession or the clock after that (an error, a gap, a timeout) cannot change it.
    final = cleaner.end_seen and not interrupted
    rest, clean = cleaner.finish()
    emit(rest)  # what the cleaner held back is output too, whatever ended the session
    if final:
        failure, timed_out, closed = None, False, None
    problem = ""
    if output_filter is not None:
        tail, problem = output_filter.finish(clean.exit_code if final else None)
        if tail:
            output.append(tail)
            if on_output is not None:
                on_output(target.node, tail, False)
    if failure is not None:
        return CommandResult.failure(
            target.node,
            wrapped.user_command,
            failure,
            started_at,
            datetime.now(UTC),
            output=b"".join(output),
            session_id=exec_session.session_id,
        )
    exit_code = clean.exit_code
    reason = clean.reason
    if problem:
        # Our own check failed (a download's checksum, a source that could not be read):
        # the run fails even if the far end was content.
        if exit_code == 0:
            exit_code = INPUT_FAILED
        notice = f"ecsexec: {problem}\n".encode()
        output.append(notice)
        if on_output is not None:
            on_output(target.node, notice, False)
    truncated = bool(closed is not None and closed.truncated)
    if timed_out:
        limit = "no data moved for" if wrapped.transfer else "timed out after"
        exit_code, reason = None, f"{limit} {timeout:g} s; {how_it_ended(session)}"
    elif truncated:
        assert closed is not None
        missing = closed.missing_seq
        exit_code = None
        reason = f"output truncated: frame {missing} never arrived; exit status unknown"
    elif exit_code is None and closed is not None and closed.output:
        reason = f"{reason} (channel closed: {closed.output})"
    # §11: a missing end marker also means the output is incomplete.
    truncated = truncated or (
        not timed_out and not wrapped.raw and clean.begin_seen and clean.exit_code is None
    )
    if timed_out:
        status = Status.TIMEOUT
    elif wrapped.raw and not truncated and closed is not None:
        # Raw mode cannot know the exit status; a session that ended normally succeeded.
        status = Status.SUCCEEDED
    else:
        status = command_status(exit_code, truncated=truncated)
    return CommandResult(
        node=target.node,
        command=wrapped.user_command,
        status=status,
        exit_code=exit_code,
        output=b"".join(output),
        started_at=started_at,
        finished_at=datetime.now(UTC),
        session_id=exec_session.session_id,
        reason=reason,
        truncated=truncated,
    )


def _restart(deadline: asyncio.Timeout, seconds: float) -> None:
    """Move ``deadline`` to ``seconds`` from now, unless it has passed already (the input
    sender may still report a piece sent after that) or its block was left."""
    with contextlib.suppress(RuntimeError):  # what reschedule() raises then
        deadline.reschedule(asyncio.get_running_loop().time() + seconds)


async def _interrupt(
    session: SessionLike,
    sender: asyncio.Task[None] | None,
    handle: Callable[[Event], None],
    ended: Callable[[], bool],
) -> None:
    """Stop sending input and type ^C: the terminal turns it into SIGINT for the wrapper
    at once, wherever it is in the data, and its trap removes what it wrote and prints
    the end marker. Waits :data:`INTERRUPT_GRACE` seconds at most for that marker."""
    if sender is not None:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, EcsexecError):
            await sender
    with contextlib.suppress(TimeoutError, EcsexecError):
        async with asyncio.timeout(INTERRUPT_GRACE):
            await session.send_input(INTERRUPT)
            async for event in session:
                handle(event)
                if ended():
                    return


async def _send_input(
    session: SessionLike, wrapped: WrappedCommand, moved: Callable[[], None] | None
) -> None:
    """Send the command's input, a piece at a time: ``send_input`` waits while the
    channel's window of unacknowledged frames is full, so a stream of any size is held
    in memory only as far as that window. ``moved`` is called as each piece goes."""
    if wrapped.input_source is None:
        payload = wrapped.input_payload
        for start in range(0, len(payload), _INPUT_PIECE):
            await session.send_input(payload[start : start + _INPUT_PIECE])
            if moved is not None:
                moved()
        return
    for piece in wrapped.input_source():
        await session.send_input(piece)
        if moved is not None:
            moved()
