"""Wrap a user command so its exit code comes back through nonce markers; clean the output.

ECS Exec runs commands without a shell, under a PTY, and never reports an exit code
(docs/ssm-protocol.md §12, §13). We therefore send ``/bin/sh -c <script>`` where the script
prints a begin marker, runs the user's command in its own shell, and prints an end
marker carrying ``$?``. :class:`OutputCleaner` turns the PTY stream back into the user's
output: noise before the begin marker and the markers themselves are dropped, and the
PTY's ``\\r\\n`` becomes ``\\n``.

A command may also get **input** (``wrap(..., stdin=data)``): a script, say, delivered
through the exec channel itself, with no S3 bucket or file copier. The wrapper turns
echo off, checks its tools, prints a *ready* marker (before the begin marker, so the
cleaner drops it), and reads the input, framed as :mod:`ecsexec.exec.transfer` describes
(base64 lines in chunks, then its SHA-256 and ``cksum``), into a temporary file that has
no name: it is opened and unlinked before the first byte arrives, so the input (secure
option values, say) never rests on the container's disk, even when a timeout or Ctrl-C
ends the session with SIGKILL and no cleanup runs. The client sends the input once it
sees the ready marker, as a stream: there is no size limit. The checksum is checked
before the command runs with the data as its stdin and ``$ECSEXEC_INPUT`` naming it: a
symlink to ``/dev/fd/9``, which the command and its children inherit (a program that
closes inherited descriptors, such as ``sudo``, cannot open it; give it the data on
stdin). Pure: no I/O.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

MARKER_PREFIX: Final = b"__ECSEXEC_"
_NOISE_KEPT: Final = 4096  # output before the begin marker kept while waiting for it
DEFAULT_ENV: Final = (("TERM", "dumb"), ("PAGER", "cat"))  # no colours, no pagers waiting

INPUT_VARIABLE: Final = "ECSEXEC_INPUT"
INPUT_FAILED: Final = 125  # the exit code when the input could not be delivered intact


class OutputFilter(Protocol):
    """Stands between the cleaned output and the user for one run (a download decodes
    its data here): returns what the user should see."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self, exit_code: int | None) -> tuple[bytes, str]:
        """The rest of the output, and what went wrong that the exit code does not say
        ("" if nothing): the run then fails with exit code 125."""
        ...


@dataclass(frozen=True)
class WrappedCommand:
    """What to pass to ecs:ExecuteCommand, and how to read the answer."""

    user_command: str
    ecs_command: str
    nonce: str  # empty in raw mode
    input_payload: bytes = b""  # sent when the ready marker arrives (see encode_input)
    # Or a stream of it, for input too large to hold: a fresh iterator for each run.
    input_source: Callable[[], Iterator[bytes]] | None = None
    # A fresh filter for each run, between the cleaner and the user (ecsexec cp).
    output_filter: Callable[[], OutputFilter] | None = None
    # A file copy: its timeout counts from the last data moved, and when it is
    # interrupted or times out the wrapper gets ^C to clean up before it is killed.
    transfer: bool = False

    @property
    def has_input(self) -> bool:
        return bool(self.input_payload) or self.input_source is not None

    @property
    def raw(self) -> bool:
        return not self.nonce

    @property
    def ready_marker(self) -> bytes:
        """What the wrapper prints when it is ready to read ``input_payload``."""
        return b"__ECSEXEC_I_" + self.nonce.encode() + b"__"

    @property
    def begin_marker(self) -> bytes:
        """What the wrapper prints on a line of its own right before the command runs."""
        return b"__ECSEXEC_B_" + self.nonce.encode() + b"__"

    def end_marker(self, exit_code: int) -> bytes:
        """What the wrapper prints on a line of its own after the command, with its ``$?``."""
        return b"__ECSEXEC_E_" + self.nonce.encode() + b"__:%d" % exit_code


def make_nonce() -> str:
    """16 fresh hex characters for a command's markers (§12)."""
    return secrets.token_hex(8)


