"""Result objects: one node's :class:`CommandResult` and a whole run's :class:`RunResult`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ecsexec.errors import CommandFailedError, EcsexecError, Status, exit_status


def command_status(exit_code: int | None, *, truncated: bool = False) -> Status:
    """A finished command's status: known exit code and complete output, or an error."""
    if exit_code is None or truncated:
        return Status.ERROR
    return Status.SUCCEEDED if exit_code == 0 else Status.FAILED


@dataclass(frozen=True)
class CommandResult:
    """What one command on one node produced, however it ended.

    ``exit_code`` is None when unknown (``reason`` says why). ``output`` holds every byte
    received, also when the session failed (``error``), timed out or was interrupted.
    """

    node: str
    command: str
    status: Status
    exit_code: int | None
    # Left out of repr: asyncio formats a finished task's result (e.g. on asyncio.run's
    # SIGINT check), and a repr of 100 MB of output took most of a second.
    output: bytes = field(repr=False)
    started_at: datetime
    finished_at: datetime
    session_id: str = ""
    reason: str = ""  # why exit_code is None, or what went wrong
    error: EcsexecError | None = field(default=None, compare=False)
    truncated: bool = False

    @classmethod
    def failure(
        cls,
        node: str,
        command: str,
        error: EcsexecError,
        started_at: datetime,
        finished_at: datetime,
        *,
        output: bytes = b"",
        session_id: str = "",
        status: Status = Status.ERROR,
    ) -> CommandResult:
        """A node where the command could not run, failed mid-stream or was cancelled."""
        return cls(
            node,
            command,
            status,
            None,
            output,
            started_at,
            finished_at,
            session_id or getattr(error, "session_id", ""),
            str(error),
            error,
        )

    @property
    def ok(self) -> bool:
        return self.status.ok

    @property
    def exit_status(self) -> int:
        """This node's share of the process exit status (its error's, if it has one)."""
        return self.error.exit_code if self.error is not None else self.status.exit_code

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def check(self) -> CommandResult:
        """Return self if the command succeeded, else raise :class:`CommandFailedError`."""
        if not self.ok:
            if self.exit_code is not None:
                what = f"exit code {self.exit_code}"
            else:
                what = f"exit status unknown ({self.reason or self.status})"
            if self.truncated:
                what += ", output truncated"
            raise CommandFailedError(f"{self.node}: {self.command!r}: {what}", self)
        return self


@dataclass(frozen=True)
class RunResult:
    """Every node's result in rank order: iterate it, index it by node name.

    Nodes that fail-fast or an interruption left untouched are results too, with status
    ``not started``. ``workflow`` holds the statuses of a job's steps that ran once rather
    than on a node (a job reference), which count towards the exit status as well.
    """

    command: str
    results: Mapping[str, CommandResult] = field(default_factory=dict)
    interrupted: bool = False
    run_id: int | None = None  # the history record, when one was written
    workflow: tuple[Status, ...] = ()
    warnings: tuple[str, ...] = ()  # for the user: doubtful filter, history not written

    def __iter__(self) -> Iterator[CommandResult]:
        return iter(self.results.values())

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, node: str) -> CommandResult:
        return self.results[node]

    @property
    def succeeded(self) -> dict[str, CommandResult]:
        return {k: v for k, v in self.results.items() if v.ok}

    @property
    def failed(self) -> dict[str, CommandResult]:
        return {k: v for k, v in self.results.items() if not v.ok}

    @property
    def not_started(self) -> tuple[str, ...]:
        return tuple(k for k, v in self.results.items() if v.status is Status.NOT_STARTED)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.not_started

    @property
    def exit_status(self) -> int:
        """The process exit status: 0 all succeeded, 1 a command exited non-zero, 2 a
        configuration error (credentials...), 3 a node could not be run or its outcome is
        unknown, 130 interrupted (see :func:`ecsexec.errors.exit_status`)."""
        codes = [r.exit_status for r in self.results.values()]
        codes += [status.exit_code for status in self.workflow]
        return exit_status(codes, interrupted=self.interrupted)

    @property
    def command_exit_status(self) -> int:
        """The commands' own exit code, as ``ssh`` passes it on: the highest over the nodes
        (as ``clush -S`` does) when every node ran to an exit code; otherwise, and when
        interrupted, :attr:`exit_status` (a node that could not run gives 3, as always)."""
        codes = [
            r.exit_code
            for r in self.results.values()
            if r.status in (Status.SUCCEEDED, Status.FAILED) and r.exit_code is not None
        ]
        if self.interrupted or self.workflow or not codes or len(codes) != len(self.results):
            return self.exit_status
        return max(codes)

    def check(self) -> RunResult:
        """Return self if every node succeeded, else raise :class:`CommandFailedError`."""
        if not self.ok:
            counts: dict[str, int] = {}
            for result in self.results.values():
                counts[result.status] = counts.get(result.status, 0) + 1
            parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            raise CommandFailedError(f"{self.command!r}: {parts}", self)
        return self
