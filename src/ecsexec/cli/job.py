"""``ecsexec job``: run, validate and list Rundeck-style job files."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from ecsexec.app import Client
from ecsexec.cli.common import (
    CONFIRM_OVER,
    NodeQuery,
    confirm_many,
    dispatch_options,
    interruptible,
    node_options,
    run_engine,
    show_selection_warnings,
    show_warnings,
    stderr,
)
from ecsexec.cli.render import LiveText, render_result
from ecsexec.cli.tables import print_table
from ecsexec.errors import JobFileError
from ecsexec.exec.results import RunResult
from ecsexec.jobs.library import JobLibrary, load_file, load_job
from ecsexec.jobs.model import Job


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


@job_group.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--job", "job_name", default=None, help="Which job of the file (name or group/name).")
@click.option(
    "--option", "option_pairs", multiple=True, metavar="NAME=VALUE", help="A job option (repeat)."
)
@click.option("-F", "--filter", "filter_text", default=None, help="Override the job's filter.")
@dispatch_options(
    timeout="Seconds per command on a node; the session is terminated when it passes.",
    only=("timeout", "rate"),
)
@click.option("--dry-run", is_flag=True, help="Show the nodes and steps, then stop.")
@click.option("--yes", "-y", is_flag=True, help=f"Do not ask (over {CONFIRM_OVER} nodes).")
@node_options
def job_run(
    file: Path,
    job_name: str | None,
    option_pairs: tuple[str, ...],
    filter_text: str | None,
    timeout: float | None,
    rate: float | None,
    dry_run: bool,
    yes: bool,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
) -> None:
    """Run a job from FILE on the nodes its filter (or -F) selects.

    The job decides how many nodes run at once and whether a failed node stops the others
    (threadcount, keepgoing); --rate and --timeout default to ecsexec.toml's [dispatch].
    Exit status as for ``ecsexec run``: 0 every step succeeded (or was recovered by its
    error handler), 1 a step failed, 2 usage, file or option error, 3 a node could not be
    run or its outcome is unknown, 130 interrupted.
    """
    loaded = load_job(file, job_name)
    show_warnings(loaded.warnings)
    given = _parse_options(option_pairs)
    _prompt_secure(loaded.job, given)
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)

    async def main(client: Client) -> RunResult | None:
        plan = await client.plan_job(loaded, given, filter=filter_text)
        show_selection_warnings(plan.selection)
        nodes = plan.selection
        if dry_run:
            for name in nodes.names:
                click.echo(name)
            for index, step in enumerate(loaded.job.steps, 1):
                stderr.print(f"step {index}: {step.label()}", highlight=False)
            stderr.print(f"{len(nodes)} node(s) would run job {loaded.job.path}", highlight=False)
            return None
        confirm_many(f"job {loaded.job.path!r}", len(nodes), yes)
        if not nodes:
            stderr.print(
                f"[yellow]no nodes match {nodes.filter!r}; successOnEmptyNodeFilter is set[/]"
            )
        node_steps = sum(1 for step in loaded.job.steps if step.node_step)
        live = LiveText(
            sys.stdout.buffer, prefix=len(nodes) > 1, total=len(nodes) * node_steps, job=True
        )
        with live:
            run = client.run_job(plan, rate=rate, timeout=timeout, on_event=live)
            return await interruptible(client, run)

    result = run_engine(query, main)
    if result is None:
        return
    render_result(result, "text")
    show_warnings(result.warnings)
    sys.exit(result.exit_status)


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
        print_table(table, sys.stdout)
    elif not broken:
        stderr.print(f"no job files (*.yaml, *.yml) in {directory}")
    if broken:
        sys.exit(2)
