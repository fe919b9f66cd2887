"""``ecsexec job``: run, validate and list Rundeck-style job files."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import click
from rich.table import Table

from ecsexec.cli.common import NodeQuery, apply_filter, load_inventory, node_options, stderr
from ecsexec.cli.history import table_console
from ecsexec.cli.run import CONFIRM_OVER, LiveText, targets_for
from ecsexec.errors import EcsexecError, JobFileError
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import DEFAULT_RATE, DEFAULT_TIMEOUT, DispatchOptions
from ecsexec.jobs.executor import (
    DataCaptured,
    JobEvent,
    JobExecutor,
    JobNotice,
    JobResult,
    NodeUpdated,
    StepFinished,
    StepStarted,
)
from ecsexec.jobs.expand import Context, expand_raw, masked_options, resolve_options
from ecsexec.jobs.library import JobLibrary, load_file, select_job
from ecsexec.jobs.model import Job, JobFile
from ecsexec.nodes.node import Node
from ecsexec.store.history import RunRecorder, local_user


@click.group("job")
def job_group() -> None:
    """Run Rundeck-style job files: options, steps, error handlers, captured data."""


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    given: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--option wants NAME=VALUE, got {pair!r}")
        given[name] = value
    return given


def _prompt_secure(job: Job, given: dict[str, str]) -> None:
    """Ask for required secure options on a terminal instead of taking them from argv."""
    if not sys.stdin.isatty():
        return
    for option in job.options:
        if option.secure and option.required and option.name not in given and not option.value:
            given[option.name] = click.prompt(
                f"{option.name} ({option.description or 'secure'})", hide_input=True, err=True
            )


def _load(file: Path, job_name: str | None) -> tuple[JobFile, Job, JobLibrary]:
    jobfile = load_file(file)
    for warning in jobfile.warnings:
        stderr.print(f"[yellow]warning:[/] {warning}")
    job = select_job(jobfile, job_name)
    library = JobLibrary(file.parent)
    library.add(jobfile)
    problems = library.check(job)
    if problems:
        raise JobFileError("\n".join(problems))
    return jobfile, job, library


class JobLive:
    """Text output for a job: the command output as ``ecsexec run`` shows it on stdout;
    step headers, captured data and failures on stderr."""

    def __init__(self, live: LiveText, *, several: bool) -> None:
        self.live = live
        self.several = several

    def __call__(self, event: JobEvent) -> None:
        if isinstance(event, StepStarted):
            where = f" on {event.node}" if event.node and self.several else ""
            stderr.print(f"[dim]── step {event.step}: {event.label}{where}[/]")
        elif isinstance(event, StepFinished):
            result = event.result
            who = f"{result.node}: " if result.node else ""
            if result.status == "recovered":
                stderr.print(f"[yellow]{who}step {result.step} {result.detail}[/]")
            elif not result.ok:
                stderr.print(f"[red]{who}step {result.step} {result.status}: {result.detail}[/]")
        elif isinstance(event, DataCaptured):
            stderr.print(f"[dim]{event.node}: data.{event.key} = {event.value}[/]")
        elif isinstance(event, JobNotice):
            who = f"{event.node}: " if event.node else ""
            stderr.print(f"[yellow]{who}{event.text}[/]")
        elif isinstance(event, NodeUpdated):
            return
        else:
            self.live(event)


def _tee(*callbacks: Callable[[JobEvent], None]) -> Callable[[JobEvent], None]:
    def call(event: JobEvent) -> None:
        for callback in callbacks:
            callback(event)

    return call


def _recording(recorder: RunRecorder) -> Callable[[JobEvent], None]:
    def record(event: JobEvent) -> None:
        if isinstance(event, NodeUpdated):
            summary = event.summary
            recorder.record_node(
                summary.node,
                status=summary.status,
                exit_code=summary.exit_code,
                duration_s=summary.duration,
                detail=summary.detail,
                log=summary.output,
            )

    return record


def _execute(
    executor: JobExecutor, job: Job, options: Mapping[str, str], nodes: list[Node]
) -> JobResult:
    async def main() -> JobResult:
        # SIGTERM ends the job like Ctrl-C: every open session is terminated first.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await executor.run(job, options, nodes)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())


def _summary(result: JobResult) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NODE", "STATUS", "EXIT", "DURATION", "DETAIL"):
        table.add_column(column, overflow="fold")
    colours = {"succeeded": "green", "failed": "red", "error": "red", "timeout": "yellow"}
    for summary in result.nodes.values():
        colour = colours.get(summary.status, "yellow")
        table.add_row(
            summary.node,
            f"[{colour}]{summary.status}[/]",
            "-" if summary.exit_code is None else str(summary.exit_code),
            "-" if summary.duration is None else f"{summary.duration:.1f}s",
            summary.detail.replace("\n", " "),
        )
    stderr.print(table)
    counts: dict[str, int] = {}
    for summary in result.nodes.values():
        counts[summary.status] = counts.get(summary.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    colour = "green" if result.ok else "red"
    stderr.print(f"[{colour}]job {result.job.path}: {len(result.nodes)} node(s): {parts}[/]")
    if result.interrupted:
        stderr.print("[red]interrupted: every open session was terminated[/]")


@job_group.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--job", "job_name", default=None, help="Which job of the file (name or group/name).")
@click.option(
    "--option", "option_pairs", multiple=True, metavar="NAME=VALUE", help="A job option (repeat)."
)
@click.option("-F", "--filter", "filter_text", default=None, help="Override the job's filter.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, None),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds per command on a node; the session is terminated when it passes.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 10_000),
    default=DEFAULT_RATE,
    show_default=True,
    help="ExecuteCommand calls per second.",
)
@click.option("--dry-run", is_flag=True, help="Show the nodes and steps, then stop.")
@click.option("--yes", "-y", is_flag=True, help=f"Do not ask (over {CONFIRM_OVER} nodes).")
@node_options
def job_run(
    file: Path,
    job_name: str | None,
    option_pairs: tuple[str, ...],
    filter_text: str | None,
    timeout: float,
    rate: float,
    dry_run: bool,
    yes: bool,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
) -> None:
    """Run a job from FILE on the nodes its filter (or -F) selects.

    Exit status as for ``ecsexec run``: 0 every step succeeded (or was recovered by its
    error handler), 1 a step failed, 2 usage, file or option error, 3 a node could not be
    run or its outcome is unknown, 130 interrupted.
    """
    _, job, library = _load(file, job_name)
    given = _parse_options(option_pairs)
    _prompt_secure(job, given)
    options = resolve_options(job, given)
    text = filter_text if filter_text is not None else job.filter
    if not text or not text.strip():
        raise click.UsageError(f"job {job.path!r} has no node filter; give one with -F FILTER")
    text = expand_raw(text, Context(options))
    dispatch = job.dispatch
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)
    inventory = load_inventory(query)
    nodes = apply_filter(
        inventory,
        text,
        include_precedence=not dispatch.exclude_precedence,
        rank_attribute=dispatch.rank_attribute,
        rank_order=dispatch.rank_order,
    )
    if not nodes and not dispatch.success_on_empty:
        raise click.UsageError(f"no nodes match the filter {text!r}")
    targets = targets_for(nodes)
    if dry_run:
        for node in nodes:
            click.echo(node.name)
        for index, step in enumerate(job.steps, 1):
            stderr.print(f"step {index}: {step.label()}")
        stderr.print(f"{len(nodes)} node(s) would run job {job.path}")
        return
    if len(nodes) > CONFIRM_OVER and not yes and sys.stdin.isatty():
        click.confirm(f"Run job {job.path!r} on {len(nodes)} containers?", abort=True, err=True)
    recorder = RunRecorder.open(
        kind="job",
        job=job.path,
        job_file=str(file),
        command="; ".join(step.label() for step in job.steps),
        filter=text,
        options=masked_options(job, options),
        nodes=[node.name for node in nodes],
    )
    execid = str(recorder.run_id) if recorder.run_id is not None else secrets.token_hex(4)
    default_region = query.default_region() if targets else None
    region = default_region or (targets[0].region if targets else "")
    pool = ConnectorPool(query.session_factory(), default_region=region or "")
    live = LiveText(
        sys.stdout,
        prefix=len(nodes) > 1,
        group=False,
        total=len(nodes) * sum(1 for s in job.steps if s.node_step),
    )
    try:
        with live:
            executor = JobExecutor(
                library,
                pool,
                inventory=inventory,
                options=DispatchOptions(rate=rate, timeout=timeout),
                on_event=_tee(JobLive(live, several=len(nodes) > 1), _recording(recorder)),
                execid=execid,
                username=local_user(),
            )
            result = _execute(executor, job, options, nodes)
    except KeyboardInterrupt:
        recorder.finish(130)
        raise
    except EcsexecError as exc:
        recorder.finish(2)
        stderr.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    if not nodes:
        stderr.print(f"[yellow]no nodes match {text!r}; successOnEmptyNodeFilter is set[/]")
    _summary(result)
    code = result.exit_code()
    recorder.finish(code)
    for problem in recorder.errors:
        stderr.print(f"[yellow]warning:[/] {problem}")
    if recorder.run_id is not None:
        stderr.print(
            f"[dim]recorded as #{recorder.run_id}: ecsexec history show {recorder.run_id}[/]"
        )
    sys.exit(code)


@job_group.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def job_validate(file: Path) -> None:
    """Check FILE: YAML, every key, options, filters, references; errors name file:line."""
    try:
        jobfile = load_file(file)
        library = JobLibrary(file.parent)
        library.add(jobfile)
        problems = [p for job in jobfile.jobs for p in library.check(job)]
        if problems:
            raise JobFileError("\n".join(problems))
    except JobFileError as exc:
        for line in str(exc).splitlines():
            click.echo(f"ecsexec: error: {line}", err=True)
        sys.exit(2)
    for warning in jobfile.warnings:
        stderr.print(f"[yellow]warning:[/] {warning}")
    names = ", ".join(job.path for job in jobfile.jobs)
    click.echo(f"{file}: {len(jobfile.jobs)} job(s) valid: {names}")


def _option_summary(job: Job) -> str:
    return " ".join(o.name + ("*" if o.required else "") for o in job.options)


@job_group.command("list")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), default="."
)
def job_list(directory: Path) -> None:
    """List the jobs of every *.yaml/*.yml file in DIRECTORY (required options marked *)."""
    library = JobLibrary(directory)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("JOB", "OPTIONS", "STEPS", "FILE", "DESCRIPTION"):
        table.add_column(column, overflow="fold")
    broken = 0
    for item in library.listing():
        if item.jobfile is None:
            broken += 1
            for line in item.error.splitlines():
                click.echo(f"ecsexec: error: {line}", err=True)
            continue
        for job in item.jobfile.jobs:
            table.add_row(
                job.path,
                _option_summary(job),
                str(len(job.steps)),
                f"{item.path.name}:{job.where.line}",
                job.description.splitlines()[0] if job.description else "",
            )
    if table.row_count:
        table_console().print(table)
    elif not broken:
        stderr.print(f"no job files (*.yaml, *.yml) in {directory}")
    if broken:
        sys.exit(2)
