"""Wrap a user command so its exit code comes back through nonce markers; clean the output.

ECS Exec runs commands without a shell, under a PTY, and never reports an exit code
(ssm/README.md §12, §13). We therefore send ``/bin/sh -c <script>`` where the script
prints a begin marker, runs the user's command in its own shell, and prints an end
marker carrying ``$?``. :class:`OutputCleaner` turns the PTY stream back into the user's
output: noise before the begin marker and the markers themselves are dropped, and the
PTY's ``\\r\\n`` becomes ``\\n``. Pure: no I/O.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Final

MARKER_PREFIX: Final = b"__ECSEXEC_"
DEFAULT_ENV: Final = (("TERM", "dumb"), ("PAGER", "cat"))  # no colours, no pagers waiting


@dataclass(frozen=True)
class WrappedCommand:
    """What to pass to ecs:ExecuteCommand, and how to read the answer."""

    user_command: str
    ecs_command: str
    nonce: str  # empty in raw mode

    @property
    def raw(self) -> bool:
        return not self.nonce


def wrap(command: str, *, nonce: str | None = None) -> WrappedCommand:
    """Build the marker-wrapped command (§12). The literal markers never appear in argv."""
    nonce = nonce or secrets.token_hex(8)
    exports = " ".join(f"{k}={v}" for k, v in DEFAULT_ENV)
    script = "\n".join(
        [
            "stty -echo 2>/dev/null",
            f"export {exports}",
            # printf assembles the marker from pieces, so `ps` output cannot fake it (§12).
            f"printf '\\n__ECSEXEC_%s_%s__\\n' B {nonce}",
            "/bin/sh -c " + shlex.quote(command),  # own shell: `exit n` in user code is safe
            "__ecsexec_rc=$?",
            f"printf '\\n__ECSEXEC_%s_%s__:%d\\n' E {nonce} \"$__ecsexec_rc\"",
            'exit "$__ecsexec_rc"',
        ]
    )
    # §13: the agent splits this with Go shlex rules; shlex.join output round-trips exactly.
    return WrappedCommand(command, shlex.join(["/bin/sh", "-c", script]), nonce)


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


def _could_be_signal_notice(line: bytes) -> bool:
    """True if ``line`` is a signal notice or the start of one."""
    if not line:
        return False
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


def crlf_to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


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
        self._begin_re = re.compile(rb"__ECSEXEC_B_" + re.escape(self._nonce) + rb"__\r*\n")
        self._end_head = b"\n__ECSEXEC_E_" + self._nonce + b"__:"
        self._end_rest = re.compile(rb"\d{0,3}|\d{1,3}[\r\n]*")
        # §12 says `\r*\n` before the end marker; we take at most the one `\r` the PTY adds
        # to printf's `\n`, so a user's own trailing `\r` is kept (found by property tests).
        self._end_re = re.compile(
            rb"\r?\n__ECSEXEC_E_" + re.escape(self._nonce) + rb"__:(\d{1,3})\r*\n?[\r\n]*\Z"
        )
        self._finished = False

    @property
    def begin_seen(self) -> bool:
        return self._begin_seen

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
                return b""
            del self._buffer[: match.end()]  # §12: drop everything up to the begin marker
            self._begin_seen = True
        cut = self._safe_prefix_length()
        if cut == 0:
            return b""
        out = bytes(self._buffer[:cut])
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
