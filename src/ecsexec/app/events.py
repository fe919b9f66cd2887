"""The engine's one stream of events: a run's start and end around the node and job events.

Every front end consumes the same stream: the CLI renders it, history records it, the
web console forwards it. Nothing in the library prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ecsexec.exec.dispatcher import (
    NodeFinished,
    NodeNotice,
    NodeOutput,
    NodeSessionStarted,
    NodeStarted,
    NodeThrottled,
)
from ecsexec.exec.results import RunResult
from ecsexec.jobs.events import DataCaptured, JobNotice, NodeUpdated, StepFinished, StepStarted


@dataclass(frozen=True)
class RunStarted:
    """A run is about to start its first node. ``run_id`` is its history record, if any."""

    title: str  # the command, or "job <path>"
    nodes: tuple[str, ...]
    run_id: int | None


@dataclass(frozen=True)
class RunFinished:
    """The last event of a run: its result (also what awaiting the run returns)."""

    result: RunResult


Event = (
    RunStarted
    | NodeStarted
    | NodeSessionStarted
    | NodeOutput
    | NodeNotice
    | NodeThrottled
    | NodeFinished
    | StepStarted
    | StepFinished
    | DataCaptured
    | JobNotice
    | NodeUpdated
    | RunFinished
)
EventCallback = Callable[[Event], None]

__all__ = [
    "DataCaptured",
    "Event",
    "EventCallback",
    "JobNotice",
    "NodeFinished",
    "NodeNotice",
    "NodeOutput",
    "NodeSessionStarted",
    "NodeStarted",
    "NodeThrottled",
    "NodeUpdated",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "StepStarted",
]
