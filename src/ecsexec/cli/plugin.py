"""A drop-in ``session-manager-plugin``: the AWS CLI's plugin contract on ecsexec's own client.

ssm/README.md §14 is the contract: argv layout, the installation check, the banner lines
other tools match, terminal handling, and exit status. It differs from AWS's Go plugin
where §15 says to: stdin EOF never ends the session, truncation is never a silent exit 0,
and KMS uses the caller's own credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Final
from urllib.parse import urlsplit

import click

from ecsexec.aws.clients import make_session, ssl_context
from ecsexec.aws.ssm import KmsDataKeyProvider, SsmSessionControl
from ecsexec.errors import ConfigurationError, EcsexecError
from ecsexec.ssm.channel import (
    ChannelClosed,
    HandshakeCompleted,
    OutputReceived,
    StderrReceived,
)
from ecsexec.ssm.payloads import CLIENT_VERSION
from ecsexec.ssm.session import Session, SessionOptions, describe_truncation

ENV_RESPONSE: Final = "AWS_SSM_START_SESSION_RESPONSE"
EXIT_LOCAL_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_TRUNCATED: Final = 3
PIPE_SIZE: Final = (300, 100)  # §14: Size sent when stdin is not a terminal
INSTALLED_NOTE: Final = (
    "\nThe Session Manager plugin was installed successfully (ecsexec drop-in). "
    "Use the AWS CLI to start a session.\n\n"
)
_SIGNAL_BYTES: Final = {signal.SIGINT: b"\x03", signal.SIGQUIT: b"\x1c", signal.SIGTSTP: b"\x1a"}


@dataclass(frozen=True)
class PluginRequest:
    """The parsed argv of one plugin invocation."""

    session_id: str
    stream_url: str
    token_value: str
    region: str
    profile: str
    target: str
    endpoint: str

    def __repr__(self) -> str:  # the token must never reach a log or traceback
        return f"PluginRequest(session_id={self.session_id!r}, target={self.target!r})"


def parse_argv(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> PluginRequest:
    """Parse ``plugin SESSION REGION StartSession [PROFILE PARAMETERS ENDPOINT]`` (§14)."""
    if len(argv) not in (4, 7):
        raise ConfigurationError(
            f"expected 3 or 6 arguments (SESSION REGION StartSession [PROFILE PARAMETERS "
            f"ENDPOINT]), got {len(argv) - 1}"
        )
    if argv[3] != "StartSession":
        raise ConfigurationError(f"unsupported operation {argv[3]!r}: only StartSession")
    raw = argv[1]
    if raw.startswith(ENV_RESPONSE):
        raw = environ.get(raw, "")
        with contextlib.suppress(KeyError):
            del environ[argv[1]]  # §14: unset it so the token does not leak to children
    try:
        session = json.loads(raw)
    except ValueError:
        raise ConfigurationError("argument 1 is not the session JSON") from None
    if not isinstance(session, dict):
        raise ConfigurationError("argument 1 is not a JSON object")
    keys = {str(k).lower(): v for k, v in session.items()}  # §14: keys case-insensitively
    missing = [k for k in ("sessionid", "streamurl", "tokenvalue") if not keys.get(k)]
    if missing:
        raise ConfigurationError(f"session JSON lacks {', '.join(missing)}")
    target = ""
    profile = endpoint = ""
    if len(argv) == 7:
        profile, endpoint = argv[4], argv[6]
        try:
            params = json.loads(argv[5]) if argv[5] else {}
        except ValueError:
            raise ConfigurationError("argument 5 is not the parameters JSON") from None
        if isinstance(params, dict):
            target = str(params.get("Target") or "")
    return PluginRequest(
        session_id=str(keys["sessionid"]),
        stream_url=str(keys["streamurl"]),
        token_value=str(keys["tokenvalue"]),
        region=argv[2],
        profile=profile,
        target=target,
        endpoint=endpoint,
    )


def ssm_endpoint(endpoint: str) -> str | None:
    """§14/§15.9: argv[6] is the ECS endpoint under ECS Exec; use it only if it is SSM's."""
    host = urlsplit(endpoint).hostname or ""
    return endpoint if host.startswith("ssm.") else None


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


