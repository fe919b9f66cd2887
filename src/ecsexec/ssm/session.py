"""Drive a :class:`DataChannel` over a websocket with asyncio: the I/O half of the client.

One :class:`Session` owns one data channel. It opens the stream URL (frames reach the
channel straight from the socket, see :mod:`ecsexec.ssm.transport`), runs the channel's
timers (resends, input gate, close grace), keeps the socket
alive with pings, reconnects through ``ssm:ResumeSession`` (ssm/README.md §10) and calls
``ssm:TerminateSession`` whenever the caller gives up, so a session is never left running.
Websocket and OS errors are translated into :mod:`ecsexec.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ecsexec.errors import (
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
from ecsexec.ssm.transport import DataChannelConnection, proxy_for

log = logging.getLogger(__name__)

CLIENT_ID: Final = str(uuid.uuid4())  # §2: fixed per process
KMS_BUDGET: Final = 12.0  # §7: the agent waits 15 s for the HandshakeResponse


class SessionControl(Protocol):
    """The two SSM API calls the driver needs (implemented with boto3 in ``ecsexec.aws``).

    Both are blocking; the driver runs them in a worker thread.
    """

    def resume_session(self, session_id: str) -> tuple[str, str]:
        """Return ``(token_value, stream_url)``; an empty token means the session timed out."""
        ...

    def terminate_session(self, session_id: str) -> None: ...


DataKeyProvider = Callable[[DataKeyRequest], DataKey]
"""Blocking call to kms:GenerateDataKey with the caller's own credentials (§8.2)."""


@dataclass(frozen=True)
class SessionOptions:
    """Timing knobs; defaults follow ssm/README.md §6-§10."""

    ping_interval: float | None = 60.0  # §9: ping every 60 s ...
    ping_timeout: float | None = 60.0  # ... and reconnect after 60 s without a pong
    open_timeout: float = 10.0
    gate_timeout: float = 2.0
    close_grace: float = 1.0
    ack_watchdog: float = 60.0
    reconnect_attempts: int = 5  # §10: Go plugin policy, 100-200 ms doubling to 5 s
    reconnect_initial: float = 0.1
    reconnect_max: float = 5.0
    terminate_wait: float = 3.0  # how long to wait for channel_closed after TerminateSession
    ssl_context: ssl.SSLContext | None = None
    client_version: str = payloads.CLIENT_VERSION


class _Reconnect(Exception):
    """Internal: the socket is gone without channel_closed."""


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
        self.reconnects = 0

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
        ws.on_message = self._on_message
        ws.on_batch = self._after_channel_call  # a socket read's acks in one write
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

    async def terminate(self, reason: str = "terminated") -> None:
        """Ask SSM to end the session (the agent kills the process), then close (§11)."""
        if self._terminated:
            return
        self._terminated = True
        if self._control is not None:
            try:
                await asyncio.to_thread(self._control.terminate_session, self.session_id)
            except EcsexecError as exc:
                # §11: if TerminateSession is denied, fall back to Ctrl-C and close.
                log.warning("TerminateSession for %s failed: %s", self.session_id, exc)
                await self._interrupt()
            else:
                await self._wait_for_close(self.options.terminate_wait)
        else:
            await self._interrupt()
        if self._closed_event is None and self.channel is not None:
            self.channel.abort(reason)
            self._dispatch_events()

    async def _interrupt(self) -> None:
        if self.channel is not None and self._ws is not None and not self.channel.closed:
            self.channel.send_input(b"\x03", self._now())
            self._after_channel_call()
            await self._wait_for_close(0.5)

    async def _wait_for_close(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), seconds)

    # --- internals -------------------------------------------------------------------

    def _require_channel(self) -> DataChannel:
        if self.channel is None:
            raise SessionError("session not started", session_id=self.session_id)
        return self.channel

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _after_channel_call(self) -> None:
        channel = self._require_channel()
        frames = channel.data_to_send()
        if frames:
            ws = self._ws
            if ws is None:
                self._outgoing.extend(frames)
            else:
                # Not open: data frames stay in the channel's unacked buffer and are resent
                # after the reconnect; lost acks are recovered by the agent's resends.
                ws.send_frames(frames)
        self._dispatch_events()
        if channel.writable:
            self._writable.set()
        self._schedule_timer()

    def _on_message(self, data: bytes) -> None:
        """One websocket message, straight from the socket read; the connection calls
        ``_after_channel_call`` once after the read, so its acks leave in one write."""
        self._require_channel().receive_frame(data, self._now())

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
            if self.channel is not None and not self.channel.closed:
                self.channel.abort(str(exc))
                self._dispatch_events()
        finally:
            self._done.set()

    async def _reconnect(self) -> None:
        """§10: ResumeSession, dial the NEW StreamUrl, keep all channel state."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._ws = None
        if self._control is None or self._terminated:
            raise TransportError(
                "data channel closed without channel_closed and cannot be resumed",
                session_id=self.session_id,
            )
        delay = self.options.reconnect_initial * (1 + random.random())
        last_error: Exception | None = None
        for _attempt in range(self.options.reconnect_attempts):
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.reconnect_max)
            try:
                token, url = await asyncio.to_thread(self._control.resume_session, self.session_id)
                if not token:
                    raise TransportError(
                        "session timed out: ResumeSession returned no token",
                        session_id=self.session_id,
                    )
                await self._connect(url, token)
            except TransportError as exc:
                last_error = exc
                if "timed out" in str(exc):
                    raise
                continue
            except EcsexecError as exc:
                last_error = exc
                continue
            self.stream_url = url
            self.reconnects += 1
            return
        raise TransportError(
            f"lost the data channel and could not resume it after "
            f"{self.options.reconnect_attempts} attempts: {last_error}",
            session_id=self.session_id,
        )


def describe_truncation(event: ChannelClosed) -> str:
    """The loud message for §11 truncation."""
    if event.missing_seq is not None:
        return f"output truncated: frame {event.missing_seq} never arrived"
    return "output truncated"


__all__ = [
    "CLIENT_ID",
    "DataKeyProvider",
    "Session",
    "SessionControl",
    "SessionOptions",
    "describe_truncation",
]
