"""What several commands share: node options, building the engine, running it, errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import click

from ecsexec.app import Client, Run, Selection, SourceOverrides
from ecsexec.errors import EXIT_FAILED, EXIT_INTERRUPTED, exit_broken_pipe
from ecsexec.exec.dispatcher import DEFAULT_BURST, DEFAULT_RATE, DEFAULT_THREADS, DEFAULT_TIMEOUT
from ecsexec.exec.results import RunResult
from ecsexec.nodes.ecs_source import ContainerFilters
from ecsexec.nodes.node import Node

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class _StderrConsole:
    """rich's Console on stderr, made (and rich imported: ~16 ms of CPU) when first used:
    a run that prints nothing before its first ExecuteCommand does not wait for it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def is_terminal(self) -> bool:
        # Without a variable that makes rich decide otherwise, a stream that is no tty is
        # no terminal to rich either: answered without importing it.
        overrides = ("FORCE_TERMINAL", "FORCE_COLOR", "TTY_COMPATIBLE")
        if self._console is None and not any(name in os.environ for name in overrides):
            with contextlib.suppress(ValueError):  # a closed stream is no terminal
                if not sys.stderr.isatty():
                    return False
        return self.made().is_terminal

    def made(self) -> Console:
        console = self._console
        if console is None:
            from rich.console import Console

            console = self._console = Console(**self._options)
        return console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)


stderr = cast("Console", _StderrConsole(stderr=True, highlight=False, soft_wrap=True))


def stderr_console() -> Console:
    """The stderr Console itself, for rich's Progress and Live (which keep the console they
    are given, and may set attributes on it)."""
    return cast("_StderrConsole", stderr).made()


