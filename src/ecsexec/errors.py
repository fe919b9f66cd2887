"""Every exception ecsexec raises, in one tree, each with the process exit status it means.

::

    EcsexecError                    exit 3 unless a subclass says otherwise
    ├── ConfigurationError          2  bad input from the user: flags, files, filters
    │   ├── FilterSyntaxError       2  node filter, with the column
    │   ├── TopologyError           2  sandbox topology, with file:line:col
    │   ├── FaultSpecError          2  sandbox fault SPEC item
    │   ├── JobFileError            2  job file, with file:line
    │   ├── OptionError             2  a job option value is missing or invalid
    │   ├── CredentialsError        2  a credential provider failed (never carries a secret)
    │   ├── KeyStoreError           2  key storage: missing key, wrong passphrase, refused read
    │   ├── HistoryError            2  the history database cannot be opened
    │   └── TeamStoreError          2  the server's users, tokens, audit and schedules store
    │       ├── UserExistsError     2  a user of that name already exists
    │       └── NoSuchUserError     2  no user of that name
    ├── AwsError                    3  an AWS API call failed: code, operation, hint
    ├── DiscoveryError              3  node discovery failed as a whole (names region, action)
    ├── SandboxError                3  the local sandbox could not start, stop or answer
    ├── AccessDenied                3  the server's access policy refuses an action (names it, why)
    ├── ProtocolError               3  the data channel received something it cannot accept
    │   └── FrameError              3  a frame that fails §3 validation
    ├── SessionError                3  a data-channel session could not run to its end
    │   ├── TransportError          3  websocket or OS error, translated at the driver boundary
    │   └── KmsError                3  kms:GenerateDataKey failed (names key and context)
    └── CommandFailedError          1  a command ran but did not succeed (carries the result)

Errors that end an operation carry whatever partial result exists, so a caller never
loses output it already received: :class:`SessionError` has ``output``,
:class:`CommandFailedError` has ``result``.

:func:`exit_status` turns the outcome of a whole run into the process exit status, and
:func:`run_main` is the one entry-point wrapper (``ecsexec``, ``session-manager-plugin``
and the detached sandbox) that turns an escaping error into a message and that status.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import sys
from collections.abc import Callable, Iterable
from typing import ClassVar, Final, NoReturn

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # a command ran and exited non-zero
EXIT_USAGE: Final = 2  # usage or configuration error
EXIT_NOT_RUN: Final = 3  # a node could not be run or its outcome is unknown
EXIT_INTERRUPTED: Final = 130  # Ctrl-C, SIGTERM, SIGHUP
EXIT_BROKEN_PIPE: Final = 141  # 128 + SIGPIPE: stdout's reader went away


class EcsexecError(Exception):
    """Base class of every ecsexec error. ``exit_code`` is the process exit status it means."""

    exit_code: ClassVar[int] = EXIT_NOT_RUN


class ConfigurationError(EcsexecError):
    """The user's input (flags, files, environment) is invalid."""

    exit_code: ClassVar[int] = EXIT_USAGE


class FilterSyntaxError(ConfigurationError):
    """A node filter could not be parsed; ``column`` is 1-based."""

    def __init__(self, message: str, *, filter_text: str = "", column: int = 0) -> None:
        self.filter_text = filter_text
        self.column = column
        where = f" (column {column})" if column else ""
        super().__init__(f"{message}{where}")


class TopologyError(ConfigurationError):
    """A sandbox topology file is invalid; the message starts with file:line:col."""


class FaultSpecError(ConfigurationError, ValueError):
    """A sandbox fault SPEC item is malformed; the message names the item."""


class JobFileError(ConfigurationError):
    """A job file is invalid; every line of the message starts with file:line."""


class OptionError(ConfigurationError):
    """A job option value is missing or invalid (never quotes a secure value)."""


class CredentialsError(ConfigurationError):
    """A credential provider failed. The message names the provider, never a secret."""


class KeyStoreError(ConfigurationError):
    """Key storage failed: no such key, wrong passphrase, a refused read. Never holds a value."""


class HistoryError(ConfigurationError):
    """The history database cannot be opened or is from a newer ecsexec."""


class TeamStoreError(ConfigurationError):
    """The server's team database (users, tokens, sessions, audit, schedules) cannot be
    opened, is from a newer ecsexec, or refuses a change (a bad user name)."""


class UserExistsError(TeamStoreError):
    """A user of that name already exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"user {name!r} already exists")


class NoSuchUserError(TeamStoreError):
    """No user of that name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no user {name!r}")


