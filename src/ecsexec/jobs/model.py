"""The job model: frozen dataclasses for jobs, options, steps and log filters. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from ecsexec.jobs.schedule import Schedule
from ecsexec.jobs.script_source import redact_url

STRATEGIES: Final = ("node-first", "step-first", "parallel")
KEY_VALUE_PATTERN: Final = r"^RUNDECK:DATA:\s*([^\s]+?)\s*=\s*(.+)$"  # Rundeck's default
INVALID_KEY_PATTERN: Final = r"\s|\$|\{|\}|\\"  # Rundeck's default


@dataclass(frozen=True)
class Where:
    """A place in a job file, for messages: ``file:line`` (1-based)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


NOWHERE: Final = Where("<job>", 0)


@dataclass(frozen=True)
class JobOption:
    """One ``options`` entry: a named input with an optional default and checks."""

    name: str
    description: str = ""
    value: str | None = None  # the default
    values: tuple[str, ...] = ()
    enforced: bool = False  # the value must be one of ``values``
    required: bool = False
    regex: str | None = None  # a Java regex the whole value must match
    secure: bool = False  # never shown, logged or recorded
    where: Where = NOWHERE


@dataclass(frozen=True)
class LogFilter:
    """Rundeck's ``key-value-data`` log filter: capture ``${data.KEY}`` from output lines."""

    regex: str = KEY_VALUE_PATTERN
    name: str | None = None  # the key when the regex has one group
    log_data: bool = False
    invalid_key_pattern: str = INVALID_KEY_PATTERN
    replacement: str = "_"
    match_substrings: bool = False
    where: Where = NOWHERE


@dataclass(frozen=True)
class Dispatch:
    """How a job's nodes are chosen, ordered and run (``nodefilters.dispatch``)."""

    threadcount: int = 1
    keepgoing: bool = False
    exclude_precedence: bool = True
    rank_attribute: str = "nodename"
    rank_order: str = "ascending"
    success_on_empty: bool = False


@dataclass(frozen=True)
class JobRef:
    """A reference to another job in the same directory."""

    name: str
    group: str = ""
    uuid: str = ""
    args: str = ""  # ``-option value ...``, expanded per argument
    node_step: bool = False
    filter: str | None = None  # overrides the referenced job's filter
    dispatch: Dispatch | None = None


StepKind = Literal["exec", "script", "jobref"]


@dataclass(frozen=True)
class Step:
    """One workflow command: ``exec``, ``script`` (inline, a file or a URL), or ``jobref``."""

    kind: StepKind
    command: str = ""  # exec
    script: str = ""
    # A script step's text may instead come, when the step runs, from a file (an absolute
    # path, resolved against the job file) or an http(s) URL, as Rundeck's scriptfile
    # and scripturl steps do; tokens are expanded in them only with expand_file_tokens.
    script_file: str = ""
    script_url: str = ""
    expand_file_tokens: bool = False
    file_extension: str = ""
    args: str = ""
    interpreter: str = ""
    interpreter_args_quoted: bool = False
    jobref: JobRef | None = None
    description: str = ""
    errorhandler: Step | None = None
    keepgoing_on_success: bool = False  # meaningful on an error handler
    log_filters: tuple[LogFilter, ...] = ()
    where: Where = NOWHERE

    @property
    def node_step(self) -> bool:
        """Runs once per node (exec, script, node-step jobref) rather than once per job."""
        return self.kind != "jobref" or (self.jobref is not None and self.jobref.node_step)

    def label(self) -> str:
        if self.description:
            return self.description
        if self.kind == "exec":
            return self.command.splitlines()[0] if self.command else "exec"
        if self.kind == "script":
            if self.script_file:
                return f"script file {self.script_file.rsplit('/', 1)[-1]}"
            if self.script_url:
                return f"script {redact_url(self.script_url)}"
            return "inline script"
        assert self.jobref is not None
        return f"job {job_path(self.jobref.group, self.jobref.name)}"


def job_path(group: str, name: str) -> str:
    return f"{group}/{name}" if group else name


@dataclass(frozen=True)
class Job:
    """One job definition."""

    name: str
    group: str = ""
    description: str = ""
    uuid: str = ""
    options: tuple[JobOption, ...] = ()
    filter: str | None = None
    dispatch: Dispatch = field(default_factory=Dispatch)
    keepgoing: bool = False
    strategy: str = "node-first"
    steps: tuple[Step, ...] = ()
    log_filters: tuple[LogFilter, ...] = ()  # sequence-wide, applied to every step
    schedule: Schedule | None = None  # run by `ecsexec server`; on demand everywhere else
    schedule_enabled: bool = True  # Rundeck's scheduleEnabled: false keeps the schedule idle
    where: Where = NOWHERE

    @property
    def scheduled(self) -> bool:
        """Whether a server should fire this job on its schedule."""
        return self.schedule is not None and self.schedule_enabled

    @property
    def path(self) -> str:
        return job_path(self.group, self.name)

    def option(self, name: str) -> JobOption | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True)
class JobFile:
    """A parsed file: its jobs, and warnings about Rundeck keys ecsexec ignores."""

    path: str
    jobs: tuple[Job, ...]
    warnings: tuple[str, ...] = ()