def wrap(command: str, *, nonce: str | None = None, stdin: bytes | None = None) -> WrappedCommand:
    """Build the marker-wrapped command (§12). The literal markers never appear in argv.

    With ``stdin``, the data is delivered through the channel first (module docstring)
    and ``command`` runs with it as standard input; ``$ECSEXEC_INPUT`` names it too.
    """
    nonce = nonce or make_nonce()
    if stdin is not None:
        return _wrap_with_input(command, nonce, stdin)
    exports = " ".join(f"{k}={v}" for k, v in DEFAULT_ENV)
    script = "\n".join(
        [
            "stty -echo 2>/dev/null",
            f"export {exports}",
            # printf assembles the marker from pieces, so `ps` output cannot fake it (§12).
            f"printf '\\n__ECSEXEC_%s_%s__\\n' B {nonce}",
            # Own shell: `exit n` in user code is safe. No input: end of file at once, so a
            # command that reads stdin never waits on the session's terminal.
            "/bin/sh -c " + shlex.quote(command) + " </dev/null",
            "__ecsexec_rc=$?",
            f"printf '\\n__ECSEXEC_%s_%s__:%d\\n' E {nonce} \"$__ecsexec_rc\"",
            'exit "$__ecsexec_rc"',
        ]
    )
    # §13: the agent splits this with Go shlex rules; shlex.join output round-trips exactly.
    return WrappedCommand(command, shlex.join(["/bin/sh", "-c", script]), nonce)


def _wrap_with_input(command: str, nonce: str, data: bytes) -> WrappedCommand:
    # Only commands with input need the framing (and its start-up cost: ~2 ms).
    from ecsexec.exec.transfer import encode_input, input_check, input_reader

    payload = encode_input(data)
    exports = " ".join(f"{k}={v}" for k, v in DEFAULT_ENV)
    begin = f"printf '\\n__ECSEXEC_%s_%s__\\n' B {nonce}"
    directory = f'"${{TMPDIR:-/tmp}}/ecsexec-{nonce}"'
    script = "\n".join(
        [
            # A failure before the ready marker sends nothing; it is reported as the
            # command's output with exit code 125, between regular markers.
            "__ecsexec_fail() {",
            f"  {begin}",
            "  printf 'ecsexec: input delivery failed: %s\\n' \"$1\"",
            f"  printf '\\n__ECSEXEC_%s_%s__:%d\\n' E {nonce} {INPUT_FAILED}",
            f"  exit {INPUT_FAILED}",
            "}",
            # Echo must be off before anything is sent, or the input would come back as
            # output: refuse rather than ignore a missing stty.
            "stty -echo 2>/dev/null || __ecsexec_fail 'cannot turn terminal echo off (no stty?)'",
            f"export {exports}",
            "for __ecsexec_t in base64 head ln; do",
            "  command -v $__ecsexec_t >/dev/null 2>&1 ||"
            ' __ecsexec_fail "$__ecsexec_t is not installed in the container"',
            "done",
            f"__ecsexec_d={directory}",
            # mkdir (not -p) fails on an existing path, so nobody can plant a symlink there.
            '(umask 077 && mkdir "$__ecsexec_d") 2>/dev/null ||'
            ' __ecsexec_fail "cannot create $__ecsexec_d"',
            "trap 'rm -rf \"$__ecsexec_d\"' EXIT",
            "trap 'exit 129' HUP",
            "trap 'exit 143' TERM",
            # ^C typed by the client (Ctrl-C, a timeout) while the input is coming in.
            "trap 'rm -rf \"$__ecsexec_d\"; __ecsexec_fail interrupted' INT",
            '__ecsexec_f="$__ecsexec_d/input"',
            # The input never has a name on disk (it may hold secrets, and a timeout or
            # Ctrl-C kills us with SIGKILL: no trap runs). The file is opened for writing
            # (fd 8) and reading (fd 9) and unlinked before a byte of it arrives; the
            # kernel frees it when the last of our processes holding it is gone. Its name
            # becomes a symlink to /dev/fd/9, which on Linux opens the file afresh (own
            # offset) for any process that inherited fd 9: the checks, and the command.
            ': > "$__ecsexec_f" 2>/dev/null || __ecsexec_fail "cannot create $__ecsexec_f"',
            'exec 8>"$__ecsexec_f" 9<"$__ecsexec_f"',
            'rm -f "$__ecsexec_f"',
            '{ ln -s /dev/fd/9 "$__ecsexec_f" && [ -r "$__ecsexec_f" ]; } 2>/dev/null ||'
            " __ecsexec_fail 'cannot read the input through /dev/fd/9 (is /proc mounted?)'",
            f"printf '\\n__ECSEXEC_%s_%s__\\n' I {nonce}",
            *input_reader(8, "__ecsexec_fail"),
            "exec 8>&-",
            *input_check('"$__ecsexec_f"', "__ecsexec_fail"),
            "trap - INT",  # the command's own from here
            begin,
            # 9< again: a shell that closes fds opened by exec (ksh) still passes it on.
            f'{INPUT_VARIABLE}="$__ecsexec_f" /bin/sh -c {shlex.quote(command)}'
            ' < "$__ecsexec_f" 9< "$__ecsexec_f"',
            "__ecsexec_rc=$?",
            f"printf '\\n__ECSEXEC_%s_%s__:%d\\n' E {nonce} \"$__ecsexec_rc\"",
            'exit "$__ecsexec_rc"',
        ]
    )
    return WrappedCommand(command, shlex.join(["/bin/sh", "-c", script]), nonce, payload)


