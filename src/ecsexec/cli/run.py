"""``ecsexec run``: run one command on every container a filter selects; render the results."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
from collections.abc import Callable
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecsexec.cli.common import NodeQuery, apply_filter, load_inventory, node_options, stderr
from ecsexec.errors import ConfigurationError, EcsexecError
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import (
    DEFAULT_RATE,
    DEFAULT_THREADS,
    DEFAULT_TIMEOUT,
    DispatchOptions,
    NodeFinished,
    NodeNotice,
    NodeOutput,
    NodeThrottled,
    ProgressEvent,
    dispatch,
)
from ecsexec.exec.results import CommandResult, NodeError, RunResult
from ecsexec.exec.runner import ContainerTarget
from ecsexec.exec.wrap import WrappedCommand, raw, wrap
from ecsexec.nodes.node import Node
from ecsexec.store.history import RunRecorder

CONFIRM_OVER = 20  # nodes; on a TTY, more than this asks first

Outcome = CommandResult | NodeError


def command_string(args: tuple[str, ...]) -> str:
    """One argument is a shell command line; several are an argv, quoted for the shell."""
    if not args:
        raise click.UsageError("no command given: ecsexec run -F FILTER -- COMMAND [ARGS...]")
    return args[0] if len(args) == 1 else shlex.join(args)


def targets_for(nodes: list[Node]) -> list[ContainerTarget]:
    targets = []
    for node in nodes:
        try:
            targets.append(ContainerTarget.from_attributes(node.name, node.attributes))
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from None
    return targets


def outcome_record(outcome: Outcome) -> dict[str, Any]:
    """The per-node object of ``--format json`` and ``jsonl`` (issue 5)."""
    if isinstance(outcome, NodeError):
        error: str | None = str(outcome.error)
        output = outcome.output
        exit_code = None
        session_id = ""
    else:
        error = outcome.reason or None
        output = outcome.output
        exit_code = outcome.exit_code
        session_id = outcome.session_id
    return {
        "node": outcome.node,
        "status": outcome.status,
        "exit_code": exit_code,
        "output": output.decode("utf-8", "replace"),
        "error": error,
        "started_at": outcome.started_at.isoformat(),
        "duration_s": round(outcome.duration, 3),
        "session_id": session_id,
    }


class LiveText:
    """Text output: live lines prefixed with the node name (several nodes) and progress."""

    def __init__(self, out: IO[str], *, prefix: bool, group: bool, total: int) -> None:
        self.out = out
        self.prefix = prefix
        self.group = group
        self._partial: dict[str, str] = {}
        self._owed: dict[str, bool] = {}
        self.progress: Progress | None = None
        if stderr.is_terminal and total > 1:
            self.progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            )
            self._task = self.progress.add_task("running", total=total)

    def __enter__(self) -> LiveText:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _write(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.out(text, end="", highlight=False)  # keeps the bar below
        else:
            self.out.write(text)
            self.out.flush()

    def _lines(self, node: str, text: str, *, final: bool, break_held: bool = False) -> None:
        if self._owed.pop(node, False) and text.startswith("\n"):
            text = text[1:]  # this line break was shown already
        text = self._partial.pop(node, "") + text
        lines = text.split("\n")
        tail = lines.pop()
        if tail and (final or break_held):
            # The line is complete for display even though its line break is held back.
            lines.append(tail)
            self._owed[node] = break_held
        elif tail:
            self._partial[node] = tail
        if lines:
            self._write("".join(f"{node}: {line}\n" for line in lines))

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, NodeOutput):
            if self.group:
                return
            text = event.data.decode("utf-8", "replace")
            if self.prefix:
                self._lines(event.node, text, final=False, break_held=event.line_break_held)
            else:
                self._write(text)  # one node: exactly what the command printed
        elif isinstance(event, NodeNotice):
            stderr.print(f"[dim]{event.node}: {event.text.decode('utf-8', 'replace')}[/]")
        elif isinstance(event, NodeThrottled):
            stderr.print(
                f"[yellow]{event.node}: ExecuteCommand throttled; retrying in "
                f"{event.delay:.1f} s (rate now {event.rate:.1f}/s)[/]"
            )
        elif isinstance(event, NodeFinished):
            if self.prefix and not self.group:
                self._lines(event.node, "", final=True)
            if self.progress is not None:
                self.progress.advance(self._task)


class JsonLines:
    """``--format jsonl``: one object per node, as each finishes."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, NodeFinished):
            self.out.write(json.dumps(outcome_record(event.outcome)) + "\n")
            self.out.flush()