class AwsError(EcsexecError):
    """An AWS API call failed.

    ``code`` is the AWS error code (``ThrottlingException``...), ``operation`` the API
    action, and ``hint`` tells the user what to do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        operation: str = "",
        hint: str = "",
        retryable: bool = False,
    ) -> None:
        self.message = message
        self.code = code
        self.operation = operation
        self.hint = hint
        self.retryable = retryable
        text = message
        if code and code not in message:
            text = f"{code}: {text}"
        if operation:
            text = f"{operation} failed: {text}"
        if hint:
            text = f"{text}\nhint: {hint}"
        super().__init__(text)


class DiscoveryError(EcsexecError):
    """Node discovery failed for a whole source (every cluster failed, or an action is denied)."""


class SandboxError(EcsexecError):
    """The sandbox could not start or stop, or its control endpoint did not answer."""


class AccessDenied(EcsexecError):
    """The server's access policy refuses ``action``; ``reason`` says why (which role, which
    nodes or job), never anything secret."""

    def __init__(self, action: str, reason: str) -> None:
        self.action = action
        self.reason = reason
        super().__init__(f"access denied: {action}: {reason}")


class ProtocolError(EcsexecError):
    """The data channel received something the protocol does not allow."""


class FrameError(ProtocolError):
    """A frame failed validation (docs/ssm-protocol.md §3) and must be dropped without an ack."""


class SessionError(EcsexecError):
    """A data-channel session could not run to its normal end.

    ``output`` holds every byte of remote output delivered before the failure.
    """

    def __init__(self, message: str, *, session_id: str = "", output: bytes = b"") -> None:
        self.session_id = session_id
        self.output = output
        super().__init__(message)


class TransportError(SessionError):
    """The websocket or the OS failed (connect, TLS, reset, closed without channel_closed)."""


class KmsError(SessionError):
    """kms:GenerateDataKey (or the handshake's challenge built on it) failed."""


class CommandFailedError(EcsexecError):
    """A command finished with a non-zero or unknown exit code; ``result`` has everything."""

    exit_code: ClassVar[int] = EXIT_FAILED

    def __init__(self, message: str, result: object) -> None:
        self.result = result
        super().__init__(message)


# --- outcomes ------------------------------------------------------------------------------


class Status(enum.StrEnum):
    """The one vocabulary of outcomes: of a node, a job step, and a whole run in history.

    The values are what JSON, history and the CLI show.
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the command ran and exited non-zero
    ERROR = "error"  # the command could not run, or its exit status is unknown
    TIMEOUT = "timeout"  # the deadline passed; the session was ended (the reason says how)
    CANCELLED = "cancelled"  # interrupted; the session was ended (the reason says how)
    NOT_STARTED = "not started"  # fail-fast or an interruption left it untouched
    RECOVERED = "recovered"  # a job step failed and its error handler succeeded
    RUNNING = "running"  # a run in history that has not finished yet
    INTERRUPTED = "interrupted"  # a run in history that was interrupted
    INCOMPLETE = "incomplete"  # a run in history whose process died

    @property
    def ok(self) -> bool:
        return self in (Status.SUCCEEDED, Status.RECOVERED)

    @property
    def exit_code(self) -> int:
        """This outcome's share of the process exit status (see :func:`exit_status`)."""
        return _STATUS_EXIT.get(self, EXIT_OK)


_STATUS_EXIT: Final = {
    Status.FAILED: EXIT_FAILED,
    Status.ERROR: EXIT_NOT_RUN,
    Status.TIMEOUT: EXIT_NOT_RUN,
    Status.CANCELLED: EXIT_NOT_RUN,
    Status.INCOMPLETE: EXIT_NOT_RUN,
    Status.INTERRUPTED: EXIT_INTERRUPTED,
}

# Which part's status wins when several differ: an interruption first, then a mistake the
# user must fix, then a node that could not run, then a command's own failure.
_PRECEDENCE: Final = (EXIT_INTERRUPTED, EXIT_USAGE, EXIT_NOT_RUN, EXIT_FAILED)


def exit_status(codes: Iterable[int], *, interrupted: bool = False) -> int:
    """The process exit status of a run from its parts' exit codes.

    The parts are each node's ``status.exit_code`` and, where a node failed with an
    error, that error's ``exit_code`` (a :class:`CredentialsError` means 2 whether it
    happened in discovery or while starting a session).
    """
    if interrupted:
        return EXIT_INTERRUPTED
    seen = set(codes)
    return next((code for code in _PRECEDENCE if code in seen), EXIT_OK)


def status_for_exit(code: int) -> Status:
    """A whole run's status in history from its process exit status."""
    return {
        EXIT_OK: Status.SUCCEEDED,
        EXIT_FAILED: Status.FAILED,
        EXIT_INTERRUPTED: Status.INTERRUPTED,
    }.get(code, Status.ERROR)


# --- entry points --------------------------------------------------------------------------


def run_main(
    main: Callable[[], int | None],
    *,
    prog: str = "ecsexec",
    describe: Callable[[EcsexecError], str] = str,
) -> NoReturn:
    """Run a console entry point and exit with its status; the one place errors end a process.

    An :class:`EcsexecError` prints ``prog: error: ...`` (``describe`` renders it) and
    exits with its ``exit_code``;
    Ctrl-C exits 130 quietly; a closed stdout (``ecsexec run ... | head``) exits quietly
    with the status the run reached, as ``cat`` does, instead of a traceback.
    """
    try:
        code = main()
    except EcsexecError as exc:
        _say(f"{prog}: error: {describe(exc)}")
        code = exc.exit_code
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = _broken_pipe()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        code = _broken_pipe()
    _flush()
    sys.exit(code or 0)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def _flush() -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        _silence_stdout()


def _broken_pipe() -> int:
    _silence_stdout()
    return EXIT_BROKEN_PIPE


def exit_broken_pipe() -> NoReturn:
    """Leave quietly because stdout's reader went away (``| head``), as ``cat`` does."""
    sys.exit(_broken_pipe())


def _silence_stdout() -> None:
    # Python flushes stdout again at exit and would print a second BrokenPipeError.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
