"""What several commands share: the node-selection options, inventory loading, errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import click
from rich.console import Console

from ecsexec.aws.clients import make_session
from ecsexec.aws.ecs import EcsApi
from ecsexec.errors import FilterSyntaxError
from ecsexec.nodes.ecs_source import EcsSourceConfig
from ecsexec.nodes.filter import format_filter_error, parse_filter, rank, select
from ecsexec.nodes.formats import load_nodes
from ecsexec.nodes.inventory import Inventory, sources_from_flags
from ecsexec.nodes.node import Node

F = TypeVar("F", bound=Callable[..., Any])

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def node_options(func: F) -> F:
    """``--nodes-file``, ``--region``, ``--cluster``, ``--refresh``, ``--profile``."""
    for option in reversed(
        [
            click.option(
                "--nodes-file",
                "nodes_files",
                multiple=True,
                type=click.Path(dir_okay=False, path_type=str),
                help="Read nodes from resourcejson/yaml/xml files instead of ECS.",
            ),
            click.option("--region", "regions", multiple=True, help="AWS region (repeatable)."),
            click.option("--cluster", "clusters", multiple=True, help="ECS cluster (repeatable)."),
            click.option("--refresh", is_flag=True, help="Ignore the node cache."),
            click.option("--profile", default=None, help="AWS profile."),
        ]
    ):
        func = option(func)
    return func


@dataclass(frozen=True)
class NodeQuery:
    nodes_files: tuple[str, ...]
    regions: tuple[str, ...]
    clusters: tuple[str, ...]
    refresh: bool
    profile: str | None

    def default_region(self) -> str | None:
        if self.regions:
            return self.regions[0]
        return (
            os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or make_session(profile=self.profile).region_name
        )

    def session_factory(self) -> Callable[[str], boto3.session.Session]:
        return lambda region: make_session(profile=self.profile, region=region)


def load_inventory(
    query: NodeQuery,
    *,
    session_factory: Callable[[str], boto3.session.Session] | None = None,
    default_region: str | None = None,
) -> list[Node]:
    """Every node the query's sources give, with progress on a TTY."""
    if default_region is None and not query.nodes_files:
        default_region = query.default_region()
    sources = sources_from_flags(
        regions=query.regions,
        clusters=query.clusters,
        nodes_files=query.nodes_files,
        default_region=default_region,
    )
    factory = session_factory or query.session_factory()

    def api_factory(config: EcsSourceConfig) -> EcsApi:
        return EcsApi(factory(config.region), region=config.region)

    inventory = Inventory(
        sources,
        api_factory=api_factory,
        file_loader=lambda path: load_nodes(Path(path)),
        refresh=query.refresh,
    )
    if stderr.is_terminal and not query.nodes_files:
        with stderr.status("discovering ECS containers…") as status:

            def progress(cluster: str, described: int, listed: int) -> None:
                status.update(f"discovering ECS containers… {cluster}: {described}/{listed} tasks")

            nodes, report = inventory.nodes(progress)
    else:
        nodes, report = inventory.nodes()
    for warning in report.warnings:
        stderr.print(f"[yellow]warning:[/] {warning}")
    return nodes


def apply_filter(
    nodes: list[Node],
    filter_text: str | None,
    *,
    include_precedence: bool = False,
    rank_attribute: str = "nodename",
    rank_order: str = "ascending",
) -> list[Node]:
    """No filter: every node. Otherwise exactly what Rundeck selects, in rank order."""
    if filter_text is not None:
        try:
            flt = parse_filter(filter_text)
        except FilterSyntaxError as exc:
            raise click.UsageError(format_filter_error(exc)) from None
        nodes = select(nodes, flt, exclude_precedence=not include_precedence)
    return rank(nodes, attribute=rank_attribute, order=rank_order)


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


def fail(message: str, code: int = 2) -> None:
    stderr.print(f"[red]error:[/] {message}")
    sys.exit(code)
