"""resourceyaml's own module; tests/nodes/test_formats.py covers the format through formats."""

from __future__ import annotations

from ecsexec.nodes import formats
from ecsexec.nodes.node import Node
from ecsexec.nodes.yaml_format import dump_resourceyaml, parse_resourceyaml


def test_formats_hands_yaml_to_this_module_both_ways() -> None:
    node = Node("web-1", {"hostname": "10.0.0.1", "ECS:Cluster-Name": "demo"}, frozenset({"a"}))
    text = dump_resourceyaml([node])
    assert formats.dump_nodes([node], "yaml") == text
    assert parse_resourceyaml(text, "nodes.yaml") == formats.parse_resourceyaml(text) == [node]
