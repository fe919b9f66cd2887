"""Drive a :class:`DataChannel` over a websocket with asyncio: the I/O half of the client.

One :class:`Session` owns one data channel. It opens the stream URL (frames reach the
channel straight from the socket, see :mod:`ecsexec.ssm.transport`), runs the channel's
timers (resends, input gate, close grace), keeps the socket
alive with pings, reconnects through ``ssm:ResumeSession`` (docs/ssm-protocol.md §10) and calls
``ssm:TerminateSession`` whenever the caller gives up, so a session is never left running;
:attr:`Session.termination` says whether that call succeeded.
Websocket and OS errors are translated into :mod:`ecsexec.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import ssl
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ecsexec.errors import (
    AwsError,
    CredentialsError,
    EcsexecError,
    KmsError,
    SessionError,
    TransportError,
)
from ecsexec.ssm import payloads
from ecsexec.ssm.channel import (
    AckStalled,
    ChannelClosed,
    DataChannel,
    DataKeyRequest,
    Event,
    HandshakeRequested,
    OutputReceived,
    ProtocolWarning,
    State,
)
from ecsexec.ssm.crypto import DataKey
from ecsexec.ssm.frames import (
    ACK_FLAGS,
    ACKNOWLEDGE,
    FRAME_OVERHEAD,
    encode_frame,
    random_message_id,
)
from ecsexec.ssm.transport import DataChannelConnection, proxy_for

log = logging.getLogger(__name__)

CLIENT_ID: Final = str(uuid.uuid4())  # §2: fixed per process
KMS_BUDGET: Final = 12.0  # §7: the agent waits 15 s for the HandshakeResponse


class SessionControl(Protocol):
    """The two SSM API calls the driver needs (implemented with boto3 in ``ecsexec.aws``).

    Both are blocking; the driver runs them in worker threads of its own. A control that
    is also an :class:`AsyncSessionControl` is awaited on the event loop instead.
    """

    def resume_session(self, session_id: str) -> tuple[str, str]:
        """Return ``(token_value, stream_url)``; an empty token means the session timed out."""
        ...

    def terminate_session(self, session_id: str) -> None: ...


@runtime_checkable
class AsyncSessionControl(Protocol):
    """The same calls as coroutines, for a control that can make them without a thread.

    When a relay drops many sockets at once, every session resumes at the same moment;
    in threads, the boto3 calls of 60 sessions on 2 cores took up to a second (queued, and
    starving the event loop of the GIL), while an agent whose command has exited waits
    only 2 s for acks.
    """

    async def resume_session_async(self, session_id: str) -> tuple[str, str]: ...

    async def terminate_session_async(self, session_id: str) -> None: ...


_T = TypeVar("_T")
CONTROL_THREADS: Final = 16
_control_pool: ThreadPoolExecutor | None = None


async def _control_call(function: Callable[[str], _T], session_id: str) -> _T:
    """Run a blocking :class:`SessionControl` call in the SSM calls' own worker threads.

    When a relay drops many sockets at once (or Ctrl-C terminates every session), every
    session calls at the same moment; in asyncio's default executor (``cpu_count + 4``
    threads, shared with any other blocking work) those calls queued behind each other.
    """
    global _control_pool
    if _control_pool is None:
        _control_pool = ThreadPoolExecutor(CONTROL_THREADS, thread_name_prefix="ssm-control")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_control_pool, functools.partial(function, session_id))


DataKeyProvider = Callable[[DataKeyRequest], DataKey]
"""Blocking call to kms:GenerateDataKey with the caller's own credentials (§8.2)."""


