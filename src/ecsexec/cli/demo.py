"""``ecsexec demo``: the guided tour on a private, embedded sandbox."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Start a private sandbox, list nodes, run a command on some of them, stop."""
    click.echo("ecsexec demo: the sandbox is not built yet.")