def print_groups(result: RunResult, out: IO[str]) -> None:
    """``--group``: nodes with identical output shown once, like clush -b."""
    groups: dict[bytes, list[str]] = {}
    for name, outcome in result.results.items():
        groups.setdefault(outcome.output, []).append(name)
    for output, names in groups.items():
        header = f"{','.join(names)} ({len(names)})"
        rule = "-" * min(78, max(15, len(header)))
        out.write(f"{rule}\n{header}\n{rule}\n")
        text = output.decode("utf-8", "replace")
        out.write(text if not text or text.endswith("\n") else text + "\n")
    out.flush()


def summary_table(result: RunResult, console: Console) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NODE", "EXIT", "STATUS", "DURATION", "DETAIL"):
        table.add_column(column, overflow="fold")
    colours = {"succeeded": "green", "failed": "red", "error": "red", "timeout": "yellow"}
    for name, outcome in result.results.items():
        exit_code = getattr(outcome, "exit_code", None)
        detail = str(outcome.error) if isinstance(outcome, NodeError) else outcome.reason
        colour = colours.get(outcome.status, "yellow")
        table.add_row(
            name,
            "-" if exit_code is None else str(exit_code),
            f"[{colour}]{outcome.status}[/]",
            f"{outcome.duration:.1f}s",
            detail.replace("\n", " "),
        )
    for name in result.not_started:
        table.add_row(name, "-", "[yellow]not started[/]", "-", "fail-fast")
    console.print(table)


def summary_line(result: RunResult) -> str:
    counts: dict[str, int] = {}
    for outcome in result.results.values():
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    if result.not_started:
        counts["not started"] = len(result.not_started)
    total = len(result.results) + len(result.not_started)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{total} node(s): {parts or 'none run'}"


def execute(
    targets: list[ContainerTarget],
    wrapped: WrappedCommand,
    pool: ConnectorPool,
    options: DispatchOptions,
    on_event: Callable[[ProgressEvent], None],
) -> RunResult:
    async def main() -> RunResult:
        # SIGTERM (e.g. from `timeout` or a CI runner) ends the run like Ctrl-C does: every
        # open session is terminated before we exit.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await dispatch(pool, targets, wrapped, options=options, on_event=on_event)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())