@dataclass(frozen=True)
class SessionOptions:
    """Timing knobs; defaults follow docs/ssm-protocol.md §6-§10."""

    ping_interval: float | None = 60.0  # §9: ping every 60 s ...
    ping_timeout: float | None = 60.0  # ... and reconnect after 60 s without a pong
    open_timeout: float = 10.0
    gate_timeout: float = 2.0
    close_grace: float = 1.0
    ack_watchdog: float = 60.0
    # §10: 5 attempts per lost socket; the first at once, then 100-200 ms doubling to 5 s.
    reconnect_attempts: int = 5
    reconnect_initial: float = 0.1
    reconnect_max: float = 5.0
    # Sockets in a row that may die before anything arrives on them (a relay that keeps
    # accepting and dropping the client), within reconnect_max of opening.
    reconnect_flaps: int = 50
    # After a reconnect, the acks among the last ``reack_limit`` frames written can be
    # written again, ``reack_burst`` at a time (see _SentAcks).
    reack_limit: int = 1024
    reack_burst: int = 64
    terminate_wait: float = 3.0  # how long to wait for channel_closed after TerminateSession
    ssl_context: ssl.SSLContext | None = None
    client_version: str = payloads.CLIENT_VERSION


@dataclass(frozen=True)
class TerminationOutcome:
    """How :meth:`Session.terminate` went.

    Only ``confirmed`` (ssm:TerminateSession succeeded) allows saying that the session was
    terminated. Otherwise ``error_code`` is the AWS error code of the failure
    (``AccessDeniedException``...), empty when the call could not be made at all, and
    ``error`` says what happened; the agent was sent Ctrl-C instead (§11). ``closed``
    tells whether ``channel_closed`` arrived by the time :meth:`Session.terminate`
    returned: the session is then known to have ended, whatever ended it.
    """

    confirmed: bool
    closed: bool
    error_code: str = ""
    error: str = ""

    def describe(self) -> str:
        """A clause for a result's reason: never "terminated" unless it was confirmed."""
        if self.confirmed:
            return "the session was terminated"
        why = self.error_code or self.error or "TerminateSession failed"
        if self.closed:
            return f"TerminateSession failed ({why}); the session ended after Ctrl-C"
        return f"the session may still be running ({why})"


# ResumeSession errors that another attempt cannot fix: give up on the first.
_PERMANENT_RESUME_ERRORS: Final = frozenset(
    {
        "AccessDeniedException",
        "DoesNotExistException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ValidationException",
    }
)
_ACK_TYPE_FIELD: Final = ACKNOWLEDGE.encode().ljust(32, b" ")  # §3: padded with spaces
_ACK_SEQ: Final = re.compile(rb'"AcknowledgedMessageSequenceNumber":(\d+)')


