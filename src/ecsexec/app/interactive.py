"""An interactive session in one container: send input, resize, signal, read output.

``ecsexec shell`` and a web terminal both drive one of these. The command was started
by ExecuteCommand before this object exists; leaving its ``async with`` block before the
remote side closed terminates the session, so nothing is left running.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Final

from ecsexec.errors import ConfigurationError
from ecsexec.exec.trailer import TrailerFilter
from ecsexec.nodes.node import Node
from ecsexec.ssm.channel import ChannelClosed, Event, OutputReceived
from ecsexec.ssm.session import Session

# What the remote terminal gets for each signal a user can send: the PTY turns these
# control characters into SIGINT, SIGQUIT and SIGTSTP for the foreground process.
SIGNAL_BYTES: Final = {signal.SIGINT: b"\x03", signal.SIGQUIT: b"\x1c", signal.SIGTSTP: b"\x1a"}
EOF_BYTE: Final = b"\x04"


class InteractiveSession:
    """``async with await client.open_session(node) as s: async for event in s: ...``.

    Events are the data channel's (:class:`~ecsexec.ssm.channel.OutputReceived` with the
    terminal's exact bytes, ``StderrReceived``, ``HandshakeCompleted``); the last one is
    always :class:`~ecsexec.ssm.channel.ChannelClosed`.
    """

    def __init__(
        self,
        node: Node | None,
        command: str,
        session: Session,
        trailer: TrailerFilter | None = None,
    ) -> None:
        self.node = node
        self.command = command
        self._session = session
        self._trailer = trailer
        self._last_input = b"\n"

    @property
    def exit_code(self) -> int | None:
        """The command's exit status once it ended (None: unknown, e.g. ``raw``)."""
        return self._trailer.exit_code if self._trailer is not None else None

    @property
    def session_id(self) -> str:
        return self._session.session_id

    async def __aenter__(self) -> InteractiveSession:
        await self._session.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session.aclose()

    def __aiter__(self) -> AsyncIterator[Event]:
        return _Events(aiter(self._session), self._trailer)

    async def send_input(self, data: bytes) -> None:
        """Send keystrokes or piped input; waits while the remote side is behind."""
        if data:
            self._last_input = data
        await self._session.send_input(data)

    async def send_eof(self) -> None:
        """End of input: Ctrl-D, which the remote terminal reads as EOF only at the start
        of a line, so twice after a partial line."""
        await self._session.send_input(
            EOF_BYTE if self._last_input.endswith(b"\n") else EOF_BYTE * 2
        )

    def send_size(self, cols: int, rows: int) -> None:
        """Tell the remote terminal its window size."""
        self._session.send_size(cols, rows)

    resize = send_size

    async def signal(self, signum: int) -> None:
        """Deliver SIGINT, SIGQUIT or SIGTSTP to the remote foreground process (through
        its terminal); SIGTERM, SIGKILL and SIGHUP end the session through
        ``ssm:TerminateSession``."""
        if signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGHUP):
            await self.terminate()
            return
        try:
            data = SIGNAL_BYTES[signal.Signals(signum)]
        except (KeyError, ValueError):
            raise ConfigurationError(f"cannot send signal {signum} to a remote terminal") from None
        await self._session.send_input(data)

    async def terminate(self, reason: str = "terminated") -> None:
        await self._session.terminate(reason)

    async def wait_closed(self) -> ChannelClosed:
        """Wait for the channel to close; raises the session's failure if it had one."""
        return await self._session.wait_closed()

    @property
    def closed(self) -> ChannelClosed | None:
        return self._session.closed


class _Events:
    """The session's events, with the exit-status trailer taken out of the output."""

    def __init__(self, events: AsyncIterator[Event], trailer: TrailerFilter | None) -> None:
        self._events = events
        self._trailer = trailer
        self._pending: list[Event] = []

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            event = await anext(self._events)
            if self._trailer is None:
                return event
            if isinstance(event, OutputReceived):
                shown = self._trailer.feed(event.data)
                if shown:
                    self._pending.append(OutputReceived(shown))
            elif isinstance(event, ChannelClosed):
                held = self._trailer.finish()
                if held:
                    self._pending.append(OutputReceived(held))
                self._pending.append(event)
            else:
                self._pending.append(event)
        return self._pending.pop(0)
