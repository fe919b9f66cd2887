"""``ecsexec demo``: the guided tour on a private, embedded sandbox.

It starts a sandbox in-process (free port, temporary state directory), lists the nodes,
runs commands on filtered sets with real exit codes, shows an actionable error, and stops
the sandbox. It never changes the user's environment and leaves nothing running.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
import time

import click
from rich.console import Console

from ecsexec.app import Client
from ecsexec.app.selection import SourceOverrides
from ecsexec.aws.clients import AwsSession, session_from_env
from ecsexec.cli.nodes import render_table
from ecsexec.cli.render import LiveText, summary_line, summary_table
from ecsexec.config import load_config
from ecsexec.exec.results import RunResult

THREAD_DUMP = (
    'pid=$(pgrep -o java) && jcmd "$pid" Thread.print '
    "| grep -A3 'Found one Java-level deadlock' | head -4"
)


def _step(console: Console, number: int, title: str, command: str) -> None:
    console.print()
    console.print(f"[bold cyan]{number}. {title}[/]")
    console.print(f"$ {command}", style="dim", markup=False)


async def _run(console: Console, client: Client, filter_text: str, command: str) -> RunResult:
    """One step: what it shows is exactly what it runs."""
    selection = await client.nodes(filter_text)
    with LiveText(sys.stdout.buffer, prefix=len(selection) > 1) as live:
        result = await client.run(
            selection, command, threads=16, rate=20, timeout=60, on_event=live
        )
    summary_table(result, sys.stdout)
    console.print(summary_line(result), markup=False)
    return result


def _shown(filter_text: str, command: str) -> str:
    return f"ecsexec run -F {shlex.quote(filter_text)} -- {shlex.quote(command)}"


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

    # botocore reads AWS_ENDPOINT_URL, AWS_CA_BUNDLE and the like straight from the
    # environment, so a user's own settings (LocalStack, `eval "$(ecsexec sandbox env)"`)
    # would send the demo's calls elsewhere. The demo's process forgets them; the user's
    # shell is untouched.
    for variable in [v for v in os.environ if v.startswith("AWS_")]:
        del os.environ[variable]
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

        client = Client(
            load_config(search=False, environ={}),
            sources=SourceOverrides(regions=tuple(sb.regions)),
            history=False,
            session_factory=factory,
        )
        asyncio.run(
            _tour(console, client, java=bool(shutil.which("java") and shutil.which("jcmd")))
        )

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


async def _tour(console: Console, client: Client, *, java: bool) -> None:
    async with client:
        _step(console, 1, "Discover every container as a node", "ecsexec nodes")
        everything = await client.nodes(refresh=True)
        render_table(everything.nodes, sys.stdout)

        web = ("ECS:Service-Name: web", 'echo "$HOSTNAME: $(uname -s)"')
        _step(
            console, 2, "Run a command on the web service's containers, in parallel", _shown(*web)
        )
        await _run(console, client, *web)

        api = ("ECS:Service-Name: api ECS:Container-Name: api", "ls /nonexistent")
        _step(
            console,
            3,
            "Real exit codes come back (ECS Exec itself never reports them)",
            _shown(*api),
        )
        await _run(console, client, *api)

        dump = ("ECS:Container-Image: spring.*", THREAD_DUMP)
        if not java:
            console.print("[yellow]java/jcmd are not on PATH: the orders JVM is not running,[/]")
            console.print("[yellow]so this step prints the JVM's absence instead.[/]")
            dump = ("ECS:Container-Image: spring.*", "pgrep -o java || exit 3")
        _step(
            console, 4, "The seed filter: a Java thread dump from spring containers", _shown(*dump)
        )
        await _run(console, client, *dump)

        worker = ("ECS:Service-Name: worker", "true")
        _step(
            console,
            5,
            "Errors say what to do (this container's exec agent is stopped)",
            _shown(*worker),
        )
        await _run(console, client, *worker)
