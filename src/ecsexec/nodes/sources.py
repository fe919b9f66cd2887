"""Node sources: what a ``[[sources]] type`` of ``ecsexec.toml`` must provide, and the registry.

A source type is one :func:`register_source_type` call:

- a configuration class (a frozen dataclass: it is hashed into the node cache's key);
- ``parse``, which reads one ``[[sources]]`` table through a :class:`SourceTable` (the
  configuration loader supplies it, with ``file:line`` on every error) into that class;
- ``open``, which binds a configuration to a :class:`SourceContext` (API factory, resource
  file loader, shared task-definition cache) and returns a :class:`NodeSource`;
- the table keys ``parse`` reads, and whether the type takes per-source AWS settings
  (``aws=True``: the ``[aws]`` keys are allowed in its table and resolved as docs/ecs-nodes.md
  §3 says, into :attr:`SourceTable.aws`).

The built-in types are ``ecs`` (:mod:`ecsexec.nodes.ecs_source`) and ``file``
(:mod:`ecsexec.nodes.file_source`). :class:`ecsexec.nodes.inventory.Inventory` discovers
any registered type, and :func:`ecsexec.config.load_config` parses any registered type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from ecsexec.aws.ecs import EcsApi
from ecsexec.aws.settings import AwsSettings
from ecsexec.nodes import ecs_source, file_source
from ecsexec.nodes.ecs_source import (
    DiscoveryReport,
    EcsSourceConfig,
    ProgressFn,
    TaskDefinitionCache,
)
from ecsexec.nodes.file_source import FileSourceConfig
from ecsexec.nodes.node import Node

__all__ = [
    "SOURCE_TYPES",
    "ApiFactory",
    "FileLoader",
    "NodeSource",
    "SourceConfig",
    "SourceContext",
    "SourceTable",
    "SourceType",
    "register_source_type",
    "source_type_of",
    "unregister_source_type",
]

ApiFactory = Callable[[EcsSourceConfig], EcsApi]
"""An ECS source's configuration -> the API client it discovers with (its region and
credentials)."""
FileLoader = Callable[[Path], list[Node]]
"""A resource file (resourcejson, resourceyaml, resourcexml) -> its nodes."""


class SourceConfig(Protocol):
    """A source type's configuration: a frozen dataclass, compared, hashed and cached."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


class NodeSource(Protocol):
    """One configured source, opened for one inventory run."""

    @property
    def label(self) -> str:
        """Names the source in warnings (an ECS source's region, a file's path)."""
        ...

    @property
    def refresh_interval(self) -> float:
        """Seconds its nodes may be served from the node cache; 0 means never cached."""
        ...

    def cache_key(self) -> str | None:
        """The node cache entry of this source (see ``config_cache_key``); None: uncached."""
        ...

    def discover(
        self, progress: ProgressFn | None = None
    ) -> tuple[list[Node], DiscoveryReport | None]:
        """Every node the source has now, and what discovery did (None: nothing to report).

        Raises :class:`ecsexec.errors.EcsexecError` when the source cannot be read; the
        inventory then serves the cached nodes, if any, with a warning.
        """
        ...


@dataclass
class SourceContext:
    """What sources are opened with: one per :meth:`Inventory.nodes` call."""

    api_factory: ApiFactory
    file_loader: FileLoader
    task_definitions: TaskDefinitionCache = field(default_factory=TaskDefinitionCache)


class SourceTable(Protocol):
    """One ``[[sources]]`` table as a source type's ``parse`` reads it.

    Every read checks the value's kind; every problem is recorded with the ``file:line``
    of its key and parsing goes on, so one load reports every error. Messages start with
    :attr:`label` (``[[sources]] #2``), as the configuration's other messages do.
    """

    @property
    def label(self) -> str: ...

    @property
    def aws(self) -> AwsSettings:
        """The source's effective AWS settings: its own (``aws=True`` types) or ``[aws]``'s."""
        ...

    def get(self, key: str) -> object:
        """The raw TOML value, or None."""
        ...

    def string(self, key: str) -> str | None:
        """A string, trimmed; None when absent or not a string (reported)."""
        ...

    def strings(self, key: str) -> tuple[str, ...] | None:
        """A list of strings or one comma-separated string, items trimmed, blanks dropped."""
        ...

    def number(
        self, key: str, *, minimum: float, maximum: float | None = None, integer: bool = False
    ) -> float | None: ...

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        """One of ``choices`` (``default`` when absent, or invalid: reported with a hint)."""
        ...

    def path(self, key: str) -> Path | None:
        """A path, relative to the configuration file's directory; None when absent/empty."""
        ...

    def fail(self, key: str | None, message: str) -> None:
        """Record an error at ``key``'s line (None: the table's ``[[sources]]`` line)."""
        ...


C = TypeVar("C")


@dataclass(frozen=True)
class SourceType(Generic[C]):
    """One registered ``[[sources]] type`` (see the module docstring)."""

    name: str
    config_type: type[C]
    parse: Callable[[SourceTable], C | None]
    open: Callable[[C, SourceContext], NodeSource]
    keys: tuple[str, ...] = ()
    aws: bool = False


_TYPES: dict[str, SourceType[Any]] = {}
SOURCE_TYPES: Mapping[str, SourceType[Any]] = MappingProxyType(_TYPES)
"""Every registered source type by its ``[[sources]] type`` name, in registration order."""


def register_source_type(
    name: str,
    config_type: type[C],
    *,
    parse: Callable[[SourceTable], C | None],
    open: Callable[[C, SourceContext], NodeSource],
    keys: Sequence[str] = (),
    aws: bool = False,
) -> SourceType[C]:
    """Make ``[[sources]] type = "<name>"`` parse into ``config_type`` and discover through
    ``open``. ``keys`` are the table keys ``parse`` reads (``type`` and ``name`` are
    always allowed); ``aws`` allows the ``[aws]`` keys too, resolved per docs/ecs-nodes.md §3.
    """
    if name in _TYPES:
        raise ValueError(f"source type {name!r} is already registered")
    for other in _TYPES.values():
        if other.config_type is config_type:
            raise ValueError(f"{config_type.__name__} is already the {other.name!r} source type")
    source_type = SourceType(name, config_type, parse, open, tuple(keys), aws)
    _TYPES[name] = source_type
    return source_type


def unregister_source_type(name: str) -> None:
    """Forget a registered type (for tests and plugins that clean up after themselves)."""
    _TYPES.pop(name, None)


def source_type_of(config: object) -> SourceType[Any]:
    """The registered type whose configuration class ``config`` is an instance of."""
    for source_type in _TYPES.values():
        if isinstance(config, source_type.config_type):
            return source_type
    raise TypeError(f"no node source type is registered for {type(config).__name__}")


register_source_type(
    "ecs",
    EcsSourceConfig,
    parse=ecs_source.parse_ecs_source,
    open=ecs_source.open_ecs_source,
    keys=ecs_source.SOURCE_KEYS,
    aws=True,
)
register_source_type(
    "file",
    FileSourceConfig,
    parse=file_source.parse_file_source,
    open=file_source.open_file_source,
    keys=file_source.SOURCE_KEYS,
)
