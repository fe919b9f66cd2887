"""Did-you-mean hints for filters (pure): they help, and never change a selection."""

from __future__ import annotations

from ecsexec.nodes.filter import parse_filter, select
from ecsexec.nodes.filter_hints import filter_hints
from ecsexec.nodes.node import Node

NODES = [
    Node("app-1", {"ECS:Service-Name": "web", "ECS:Cluster-Name": "demo"}),
    Node("app-2", {"ECS:Service-Name": "api", "ECS:Cluster-Name": "demo"}),
]


def hints(text: str) -> list[str]:
    flt = parse_filter(text)
    return filter_hints(flt, NODES, select(NODES, flt))


def test_a_near_miss_or_wrong_case_key_gets_a_did_you_mean() -> None:
    assert hints("ECS:Servic-Name: web") == [
        'key "ECS:Servic-Name": did you mean "ECS:Service-Name: web"?'
    ]
    assert hints("ecs:service-name: web") == [
        'key "ecs:service-name": did you mean "ECS:Service-Name: web"?'
    ]
    assert hints("!ecs:cluster-name: demo") == [
        'key "ecs:cluster-name": did you mean "!ECS:Cluster-Name: demo"?'
    ]


def test_a_bare_word_that_is_another_attributes_value_gets_a_hint() -> None:
    assert hints("web") == ['no node is named "web"; did you mean "ECS:Service-Name: web"?']
    assert hints("app-1") == []  # it selects a node: nothing to hint at
    assert hints("nothing-like-it") == []


def test_a_key_without_a_value_explains_why_nothing_is_selected() -> None:
    (hint,) = hints("name: ")
    assert "selects no node" in hint and "-F '.*'" in hint


def test_nothing_to_hint_for_a_good_filter() -> None:
    assert hints("ECS:Service-Name: web") == []
