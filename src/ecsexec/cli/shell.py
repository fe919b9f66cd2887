"""``ecsexec shell NODE``: an interactive shell in one container, through the engine."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from ecsexec.app import DEFAULT_SHELL, Client
from ecsexec.cli.common import NodeQuery, node_options, run_engine, stderr
from ecsexec.cli.terminal import attach_terminal
from ecsexec.errors import EXIT_NOT_RUN
from ecsexec.ssm.session import describe_truncation


@click.command("shell")
@click.argument("node")
@click.option(
    "-c",
    "--command",
    default=DEFAULT_SHELL,
    show_default="bash if present, else sh",
    help="What to run instead of a shell (ECS Exec splits it without a shell).",
)
@click.option(
    "--raw",
    "use_raw",
    is_flag=True,
    help="Send the command to ECS Exec as it is, without /bin/sh (distroless); the exit "
    "status is then unknown.",
)
@node_options
def shell_command(
    node: str,
    command: str,
    use_raw: bool,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
) -> None:
    """Open an interactive shell (or -c COMMAND) in one container.

    NODE is a node name, a unique prefix of one, a task ID, or a filter that selects
    exactly one node.

    Exit status: the remote shell's (or -c command's) own, 3 when the session failed or
    its status could not be known, 2 for a NODE that names no node or several.
    """
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)

    async def main(client: Client) -> int:
        chosen = await client.find_node(node, refresh=refresh)
        session = await client.open_session(chosen, command, raw=use_raw)
        closed = await attach_terminal(
            session, stdin_fd=sys.stdin.fileno(), stdout=sys.stdout.buffer, stderr=sys.stderr.buffer
        )
        if closed.output:
            stderr.print(f"session closed: {escape(closed.output)}")
        if closed.truncated:
            stderr.print(f"[red]{escape(describe_truncation(closed))}[/]")
            return EXIT_NOT_RUN
        if session.exit_code is not None:
            return session.exit_code
        return 0 if use_raw else EXIT_NOT_RUN

    sys.exit(run_engine(query, main))
