"""The node-source registry: a third ``[[sources]] type`` is one registration.

See docs/ecs-nodes.md §3.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ecsexec.config import CONFIG_NAME, load_config
from ecsexec.errors import ConfigurationError, CredentialsError, DiscoveryError, EcsexecError
from ecsexec.nodes.ecs_source import DiscoveryReport, EcsSourceConfig, ProgressFn
from ecsexec.nodes.file_source import FileSourceConfig
from ecsexec.nodes.inventory import Inventory, NodeCache
from ecsexec.nodes.node import Node
from ecsexec.nodes.sources import (
    SOURCE_TYPES,
    SourceContext,
    SourceTable,
    register_source_type,
    source_type_of,
    unregister_source_type,
)


@dataclass(frozen=True)
class StaticSourceConfig:
    """A made-up third type: nodes named in the configuration itself."""

    names: tuple[str, ...]
    role: str = "app"
    refresh_interval: float = 0.0


class StaticSource:
    """Counts its discoveries; fails on demand, to exercise the cache fallback."""

    discoveries = 0
    failing = False
    error: type[EcsexecError] = DiscoveryError

    def __init__(self, config: StaticSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context

    @property
    def label(self) -> str:
        return f"static {','.join(self.config.names)}"

    @property
    def refresh_interval(self) -> float:
        return self.config.refresh_interval

    def cache_key(self) -> str | None:
        return "static-" + "-".join(self.config.names)

    def discover(
        self, progress: ProgressFn | None = None
    ) -> tuple[list[Node], DiscoveryReport | None]:
        if StaticSource.failing:
            raise StaticSource.error("static source unavailable")
        StaticSource.discoveries += 1
        nodes = [Node(n, {"hostname": n, "role": self.config.role}) for n in self.config.names]
        return nodes, DiscoveryReport(containers=len(nodes), warnings=["static nodes"])


def parse_static(table: SourceTable) -> StaticSourceConfig | None:
    role = table.choice("role", ("app", "db"), "app")
    refresh = table.number("refresh_interval", minimum=0)
    names = table.strings("names")
    if not names:
        table.fail(None, f'{table.label}: a static source needs names = ["..."]')
        return None
    return StaticSourceConfig(names, role, 0.0 if refresh is None else refresh)


@pytest.fixture
def static_type() -> Iterator[None]:
    register_source_type(
        "static",
        StaticSourceConfig,
        parse=parse_static,
        open=StaticSource,
        keys=("names", "role", "refresh_interval"),
    )
    StaticSource.discoveries = 0
    StaticSource.failing = False
    StaticSource.error = DiscoveryError
    try:
        yield
    finally:
        unregister_source_type("static")


def write(directory: Path, text: str) -> Path:
    path = directory / CONFIG_NAME
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def no_api(config: EcsSourceConfig) -> None:
    raise AssertionError(f"no ECS source was configured, yet {config} asked for an API")


def inventory(sources: list[object], tmp_path: Path, **kwargs: object) -> Inventory:
    return Inventory(
        sources,  # type: ignore[arg-type]
        api_factory=no_api,  # type: ignore[arg-type]
        file_loader=lambda path: [Node(path.stem, {"hostname": "from-file"})],
        cache=NodeCache(tmp_path / "cache"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_built_in_types_in_order() -> None:
    assert list(SOURCE_TYPES)[:2] == ["ecs", "file"]
    assert SOURCE_TYPES["ecs"].aws and not SOURCE_TYPES["file"].aws
    assert source_type_of(EcsSourceConfig(region="us-east-1")).name == "ecs"
    assert source_type_of(FileSourceConfig(Path("n.yaml"))).name == "file"
    with pytest.raises(TypeError):
        SOURCE_TYPES["x"] = SOURCE_TYPES["ecs"]  # type: ignore[index]


def test_registering_twice_or_an_unknown_config_is_an_error(static_type: None) -> None:
    with pytest.raises(ValueError, match="'static' is already registered"):
        register_source_type("static", StaticSourceConfig, parse=parse_static, open=StaticSource)
    with pytest.raises(ValueError, match="already the 'static' source type"):
        register_source_type("other", StaticSourceConfig, parse=parse_static, open=StaticSource)
    with pytest.raises(TypeError, match="no node source type is registered for str"):
        source_type_of("nodes.yaml")


def test_third_type_parses_from_the_configuration(static_type: None, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [aws]
        region = "us-east-1"

        [[sources]]
        type = "static"
        name = "fixed"
        names = "a, b"
        role = "db"
        refresh_interval = 5
        """,
    )
    (source,) = load_config(path, environ={}).sources
    assert source.config == StaticSourceConfig(("a", "b"), "db", 5.0)
    assert source.name == "fixed" and source.origin == f"{path}:4"
    assert source.aws.region == "us-east-1"  # not an aws type: [aws]'s settings


