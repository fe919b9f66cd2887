"""``ecsexec demo``: the guided tour on a private, embedded sandbox.

It starts a sandbox in-process (free port, temporary state directory), lists the nodes,
runs commands on filtered sets with real exit codes, shows an actionable error, and stops
the sandbox. It never changes the user's environment and leaves nothing running.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time

import click
from rich.console import Console

from ecsexec.aws.clients import AwsSession, session_from_env
from ecsexec.cli.common import NodeQuery, apply_filter, load_inventory
from ecsexec.cli.nodes import render_table
from ecsexec.cli.run import LiveText, summary_line, summary_table, targets_for
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.dispatcher import DispatchOptions, dispatch
from ecsexec.exec.results import RunResult
from ecsexec.exec.wrap import wrap
from ecsexec.nodes.node import Node

THREAD_DUMP = (
    'pid=$(pgrep -o java) && jcmd "$pid" Thread.print '
    "| grep -A3 'Found one Java-level deadlock' | head -4"
)


def _step(console: Console, number: int, title: str, command: str) -> None:
    console.print()
    console.print(f"[bold cyan]{number}. {title}[/]")
    console.print(f"[dim]$ {command}[/]")


def _run(
    nodes: list[Node],
    filter_text: str,
    command: str,
    pool: ConnectorPool,
) -> RunResult:
    selected = apply_filter(nodes, filter_text)
    with LiveText(sys.stdout, prefix=len(selected) > 1, group=False, total=0) as live:
        result = asyncio.run(
            dispatch(
                pool,
                targets_for(selected),
                wrap(command),
                options=DispatchOptions(threads=16, rate=20, timeout=60),
                on_event=live,
            )
        )
    console = Console(highlight=False, width=160)
    summary_table(result, console)
    console.print(summary_line(result))
    return result


@click.command()
@click.option(
    "--initial-wait",
    type=float,
    default=1.0,
    show_default=True,
    help="The agent's delay before first output (1 s on AWS).",
)
def demo(initial_wait: float) -> None:
    """Start a private sandbox, list nodes, run commands on filtered sets, then stop it."""
    from ecsexec.sandbox import Sandbox

    console = Console(highlight=False, soft_wrap=True)
    started = time.monotonic()
    console.print("[bold]ecsexec demo[/]: a private sandbox ECS region, no AWS account needed")
    with Sandbox(process=False, initial_wait=initial_wait) as sb:
        console.print(f"sandbox ready at {sb.endpoint_url} (regions: {', '.join(sb.regions)})")
        for notice in sb.notices:
            console.print(f"[yellow]note:[/] {notice}")
        env = sb.env

        def factory(region: str) -> AwsSession:
            return session_from_env(env, region)

        query = NodeQuery((), tuple(sb.regions), (), True, None)

        _step(console, 1, "Discover every container as a node", "ecsexec nodes")
        nodes = load_inventory(
            query, session_factory=factory, default_region=env["AWS_DEFAULT_REGION"]
        )
        render_table(apply_filter(nodes, None), Console(width=250, soft_wrap=False))
        pool = ConnectorPool(factory, default_region=env["AWS_DEFAULT_REGION"])

        _step(
            console,
            2,
            "Run a command on the web service's containers, in parallel",
            "ecsexec run -F 'ECS:Service-Name: web' -- 'echo \"$HOSTNAME: $(uname -s)\"'",
        )
        _run(nodes, "ECS:Service-Name: web", 'echo "$HOSTNAME: $(uname -s)"', pool)

        _step(
            console,
            3,
            "Real exit codes come back (ECS Exec itself never reports them)",
            "ecsexec run -F 'ECS:Service-Name: api' -- 'ls /nonexistent'",
        )
        _run(nodes, "ECS:Service-Name: api ECS:Container-Name: api", "ls /nonexistent", pool)

        java = shutil.which("java") is not None and shutil.which("jcmd") is not None
        _step(
            console,
            4,
            "The seed filter: a Java thread dump from spring containers",
            "ecsexec run -F 'ECS:Container-Image: spring.*' -- '<jcmd Thread.print>'",
        )
        if java:
            _run(nodes, "ECS:Container-Image: spring.*", THREAD_DUMP, pool)
        else:
            console.print("[yellow]java/jcmd are not on PATH: the orders JVM is not running,[/]")
            console.print("[yellow]so this step prints the JVM's absence instead.[/]")
            _run(nodes, "ECS:Container-Image: spring.*", "pgrep -o java || exit 3", pool)

        _step(
            console,
            5,
            "Errors say what to do (this container's exec agent is stopped)",
            "ecsexec run -F 'ECS:Service-Name: worker' -- 'true'",
        )
        _run(nodes, "ECS:Service-Name: worker", "true", pool)

        stats = sb.stats()
        console.print()
        console.print(
            f"sandbox stats: {stats['sessions']['opened']} sessions, "
            f"{sum(a['calls'] for a in stats['api'].get('ecs', {}).values())} ECS API calls"
        )
    console.print(
        f"[bold green]demo finished in {time.monotonic() - started:.1f} s[/]; "
        "the sandbox is stopped. Next: ecsexec sandbox up --detach"
    )
