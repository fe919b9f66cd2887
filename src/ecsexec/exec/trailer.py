"""The exit status of an interactive command: a trailer line the terminal never shows.

An interactive session carries no exit status (the plugin contract has none), so the
command runs under ``/bin/sh``, which prints ``<CR><LF>__ECSEXEC_S_<nonce>_<status>__``
after it. :class:`TrailerFilter` takes that line out of the output stream, holding back
only the bytes that could still be its beginning, and keeps the status. Pure: bytes in,
bytes out.
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Final

TRAILER_PREFIX: Final = b"__ECSEXEC_S_"


@dataclass(frozen=True)
class InteractiveCommand:
    """What to send as ECS Exec's command, and the trailer it will print."""

    ecs_command: str
    marker: bytes  # b"\r\n__ECSEXEC_S_<nonce>_"


def with_exit_trailer(command: str, nonce: str | None = None) -> InteractiveCommand:
    """Run ``command`` (split as a shell would, into an argv: ECS Exec runs commands
    without a shell) under ``/bin/sh``, which then prints the trailer with its status."""
    nonce = nonce or secrets.token_hex(6)
    script = f'"$@"; rc=$?; printf "\\n__ECSEXEC_S_{nonce}_%d__\\n" "$rc"; exit "$rc"'
    argv = ["/bin/sh", "-c", script, "ecsexec-shell", *shlex.split(command)]
    marker = b"\r\n" + TRAILER_PREFIX + nonce.encode() + b"_"
    return InteractiveCommand(shlex.join(argv), marker)


class TrailerFilter:
    """Removes the trailer from a terminal's output and records the exit status."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self._pattern = re.compile(re.escape(marker) + rb"(\d{1,3})__\r\n")
        self._held = b""
        self.exit_code: int | None = None

    def feed(self, data: bytes) -> bytes:
        """The part of ``data`` to show now (some bytes may be held back until the next)."""
        if self.exit_code is not None:
            return b""  # nothing the command printed comes after its trailer
        buffer = self._held + data
        found = self._pattern.search(buffer)
        if found:
            self.exit_code = int(found.group(1))
            self._held = b""
            return buffer[: found.start()]
        start = buffer.find(self.marker[:1], max(0, len(buffer) - len(self.marker) - 6))
        while start != -1:
            tail = buffer[start:]
            if self.marker.startswith(tail) or tail.startswith(self.marker):
                self._held = tail
                return buffer[:start]
            start = buffer.find(self.marker[:1], start + 1)
        self._held = b""
        return buffer

    def finish(self) -> bytes:
        """The session ended: whatever was held back was output after all."""
        held, self._held = self._held, b""
        return held
