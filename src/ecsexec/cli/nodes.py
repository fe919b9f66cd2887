"""``ecsexec nodes``: list the containers a filter selects, as a table or a resource document."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click
from rich.markup import escape

from ecsexec.app import Client, Selection
from ecsexec.cli.common import NodeQuery, node_options, run_engine, select_nodes, show_warnings
from ecsexec.cli.remote import (
    RemoteServer,
    read_token,
    refuse_local_options,
    run_remote,
    server_options,
)
from ecsexec.cli.tables import new_table, print_table
from ecsexec.errors import ConfigurationError
from ecsexec.nodes.ecs_attributes import (
    CLUSTER_NAME,
    CONTAINER_IMAGE,
    EXEC_AGENT_STATUS,
    EXEC_ENABLED,
    REGION,
    SERVICE_NAME,
    TASK_ID,
    TASK_STATUS,
)
from ecsexec.nodes.ecs_source import ContainerFilters, EcsSourceConfig
from ecsexec.nodes.formats import dump_nodes
from ecsexec.nodes.node import Node


def listed(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeated options whose values may be comma lists: items trimmed, blanks dropped
    (docs/ecs-nodes.md §3 list values)."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def container_filters(
    behavior: str,
    services: tuple[str, ...],
    task_definitions: tuple[str, ...],
    containers: tuple[str, ...],
    tags: tuple[str, ...],
) -> ContainerFilters:
    """The ECS source filters of the command line (docs/ecs-nodes.md §3)."""
    try:
        pairs = EcsSourceConfig.parse_tags(listed(tags))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--tag") from None
    return ContainerFilters(
        filter_behavior="exclude" if behavior == "exclude" else "include",
        service_names=listed(services),
        task_definition_names=listed(task_definitions),
        container_names=listed(containers),
        tags=pairs,
    )


def exec_readiness(node: Node) -> str:
    """One word for the table: can ECS Exec reach this container?"""
    enabled = node.get(EXEC_ENABLED)
    agent = node.get(EXEC_AGENT_STATUS) or ""
    if enabled is None:
        return "-"
    if enabled != "true":
        return "exec disabled"
    if agent != "RUNNING":
        return f"agent {agent.lower() or 'unknown'}"
    return "ready"


def render_table(nodes: list[Node] | tuple[Node, ...], file: IO[str]) -> None:
    """One row per node; REGION appears when the nodes span regions."""
    regions = {node.get(REGION) or "" for node in nodes}
    columns = ["NAME", "IMAGE", "CLUSTER", "SERVICE", "TASK", "STATUS", "EXEC"]
    if len(regions) > 1:
        columns.insert(1, "REGION")
    table = new_table(*columns, whole=("NAME", "REGION"))
    for node in nodes:
        row = [
            node.name,
            node.get(CONTAINER_IMAGE) or "",
            node.get(CLUSTER_NAME) or "",
            node.get(SERVICE_NAME) or "",
            node.get(TASK_ID) or "",
            node.get(TASK_STATUS) or "",
            exec_readiness(node),
        ]
        if len(regions) > 1:
            row.insert(1, node.get(REGION) or "")
        table.add_row(*(escape(cell) for cell in row))
    print_table(table, file)


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
@click.option(
    "--filter-behavior",
    "behavior",
    type=click.Choice(["include", "exclude"]),
    default="include",
    show_default=True,
    help="What the source filters below do: keep only the containers that pass them all, "
    "or drop those that pass any (as a [[sources]] table's filter_behavior).",
)
@click.option(
    "--service-name", "services", multiple=True, help="Source filter: ECS services (a,b)."
)
@click.option(
    "--task-definition-name",
    "task_definitions",
    multiple=True,
    help="Source filter: task definition families, or family:revision.",
)
@click.option(
    "--container-name", "containers", multiple=True, help="Source filter: container names."
)
@click.option("--tag", "tags", multiple=True, help="Source filter: task tags k=v (k=v,k2=v2).")
@node_options
@server_options
def nodes_command(
    filter_text: str | None,
    include_precedence: bool,
    fmt: str,
    behavior: str,
    services: tuple[str, ...],
    task_definitions: tuple[str, ...],
    containers: tuple[str, ...],
    tags: tuple[str, ...],
    nodes_files: tuple[str, ...],
    regions: tuple[str, ...],
    clusters: tuple[str, ...],
    refresh: bool,
    profile: str | None,
    server_url: str | None,
    token_file: Path | None,
) -> None:
    """List nodes (ECS containers). With no filter, every node is listed.

    The source filters (--service-name, --task-definition-name, --container-name, --tag,
    --filter-behavior) act in discovery, as an ECS source's do (docs/ecs-nodes.md §3);
    they replace the configured [[sources]] like --region and --cluster.
    """
    filters = container_filters(behavior, services, task_definitions, containers, tags)
    if server_url:
        refuse_local_options(
            {
                "--nodes-file": nodes_files,
                "--region": regions,
                "--cluster": clusters,
                "--profile": profile,
                "--include-precedence": include_precedence,
                "--service-name/--task-definition-name/--container-name/--tag": bool(filters),
            }
        )
        nodes = remote_nodes(server_url, read_token(token_file), filter_text, refresh)
        render_nodes(nodes, fmt)
        return
    if filters and nodes_files:
        raise click.UsageError(
            "the source filters (--service-name, --tag, ...) act in ECS discovery, which "
            "--nodes-file replaces; select from a file with -F"
        )
    query = NodeQuery(nodes_files, regions, clusters, refresh, profile, filters=filters)

    async def main(client: Client) -> Selection:
        return await select_nodes(client, query, filter_text, include_precedence=include_precedence)

    selected = run_engine(query, main)
    render_nodes(list(selected.nodes), fmt)


def render_nodes(nodes: list[Node], fmt: str) -> None:
    if fmt == "table":
        render_table(nodes, sys.stdout)
        return
    click.echo(dump_nodes(nodes, fmt), nl=False)  # type: ignore[arg-type]


def remote_nodes(url: str, token: str, filter_text: str | None, refresh: bool) -> list[Node]:
    """The nodes the server's filter selects (those the token's role may see)."""

    async def main() -> list[Node]:
        async with RemoteServer(url, token) as server:
            nodes, warnings = await server.nodes(filter_text, refresh=refresh)
        show_warnings(warnings)
        return nodes

    result: list[Node] = run_remote(main)
    return result
