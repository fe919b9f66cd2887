"""``ecsexec shell NODE``: an interactive shell in one container, on the drop-in's terminal code."""

from __future__ import annotations

import asyncio
import sys

import click

from ecsexec.cli.common import NodeQuery, apply_filter, load_inventory, node_options, stderr
from ecsexec.cli.plugin import attach_terminal
from ecsexec.errors import EcsexecError
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.runner import ContainerTarget, start_exec_session
from ecsexec.exec.wrap import raw
from ecsexec.nodes.node import Node
from ecsexec.ssm.session import describe_truncation

DEFAULT_SHELL = "/bin/sh -c 'command -v bash >/dev/null 2>&1 && exec bash || exec sh'"


def pick_node(nodes: list[Node], wanted: str) -> Node:
    """An exact node name, or a filter that selects exactly one node."""
    for node in nodes:
        if node.name == wanted:
            return node
    matches = apply_filter(nodes, wanted)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise click.UsageError(f"no node is named {wanted!r} or matches it as a filter")
    names = ", ".join(n.name for n in matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise click.UsageError(f"{wanted!r} matches {len(matches)} nodes ({names}); pick one")


async def open_shell(pool: ConnectorPool, target: ContainerTarget, command: str) -> int:
    connector = pool(target)
    started = await start_exec_session(connector, target, raw(command))
    session = connector.session(started)
    closed = await attach_terminal(
        session, stdin_fd=sys.stdin.fileno(), stdout=sys.stdout.buffer, stderr=sys.stderr.buffer
    )
    if closed.output:
        stderr.print(f"session closed: {closed.output}")
    if closed.truncated:
        stderr.print(f"[red]{describe_truncation(closed)}[/]")
        return 3
    return 0


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
    """Open an interactive shell in the container NODE (a node name, or a one-node filter)."""
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)
    chosen = pick_node(load_inventory(query), node)
    target = ContainerTarget.from_attributes(chosen.name, chosen.attributes)
    pool = ConnectorPool(
        query.session_factory(), default_region=query.default_region() or target.region
    )
    try:
        code = asyncio.run(open_shell(pool, target, command))
    except EcsexecError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        sys.exit(3)
    sys.exit(code)
