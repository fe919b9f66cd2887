"""``ecsexec nodes``: list the containers a filter selects, as a table or a resource document."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from ecsexec.app import Client, Selection
from ecsexec.cli.common import NodeQuery, node_options, run_engine, select_nodes
from ecsexec.nodes.formats import dump_nodes
from ecsexec.nodes.node import Node


def exec_readiness(node: Node) -> str:
    """One word for the table: can ECS Exec reach this container?"""
    enabled = node.get("ECS:Exec-Enabled")
    agent = node.get("ECS:Exec-Agent-Status") or ""
    if enabled is None:
        return "-"
    if enabled != "true":
        return "exec disabled"
    if agent != "RUNNING":
        return f"agent {agent.lower() or 'unknown'}"
    return "ready"


def render_table(nodes: list[Node] | tuple[Node, ...], console: Console) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "IMAGE", "CLUSTER", "SERVICE", "TASK", "STATUS", "EXEC"):
        table.add_column(column, overflow="fold")
    for node in nodes:
        table.add_row(
            node.name,
            node.get("ECS:Container-Image") or "",
            node.get("ECS:Cluster-Name") or "",
            node.get("ECS:Service-Name") or "",
            node.get("ECS:Task-ID") or "",
            node.get("ECS:Task-Status") or "",
            exec_readiness(node),
        )
    console.print(table)


@click.command("nodes")
@click.option("-F", "--filter", "filter_text", default=None, help="Rundeck node filter.")
@click.option(
    "--include-precedence", is_flag=True, help="Include clauses win over exclude clauses."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "yaml", "xml"]),
    default="table",
    show_default=True,
    help="json/yaml/xml are resourcejson/resourceyaml/resourcexml (feed back with --nodes-file).",
)
@node_options
def nodes_command(
    filter_text: str | None,
    include_precedence: bool,
    fmt: str,
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
) -> None:
    """List nodes (ECS containers). With no filter, every node is listed."""
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile)

    async def main(client: Client) -> Selection:
        return await select_nodes(client, query, filter_text, include_precedence=include_precedence)

    selected = run_engine(query, main)
    if fmt == "table":
        console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 250)
        render_table(selected.nodes, console)
        return
    click.echo(dump_nodes(list(selected.nodes), fmt), nl=False)  # type: ignore[arg-type]
