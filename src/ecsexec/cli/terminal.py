"""The local terminal attached to a remote session: raw mode, window size, signals, stdin.

Both ``ecsexec shell`` and the ``session-manager-plugin`` drop-in use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from typing import Any, BinaryIO, Final

from ecsexec.app.interactive import InteractiveSession
from ecsexec.errors import EcsexecError
from ecsexec.ssm.channel import (
    ChannelClosed,
    HandshakeCompleted,
    OutputReceived,
    StderrReceived,
)

PIPE_SIZE: Final = (300, 100)  # §14: Size sent when stdin is not a terminal


class _StdinPump:
    """Reads stdin in a daemon thread (it may block forever) and hands chunks to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._loop = loop
        self._fd = fd
        self._thread = threading.Thread(target=self._run, name="stdin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 4096)
            except OSError:
                data = b""
            try:
                asyncio.run_coroutine_threadsafe(self.queue.put(data), self._loop).result()
            except RuntimeError:
                return  # the loop is gone
            if not data:
                return


class _Terminal:
    """Raw mode on a TTY, restored on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.is_tty = os.isatty(fd)
        self._saved: Any = None

    def __enter__(self) -> _Terminal:
        if self.is_tty:
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSADRAIN)  # keep type-ahead (TCSAFLUSH drops it)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def size(self) -> tuple[int, int]:
        if self.is_tty:
            with contextlib.suppress(OSError):
                cols, rows = os.get_terminal_size(self.fd)
                return cols, rows
        return PIPE_SIZE


async def attach_terminal(
    session: InteractiveSession, *, stdin_fd: int, stdout: BinaryIO, stderr: BinaryIO
) -> ChannelClosed:
    """Connect the local terminal (or pipes) to a session until the channel closes.

    On a TTY: raw mode, the window size at start and on SIGWINCH. Ctrl-C, Ctrl-\\ and
    Ctrl-Z reach the remote side as 0x03, 0x1c and 0x1a; a third Ctrl-C from a caller
    without a TTY terminates the session. stdin EOF sends 0x04 and waits for the remote
    side to close (§14).
    """
    loop = asyncio.get_running_loop()
    terminal = _Terminal(stdin_fd)
    interrupts = 0
    signal_tasks: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        nonlocal interrupts
        if signum == signal.SIGINT:
            interrupts += 1
        if interrupts >= 3:  # escalation: end the remote session for real (§11)
            task = loop.create_task(session.terminate("interrupted"))
        else:
            task = loop.create_task(session.signal(signum))
        signal_tasks.add(task)
        task.add_done_callback(signal_tasks.discard)

    with terminal:
        async with session:
            session.send_size(*terminal.size())
            installed = []
            for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.add_signal_handler(signum, on_signal, signum)
                    installed.append(signum)
            if terminal.is_tty:
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.add_signal_handler(
                        signal.SIGWINCH, lambda: session.send_size(*terminal.size())
                    )
                    installed.append(signal.SIGWINCH)
            pump = _StdinPump(loop, stdin_fd)
            pump.start()
            forward = asyncio.create_task(_forward_stdin(pump, session))
            try:
                closed = await _print_events(session, stdout, stderr)
            finally:
                forward.cancel()
                for signum in installed:
                    loop.remove_signal_handler(signum)
        await session.wait_closed()
    return closed


async def _forward_stdin(pump: _StdinPump, session: InteractiveSession) -> None:
    """Forward input as it comes, without waiting for output; EOF sends 0x04 (§14)."""
    while True:
        data = await pump.queue.get()
        if not data:
            await session.send_eof()
            return  # and stay until channel_closed
        await session.send_input(data)


async def _print_events(
    session: InteractiveSession, stdout: BinaryIO, stderr: BinaryIO
) -> ChannelClosed:
    async for event in session:
        if isinstance(event, OutputReceived):
            stdout.write(event.data)  # byte-exact
            stdout.flush()
        elif isinstance(event, StderrReceived):
            stderr.write(event.data)
            stderr.flush()
        elif isinstance(event, HandshakeCompleted) and event.customer_message:
            stderr.write(event.customer_message.encode() + b"\n")  # §15.11: not stdout
            stderr.flush()
        elif isinstance(event, ChannelClosed):
            return event
    raise EcsexecError("session ended without channel_closed")
