"""``ecsexec run``: run one command on every container a filter selects; render the results."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import BinaryIO

import click

from ecsexec.app import Client, Run, Selection
from ecsexec.app.events import EventCallback
from ecsexec.cli.common import (
    CONFIRM_OVER,
    NodeQuery,
    confirm_many,
    container_options,
    dispatch_options,
    escape,
    interruptible,
    node_options,
    run_engine,
    select_nodes,
    show_warnings,
    stderr,
)
from ecsexec.cli.remote import (
    RemoteServer,
    follow_run,
    read_token,
    refuse_local_options,
    run_remote,
    server_options,
)
from ecsexec.cli.render import JsonLines, LiveText, render_result
from ecsexec.exec.results import RunResult


def command_string(args: tuple[str, ...], command_env: str | None = None) -> str:
    """One argument is a shell command line; several are an argv, quoted for the shell.

    ``--command-env VAR`` takes the command line from that environment variable instead,
    so that it never shows in the process list (the Rundeck plugin's node executor).
    """
    if command_env is not None:
        if args:
            raise click.UsageError("give the command either as arguments or --command-env")
        text = os.environ.get(command_env)
        if text is None or not text.strip():
            raise click.UsageError(f"--command-env {command_env}: that variable is empty or unset")
        return text
    if not args:
        raise click.UsageError("no command given: ecsexec run -F FILTER -- COMMAND [ARGS...]")
    return args[0] if len(args) == 1 else shlex.join(args)


def read_input(source: BinaryIO | None, raw: bool) -> bytes | None:
    """What every node gets as stdin: the --stdin file, else ecsexec's own stdin when it is
    a pipe or a file (as pssh -I does); a terminal gives none (commands read end of file)."""
    if source is None:
        if sys.stdin is None or sys.stdin.isatty():  # None: started with fd 0 closed
            return None
        source = sys.stdin.buffer
    data = source.read()
    if data and raw:
        raise click.UsageError("--raw sends the command as it is: it cannot carry stdin")
    return data or None


@click.command("run")
@click.option("-F", "--filter", "filter_text", default=None, help="Rundeck node filter.")
@click.option("--include-precedence", is_flag=True, help="Include clauses win over excludes.")
@dispatch_options()
@click.option(
    "--rank-attribute",
    default="nodename",
    show_default=True,
    help="Node attribute that orders the nodes (output, summary, start order).",
)
@click.option(
    "--rank-order",
    type=click.Choice(["ascending", "descending"]),
    default="ascending",
    show_default=True,
    help="Order of --rank-attribute.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "jsonl"]),
    default="text",
    show_default=True,
    help="text: live output and a summary; json: one list at the end; "
    "jsonl: one object per node as it finishes.",
)
@click.option("--group", is_flag=True, help="Show identical outputs once (like clush -b).")
@click.option("--dry-run", is_flag=True, help="List the nodes that would run, then stop.")
@click.option("--yes", "-y", is_flag=True, help=f"Do not ask (over {CONFIRM_OVER} nodes).")
@click.option(
    "--raw", "use_raw", is_flag=True, help="No /bin/sh wrapper (distroless); exit code unknown."
)
@click.option(
    "--command-env",
    metavar="VAR",
    default=None,
    help="Take the command line from environment variable VAR instead of the arguments: "
    "it stays out of the process list.",
)
@click.option(
    "--pass-exit-code",
    is_flag=True,
    help="Exit with the command's own exit code (the highest over the nodes), as ssh "
    "does; a node that could not run still exits 2, 3 or 130.",
)
@click.option(
    "--line-buffered",
    is_flag=True,
    help="With one node, show each line as soon as its line break arrives (output that "
    "does not end with a line break then gains one).",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Only the command's output: no summary or warnings on stderr (a node's error still is).",
)
@click.option(
    "--stdin",
    "stdin_file",
    type=click.File("rb"),
    default=None,
    help="Give every node this file as standard input (default: ecsexec's own stdin when "
    "it is not a terminal; with a terminal, commands read end of file).",
)
@node_options
@container_options
@server_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_command(
    filter_text: str | None,
    include_precedence: bool,
    threads: int | None,
    rate: float | None,
    burst: int | None,
    timeout: float | None,
    keepgoing: bool | None,
    rank_attribute: str,
    rank_order: str,
    fmt: str,
    group: bool,
    dry_run: bool,
    yes: bool,
    use_raw: bool,
    command_env: str | None,
    pass_exit_code: bool,
    line_buffered: bool,
    quiet: bool,
    stdin_file: BinaryIO | None,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
    task: str | None,
    container: str | None,
    server_url: str | None,
    token_file: Path | None,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND on every container the filter selects, with real exit codes.

    Exit status: 0 all succeeded, 1 a command exited non-zero, 2 usage or configuration
    error, 3 a node could not be run (API or session error, timeout, truncated output),
    130 interrupted (every open session is terminated first). With --pass-exit-code, the
    command's own exit code instead of 0 and 1.

    --task ARN --container NAME --cluster C runs in that one container without listing
    the cluster (one DescribeTasks), as the Rundeck plugin's node executor does.
    """
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile, task, container)
    query.check_direct()
    if task and filter_text:
        raise click.UsageError("give either a node filter (-F) or --task, not both")
    if not task and (filter_text is None or not filter_text.strip()):
        raise click.UsageError(
            "a node filter is required (-F FILTER); to run on every node use -F '.*'"
        )
    text = command_string(command, command_env)
    if server_url:
        refuse_local_options(
            {
                "--nodes-file": nodes_files,
                "--region": regions,
                "--cluster": clusters,
                "--profile": profile,
                "--refresh": refresh,
                "--include-precedence": include_precedence,
                "--rate": rate,
                "--burst": burst,
                "--timeout": timeout,
                "--raw": use_raw,
                "--stdin": stdin_file,
                "--rank-attribute": None if rank_attribute == "nodename" else rank_attribute,
                "--rank-order": None if rank_order == "ascending" else rank_order,
                "--task/--container": task or container,
                "--pass-exit-code": pass_exit_code,
                "--line-buffered": line_buffered,
                "--quiet": quiet,
            }
        )
        if read_input(None, False):
            raise click.UsageError("standard input cannot be sent to nodes through --server")
        token = read_token(token_file)
        assert filter_text is not None  # without --task (refused above) a filter is required
        remote_run(
            server_url, token, filter_text, text, threads, keepgoing, fmt, group, dry_run, yes
        )
        return
    input_data = read_input(stdin_file, use_raw)

    async def main(client: Client) -> RunResult | None:
        if not dry_run:
            client.warm_up()  # the ExecuteCommand client is built while nodes are selected
        direct = await query.direct_node(client)
        if direct is not None:
            selection = Selection((direct,))
        else:
            selection = await select_nodes(
                client,
                query,
                filter_text,
                include_precedence=include_precedence,
                rank_attribute=rank_attribute,
                rank_order=rank_order,
            )
        if not selection:
            raise click.UsageError(f"no nodes match the filter {filter_text!r}")
        if dry_run:
            for name in selection.names:
                click.echo(name)
            stderr.print(f"{len(selection)} node(s) would run: {text}", highlight=False)
            return None
        confirm_many(repr(text), len(selection), yes)

        def start(on_event: EventCallback | None) -> Run:
            return client.run(
                selection,
                text,
                raw=use_raw,
                stdin=input_data,
                threads=threads,
                rate=rate,
                burst=burst,
                timeout=timeout,
                keepgoing=keepgoing,
                on_event=on_event,
            )

        if fmt == "text":
            several = len(selection) > 1
            out = sys.stdout.buffer
            with LiveText(
                out, prefix=several, group=group, total=len(selection), line_buffered=line_buffered
            ) as live:
                return await interruptible(client, start(live))
        return await interruptible(client, start(JsonLines(sys.stdout) if fmt == "jsonl" else None))

    result = run_engine(query, main)
    if result is None:
        return
    if quiet:
        for node in result:
            if node.exit_code is None and node.reason:
                stderr.print(f"[red]{escape(node.node)}: {node.status}: {escape(node.reason)}[/]")
    else:
        render_result(result, fmt, group=group)
        show_warnings(result.warnings)
    sys.exit(result.command_exit_status if pass_exit_code else result.exit_status)