async def run_plugin(
    request: PluginRequest,
    *,
    stdin_fd: int,
    stdout: BinaryIO,
    stderr: BinaryIO,
    options: SessionOptions | None = None,
) -> int:
    """Run one session like the Go plugin does, with ecsexec's fixes. Returns the exit status."""
    boto_session = make_session(profile=request.profile or None, region=request.region)
    control = SsmSessionControl(boto_session, endpoint_url=ssm_endpoint(request.endpoint))
    kms = KmsDataKeyProvider(boto_session)
    base = options or SessionOptions()
    opts = SessionOptions(**{**base.__dict__, "ssl_context": ssl_context(boto_session)})
    stdout.write(f"\nStarting session with SessionId: {request.session_id}\n".encode())
    stdout.flush()
    session = Session(
        request.session_id,
        request.stream_url,
        request.token_value,
        target=request.target,
        control=control,
        data_key_provider=kms,
        options=opts,
    )
    closed = await attach_terminal(session, stdin_fd=stdin_fd, stdout=stdout, stderr=stderr)
    if closed.output:
        stdout.write(f"\n\nSessionId: {request.session_id} : {closed.output}\n\n".encode())
    else:
        stdout.write(f"\n\nExiting session with sessionId: {request.session_id}.\n\n".encode())
    stdout.flush()
    if closed.truncated:
        stderr.write(f"ecsexec: {describe_truncation(closed)}\n".encode())
        stderr.flush()
        return EXIT_TRUNCATED
    return 0


async def attach_terminal(
    session: Session, *, stdin_fd: int, stdout: BinaryIO, stderr: BinaryIO
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
            task = loop.create_task(session.send_input(_SIGNAL_BYTES[signal.Signals(signum)]))
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


async def _forward_stdin(pump: _StdinPump, session: Session) -> None:
    """Forward input as it comes, without waiting for output; EOF sends 0x04 (§14)."""
    last = b"\n"
    while True:
        data = await pump.queue.get()
        if not data:
            # §11: 0x04 is EOF only at the start of a line; send it twice otherwise.
            await session.send_input(b"\x04" if last.endswith(b"\n") else b"\x04\x04")
            return  # and stay until channel_closed
        last = data
        await session.send_input(data)


async def _print_events(session: Session, stdout: BinaryIO, stderr: BinaryIO) -> ChannelClosed:
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


def plugin_main(argv: list[str]) -> int:
    """Entry point body shared by ``session-manager-plugin`` and ``ecsexec ssm-plugin``."""
    if len(argv) == 1:
        sys.stdout.write(INSTALLED_NOTE)
        return 0
    if len(argv) == 2 and argv[1] in ("--version", "version"):
        sys.stdout.write(CLIENT_VERSION + "\n")
        return 0
    try:
        request = parse_argv(argv, os.environ)
    except ConfigurationError as exc:
        sys.stderr.write(f"session-manager-plugin: {exc}\n")
        return EXIT_USAGE
    try:
        return asyncio.run(
            run_plugin(
                request,
                stdin_fd=sys.stdin.fileno(),
                stdout=sys.stdout.buffer,
                stderr=sys.stderr.buffer,
            )
        )
    except EcsexecError as exc:
        sys.stderr.write(f"session-manager-plugin: {exc}\n")
        return EXIT_LOCAL_FAILURE
    except KeyboardInterrupt:
        return 130


def main() -> None:
    """``session-manager-plugin`` console script."""
    sys.exit(plugin_main(sys.argv))


@click.command(
    "ssm-plugin",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def ssm_plugin(args: tuple[str, ...]) -> None:
    """Act as AWS's session-manager-plugin (same arguments as the AWS CLI passes)."""
    sys.exit(plugin_main(["session-manager-plugin", *args]))
