"""The per-source node cache: one JSON file per source, named by a hash of its configuration.

A source type that caches (ECS does, resource files do not) names its entry with
:func:`config_cache_key`; :class:`ecsexec.nodes.inventory.Inventory` decides when an
entry is fresh enough (docs/ecs-nodes.md §4).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ecsexec.aws.endpoints import cache_home, write_cache_file
from ecsexec.nodes.node import Node

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CACHE_VERSION", "NodeCache", "config_cache_key", "default_cache_dir"]

CACHE_VERSION: Final = 1


def default_cache_dir() -> Path:
    return cache_home() / "nodes"


def config_cache_key(config: DataclassInstance, **extra: str) -> str:
    """Hash of a source's configuration (and ``extra``, e.g. the endpoint it calls).

    A source configuration holds no secret by construction, so neither does the key.
    """
    data = json.dumps(
        {"v": CACHE_VERSION, **extra, **dataclasses.asdict(config)},
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
        payload = json.dumps({"fetched_at": fetched_at, "nodes": [_node_to_json(n) for n in nodes]})
        write_cache_file(self.directory / f"{key}.json", payload)
