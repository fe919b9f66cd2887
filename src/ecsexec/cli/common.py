"""What several commands share: node options, building the engine, running it, errors."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from ecsexec.app import Client, Selection, SourceOverrides

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

CONFIG_META = "ecsexec.config_path"
FILTER_WARNINGS_ENV = "ECSEXEC_FILTER_WARNINGS"  # "off" silences node-filter warnings
CONFIRM_OVER = 20  # nodes; on a TTY, more than this asks first


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
    """The node options of one command line: where nodes come from, and the cache rule."""

    nodes_files: tuple[str, ...]
    regions: tuple[str, ...]
    clusters: tuple[str, ...]
    refresh: bool
    profile: str | None

    def client(self) -> Client:
        """The engine for this command line (``--config``, ``--profile`` and the sources)."""
        return Client(
            config_path=context_config_path(),
            profile=self.profile,
            sources=SourceOverrides(self.nodes_files, self.regions, self.clusters),
        )


async def select_nodes(
    client: Client,
    query: NodeQuery,
    filter_text: str | None,
    *,
    include_precedence: bool = False,
    rank_attribute: str = "nodename",
    rank_order: str = "ascending",
) -> Selection:
    """The engine's selection, with discovery progress on a terminal and warnings shown."""
    kwargs: dict[str, Any] = {
        "refresh": query.refresh,
        "include_precedence": include_precedence,
        "rank_attribute": rank_attribute,
        "rank_order": rank_order,
    }
    if stderr.is_terminal and not query.nodes_files:
        with stderr.status("discovering ECS containers…") as status:

            def progress(cluster: str, described: int, listed: int) -> None:
                status.update(f"discovering ECS containers… {cluster}: {described}/{listed} tasks")

            selection = await client.nodes(filter_text, progress=progress, **kwargs)
    else:
        selection = await client.nodes(filter_text, **kwargs)
    show_selection_warnings(selection)
    return selection


def show_selection_warnings(selection: Selection) -> None:
    warnings = list(selection.discovery_warnings)
    # node-filter rules §8: warnings go to stderr and never change the result.
    if os.environ.get(FILTER_WARNINGS_ENV, "on") != "off":
        warnings += selection.warnings
    show_warnings(warnings)


def show_warnings(warnings: list[str] | tuple[str, ...]) -> None:
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")


def confirm_many(what: str, count: int, yes: bool) -> None:
    """On a terminal, ask before running on more than :data:`CONFIRM_OVER` containers."""
    if count > CONFIRM_OVER and not yes and sys.stdin.isatty():
        click.confirm(f"Run {what} on {count} containers?", abort=True, err=True)


def run_engine(query: NodeQuery, main: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``main`` with the engine on an event loop.

    SIGTERM (``timeout``, a CI runner) and SIGHUP (a closed terminal, a dropped SSH
    connection) end it as Ctrl-C does: the engine terminates every open session and
    returns what it has.
    """

    async def wrapper() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGHUP)
        for signum in handled:
            loop.add_signal_handler(signum, task.cancel)
        try:
            async with query.client() as client:
                return await main(client)
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    return asyncio.run(wrapper())


def fail(message: str, code: int = 2) -> None:
    stderr.print(f"[red]error:[/] {escape(message)}")
    sys.exit(code)
