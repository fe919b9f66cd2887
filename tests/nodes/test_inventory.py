"""The sources the command-line flags describe (pure)."""

from __future__ import annotations

import pytest

from ecsexec.errors import DiscoveryError
from ecsexec.nodes.ecs_source import ContainerFilters, EcsSourceConfig
from ecsexec.nodes.inventory import FileSourceConfig, sources_from_flags


def test_flags_carry_the_source_filters_and_the_role_to_every_region() -> None:
    filters = ContainerFilters(
        filter_behavior="exclude", service_names=("web",), tags=(("team", "ops"),)
    )
    sources = sources_from_flags(
        regions=["us-east-1", "eu-west-1", "us-east-1"],
        clusters=["demo"],
        nodes_files=[],
        default_region=None,
        filters=filters,
        assume_role_arn="arn:aws:iam::123456789012:role/ops",
    )
    assert sources == [
        EcsSourceConfig(
            region=region,
            clusters=("demo",),
            filter_behavior="exclude",
            service_names=("web",),
            tags=(("team", "ops"),),
            assume_role_arn="arn:aws:iam::123456789012:role/ops",
        )
        for region in ("us-east-1", "eu-west-1")
    ]
    assert filters and not ContainerFilters()
    plain = sources_from_flags(regions=[], clusters=[], nodes_files=[], default_region="x-1")
    assert plain == [EcsSourceConfig(region="x-1")]


def test_a_nodes_file_replaces_discovery_and_no_region_is_an_error() -> None:
    files = sources_from_flags(
        regions=["us-east-1"], clusters=[], nodes_files=["n.yaml"], default_region=None
    )
    assert [type(s) for s in files] == [FileSourceConfig]
    with pytest.raises(DiscoveryError, match="no AWS region"):
        sources_from_flags(regions=[], clusters=[], nodes_files=[], default_region=None)