def escape(text: str) -> str:
    """rich's markup escape (rich is imported when something is printed)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


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


DISPATCH_OPTIONS: Final = ("threads", "rate", "burst", "timeout", "keepgoing")


def dispatch_options(
    *,
    at_once: str = "Sessions at once.",
    timeout: str = "Seconds per node; the session is terminated when it passes.",
    only: tuple[str, ...] = DISPATCH_OPTIONS,
) -> Callable[[F], F]:
    """``--threads``, ``--rate``, ``--burst``, ``--timeout`` and ``--keepgoing/--fail-fast``
    (those in ``only``), each defaulting to ecsexec.toml's ``[dispatch]``: one wording for
    every command that sends sessions to many nodes."""
    options = {
        "threads": click.option(
            "--threads",
            type=click.IntRange(1, 10_000),
            default=None,
            help=f"{at_once}  [default: [dispatch] threads, else {DEFAULT_THREADS}]",
        ),
        "rate": click.option(
            "--rate",
            type=click.FloatRange(0.1, 10_000),
            default=None,
            help="ExecuteCommand calls per second (halves on throttling, then recovers).  "
            f"[default: [dispatch] rate, else {DEFAULT_RATE:g}]",
        ),
        "burst": click.option(
            "--burst",
            type=click.IntRange(1, 10_000),
            default=None,
            help="ExecuteCommand calls that may start at once before --rate applies (a token "
            f"bucket, as ECS throttles).  [default: [dispatch] burst, else {DEFAULT_BURST}]",
        ),
        "timeout": click.option(
            "--timeout",
            type=click.FloatRange(0.1, None),
            default=None,
            help=f"{timeout}  [default: [dispatch] timeout, else {DEFAULT_TIMEOUT:g}]",
        ),
        "keepgoing": click.option(
            "--keepgoing/--fail-fast",
            default=None,
            help="Go on after a failed node, or stop starting new ones.  "
            "[default: [dispatch] keepgoing, else keepgoing]",
        ),
    }

    def decorate(func: F) -> F:
        for name in reversed(only):
            func = options[name](func)
        return func

    return decorate


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


def container_options(func: F) -> F:
    """``--task`` and ``--container``: one container named directly, with no discovery."""
    for option in reversed(
        [
            click.option(
                "--task",
                default=None,
                metavar="TASK",
                help="Run in this task (ARN or ID; with --cluster and --container) instead of "
                "the nodes a filter selects: one DescribeTasks, no listing.",
            ),
            click.option(
                "--container",
                default=None,
                metavar="NAME",
                help="The container of --task.",
            ),
        ]
    ):
        func = option(func)
    return func


@dataclass(frozen=True)
class NodeQuery:
    """The node options of one command line: where nodes come from, and the cache rule.

    ``task`` and ``container`` (``--task``/``--container``) name one container directly;
    its cluster is the one ``--cluster`` and its region the ``--region`` (or the default).
    """

    nodes_files: tuple[str, ...]
    regions: tuple[str, ...]
    clusters: tuple[str, ...]
    refresh: bool
    profile: str | None
    task: str | None = None
    container: str | None = None
    filters: ContainerFilters = field(default_factory=ContainerFilters)

    def check_direct(self) -> None:
        """``--task`` needs ``--container`` and one ``--cluster``, at most one ``--region``."""
        if self.container and not self.task:
            raise click.UsageError("--container goes with --task")
        if not self.task:
            return
        problems = []
        if not self.container:
            problems.append("--container NAME")
        if len(self.clusters) != 1:
            problems.append("exactly one --cluster")
        if len(self.regions) > 1:
            problems.append("at most one --region")
        if self.nodes_files:
            problems.append("no --nodes-file")
        if problems:
            raise click.UsageError(f"--task needs {', '.join(problems)}")

    async def direct_node(self, client: Client) -> Node | None:
        """The container ``--task``/``--container`` name, or None without ``--task``."""
        if not self.task or not self.container:
            return None
        return await client.container(
            self.task,
            self.container,
            cluster=self.clusters[0],
            region=self.regions[0] if self.regions else None,
        )

    def client(self) -> Client:
        """The engine for this command line (``--config``, ``--profile`` and the sources)."""
        return Client(
            config_path=context_config_path(),
            profile=self.profile,
            sources=SourceOverrides(self.nodes_files, self.regions, self.clusters, self.filters),
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
    # docs/node-filter.md §8: warnings go to stderr and never change the result.
    if os.environ.get(FILTER_WARNINGS_ENV, "on") != "off":
        warnings += selection.warnings
    show_warnings(warnings)


def show_warnings(warnings: list[str] | tuple[str, ...]) -> None:
    for warning in warnings:
        stderr.print(f"[yellow]warning:[/] {escape(warning)}")


def confirm_many(what: str, count: int, yes: bool) -> None:
    """On a terminal, ask before running on more than :data:`CONFIRM_OVER` containers.

    Answering no exits 1 ("aborted": nothing ran); Ctrl-C at the prompt exits 130.
    """
    if count <= CONFIRM_OVER or yes or not sys.stdin.isatty():
        return
    if not click.confirm(f"Run {what} on {count} containers?", err=True):
        stderr.print("aborted")
        sys.exit(EXIT_FAILED)


STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CLEANUP_BOUND: Final = 10.0  # seconds to end every open session before giving up on them


def run_engine(query: NodeQuery, main: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``main`` with the engine on an event loop.

    Until a run starts (discovery, a confirmation prompt), SIGTERM and SIGHUP end the
    process as Ctrl-C does; nothing is running remotely yet. A run is awaited through
    :func:`interruptible`.
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

    try:
        return asyncio.run(wrapper())
    except BrokenPipeError:
        # The engine has ended the run and its sessions; leave as `cat | head` does (click
        # would turn this into a silent exit 1, which means "a command failed" here).
        exit_broken_pipe()


class _Interrupts:
    """What SIGINT, SIGTERM and SIGHUP do while a run is going.

    The first stops the run: the engine terminates every open session, in parallel, and
    returns what it has. Later ones do not abandon that cleanup (it would leave sessions
    and their processes running); a third Ctrl-C, or cleanup taking longer than
    :data:`CLEANUP_BOUND`, forces the exit and names the sessions that may still run.
    """

    def __init__(self, client: Client, run: Run) -> None:
        self.client = client
        self.run = run
        self.count = 0
        self.interrupts = 0

    def __call__(self, signum: int) -> None:
        self.count += 1
        self.interrupts += signum == signal.SIGINT
        name = signal.Signals(signum).name
        if self.count == 1:
            stderr.print(
                f"[yellow]{name}: interrupted; ending every open session "
                "(Ctrl-C twice more forces the exit)[/]"
            )
            self.run.cancel()
            asyncio.get_running_loop().call_later(CLEANUP_BOUND, self.force, "took too long")
        elif self.interrupts >= 3:
            self.force("forced by a third Ctrl-C")
        else:
            open_now = len(self.client.open_sessions())
            stderr.print(f"[yellow]{name}: still ending {open_now} session(s); please wait[/]")

    def force(self, why: str) -> None:
        left = self.client.open_sessions()
        stderr.print(f"[red]exit {why}; these sessions may still be running:[/]")
        for node, session_id in left:
            stderr.print(f"  {escape(node)} {escape(session_id or '(session id not known yet)')}")
        stderr.print("[red]ecsexec history cleanup RUN_ID terminates them later[/]")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # the loop is stuck in cleanup: leave without it


async def interruptible(client: Client, run: Run) -> RunResult:
    """Await ``run`` with the stop signals handled by :class:`_Interrupts`."""
    loop = asyncio.get_running_loop()
    interrupts = _Interrupts(client, run)
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, interrupts, signum)
    try:
        return await run
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
