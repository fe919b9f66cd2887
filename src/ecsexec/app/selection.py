"""Node selection for the engine: which sources to discover, with which credentials, filtered.

The project configuration's ``[[sources]]`` are discovered unless the caller names
regions, clusters or resource files instead (the CLI's ``--region``, ``--cluster`` and
``--nodes-file``). Credentials always come from the configuration: ``[aws]``, or a
source's own. Each credential identity has its own node cache, so one account's nodes
never serve another's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ecsexec.aws.clients import SessionFactory, session_identity
from ecsexec.aws.credentials import AwsSessionFactory, SessionFactories
from ecsexec.aws.ecs import EcsApi
from ecsexec.config import AwsSettings, Config, ConfiguredSource
from ecsexec.errors import DiscoveryError
from ecsexec.nodes.ecs_source import (
    ContainerFilters,
    EcsSourceConfig,
    ProgressFn,
    TaskDefinitionCache,
)
from ecsexec.nodes.filter import parse_filter, rank, select, unmatched_key_warnings
from ecsexec.nodes.filter_hints import filter_hints
from ecsexec.nodes.inventory import (
    Inventory,
    NodeCache,
    SourceConfig,
    default_cache_dir,
    sources_from_flags,
)
from ecsexec.nodes.node import Node


@dataclass(frozen=True)
class SourceOverrides:
    """Sources named by the caller; any of them replaces the configured ``[[sources]]``."""

    nodes_files: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    filters: ContainerFilters = field(default_factory=ContainerFilters)

    def __bool__(self) -> bool:
        return bool(self.nodes_files or self.regions or self.clusters or self.filters)


@dataclass(frozen=True)
class Selection:
    """The nodes a filter selected, in rank order, with the warnings a user should see.

    The filter's ``warnings`` never change the result (docs/node-filter.md §8): a key no
    node has, a blank clause. ``discovery_warnings`` tell of discovery trouble that did not
    stop it (a cache used because a refresh failed, a cluster that could not be read).
    ``inventory`` is every node discovered, which job references select from with their
    own filters.
    """

    nodes: tuple[Node, ...]
    filter: str | None = None
    warnings: tuple[str, ...] = ()
    inventory: tuple[Node, ...] = ()
    discovery_warnings: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __bool__(self) -> bool:
        return bool(self.nodes)

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.nodes]


def apply_filter(
    nodes: Sequence[Node],
    filter_text: str | None,
    *,
    include_precedence: bool = False,
    rank_attribute: str = "nodename",
    rank_order: str = "ascending",
) -> tuple[list[Node], list[str]]:
    """No filter: every node. Otherwise exactly what Rundeck selects, in rank order.

    Returns the nodes and the filter's warnings. Raises :class:`FilterSyntaxError`.
    """
    warnings: list[str] = []
    chosen = list(nodes)
    if filter_text is not None:
        flt = parse_filter(filter_text)
        warnings = [str(w) for w in [*flt.warnings, *unmatched_key_warnings(flt, chosen)]]
        chosen = select(chosen, flt, exclude_precedence=not include_precedence)
        warnings += [f"hint: {hint}" for hint in filter_hints(flt, nodes, chosen)]
    return rank(chosen, attribute=rank_attribute, order=rank_order), warnings


def fixed_node_cache(factory: SessionFactory, regions: Sequence[str]) -> NodeCache:
    """A node cache for a caller's own session factory (a private sandbox, say), keyed by
    the endpoints and access key its sessions use, which no setting or variable names:
    one sandbox's nodes never answer for another's."""
    identity = json.dumps(
        ["session_factory", *(session_identity(factory(r), "ecs") for r in regions)]
    )
    return NodeCache(default_cache_dir() / hashlib.sha256(identity.encode()).hexdigest()[:16])


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


class Discovery:
    """What to discover and with which credentials, and the discovery itself (blocking)."""

    def __init__(
        self,
        config: Config,
        overrides: SourceOverrides,
        factories: SessionFactories,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self.config = config
        self.overrides = overrides
        self.factories = factories
        # One fixed ``region -> boto3.Session`` for every source (a private sandbox).
        self.fixed_factory = session_factory

    def configured_sources(self) -> tuple[ConfiguredSource, ...]:
        return () if self.overrides else self.config.sources

    def aws_factory(self) -> AwsSessionFactory:
        return self.factories(self.config.aws)

    def default_region(self) -> str | None:
        if self.overrides.regions:
            return self.overrides.regions[0]
        if self.fixed_factory is not None:
            return str(self.fixed_factory("").region_name or "") or None
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
        if self.fixed_factory is not None:
            return self.fixed_factory
        return lambda region: self.factory_for_region(region)(region)

    def plan(self) -> list[tuple[SourceConfig, SessionFactory, NodeCache]]:
        """Each source with the session factory and cache it is discovered with."""
        if self.configured_sources() and self.fixed_factory is None:
            plan: list[tuple[SourceConfig, SessionFactory, NodeCache]] = []
            for source in self.configured_sources():
                config = source.config
                if isinstance(config, EcsSourceConfig) and not config.region:
                    region = self.default_region()
                    if not region:
                        raise DiscoveryError(
                            f"{source.label} ({source.origin}): no AWS region: set region in "
                            "the source or in [aws], or AWS_REGION"
                        )
                    config = dataclasses.replace(config, region=region)
                credentials = self.factories(source.aws)
                credentials.check_local()
                plan.append((config, credentials, node_cache(source.aws)))
            return plan
        overrides = self.overrides
        sources = sources_from_flags(
            regions=overrides.regions,
            clusters=overrides.clusters,
            nodes_files=overrides.nodes_files,
            default_region=None if overrides.nodes_files else self.default_region(),
            filters=overrides.filters,
            assume_role_arn=self.config.aws.assume_role_arn,
        )
        factory = self.session_factory()
        if self.fixed_factory is None:
            self.aws_factory().check_local()
            cache = node_cache(self.config.aws)
        else:
            regions = sorted({s.region for s in sources if isinstance(s, EcsSourceConfig)})
            cache = fixed_node_cache(self.fixed_factory, regions)
        return [(source, factory, cache) for source in sources]

    def discover(
        self, *, refresh: bool = False, progress: ProgressFn | None = None
    ) -> tuple[list[Node], list[str]]:
        """Every node the sources give, and the warnings met on the way.

        Sources merge in order; a later node with the same name replaces the earlier one
        whole (docs/ecs-nodes.md §1), as :class:`Inventory` does within one call.
        """
        task_definitions = TaskDefinitionCache()
        merged: dict[str, Node] = {}
        warnings: list[str] = []
        for source, factory, cache in self.plan():

            def api_factory(config: EcsSourceConfig, factory: SessionFactory = factory) -> EcsApi:
                return EcsApi(factory(config.region), region=config.region)

            inventory = Inventory(
                [source],
                api_factory=api_factory,
                file_loader=_load_node_file,
                cache=cache,
                refresh=refresh,
            )
            inventory.task_definitions = task_definitions
            nodes, report = inventory.nodes(progress)
            warnings.extend(report.warnings)
            for node in nodes:
                merged.pop(node.name, None)
                merged[node.name] = node
        return list(merged.values()), warnings


def _load_node_file(path: Path) -> list[Node]:
    # Resource formats (YAML, XML, JSON) load only for file sources: ~5 ms of start-up.
    from ecsexec.nodes.formats import load_nodes

    return load_nodes(Path(path))
