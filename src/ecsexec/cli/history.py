"""``ecsexec history``: list past runs and jobs, show one, print a node's log."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from ecsexec.app import Client, SessionCleanup
from ecsexec.cli.common import (
    NodeQuery,
    config_option,
    context_config_path,
    node_options,
    run_engine,
    stderr,
)
from ecsexec.cli.render import shown
from ecsexec.cli.tables import new_table, print_table
from ecsexec.config import load_config
from ecsexec.errors import EXIT_NOT_RUN
from ecsexec.store.history import STATUSES, History, RunRecord, default_path


def table_console() -> Console:
    """Where ``history show`` prints its header lines (long values are not folded)."""
    console = Console(highlight=False, soft_wrap=True)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _open() -> History | None:
    path = default_path()
    if path is None:
        raise click.UsageError("history is off (ECSEXEC_HISTORY=off)")
    if not path.exists():  # reading must not create the database
        return None
    return History(path)


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def _colour(status: str) -> str:
    colour = {"succeeded": "green", "failed": "red", "error": "red"}.get(status, "yellow")
    return f"[{colour}]{status}[/]"


def _record(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "user": run.user,
        "host": run.host,
        "pid": run.pid,
        "command": run.command,
        "job": run.job,
        "job_file": run.job_file,
        "filter": run.filter,
        "options": dict(run.options),
        "status": run.status,
        "exit_code": run.exit_code,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_s": run.duration,
        "nodes": [
            {
                "node": n.node,
                "status": n.status,
                "exit_code": n.exit_code,
                "duration_s": n.duration_s,
                "detail": n.detail,
                "log_bytes": n.log_bytes,
                "log_truncated": n.truncated,
                "session_id": n.session_id,
                "region": n.region,
            }
            for n in run.nodes
        ],
    }


@click.group("history")
def history_group() -> None:
    """What ran, where, by whom, and how it ended (SQLite under the state directory)."""


@history_group.command("list")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, None),
    default=20,
    show_default=True,
    help="How many runs, newest first.",
)
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only runs with this.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
def history_list(limit: int, status: str | None, fmt: str) -> None:
    """The newest runs first. A run whose process died is shown as incomplete."""
    history = _open()
    runs = [] if history is None else history.runs(limit=limit, status=status, nodes=fmt == "json")
    if fmt == "json":
        sys.stdout.write(json.dumps([_record(r) for r in runs], indent=2) + "\n")
        return
    if not runs:
        stderr.print("no runs recorded" + ("" if status is None else f" with status {status}"))
        return
    table = new_table(
        "ID", "STARTED", "USER", "KIND", "COMMAND / JOB", "NODES", "STATUS", "EXIT", "DURATION"
    )
    for run in runs:
        table.add_row(
            str(run.id),
            run.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            run.user,
            run.kind,
            escape(run.what.replace("\n", " ")[:80]),
            str(run.node_count),
            _colour(run.status),
            "-" if run.exit_code is None else str(run.exit_code),
            _duration(run.duration),
        )
    print_table(table, sys.stdout)


@history_group.command("show")
@click.argument("run_id", type=int)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
def history_show(run_id: int, fmt: str) -> None:
    """One run: what, who, filter, options (secure ones masked) and every node's result."""
    history = _open()
    run = None if history is None else history.run(run_id)
    if run is None:
        raise click.UsageError(f"no run #{run_id} in the history")
    if fmt == "json":
        sys.stdout.write(json.dumps(_record(run), indent=2) + "\n")
        return
    exit_text = "" if run.exit_code is None else f" (exit {run.exit_code})"
    lines = [
        ("run", f"#{run.id} ({run.kind})"),
        ("job" if run.kind == "job" else "command", run.what),
        ("file", run.job_file),
        ("steps", run.command if run.kind == "job" else ""),
        ("by", f"{run.user}@{run.host} (pid {run.pid})"),
        ("filter", run.filter),
        ("options", " ".join(f"{k}={v}" for k, v in run.options.items())),
        ("status", _colour(run.status) + exit_text),
        ("started", run.started_at.astimezone().isoformat(timespec="seconds")),
        ("duration", _duration(run.duration)),
    ]
    for label, value in lines:
        if value:
            shown = value if label == "status" else escape(value)
            table_console().print(f"[bold]{label + ':':<10}[/] {shown}")
    table = new_table("NODE", "STATUS", "EXIT", "DURATION", "LOG", "DETAIL")
    for node in run.nodes:
        log = f"{node.log_bytes} B" + (" (truncated)" if node.truncated else "")
        table.add_row(
            escape(node.node),
            _colour(node.status),
            "-" if node.exit_code is None else str(node.exit_code),
            _duration(node.duration_s),
            log,
            escape(node.detail.replace("\n", " ")),
        )
    print_table(table, sys.stdout)


@history_group.command("log")
@click.argument("run_id", type=int)
@click.option("--node", "node_name", default=None, help="Only this node's log, as it was.")
def history_log(run_id: int, node_name: str | None) -> None:
    """A run's output: one node's bytes as recorded, or every node's lines prefixed with
    the node name (as ``ecsexec run`` shows several nodes)."""
    history = _open()
    if history is None or history.run(run_id) is None:
        raise click.UsageError(f"no run #{run_id} in the history")
    logs = history.logs(run_id, node_name)
    if node_name is not None and not logs:
        raise click.UsageError(f"run #{run_id} has no node {node_name!r}")
    out = sys.stdout.buffer
    if len(logs) == 1:  # one node: exactly what it printed
        out.write(logs[0][1])
        out.flush()
        return
    for name, log in logs:
        if not log:
            continue
        lines = log.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        label = name.encode() + b": "
        out.write(b"".join(label + shown(line) + b"\n" for line in lines))
    out.flush()


@history_group.command("cleanup")
@click.argument("run_id", type=int)
@node_options
def history_cleanup(
    run_id: int,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
) -> None:
    """Terminate the sessions run RUN_ID may have left running (after a crash, a SIGKILL
    or a forced exit): every node with a session and no outcome, via ssm:TerminateSession.

    Exit status 0 when every one was ended (or none was left), 3 when one could not be.
    """
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)

    async def main(client: Client) -> list[SessionCleanup]:
        return await client.cleanup_run(run_id)

    ended = run_engine(query, main)
    if not ended:
        stderr.print(f"run #{run_id} left no session without an outcome")
    failed = 0
    for item in ended:
        if item.error:
            failed += 1
            stderr.print(f"[red]{escape(item.node)} {item.session_id}: {escape(item.error)}[/]")
        else:
            click.echo(f"{item.node} {item.session_id}: terminated")
    sys.exit(EXIT_NOT_RUN if failed else 0)


@history_group.command("prune")
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(0, None),
    default=None,
    help="Delete finished runs older than this many days.  [default: [history] keep_days]",
)
@click.option(
    "--keep",
    type=click.IntRange(0, None),
    default=None,
    help="Keep only this many newest finished runs.  [default: [history] keep_runs]",
)
@config_option
def history_prune(days: float | None, keep: int | None) -> None:
    """Delete old runs and their logs (running runs are never deleted).

    Without options, applies the retention of ecsexec.toml's [history] (90 days and
    10,000 runs unless set); each recorded run applies it too.
    """
    if days is None and keep is None:
        retention = load_config(context_config_path()).history
        days, keep = retention.keep_days or None, retention.keep_runs or None
    history = _open()
    if history is None:
        click.echo("no history yet")
        return
    with history:
        deleted = history.prune(older_than_days=days, keep=keep)
    click.echo(f"deleted {deleted} run(s)")
