"""The ``file`` node source: nodes read from a resourcejson / resourceyaml / resourcexml file.

Never cached: the file is read on every inventory run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ecsexec.nodes.node import Node

if TYPE_CHECKING:
    from ecsexec.nodes.ecs_source import ProgressFn
    from ecsexec.nodes.sources import FileLoader, SourceContext, SourceTable

__all__ = ["SOURCE_KEYS", "FileNodeSource", "FileSourceConfig"]

SOURCE_KEYS: Final = ("path",)
"""The keys of a ``[[sources]] type = "file"`` table besides ``type`` and ``name``."""


@dataclass(frozen=True)
class FileSourceConfig:
    """Nodes read from a resourcejson / resourceyaml / resourcexml file."""

    path: Path


class FileNodeSource:
    """A :class:`ecsexec.nodes.sources.NodeSource` reading one resource file."""

    def __init__(self, config: FileSourceConfig, loader: FileLoader) -> None:
        self.config = config
        self.loader = loader

    @property
    def label(self) -> str:
        return str(self.config.path)

    @property
    def refresh_interval(self) -> float:
        return 0.0

    def cache_key(self) -> str | None:
        return None

    def discover(self, progress: ProgressFn | None = None) -> tuple[list[Node], None]:
        return self.loader(self.config.path), None


def parse_file_source(table: SourceTable) -> FileSourceConfig | None:
    path = table.path("path")
    if path is None:
        table.fail(None, f'{table.label}: a file source needs path = "nodes.yaml"')
        return None
    return FileSourceConfig(path)


def open_file_source(config: FileSourceConfig, context: SourceContext) -> FileNodeSource:
    return FileNodeSource(config, context.file_loader)
