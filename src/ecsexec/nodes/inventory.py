"""The node inventory: merge node sources, with a per-source cache (docs/ecs-nodes.md §1, §4).

Sources merge in order; a later node with the same name replaces the earlier one whole.
Each source is discovered through its registered type (:mod:`ecsexec.nodes.sources`).
A source that caches (ECS does) has its nodes kept on disk for ``refresh_interval``
seconds, in one file per source named by a hash of its configuration; a failed refresh
falls back to the cached list with a warning giving its age.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ecsexec.errors import ConfigurationError, DiscoveryError, EcsexecError
from ecsexec.nodes.cache import CACHE_VERSION, NodeCache, config_cache_key, default_cache_dir
from ecsexec.nodes.ecs_source import (
    ContainerFilters,
    DiscoveryReport,
    EcsSourceConfig,
    ProgressFn,
    TaskDefinitionCache,
)
from ecsexec.nodes.file_source import FileSourceConfig
from ecsexec.nodes.node import Node
from ecsexec.nodes.sources import (
    ApiFactory,
    FileLoader,
    NodeSource,
    SourceConfig,
    SourceContext,
    source_type_of,
)

__all__ = [
    "CACHE_VERSION",
    "ApiFactory",
    "FileLoader",
    "FileSourceConfig",
    "Inventory",
    "InventoryReport",
    "NodeCache",
    "SourceConfig",
    "default_cache_dir",
    "sources_from_flags",
]


@dataclass
class InventoryReport:
    sources: int = 0
    from_cache: int = 0
    warnings: list[str] = field(default_factory=list)
    discovery: list[DiscoveryReport] = field(default_factory=list)


def _cache_key(config: EcsSourceConfig, endpoint: str) -> str:
    """Hash of an ECS source's configuration; it holds no secrets by construction."""
    return config_cache_key(config, endpoint=endpoint)


class Inventory:
    """Collects nodes from every configured source, of any registered source type."""

    def __init__(
        self,
        sources: Sequence[SourceConfig],
        *,
        api_factory: ApiFactory,
        file_loader: FileLoader,
        cache: NodeCache | None = None,
        refresh: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = list(sources)
        self.api_factory = api_factory
        self.file_loader = file_loader
        self.cache = cache or NodeCache()
        self.refresh = refresh
        self.clock = clock
        self.task_definitions = TaskDefinitionCache()

    def nodes(self, progress: ProgressFn | None = None) -> tuple[list[Node], InventoryReport]:
        report = InventoryReport(sources=len(self.sources))
        context = SourceContext(self.api_factory, self.file_loader, self.task_definitions)
        merged: dict[str, Node] = {}
        for config in self.sources:
            source = source_type_of(config).open(config, context)
            for node in self._discover(source, report, progress):
                merged.pop(node.name, None)  # the later source's node replaces it whole
                merged[node.name] = node
        return list(merged.values()), report

    def _discover(
        self, source: NodeSource, report: InventoryReport, progress: ProgressFn | None
    ) -> list[Node]:
        interval = source.refresh_interval
        key = source.cache_key() if interval > 0 else None
        cached = self.cache.load(key) if key is not None else None
        now = self.clock()
        if cached is not None and not self.refresh and now - cached[0] < interval:
            report.from_cache += 1
            return cached[1]
        try:
            nodes, discovery = source.discover(progress)
        except EcsexecError as exc:
            # --refresh promises fresh nodes: never the cache in their place. Bad
            # configuration or credentials are the user's to fix: never hidden by it either.
            if cached is None or self.refresh or isinstance(exc, ConfigurationError):
                raise
            report.warnings.append(
                f"{source.label}: refresh failed ({exc}); using nodes cached "
                f"{now - cached[0]:.0f} s ago"
            )
            return cached[1]
        if discovery is not None:
            report.discovery.append(discovery)
            report.warnings += discovery.warnings
        if key is not None:
            self.cache.store(key, nodes, now)
        return nodes


def sources_from_flags(
    *,
    regions: Iterable[str],
    clusters: Iterable[str],
    nodes_files: Iterable[str],
    default_region: str | None,
    refresh_interval: float = 30.0,
    filters: ContainerFilters | None = None,
    assume_role_arn: str = "",
) -> list[SourceConfig]:
    """The sources the ``--region/--cluster/--nodes-file`` flags describe.

    ``filters`` are the ECS source's container filters; ``assume_role_arn``, the role the
    credentials assume, becomes the nodes' ``assume-role-arn`` (docs/ecs-nodes.md §2).
    """
    files: list[SourceConfig] = [FileSourceConfig(Path(p)) for p in nodes_files]
    if files:
        return files  # --nodes-file replaces ECS discovery
    region_list = list(dict.fromkeys(regions)) or ([default_region] if default_region else [])
    if not region_list:
        raise DiscoveryError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    chosen = filters or ContainerFilters()
    return [
        EcsSourceConfig(
            region=r,
            clusters=tuple(clusters),
            refresh_interval=refresh_interval,
            filter_behavior=chosen.filter_behavior,
            service_names=chosen.service_names,
            task_definition_names=chosen.task_definition_names,
            container_names=chosen.container_names,
            tags=chosen.tags,
            assume_role_arn=assume_role_arn,
        )
        for r in region_list
    ]
