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
@node_options
def shell_command(
    node: str,
    command: str,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
) -> None:
    """Open an interactive shell in the container NODE: a node name, a unique prefix of
    one, or a filter that selects exactly one node."""
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)

    async def main(client: Client) -> int:
        chosen = await client.find_node(node, refresh=refresh)
        session = await client.open_session(chosen, command)
        closed = await attach_terminal(
            session, stdin_fd=sys.stdin.fileno(), stdout=sys.stdout.buffer, stderr=sys.stderr.buffer
        )
        if closed.output:
            stderr.print(f"session closed: {escape(closed.output)}")
        if closed.truncated:
            stderr.print(f"[red]{escape(describe_truncation(closed))}[/]")
            return EXIT_NOT_RUN
        return 0

    sys.exit(run_engine(query, main))