class _SentAcks:
    """The acks written lately, to write again when the agent shows it never got them.

    An ack still in flight when a socket dies never reaches the agent, which then resends
    the frame it acked; but it resends only its OLDEST unacked frame, once per 100 ms
    tick (§6). After a burst of lost acks it spends a tick on each frame the client
    already has before it gets to the frames that were really lost, and once the command
    has exited it waits only 2 s for acks before it gives up and the tail of the output is
    lost (§11).

    So after a reconnect, a duplicate (the agent resending its oldest unacked frame,
    sequence ``d``) means that its ack was lost, and probably also those written after
    it: :meth:`again` gives new acks for ``d`` and the frames after it acked lately
    (among the last ``limit`` frames written), in sequence order, the order in which the
    agent resends, at most ``burst`` of them: on a lossy relay every extra frame is one
    more that can be lost (with the sandbox's disconnect fault, one that can take the
    socket down again), so a long run of lost acks goes back a burst at a time, each
    asked for by the agent's next resend past the last one. They go first in the next
    write. Acks are idempotent (the agent ignores one for a frame it no longer holds), and
    each goes out as a new ack frame: same payload, fresh MessageId (§6).
    """

    __slots__ = ("_batches", "_count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._batches: deque[Sequence[bytes]] = deque()
        self._count = 0

    def record(self, frames: Sequence[bytes]) -> None:
        """Note one write (any frames: only acks are looked at, by :meth:`again`)."""
        batches = self._batches
        batches.append(frames)
        self._count += len(frames)
        while self._count > self.limit and len(batches) > 1:
            self._count -= len(batches.popleft())

    def clear(self) -> None:
        self._batches.clear()
        self._count = 0

    def payloads_from(self, seq: int, count: int) -> list[tuple[int, bytes]]:
        """The kept acks (acked sequence, payload) of frame ``seq`` and above, the first
        ``count`` in sequence order, once each."""
        acked: dict[int, bytes] = {}
        for frames in self._batches:
            for frame in frames:
                if frame[4:36] != _ACK_TYPE_FIELD:
                    continue
                payload = frame[FRAME_OVERHEAD:]
                match = _ACK_SEQ.search(payload)
                if match is not None and int(match.group(1)) >= seq:
                    acked[int(match.group(1))] = payload
        return [(n, acked[n]) for n in sorted(acked)[:count]]

    def again(self, seq: int, count: int, created_ms: int) -> tuple[list[bytes], int | None]:
        """New ack frames for :meth:`payloads_from`, and the sequence of the next kept ack
        after them (None if there is none). Nothing if the ack of ``seq`` itself is no
        longer kept: the agent resends its oldest frame first, so acks far above it would
        only be more frames to lose."""
        acks = self.payloads_from(seq, count + 1)
        if not acks or acks[0][0] != seq:
            return [], seq + 1
        frames = [
            encode_frame(
                ACKNOWLEDGE,
                payload,
                sequence_number=0,
                flags=ACK_FLAGS,
                payload_type=0,
                message_id=random_message_id(),
                created_ms=created_ms,
            )
            for _, payload in acks[:count]
        ]
        return frames, acks[count][0] if len(acks) > count else None


class Session:
    """One ECS Exec / SSM session: ``async with Session(...) as s: async for ev in s: ...``.

    Events are those of :mod:`ecsexec.ssm.channel`; the last one is always a
    :class:`ChannelClosed`. If the caller leaves the ``async with`` block (error, timeout,
    cancellation) before that, the session is terminated through ``ssm:TerminateSession``.
    """

    def __init__(
        self,
        session_id: str,
        stream_url: str,
        token_value: str,
        *,
        target: str = "",
        control: SessionControl | None = None,
        data_key_provider: DataKeyProvider | None = None,
        options: SessionOptions | None = None,
    ) -> None:
        self.session_id = session_id
        self.stream_url = stream_url
        self._token = token_value
        self.target = target
        self._control = control
        self._data_key_provider = data_key_provider
        self.options = options or SessionOptions()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.channel: DataChannel | None = None
        self._ws: DataChannelConnection | None = None
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._outgoing: list[bytes] = []  # frames made while no socket was open
        self._writable = asyncio.Event()
        self._closed_event: ChannelClosed | None = None
        self._done = asyncio.Event()
        self._failure: SessionError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._kms_task: asyncio.Task[None] | None = None
        self._terminated = False
        self._termination: asyncio.Task[TerminationOutcome] | None = None
        self.termination: TerminationOutcome | None = None
        """How :meth:`terminate` went; None while it has not been called or is running."""
        self._ended_remotely = False  # channel_closed arrived (not a local abort)
        self._aborting = False
        self._unresumed = False  # a lost socket ended the channel without the agent's word
        self._sent_acks = _SentAcks(self.options.reack_limit)
        # After a reconnect: a duplicate at or above this sequence brings back acks.
        self._reack_from: int | None = None
        self._reacks: list[bytes] = []  # acks to write again with the next write
        self._received = False  # something arrived on the current socket
        self._connected_at = 0.0
        self._flaps = 0  # lost sockets in a row that brought nothing
        self.reconnects = 0
        self.reacks = 0  # acks written again after reconnects

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the session; terminate it first if the channel has not closed."""
        if self._closed_event is None:
            # The caller gave up before the channel closed: never leave it running (§11, §13).
            await asyncio.shield(self.terminate("client gave up"))
        elif self._unresumed and self._termination is None:
            # The socket was lost and could not be resumed: the channel closed here only,
            # and the command may still run on the agent.
            await asyncio.shield(self.terminate("the data channel could not be resumed"))
        await self._shutdown()

    async def start(self) -> None:
        """Connect and send the open frame; start the reader, writer and timers."""
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.channel = DataChannel(
            session_id=self.session_id,
            target=self.target,
            now=now,
            epoch_ms=int(time.time() * 1000),
            client_version=self.options.client_version,
            gate_timeout=self.options.gate_timeout,
            close_grace=self.options.close_grace,
            ack_watchdog=self.options.ack_watchdog,
        )
        self._writable.set()
        try:
            await self._connect(self.stream_url, self._token)
        except BaseException:
            # The command already runs on the agent (§1): don't leave it behind.
            await asyncio.shield(self.terminate("could not attach"))
            raise
        self._schedule_timer()
        self._tasks = [
            asyncio.create_task(self._watch_loop(), name=f"ssm-watch-{self.session_id}"),
        ]

    async def _connect(self, url: str, token: str) -> None:
        host = urlsplit(url).netloc or url
        try:
            ws = await connect(
                url,
                compression=None,  # §2: no permessage-deflate
                max_size=None,
                ping_interval=self.options.ping_interval,
                ping_timeout=self.options.ping_timeout,
                open_timeout=self.options.open_timeout,
                close_timeout=2.0,
                ssl=self.options.ssl_context if url.startswith("wss:") else None,
                create_connection=DataChannelConnection,
                proxy=proxy_for(url),
            )
        except ssl.SSLError as exc:
            raise TransportError(
                f"TLS error connecting to {host}: {exc.reason or exc}; "
                "set AWS_CA_BUNDLE (or ca_bundle) if the endpoint uses a private CA",
                session_id=self.session_id,
            ) from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise TransportError(
                f"cannot open the data channel at {host}: {type(exc).__name__}: {exc}",
                session_id=self.session_id,
            ) from None
        assert isinstance(ws, DataChannelConnection)  # create_connection above
        # Before the open frame: the relay sends nothing until it has seen it (§2).
        ws.on_messages = self._on_messages
        ws.on_batch = self._after_read  # a socket read's acks in one write
        try:
            await ws.send(
                payloads.open_data_channel(
                    token,
                    client_id=CLIENT_ID,
                    request_id=str(uuid.uuid4()),  # §2: new for every (re)open
                    client_version=self.options.client_version,
                )
            )
        except (ConnectionClosed, OSError) as exc:
            await ws.close()
            raise TransportError(
                f"data channel at {host} closed during open: {exc}", session_id=self.session_id
            ) from None
        self._ws = ws
        self._received = False
        self._connected_at = self._now()
        if self._outgoing:  # frames made while disconnected go out now
            frames, self._outgoing = self._outgoing, []
            ws.send_frames(frames)

    async def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in [*self._tasks, *([self._kms_task] if self._kms_task else [])]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._done.set()

    # --- user side -------------------------------------------------------------------

    async def send_input(self, data: bytes) -> None:
        """Send terminal input; waits while the unacked buffer is full (§6 backpressure)."""
        channel = self._require_channel()
        while not channel.writable and self._closed_event is None:
            self._writable.clear()
            await self._writable.wait()
        channel.send_input(data, self._now())
        self._after_channel_call()

    def send_size(self, cols: int, rows: int) -> None:
        self._require_channel().send_size(cols, rows, self._now())
        self._after_channel_call()

    def open_input_gate(self, reason: str) -> None:
        self._require_channel().open_input_gate(reason, self._now())
        self._after_channel_call()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, ChannelClosed):
                return

    async def next_event(self) -> Event:
        return await self._events.get()

    @property
    def closed(self) -> ChannelClosed | None:
        return self._closed_event

    async def wait_closed(self) -> ChannelClosed:
        """Wait for the channel to close; raise the session's failure if it had one."""
        await self._done.wait()
        if self._failure is not None:
            raise self._failure
        if self._closed_event is None:
            raise TransportError(
                "data channel ended without channel_closed", session_id=self.session_id
            )
        return self._closed_event

    async def terminate(self, reason: str = "terminated") -> TerminationOutcome:
        """Ask SSM to end the session (the agent kills the process), then close (§11).

        Returns how it went (also kept in :attr:`termination`); calling it again returns
        the first call's outcome. If TerminateSession fails, the agent gets Ctrl-C
        instead, and the outcome says the session may still be running.
        """
        if self._termination is None:
            self._terminated = True  # no reconnect from here on
            self._termination = asyncio.ensure_future(self._terminate(reason))
        return await asyncio.shield(self._termination)

    async def _terminate(self, reason: str) -> TerminationOutcome:
        confirmed = False
        code = ""
        error = ""
        if self._control is None:
            error = "no SSM client to call TerminateSession"
        else:
            try:
                control = self._control
                if isinstance(control, AsyncSessionControl):
                    await control.terminate_session_async(self.session_id)
                else:
                    await _control_call(control.terminate_session, self.session_id)
            except EcsexecError as exc:
                code = exc.code if isinstance(exc, AwsError) else ""
                error = str(exc)
                log.warning("TerminateSession for %s failed: %s", self.session_id, exc)
            else:
                confirmed = True
        if confirmed:
            await self._wait_for_close(self.options.terminate_wait)
        else:
            await self._interrupt()  # §11: if TerminateSession is denied, Ctrl-C and close
        outcome = TerminationOutcome(
            confirmed=confirmed, closed=self._ended_remotely, error_code=code, error=error
        )
        self.termination = outcome
        self._abort(reason)
        return outcome

    async def _interrupt(self) -> None:
        if self.channel is not None and self._ws is not None and not self.channel.closed:
            self.channel.send_input(b"\x03", self._now())
            self._after_channel_call()
            await self._wait_for_close(0.5)

    async def _wait_for_close(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), seconds)

    # --- internals -------------------------------------------------------------------

    def _abort(self, reason: str) -> None:
        """Close the channel locally (the session's end was not reported by the relay)."""
        if self._closed_event is not None or self.channel is None:
            return
        self._aborting = True
        try:
            self.channel.abort(reason)
            self._dispatch_events()
        finally:
            self._aborting = False

    def _require_channel(self) -> DataChannel:
        if self.channel is None:
            raise SessionError("session not started", session_id=self.session_id)
        return self.channel

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _after_read(self) -> None:
        self._received = True
        self._after_channel_call()

    def _after_channel_call(self) -> None:
        channel = self._require_channel()
        frames = channel.data_to_send()
        if self._reacks:  # first in the write: the agent needs its oldest acks first
            self.reacks += len(self._reacks)
            frames = [*self._reacks, *frames]
            self._reacks = []
        if frames:
            self._sent_acks.record(frames)
            ws = self._ws
            if ws is None or not ws.send_frames(frames):
                # No socket, or one that is closing: the frames go out on the next one
                # (§10); anything already written to a socket that died is resent by
                # the channel (data) or written again after the reconnect (acks).
                self._outgoing.extend(frames)
        self._dispatch_events()
        if channel.writable:
            self._writable.set()
        self._schedule_timer()

    def _on_messages(self, messages: list[bytes]) -> None:
        """A socket read's websocket messages: the channel takes them in one call, so a
        run of in-order output is acked and delivered at once (see
        :meth:`DataChannel.receive_frames`). After a reconnect, while duplicates may
        bring back acks, they go one by one through :meth:`_on_message`."""
        if self._reack_from is None:
            self._require_channel().receive_frames(messages, self._now())
            return
        for data in messages:
            self._on_message(data)

    def _on_message(self, data: bytes) -> None:
        """One websocket message, straight from the socket read; the connection calls
        ``_after_channel_call`` once after the read, so its acks leave in one write."""
        channel = self._require_channel()
        if self._reack_from is None:
            channel.receive_frame(data, self._now())
            return
        duplicates = channel.stats.duplicates
        channel.receive_frame(data, self._now())
        if channel.stats.duplicates == duplicates:
            return
        seq = int.from_bytes(data[48:56], "big", signed=True)  # §3: SequenceNumber
        if seq >= self._reack_from:
            # The agent resent a frame the client has: its ack died with an old socket,
            # and so, probably, did the acks written after it (see _SentAcks).
            frames, self._reack_from = self._sent_acks.again(
                seq, self.options.reack_burst, int(time.time() * 1000)
            )
            self._reacks.extend(frames)

    def _dispatch_events(self) -> None:
        assert self.channel is not None
        output: list[bytes] = []
        for event in self.channel.events_received():
            if type(event) is OutputReceived:
                # Consecutive output becomes one event: consumers pay per event, and a
                # socket read holds up to hundreds of 1 KiB frames.
                output.append(event.data)
                continue
            if output:
                self._put_output(output)
                output = []
            if isinstance(event, HandshakeRequested):
                self._kms_task = asyncio.create_task(self._answer_handshake(event))
                continue
            if isinstance(event, AckStalled):
                log.warning(
                    "session %s: no ack for %.0f s, reconnecting", self.session_id, event.seconds
                )
                if self._ws is not None:
                    self._ws.transport.abort()
            if isinstance(event, ProtocolWarning):
                log.debug("session %s: %s: %s", self.session_id, event.code, event.detail)
            if isinstance(event, ChannelClosed):
                self._closed_event = event
                self._ended_remotely = not self._aborting
                if event.failure is not None:
                    # The peer broke the protocol (a frame over the limits): the agent may
                    # still run the command, so it is ended in aclose().
                    self._failure = self._failure or TransportError(
                        f"the gateway broke the data-channel protocol: {event.failure}",
                        session_id=self.session_id,
                    )
                    self._unresumed = True
                self._sent_acks.clear()
                self._done.set()
                self._writable.set()
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            self._events.put_nowait(event)
        if output:
            self._put_output(output)

    def _put_output(self, chunks: list[bytes]) -> None:
        self._events.put_nowait(OutputReceived(chunks[0] if len(chunks) == 1 else b"".join(chunks)))

    def _schedule_timer(self) -> None:
        channel = self.channel
        if channel is None or self._loop is None:
            return
        when = channel.next_timer()
        if when == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None and not channel.closed:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        channel = self._require_channel()
        channel.tick(self._now())
        self._after_channel_call()

    async def _answer_handshake(self, event: HandshakeRequested) -> None:
        request = event.data_key_request
        channel = self._require_channel()
        if self._data_key_provider is None:
            error = "the agent requires KMS encryption but no data key provider was configured"
            self._failure = KmsError(error, session_id=self.session_id)
            channel.complete_handshake(None, self._now(), error=error)
            self._after_channel_call()
            return
        try:
            data_key = await asyncio.wait_for(
                asyncio.to_thread(self._data_key_provider, request), KMS_BUDGET
            )
        except (EcsexecError, TimeoutError) as exc:
            # §8.9: report KMS errors as KMS errors naming key and context.
            context = ", ".join(f"{k}={v}" for k, v in request.encryption_context.items())
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            self._failure = KmsError(
                f"kms:GenerateDataKey for key {request.key_id} (context {context}) failed: "
                f"{reason}",
                session_id=self.session_id,
            )
            channel.complete_handshake(None, self._now(), error=reason)
        else:
            channel.complete_handshake(data_key, self._now())
        self._after_channel_call()

    async def _watch_loop(self) -> None:
        """Wait for the socket to close; then finish, wait out the grace, or resume (§10)."""
        try:
            while True:
                ws = self._ws
                assert ws is not None
                await ws.wait_closed()
                if ws.protocol_error is not None:
                    # Resuming would only fetch the same frame again.
                    raise TransportError(
                        f"the gateway broke the data-channel protocol: {ws.protocol_error}",
                        session_id=self.session_id,
                    )
                channel = self._require_channel()
                if channel.closed:
                    return
                if channel.state is State.CLOSING:
                    # channel_closed came with a gap and the relay hung up: wait out the grace.
                    await self._wait_for_close(channel.close_grace + 0.5)
                    return
                await self._reconnect()
        except SessionError as exc:
            self._failure = self._failure or exc
            self._unresumed = not self._terminated
            self._abort(str(exc))
        finally:
            self._done.set()

    async def _resume_session(self) -> tuple[str, str]:
        control = self._control
        assert control is not None
        if isinstance(control, AsyncSessionControl):
            return await control.resume_session_async(self.session_id)
        return await _control_call(control.resume_session, self.session_id)

    async def _reconnect(self) -> None:
        """§10: ResumeSession at once, dial the NEW StreamUrl, keep all channel state.

        A lost socket gets ``reconnect_attempts`` attempts: the first at once, the next
        after 100-200 ms, doubling up to ``reconnect_max``. Permanent ResumeSession errors
        (access denied, unknown session) and an empty token (the session ended) end it at
        once. A relay that keeps accepting and dropping the client ends in an error after
        ``reconnect_flaps`` sockets in a row that brought nothing.
        """
        old = self._ws
        self._ws = None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        if self._control is None or self._terminated:
            raise TransportError(
                "data channel closed without channel_closed and cannot be resumed",
                session_id=self.session_id,
            )
        options = self.options
        if self._received or self._now() - self._connected_at >= options.reconnect_max:
            self._flaps = 0
        else:
            self._flaps += 1  # the lost socket brought nothing
            if self._flaps > options.reconnect_flaps:
                raise TransportError(
                    f"the data channel closed {self._flaps} times in a row right after it "
                    "was resumed, before anything arrived on it",
                    session_id=self.session_id,
                )
        delay = options.reconnect_initial * (1 + random.random())
        last_error: EcsexecError | None = None
        for attempt in range(options.reconnect_attempts):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 2, options.reconnect_max)
            try:
                token, url = await self._resume_session()
            except (AwsError, CredentialsError) as exc:
                if isinstance(exc, CredentialsError) or exc.code in _PERMANENT_RESUME_ERRORS:
                    raise TransportError(
                        f"lost the data channel and cannot resume it: {exc}",
                        session_id=self.session_id,
                    ) from None
                last_error = exc
                continue
            except EcsexecError as exc:
                last_error = exc
                continue
            if self._terminated:
                raise TransportError(
                    "data channel closed without channel_closed while terminating",
                    session_id=self.session_id,
                )
            if not token:
                # §10.4: the session ended while the socket was down (the relay ended it
                # after the command exited, or it timed out): what the relay still held
                # for us, channel_closed included, cannot be had any more.
                raise TransportError(
                    "the session ended while the data channel was disconnected "
                    "(ResumeSession returned no token); output after the disconnect "
                    "may be missing",
                    session_id=self.session_id,
                )
            self._reack_from = 0  # before the open frame: the relay answers at once
            try:
                await self._connect(url, token)
            except TransportError as exc:
                last_error = exc
                continue
            self.stream_url = url
            self.reconnects += 1
            return
        raise TransportError(
            f"lost the data channel and could not resume it after "
            f"{options.reconnect_attempts} attempts: {last_error}",
            session_id=self.session_id,
        )


def describe_truncation(event: ChannelClosed) -> str:
    """The loud message for §11 truncation."""
    if event.missing_seq is not None:
        return f"output truncated: frame {event.missing_seq} never arrived"
    return "output truncated"


__all__ = [
    "CLIENT_ID",
    "AsyncSessionControl",
    "DataKeyProvider",
    "Session",
    "SessionControl",
    "SessionOptions",
    "TerminationOutcome",
    "describe_truncation",
]
