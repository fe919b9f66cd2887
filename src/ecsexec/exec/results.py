"""Result objects: one node's :class:`CommandResult` and many nodes' :class:`RunResult`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ecsexec.errors import CommandFailedError, EcsexecError


@dataclass(frozen=True)
class CommandResult:
    """What one command on one node produced. ``exit_code`` is None when unknown."""

    node: str
    command: str
    exit_code: int | None
    # Left out of repr: asyncio formats a finished task's result (e.g. on asyncio.run's
    # SIGINT check), and a repr of 100 MB of output took most of a second.
    output: bytes = field(repr=False)
    started_at: datetime
    finished_at: datetime
    session_id: str = ""
    reason: str = ""  # why exit_code is None, or what went wrong
    truncated: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.truncated

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    @property
    def status(self) -> str:
        """succeeded, failed (non-zero exit), timeout, or error (exit status unknown)."""
        if self.timed_out:
            return "timeout"
        if self.exit_code is None or self.truncated:
            return "error"
        return "succeeded" if self.exit_code == 0 else "failed"

    def check(self) -> CommandResult:
        """Return self if the command succeeded, else raise :class:`CommandFailedError`."""
        if not self.ok:
            what = (
                f"exit code {self.exit_code}"
                if self.exit_code is not None
                else f"exit status unknown ({self.reason})"
            )
            if self.truncated:
                what += ", output truncated"
            raise CommandFailedError(f"{self.node}: {self.command!r}: {what}", self)
        return self


@dataclass(frozen=True)
class NodeError:
    """A node where the command could not run, or was cancelled before it finished."""

    node: str
    error: EcsexecError
    started_at: datetime
    finished_at: datetime
    output: bytes = field(default=b"", repr=False)  # whatever arrived before the failure
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return False

    @property
    def status(self) -> str:
        return "cancelled" if self.cancelled else "error"

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class RunResult:
    """Every node's outcome, in the order the nodes were given (rank order)."""

    command: str
    results: Mapping[str, CommandResult | NodeError] = field(default_factory=dict)
    not_started: tuple[str, ...] = ()  # fail-fast or interruption left these untouched
    interrupted: bool = False

    @property
    def succeeded(self) -> dict[str, CommandResult]:
        return {k: v for k, v in self.results.items() if isinstance(v, CommandResult) and v.ok}

    @property
    def failed(self) -> dict[str, CommandResult | NodeError]:
        return {k: v for k, v in self.results.items() if not v.ok}

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_started and not self.interrupted

    def exit_code(self) -> int:
        """The ``ecsexec run`` exit status (issue 5).

        0 every node succeeded; 1 a command exited non-zero; 3 a node could not be run or
        its outcome is unknown (API or session error, timeout, truncation); 130 interrupted.
        A node that could not be run outranks a command's own failure.
        """
        if self.interrupted:
            return 130
        statuses = {outcome.status for outcome in self.results.values()}
        if statuses & {"error", "timeout", "cancelled"}:
            return 3
        if "failed" in statuses:
            return 1
        return 0