class ReadyScanner:
    """Finds a wrapper's ready marker in the raw PTY stream, across chunk boundaries."""

    def __init__(self, wrapped: WrappedCommand) -> None:
        self._marker = wrapped.ready_marker
        self._tail = b""
        self.seen = False

    def feed(self, data: bytes) -> bool:
        """Add raw output; True exactly once, when the marker has arrived."""
        if self.seen:
            return False
        window = self._tail + data
        if self._marker in window:
            self.seen = True
            self._tail = b""
            return True
        self._tail = window[-(len(self._marker) - 1) :]
        return False


def raw(command: str) -> WrappedCommand:
    """No wrapping, for images without /bin/sh: the agent splits and execs it directly."""
    return WrappedCommand(command, command, "")


@dataclass(frozen=True)
class CleanResult:
    """The end of a cleaned stream."""

    exit_code: int | None
    reason: str  # why exit_code is None; empty otherwise
    begin_seen: bool


# What dash and busybox ash print when a child dies of a signal (their own tables).
_SIGNAL_NOTICE: Final = re.compile(
    rb"(?:^|(?<=\n))(?:Killed|Terminated|Hangup|Interrupt|Quit|Aborted|Alarm clock|Bus error"
    rb"|Segmentation fault|Floating point exception|Illegal instruction|Trace/breakpoint trap"
    rb"|User defined signal [12]|Signal \d+)(?: \(core dumped\))?\n\Z"
)


_NOTICES: Final = (
    b"Killed",
    b"Terminated",
    b"Hangup",
    b"Interrupt",
    b"Quit",
    b"Aborted",
    b"Alarm clock",
    b"Bus error",
    b"Segmentation fault",
    b"Floating point exception",
    b"Illegal instruction",
    b"Trace/breakpoint trap",
    b"User defined signal 1",
    b"User defined signal 2",
)
_CORE: Final = b" (core dumped)"
_SIGNAL_N: Final = re.compile(rb"S(?:i(?:g(?:n(?:a(?:l(?: \d*)?)?)?)?)?)?")


_NOTICE_INITIALS: Final = frozenset(n[0] for n in (*_NOTICES, b"S"))
_NOTICE_MAX: Final = max(len(n) for n in _NOTICES) + len(b" (core dumped)") + 8


def _could_be_signal_notice(line: bytes) -> bool:
    """True if ``line`` is a signal notice or the start of one."""
    if not line or len(line) > _NOTICE_MAX or line[0] not in _NOTICE_INITIALS:
        return False  # the common case, decided without scanning the notices
    for notice in _NOTICES:
        if notice.startswith(line):
            return True
        if line.startswith(notice) and _CORE.startswith(line[len(notice) :]):
            return True
    match = _SIGNAL_N.match(line)
    if match is not None:
        rest = line[match.end() :]
        return rest == b"" or (match.group(0).startswith(b"Signal ") and _CORE.startswith(rest))
    return False


_SHORT_LINES: Final = 48  # bytes: a line this short means short lines


def crlf_to_lf(data: bytes) -> bytes:
    """Every ``\\r\\n`` as ``\\n``; a lone ``\\r`` stays.

    Two exact ways, picked by the length of the first whole line (from the first line
    break to the second: a chunk usually starts mid-line): for lines of ~100 bytes (logs)
    splitting and joining costs half of ``replace`` (1.3 against 1.9-3.4 ms per MB, the
    client's largest single cost when streaming), for lines of a few bytes (``seq``)
    ``replace`` costs half of splitting.
    """
    first = data.find(b"\n")
    if first != -1 and data.find(b"\n", first + 1, first + 1 + _SHORT_LINES) != -1:
        return data.replace(b"\r\n", b"\n")
    return b"\n".join(data.split(b"\r\n"))