def test_third_type_errors_name_file_line_and_choices(static_type: None, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[sources]]
        type = "static"
        role = "web"
        region = "us-east-1"

        [[sources]]
        type = "statik"
        """,
    )
    with pytest.raises(ConfigurationError) as info:
        load_config(path, environ={})
    text = str(info.value)
    # not an aws type: the [aws] keys are not its keys
    assert (
        f"{path}:4: [[sources]] #1: unknown key 'region'; choose one of type, name, names" in text
    )
    assert f"{path}:1: [[sources]] #1: a static source needs names" in text
    assert f"{path}:3: [[sources]] #1.role: 'web' is not valid; choose one of app, db" in text
    assert (
        f"{path}:7: [[sources]] #2: type 'statik' is not valid; choose one of ecs, file, "
        "static (did you mean 'static'?)"
    ) in text


def test_unknown_type_lists_the_registered_types(tmp_path: Path) -> None:
    path = write(tmp_path, '[[sources]]\ntype = "consul"\n')
    with pytest.raises(ConfigurationError, match=r":2: \[\[sources\]\] #1: type 'consul' is not "):
        load_config(path, environ={})
    with pytest.raises(ConfigurationError) as info:
        load_config(path, environ={})
    assert str(info.value).endswith("choose one of ecs, file")


def test_inventory_discovers_a_third_type(static_type: None, tmp_path: Path) -> None:
    sources: list[object] = [
        StaticSourceConfig(("a", "nodes")),
        FileSourceConfig(tmp_path / "nodes.yaml"),  # its node "nodes" replaces the static one
    ]
    nodes, report = inventory(sources, tmp_path).nodes()
    assert [(n.name, n.hostname) for n in nodes] == [("a", "a"), ("nodes", "from-file")]
    assert report.sources == 2 and report.warnings == ["static nodes"]
    assert [d.containers for d in report.discovery] == [2]
    assert not (tmp_path / "cache").exists()  # refresh_interval 0: never cached


def test_inventory_caches_a_third_type(static_type: None, tmp_path: Path) -> None:
    config = StaticSourceConfig(("a",), refresh_interval=30.0)
    clock = [1000.0]

    def run(refresh: bool = False) -> tuple[list[Node], list[str], int]:
        nodes, report = inventory(
            [config], tmp_path, refresh=refresh, clock=lambda: clock[0]
        ).nodes()
        return nodes, report.warnings, report.from_cache

    first, _, _ = run()
    clock[0] += 10
    again, _, from_cache = run()
    assert again == first and from_cache == 1 and StaticSource.discoveries == 1
    run(refresh=True)
    assert StaticSource.discoveries == 2
    StaticSource.failing = True
    clock[0] += 60
    stale, warnings, _ = run()
    assert stale == first
    assert warnings == [
        # cached by the forced refresh, 60 s before
        "static a: refresh failed (static source unavailable); using nodes cached 60 s ago"
    ]


def test_a_credentials_error_is_never_hidden_by_the_cache(
    static_type: None, tmp_path: Path
) -> None:
    # Sources build their API clients (and resolve credentials) only when they discover:
    # a failure there is the user's to fix, not a refresh to paper over with stale nodes.
    config = StaticSourceConfig(("a",), refresh_interval=30.0)
    clock = [1000.0]
    inventory([config], tmp_path, clock=lambda: clock[0]).nodes()
    StaticSource.failing, StaticSource.error = True, CredentialsError
    clock[0] += 60
    with pytest.raises(CredentialsError):
        inventory([config], tmp_path, clock=lambda: clock[0]).nodes()