def remote_run(
    url: str,
    token: str,
    filter_text: str,
    text: str,
    threads: int | None,
    keepgoing: bool | None,
    fmt: str,
    group: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """``ecsexec run --server URL``: the same run through the server's API, rendered as a
    local one, with the same exit status."""

    async def main() -> RunResult | None:
        async with RemoteServer(url, token) as server:
            nodes, warnings = await server.nodes(filter_text)
            show_warnings(warnings)
            if not nodes:
                raise click.UsageError(f"no nodes match the filter {filter_text!r}")
            if dry_run:
                for node in nodes:
                    click.echo(node.name)
                stderr.print(f"{len(nodes)} node(s) would run: {text}", highlight=False)
                return None
            confirm_many(repr(text), len(nodes), yes)
            run_id = await server.start(filter_text, text, threads, keepgoing)
            if fmt == "text":
                out = sys.stdout.buffer
                several = len(nodes) > 1
                with LiveText(out, prefix=several, group=group, total=len(nodes)) as live:
                    result = await follow_run(server, run_id, text, live)
            else:
                on_event = JsonLines(sys.stdout) if fmt == "jsonl" else None
                result = await follow_run(server, run_id, text, on_event)
            stderr.print(f"[dim]run #{run_id} on {server.url}[/]", highlight=False)
            return result

    result = run_remote(main)
    if result is None:
        return
    render_result(result, fmt, group=group)
    sys.exit(result.exit_status)
