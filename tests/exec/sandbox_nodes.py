"""Helpers for exec tests: discover the sandbox's containers as nodes, build connectors."""

from __future__ import annotations

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import EcsApi
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.runner import ContainerTarget
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.nodes.filter import rank, select
from ecsexec.nodes.node import Node
from ecsexec.sandbox import Sandbox


def discover(sb: Sandbox, region: str = "us-east-1", clusters: tuple[str, ...] = ()) -> list[Node]:
    api = EcsApi(session_from_env(sb.env, region), region=region)
    nodes, _ = EcsNodeSource(EcsSourceConfig(region=region, clusters=clusters), api).discover()
    return nodes


def targets(sb: Sandbox, node_filter: str, region: str = "us-east-1") -> list[ContainerTarget]:
    chosen = rank(select(discover(sb, region), node_filter))
    assert chosen, f"no sandbox node matches {node_filter!r}"
    return [ContainerTarget.from_attributes(n.name, n.attributes) for n in chosen]


def pool(sb: Sandbox) -> ConnectorPool:
    env = sb.env
    return ConnectorPool(
        lambda region: session_from_env(env, region), default_region=env["AWS_DEFAULT_REGION"]
    )