class OutputCleaner:
    """Streaming parser for a wrapped command's PTY output.

    ``feed()`` returns the user output that is certain by now; ``finish()`` returns the
    rest and the exit code. It holds back only what could still be the start of the end
    marker (§12 "Streaming"), plus a trailing ``\\r`` whose ``\\n`` may follow.
    """

    def __init__(self, wrapped: WrappedCommand) -> None:
        self._nonce = wrapped.nonce.encode()
        self._raw = wrapped.raw
        self._begin_seen = self._raw
        self._buffer = bytearray()
        self._begin_re = re.compile(re.escape(wrapped.begin_marker) + rb"\r*\n")
        self._end_head = b"\n__ECSEXEC_E_" + self._nonce + b"__:"
        self._end_rest = re.compile(rb"\d{0,3}|\d{1,3}[\r\n]*")
        # §12 says `\r*\n` before the end marker; we take at most the one `\r` the PTY adds
        # to printf's `\n`, so a user's own trailing `\r` is kept (found by property tests).
        self._end_re = re.compile(
            rb"\r?\n__ECSEXEC_E_" + re.escape(self._nonce) + rb"__:(\d{1,3})\r*\n?[\r\n]*\Z"
        )
        # The same with the line break after the exit code: the code cannot grow any more.
        self._end_complete_re = re.compile(
            rb"\r?\n__ECSEXEC_E_" + re.escape(self._nonce) + rb"__:\d{1,3}\r*\n[\r\n]*\Z"
        )
        self._finished = False

    @property
    def begin_seen(self) -> bool:
        return self._begin_seen

    @property
    def end_seen(self) -> bool:
        """The whole end marker has arrived, its line break included, and nothing after it
        but line breaks: the output and the exit code are complete, and :meth:`finish`
        returns them whatever becomes of the stream now."""
        if self._raw or not self._begin_seen or self._finished:
            return False
        return self._end_complete_re.search(self._buffer) is not None

    @property
    def line_break_held(self) -> bool:
        """What is held back is exactly a line break (it may yet be the end marker's)."""
        held = self._buffer
        return bool(held) and self._begin_seen and not held.strip(b"\r\n") and b"\n" in held

    def feed(self, data: bytes) -> bytes:
        """Add PTY output; return the cleaned user output that can be shown now."""
        self._buffer += data
        if not self._begin_seen:
            match = self._begin_re.search(self._buffer)
            if match is None:
                if len(self._buffer) > _NOISE_KEPT * 2:  # noise (a copy's progress dots):
                    del self._buffer[:-_NOISE_KEPT]  # only a marker's start matters
                return b""
            del self._buffer[: match.end()]  # §12: drop everything up to the begin marker
            self._begin_seen = True
        cut = self._safe_prefix_length()
        if cut == 0:
            return b""
        with memoryview(self._buffer) as view:
            out = bytes(view[:cut])  # one copy, not a bytearray slice and then bytes()
        del self._buffer[:cut]
        return crlf_to_lf(out)

    def _safe_prefix_length(self) -> int:
        """How much of the buffer cannot be part of a future end marker or a split CRLF."""
        buf = self._buffer
        hold_from = len(buf.rstrip(b"\r"))  # a trailing \r may pair with a coming \n
        if self._raw:
            return hold_from
        # Walk back over line breaks while the tail could still be (the start of) the end
        # marker or blank lines after it; hold back from the earliest such line break.
        pos = buf.rfind(b"\n")
        while pos != -1:
            tail = bytes(buf[pos:])
            if tail.strip(b"\r\n") and not self._could_be_end(tail):
                break
            hold_from = pos
            pos = buf.rfind(b"\n", 0, pos)
        while hold_from > 0 and buf[hold_from - 1] == 0x0D:  # the \r* before the \n
            hold_from -= 1
        # Also hold the last line while it could be the shell's signal notice, which
        # finish() drops when the exit code says the command died of a signal.
        end = hold_from
        if end > 0 and buf[end - 1] == 0x0A:  # the line just before a held marker
            end -= 1
        line_start = buf.rfind(b"\n", 0, end) + 1
        if _could_be_signal_notice(bytes(buf[line_start:end]).rstrip(b"\r")):
            return line_start
        return hold_from

    def _could_be_end(self, tail: bytes) -> bool:
        head = self._end_head
        if len(tail) <= len(head):
            return head.startswith(tail)
        if not tail.startswith(head):
            return False
        return self._end_rest.fullmatch(tail, len(head)) is not None

    def finish(self) -> tuple[bytes, CleanResult]:
        """End of stream: the remaining output and the exit code (None if unknown)."""
        self._finished = True
        rest = bytes(self._buffer)
        self._buffer.clear()
        if self._raw:
            return crlf_to_lf(rest), CleanResult(None, "raw mode: exit status unknown", True)
        if not self._begin_seen:
            return b"", CleanResult(
                None,
                "cannot start /bin/sh (no begin marker); exit status unknown",
                False,
            )
        match = self._end_re.search(rest)
        if match is None:
            return crlf_to_lf(rest), CleanResult(
                None, "the end marker never arrived; exit status unknown", True
            )
        code = int(match.group(1))
        output = crlf_to_lf(rest[: match.start()])
        if code > 128:
            # §12: the wrapper shell reports a signal death with a notice line; drop it.
            output = _SIGNAL_NOTICE.sub(b"", output)
        return output, CleanResult(code, "", True)
