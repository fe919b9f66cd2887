"""What a running job reports besides the dispatcher's node events, and nothing else.

Kept apart from :mod:`ecsexec.jobs.executor` so the engine's event types can name them
without importing the executor (and the option expansion, job library and parsers it
pulls in): ``ecsexec run`` runs no job, and those imports cost it ~30 ms of start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ecsexec.errors import Status

__all__ = [
    "DataCaptured",
    "JobNotice",
    "NodeSummary",
    "NodeUpdated",
    "StepFinished",
    "StepResult",
    "StepStarted",
]


@dataclass(frozen=True)
class StepStarted:
    step: str  # "2", "2.e" (its error handler), "3/1" (step 1 of the job step 3 references)
    label: str
    node: str | None  # None: a workflow step (a job reference run once)


@dataclass(frozen=True)
class StepResult:
    step: str
    label: str
    node: str | None
    status: Status  # succeeded, failed, error, timeout, cancelled, recovered
    exit_code: int | None
    duration: float
    detail: str
    top: bool  # a step of the job itself (not of a handler or a referenced job)

    @property
    def ok(self) -> bool:
        return self.status.ok


@dataclass(frozen=True)
class StepFinished:
    result: StepResult


@dataclass(frozen=True)
class DataCaptured:
    node: str
    key: str
    value: str


@dataclass(frozen=True)
class JobNotice:
    text: str
    node: str | None = None


@dataclass(frozen=True)
class NodeSummary:
    """One node's state so far: the worst of its steps, its whole (redacted) output."""

    node: str
    position: int
    status: Status  # "not started" until a step ran
    exit_code: int | None
    duration: float | None
    detail: str
    output: bytes
    steps: int
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class NodeUpdated:
    summary: NodeSummary
