"""Tests for the node model (docs/ecs-nodes.md §5, docs/node-filter.md §5 tag sets)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from ecsexec.nodes.node import (
    STANDARD_PROPERTIES,
    Node,
    is_blank,
    java_trim,
    split_tags,
    tag_set,
    utf16_key,
)


def test_standard_properties_are_attributes_under_document_names() -> None:
    node = Node(
        "web01",
        {
            "hostname": "10.0.0.5",
            "username": "root",
            "description": "d",
            "osFamily": "unix",
            "osName": "Linux",
            "osArch": "x86_64",
            "osVersion": "6.1",
            "ECS:Region": "us-west-1",
        },
        frozenset({"ecs"}),
    )
    assert (node.hostname, node.username, node.description) == ("10.0.0.5", "root", "d")
    assert (node.os_family, node.os_name, node.os_arch, node.os_version) == (
        "unix",
        "Linux",
        "x86_64",
        "6.1",
    )
    assert node.get("osFamily") == "unix"
    assert node.get("ECS:Region") == "us-west-1"
    assert node.get("nodename") == "web01"
    assert node.get("missing") is None
    assert next(iter(node.items())) == ("nodename", "web01")
    assert set(STANDARD_PROPERTIES) <= set(node.attributes)


def test_missing_standard_properties_are_none() -> None:
    node = Node("a")
    assert node.hostname is None
    assert node.os_arch is None
    assert node.tags == frozenset()
    assert dict(node.attributes) == {}


def test_node_is_immutable_and_hashable() -> None:
    attributes = {"k": "v"}
    node = Node("a", attributes, frozenset({"t"}))
    attributes["k"] = "changed"  # the node keeps its own copy
    assert node.attributes["k"] == "v"
    with pytest.raises(TypeError):
        node.attributes["k"] = "x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "b"  # type: ignore[misc]
    same = Node("a", {"k": "v"}, frozenset({"t"}))
    assert node == same
    assert hash(node) == hash(same)
    assert len({node, same}) == 1
    assert node != Node("a", {"k": "w"}, frozenset({"t"}))


def test_nodes_pickle_copy_and_convert() -> None:
    node = Node("a", {"k": "v"}, frozenset({"t"}))
    assert pickle.loads(pickle.dumps(node)) == node
    assert copy.deepcopy(node) == node
    assert copy.copy(node) == node
    assert dataclasses.asdict(node) == {"name": "a", "attributes": {"k": "v"}, "tags": {"t"}}
    for change in (
        lambda a: a.update(x="1"),
        lambda a: a.pop("k"),
        lambda a: a.clear(),
        lambda a: a.setdefault("x", "1"),
        lambda a: a.popitem(),
        lambda a: a.__delitem__("k"),
        lambda a: a.__ior__({"x": "1"}),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change(node.attributes)
    assert dict(node.attributes) == {"k": "v"}


def test_attribute_order_does_not_matter_for_equality() -> None:
    assert Node("a", {"x": "1", "y": "2"}) == Node("a", {"y": "2", "x": "1"})


def test_tags_are_the_trimmed_non_blank_tag_set() -> None:
    node = Node("a", tags=frozenset({" web ", "", "\t", "prod", "\x00x\x1f"}))
    assert node.tags == frozenset({"web", "prod", "x"})
    # Java-trim keeps U+00A0 (not <= U+0020), unlike str.strip().
    assert Node("a", tags=frozenset({"\xa0web"})).tags == frozenset({"\xa0web"})


def test_get_tags_is_rundecks_sorted_joined_attribute() -> None:
    assert Node("a", tags=frozenset({"web", "ecs", "Prod"})).get("tags") == "Prod, ecs, web"
    assert Node("a").get("tags") is None


@pytest.mark.parametrize("name", ["", " ", "\t\n", "\x00"])
def test_blank_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="blank"):
        Node(name)


def test_names_keep_surrounding_spaces() -> None:
    assert Node(" web ").name == " web "


@pytest.mark.parametrize("key", ["nodename", "tags"])
def test_reserved_keys_are_not_attributes(key: str) -> None:
    with pytest.raises(ValueError, match="not an attribute"):
        Node("a", {key: "x"})


def test_non_string_values_are_rejected() -> None:
    with pytest.raises(TypeError):
        Node("a", {"port": 8080})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        Node(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tag_set([1])  # type: ignore[list-item]


def test_replace_renormalises() -> None:
    node = dataclasses.replace(Node("a"), tags=frozenset({" b "}))
    assert node.tags == frozenset({"b"})


@pytest.mark.parametrize(
    ("text", "trimmed"),
    [
        ("  a b  ", "a b"),
        ("\x00\x01a\x1f ", "a"),
        ("\xa0a\xa0", "\xa0a\xa0"),  # NBSP is not stripped by Java's trim
        ("\u2003a", "\u2003a"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_java_trim(text: str, trimmed: str) -> None:
    assert java_trim(text) == trimmed
    assert is_blank(text) == (trimmed == "")


def test_is_blank_none() -> None:
    assert is_blank(None)


def test_split_tags() -> None:
    assert split_tags("ecs, fargate,,  web ") == frozenset({"ecs", "fargate", "web"})
    assert split_tags("") == frozenset()


def test_utf16_key_orders_like_java() -> None:
    # U+1F600 is a surrogate pair (D83D DE00) in UTF-16: it sorts before U+FFFD in Java.
    assert sorted(["\ufffd", "\U0001f600"], key=utf16_key) == ["\U0001f600", "\ufffd"]
    assert sorted(["b", "a", "B"], key=utf16_key) == ["B", "a", "b"]
