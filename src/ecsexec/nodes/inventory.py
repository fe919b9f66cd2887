"""The node inventory: merge node sources, with a per-source cache (ecs-nodes.md §1, §4).

Sources merge in order; a later node with the same name replaces the earlier one whole.
An ECS source's nodes are cached on disk for ``refresh_interval`` seconds, in one file
per source named by a hash of its configuration; a failed refresh falls back to the
cached list with a warning giving its age.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecsexec.aws.ecs import EcsApi
from ecsexec.errors import DiscoveryError, EcsexecError
from ecsexec.nodes.ecs_source import (
    DiscoveryReport,
    EcsNodeSource,
    EcsSourceConfig,
    ProgressFn,
    TaskDefinitionCache,
)
from ecsexec.nodes.node import Node

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ecsexec" / "nodes"


@dataclass(frozen=True)
class FileSourceConfig:
    """Nodes read from a resourcejson / resourceyaml / resourcexml file."""

    path: Path


SourceConfig = EcsSourceConfig | FileSourceConfig


@dataclass
class InventoryReport:
    sources: int = 0
    from_cache: int = 0
    warnings: list[str] = field(default_factory=list)
    discovery: list[DiscoveryReport] = field(default_factory=list)


def _cache_key(config: EcsSourceConfig, endpoint: str) -> str:
    """Hash of the source's configuration; it holds no secrets by construction."""
    data = json.dumps(
        {"v": CACHE_VERSION, "endpoint": endpoint, **dataclasses.asdict(config)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def _node_to_json(node: Node) -> dict[str, Any]:
    return {"name": node.name, "attributes": dict(node.attributes), "tags": sorted(node.tags)}


def _node_from_json(item: dict[str, Any]) -> Node:
    return Node(str(item["name"]), dict(item["attributes"]), frozenset(item["tags"]))


class NodeCache:
    """One JSON file per source, written atomically with mode 0600."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_cache_dir()

    def load(self, key: str) -> tuple[float, list[Node]] | None:
        path = self.directory / f"{key}.json"
        try:
            data = json.loads(path.read_text())
            return float(data["fetched_at"]), [_node_from_json(i) for i in data["nodes"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: str, nodes: Sequence[Node], fetched_at: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps({"fetched_at": fetched_at, "nodes": [_node_to_json(n) for n in nodes]})
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.directory / f"{key}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


ApiFactory = Callable[[EcsSourceConfig], EcsApi]
FileLoader = Callable[[Path], list[Node]]


class Inventory:
    """Collects nodes from every configured source."""

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
        merged: dict[str, Node] = {}
        for source in self.sources:
            if isinstance(source, FileSourceConfig):
                found = self.file_loader(source.path)
            else:
                found = self._ecs(source, report, progress)
            for node in found:
                merged.pop(node.name, None)  # the later source's node replaces it whole
                merged[node.name] = node
        return list(merged.values()), report

    def _ecs(
        self, config: EcsSourceConfig, report: InventoryReport, progress: ProgressFn | None
    ) -> list[Node]:
        api = self.api_factory(config)
        key = _cache_key(config, str(api.client.meta.endpoint_url))
        cached = self.cache.load(key) if config.refresh_interval > 0 else None
        now = self.clock()
        if cached is not None and not self.refresh and now - cached[0] < config.refresh_interval:
            report.from_cache += 1
            return cached[1]
        try:
            nodes, discovery = EcsNodeSource(
                config, api, task_definitions=self.task_definitions
            ).discover(progress)
        except EcsexecError as exc:
            if cached is None:
                raise
            report.warnings.append(
                f"{config.region}: refresh failed ({exc}); using nodes cached "
                f"{now - cached[0]:.0f} s ago"
            )
            return cached[1]
        report.discovery.append(discovery)
        report.warnings += discovery.warnings
        if config.refresh_interval > 0:
            self.cache.store(key, nodes, now)
        return nodes


def sources_from_flags(
    *,
    regions: Iterable[str],
    clusters: Iterable[str],
    nodes_files: Iterable[str],
    default_region: str | None,
    refresh_interval: float = 30.0,
) -> list[SourceConfig]:
    """The sources the ``--region/--cluster/--nodes-file`` flags describe."""
    files = [FileSourceConfig(Path(p)) for p in nodes_files]
    if files:
        return list(files)  # --nodes-file replaces ECS discovery
    region_list = list(dict.fromkeys(regions)) or ([default_region] if default_region else [])
    if not region_list:
        raise DiscoveryError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return [
        EcsSourceConfig(region=r, clusters=tuple(clusters), refresh_interval=refresh_interval)
        for r in region_list
    ]
