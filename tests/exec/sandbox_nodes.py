"""Helpers for exec tests: discover the sandbox's containers as nodes, build connectors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.runner import ContainerTarget
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.nodes.filter import rank, select
from ecsexec.nodes.node import Node
from ecsexec.sandbox import Sandbox

T = TypeVar("T")


def discover(sb: Sandbox, region: str = "us-east-1", clusters: tuple[str, ...] = ()) -> list[Node]:
    api = EcsApi(session_from_env(sb.env, region), region=region)
    nodes, _ = EcsNodeSource(EcsSourceConfig(region=region, clusters=clusters), api).discover()
    return nodes


def targets(sb: Sandbox, node_filter: str, region: str = "us-east-1") -> list[ContainerTarget]:
    chosen = rank(select(discover(sb, region), node_filter))
    assert chosen, f"no sandbox node matches {node_filter!r}"
    return [ContainerTarget.from_attributes(n.name, n.attributes) for n in chosen]


def pool(sb: Sandbox) -> ConnectorPool:
    """Connectors for the sandbox's regions. Close it on the loop that used it:
    ``async with pool(sb) as connectors:`` (or :func:`with_pool`)."""
    env = sb.env
    return ConnectorPool(
        lambda region: session_from_env(env, region), default_region=env["AWS_DEFAULT_REGION"]
    )


def with_pool(sb: Sandbox, body: Callable[[ConnectorPool], Awaitable[T]]) -> T:
    """``asyncio.run(body(connectors))``, the connectors closed before the loop ends."""

    async def main() -> T:
        async with pool(sb) as connectors:
            return await body(connectors)

    return asyncio.run(main())
