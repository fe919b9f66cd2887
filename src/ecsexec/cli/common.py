"""What several commands share: the node-selection options, inventory loading, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from ecsexec.aws.clients import SessionFactory
from ecsexec.aws.credentials import AwsSessionFactory, SessionFactories
from ecsexec.aws.ecs import EcsApi
from ecsexec.config import AwsSettings, Config, ConfiguredSource, load_config
from ecsexec.errors import DiscoveryError, FilterSyntaxError
from ecsexec.nodes.ecs_source import EcsSourceConfig, ProgressFn, TaskDefinitionCache
from ecsexec.nodes.filter import (
    format_filter_error,
    parse_filter,
    rank,
    select,
    unmatched_key_warnings,
)
from ecsexec.nodes.formats import load_nodes
from ecsexec.nodes.inventory import (
    Inventory,
    NodeCache,
    SourceConfig,
    default_cache_dir,
    sources_from_flags,
)
from ecsexec.nodes.node import Node

F = TypeVar("F", bound=Callable[..., Any])

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


CONFIG_META = "ecsexec.config_path"


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[CONFIG_META] = value  # ctx.meta is shared by the whole command chain


def config_option(func: F) -> F:
    """``--config PATH``: the project file (else ``$ECSEXEC_CONFIG``, else ``ecsexec.toml`` up)."""
    return click.option(
        "--config",
        "config_path",
        expose_value=False,
        is_eager=True,
        callback=_remember_config,
        type=click.Path(dir_okay=False, path_type=str),
        help="Project configuration file (default: ecsexec.toml here or above, $ECSEXEC_CONFIG).",
    )(func)


def context_config_path() -> str | None:
    """The ``--config`` value of the running command, if any."""
    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get(CONFIG_META) if ctx is not None else None
    return str(value) if value else None


def node_options(func: F) -> F:
    """``--nodes-file``, ``--region``, ``--cluster``, ``--refresh``, ``--profile``, ``--config``."""
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
            click.option(
                "--profile", default=None, help="AWS profile (credential_provider=profile)."
            ),
            config_option,
        ]
    ):
        func = option(func)
    return func


@dataclass(frozen=True)
class NodeQuery:
    """What to discover and with which credentials: flags, else the project configuration.

    ``--region``/``--cluster``/``--nodes-file`` replace the configured ``[[sources]]``;
    credentials always come from the configuration (``[aws]``, or the source's own).
    """

    nodes_files: tuple[str, ...]
    regions: tuple[str, ...]
    clusters: tuple[str, ...]
    refresh: bool
    profile: str | None
    config_path: str | None = None

    @cached_property
    def config(self) -> Config:
        return load_config(self.config_path or context_config_path(), profile=self.profile)

    @cached_property
    def factories(self) -> SessionFactories:
        return SessionFactories(secret_reader=self.config.read_password)

    @property
    def uses_flags(self) -> bool:
        return bool(self.nodes_files or self.regions or self.clusters)

    def configured_sources(self) -> tuple[ConfiguredSource, ...]:
        return () if self.uses_flags else self.config.sources

    def aws_factory(self) -> AwsSessionFactory:
        return self.factories(self.config.aws)

    def default_region(self) -> str | None:
        if self.regions:
            return self.regions[0]
        if self.config.aws.region:
            return self.config.aws.region
        for source in self.configured_sources():
            if isinstance(source.config, EcsSourceConfig) and source.config.region:
                return source.config.region
        return (
            os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or self.aws_factory().default_region()
        )

    def factory_for_region(self, region: str) -> AwsSessionFactory:
        """The first configured ECS source in ``region`` lends its credentials, else [aws]."""
        for source in self.configured_sources():
            if isinstance(source.config, EcsSourceConfig) and source.config.region == region:
                return self.factories(source.aws)
        return self.aws_factory()

    def session_factory(self) -> SessionFactory:
        """``region -> boto3.Session``: the same credentials for ECS, SSM and KMS."""
        return lambda region: self.factory_for_region(region)(region)


def node_cache(settings: AwsSettings) -> NodeCache:
    """A node cache per credential identity, so one account's nodes never serve another's."""
    identity = json.dumps(
        [
            settings.credential_provider,
            settings.profile,
            settings.access_key_id,
            settings.secret_key_path,
            settings.assume_role_arn,
            hashlib.sha256(settings.external_id.encode()).hexdigest(),
            settings.endpoint_url,
        ]
    )
    return NodeCache(default_cache_dir() / hashlib.sha256(identity.encode()).hexdigest()[:16])


def _plan(
    query: NodeQuery,
    session_factory: SessionFactory | None,
    default_region: str | None,
) -> list[tuple[SourceConfig, SessionFactory, NodeCache | None]]:
    """Each source with the session factory and cache it is discovered with."""
    if session_factory is None and query.configured_sources():
        plan: list[tuple[SourceConfig, SessionFactory, NodeCache | None]] = []
        for source in query.configured_sources():
            config = source.config
            if isinstance(config, EcsSourceConfig) and not config.region:
                region = query.default_region()
                if not region:
                    raise DiscoveryError(
                        f"{source.label} ({source.origin}): no AWS region: set region in the "
                        "source or in [aws], or AWS_REGION"
                    )
                config = dataclasses.replace(config, region=region)
            plan.append((config, query.factories(source.aws), node_cache(source.aws)))
        return plan
    if default_region is None and not query.nodes_files:
        default_region = query.default_region()
    sources = sources_from_flags(
        regions=query.regions,
        clusters=query.clusters,
        nodes_files=query.nodes_files,
        default_region=default_region,
    )
    if session_factory is not None:
        return [(source, session_factory, None) for source in sources]
    factory = query.aws_factory()
    cache = node_cache(query.config.aws)
    return [(source, factory, cache) for source in sources]


def load_inventory(
    query: NodeQuery,
    *,
    session_factory: SessionFactory | None = None,
    default_region: str | None = None,
) -> list[Node]:
    """Every node the query's sources give, with progress on a TTY.

    Sources merge in order; a later node with the same name replaces the earlier one whole
    (ecs-nodes.md §1), as :class:`Inventory` does within one call.
    """
    plan = _plan(query, session_factory, default_region)
    task_definitions = TaskDefinitionCache()
    merged: dict[str, Node] = {}
    warnings: list[str] = []

    def discover(progress: ProgressFn | None) -> None:
        for source, factory, cache in plan:

            def api_factory(config: EcsSourceConfig, factory: SessionFactory = factory) -> EcsApi:
                return EcsApi(factory(config.region), region=config.region)

            inventory = Inventory(
                [source],
                api_factory=api_factory,
                file_loader=lambda path: load_nodes(Path(path)),
                cache=cache,
                refresh=query.refresh,
            )
            inventory.task_definitions = task_definitions
            nodes, report = inventory.nodes(progress)
            warnings.extend(report.warnings)
            for node in nodes:
                merged.pop(node.name, None)
                merged[node.name] = node

    if stderr.is_terminal and not query.nodes_files:
        with stderr.status("discovering ECS containers…") as status:

            def progress(cluster: str, described: int, listed: int) -> None:
                status.update(f"discovering ECS containers… {cluster}: {described}/{listed} tasks")

            discover(progress)
    else:
        discover(None)
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {warning}")
    return list(merged.values())


FILTER_WARNINGS_ENV = "ECSEXEC_FILTER_WARNINGS"  # "off" silences node-filter warnings


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
        # node-filter.md §8: warnings go to stderr and never change the result.
        if os.environ.get(FILTER_WARNINGS_ENV, "on") != "off":
            for warning in [*flt.warnings, *unmatched_key_warnings(flt, nodes)]:
                stderr.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
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
