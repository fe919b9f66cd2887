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
    output: bytes
    started_at: datetime
    finished_at: datetime
    session_id: str = ""
    reason: str = ""  # why exit_code is None, or what went wrong
    truncated: bool = False

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
        if self.ok:
            return "succeeded"
        if self.exit_code is None:
            return "unknown"
        return "failed"

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
    """A node where the command could not run (or its outcome could not be known)."""

    node: str
    error: EcsexecError
    started_at: datetime
    finished_at: datetime
    output: bytes = b""  # whatever arrived before the failure

    @property
    def ok(self) -> bool:
        return False

    @property
    def status(self) -> str:
        return "error"


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
        """0 all succeeded; 1 a command failed; 2 a node errored or was skipped; 130 interrupted.

        With one node, the node's own exit code is passed through, so ``ecsexec run`` on a
        single container behaves like running the command locally.
        """
        if self.interrupted:
            return 130
        if len(self.results) == 1 and not self.not_started:
            (only,) = self.results.values()
            if isinstance(only, CommandResult) and only.exit_code is not None:
                return 1 if only.truncated and only.exit_code == 0 else only.exit_code
        if any(isinstance(v, NodeError) for v in self.results.values()) or self.not_started:
            return 2
        for value in self.results.values():
            if isinstance(value, CommandResult) and value.exit_code is None:
                return 2
        return 1 if self.failed else 0
