"""``ecsexec sandbox ...``: start, stop and inspect the local ECS region."""

from __future__ import annotations

import click


@click.group()
def sandbox() -> None:
    """Run a local ECS region (ECS API, message gateway, container agents)."""