@click.command("run")
@click.option("-F", "--filter", "filter_text", default=None, help="Rundeck node filter.")
@click.option("--include-precedence", is_flag=True, help="Include clauses win over excludes.")
@click.option(
    "--threads",
    type=click.IntRange(1, 10_000),
    default=None,
    help=f"Sessions at once.  [default: [dispatch] threads, else {DEFAULT_THREADS}]",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 10_000),
    default=None,
    help="ExecuteCommand calls per second (halves on throttling, then recovers).  "
    f"[default: [dispatch] rate, else {DEFAULT_RATE:g}]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, None),
    default=None,
    help="Seconds per node; the session is terminated when it passes.  "
    f"[default: [dispatch] timeout, else {DEFAULT_TIMEOUT:g}]",
)
@click.option(
    "--keepgoing/--fail-fast",
    default=None,
    help="Go on after a failed node, or stop starting new ones.  "
    "[default: [dispatch] keepgoing, else keepgoing]",
)
@click.option("--rank-attribute", default="nodename", show_default=True)
@click.option("--rank-order", type=click.Choice(["ascending", "descending"]), default="ascending")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl"]), default="text")
@click.option("--group", is_flag=True, help="Show identical outputs once (like clush -b).")
@click.option("--dry-run", is_flag=True, help="List the nodes that would run, then stop.")
@click.option("--yes", "-y", is_flag=True, help=f"Do not ask (over {CONFIRM_OVER} nodes).")
@click.option(
    "--raw", "use_raw", is_flag=True, help="No /bin/sh wrapper (distroless); exit code unknown."
)
@node_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_command(
    filter_text: str | None,
    include_precedence: bool,
    threads: int | None,
    rate: float | None,
    timeout: float | None,
    keepgoing: bool | None,
    rank_attribute: str,
    rank_order: str,
    fmt: str,
    group: bool,
    dry_run: bool,
    yes: bool,
    use_raw: bool,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND on every container the filter selects, with real exit codes.

    Exit status: 0 all succeeded, 1 a command exited non-zero, 2 usage or configuration
    error, 3 a node could not be run (API or session error, timeout, truncated output),
    130 interrupted (every open session is terminated first).
    """
    if filter_text is None or not filter_text.strip():
        raise click.UsageError(
            "a node filter is required (-F FILTER); to run on every node use -F '.*'"
        )
    text = command_string(command)
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)
    nodes = apply_filter(
        load_inventory(query),
        filter_text,
        include_precedence=include_precedence,
        rank_attribute=rank_attribute,
        rank_order=rank_order,
    )
    if not nodes:
        raise click.UsageError(f"no nodes match the filter {filter_text!r}")
    targets = targets_for(nodes)
    if dry_run:
        for node in nodes:
            click.echo(node.name)
        stderr.print(f"{len(nodes)} node(s) would run: {text}")
        return
    if len(nodes) > CONFIRM_OVER and not yes and sys.stdin.isatty():
        click.confirm(f"Run {text!r} on {len(nodes)} containers?", abort=True, err=True)
    wrapped = raw(text) if use_raw else wrap(text)
    default_region = query.default_region() or targets[0].region
    pool = ConnectorPool(query.session_factory(), default_region=default_region or "")
    # Flags win over ecsexec.toml's [dispatch] (and its ECSEXEC_* variables).
    defaults = query.config.dispatch
    options = DispatchOptions(
        threads=defaults.threads if threads is None else threads,
        rate=defaults.rate if rate is None else rate,
        timeout=defaults.timeout if timeout is None else timeout,
        keepgoing=defaults.keepgoing if keepgoing is None else keepgoing,
    )
    # History: the run's row first (status running), each node's row as it finishes.
    recorder = RunRecorder.open(
        kind="run", command=text, filter=filter_text, nodes=[n.name for n in nodes]
    )
    try:
        if fmt == "text":
            with LiveText(sys.stdout, prefix=len(nodes) > 1, group=group, total=len(nodes)) as live:
                result = execute(targets, wrapped, pool, options, _both(live, recorder))
        elif fmt == "jsonl":
            result = execute(
                targets, wrapped, pool, options, _both(JsonLines(sys.stdout), recorder)
            )
        else:
            result = execute(targets, wrapped, pool, options, recorder)
    except KeyboardInterrupt:
        recorder.finish(130)
        raise
    except EcsexecError as exc:
        recorder.finish(2)
        stderr.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    recorder.finish(result.exit_code())
    render_result(result, fmt, group=group)
    for problem in recorder.errors:
        stderr.print(f"[yellow]warning:[/] {problem}")
    sys.exit(result.exit_code())


def _both(
    first: Callable[[ProgressEvent], None], second: Callable[[ProgressEvent], None]
) -> Callable[[ProgressEvent], None]:
    def call(event: ProgressEvent) -> None:
        first(event)
        second(event)

    return call


def render_result(result: RunResult, fmt: str, *, group: bool) -> None:
    if fmt == "json":
        records = [outcome_record(o) for o in result.results.values()]
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    elif fmt == "text":
        if group:
            print_groups(result, sys.stdout)
        summary_table(result, stderr)
    colour = "green" if result.ok else "red"
    stderr.print(f"[{colour}]{summary_line(result)}[/]")
    if result.interrupted:
        stderr.print("[red]interrupted: every open session was terminated[/]")
