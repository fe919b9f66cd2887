"""The engine that the CLI, the web console and the Rundeck plugin share: :class:`Client`."""

from ecsexec.app.client import DEFAULT_SHELL, Client, JobPlan, Run, SessionCleanup, Target
from ecsexec.app.interactive import InteractiveSession
from ecsexec.app.selection import Selection, SourceOverrides

__all__ = [
    "DEFAULT_SHELL",
    "Client",
    "InteractiveSession",
    "JobPlan",
    "Run",
    "Selection",
    "SessionCleanup",
    "SourceOverrides",
    "Target",
]
