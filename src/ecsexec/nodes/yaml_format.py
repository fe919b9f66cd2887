"""resourceyaml (ecs-nodes.md §5) with PyYAML: the reader and writer behind ecsexec.nodes.formats.

Apart from the other formats because importing PyYAML cost every ``ecsexec run`` ~10 ms
of start-up, for documents most runs never read: :mod:`ecsexec.nodes.formats` imports
this module when a YAML document is met.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

import yaml

from ecsexec.errors import ConfigurationError
from ecsexec.nodes.formats import (
    _YAML_IGNORED_KEYS,
    _add,
    _fail,
    _NodeBuilder,
    _ordered,
    _scalar_text,
)
from ecsexec.nodes.node import Node, tag_set

__all__ = ["dump_resourceyaml", "parse_resourceyaml"]


class _YamlLoader(yaml.SafeLoader):
    """Safe loading that keeps unquoted timestamps as their source text."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    # Rundeck (Java) would print a java.util.Date in its local zone; keeping the text
    # the user wrote is the only portable reading.
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _yaml_line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _yaml_scalar(loader: _YamlLoader, node: yaml.Node, source: str) -> str | None:
    """A YAML scalar as text (``true``/``false``, Java numbers); None for null."""
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        _fail(source, _yaml_line(node), f"unsupported YAML value ({exc.problem}); quote it")
    if value is None:
        return None
    text = _scalar_text(value)
    if text is not None:
        return text
    _fail(
        source, _yaml_line(node), f"unsupported YAML value of type {type(value).__name__}; quote it"
    )


def _yaml_node(
    loader: _YamlLoader, name: str | None, mapping: yaml.MappingNode, source: str, line: int
) -> Node:
    loader.flatten_mapping(mapping)  # resolve "<<" merge keys
    builder = _NodeBuilder(name or "")
    seen_name = name is not None
    for key_node, value_node in mapping.value:
        if not isinstance(key_node, yaml.ScalarNode):
            _fail(source, _yaml_line(key_node), "attribute names must be scalars")
        key = _yaml_scalar(loader, key_node, source)
        if key is None:
            _fail(source, _yaml_line(key_node), "attribute name is null")
        if key in _YAML_IGNORED_KEYS:
            continue  # ecs-nodes.md §5: attributes, frameworkProject, class are ignored
        if key == "tags":
            if isinstance(value_node, yaml.SequenceNode):
                items = [
                    text
                    for item in value_node.value
                    if isinstance(item, yaml.ScalarNode)
                    and (text := _yaml_scalar(loader, item, source)) is not None
                ]
                builder.tags = tag_set(items)
            elif isinstance(value_node, yaml.ScalarNode):
                text = _yaml_scalar(loader, value_node, source)
                if text is not None:
                    is_string = isinstance(loader.construct_object(value_node), str)
                    builder.tags = tag_set(text.split(",") if is_string else [text])
            continue
        if not isinstance(value_node, yaml.ScalarNode):
            continue  # nested maps and lists are dropped
        text = _yaml_scalar(loader, value_node, source)
        if text is None:
            continue  # null values are not set
        if key == "nodename":
            if name is None:
                builder.name = text
                seen_name = True
            continue  # map form: the key wins over an inner nodename
        builder.attributes[key] = text
    if not seen_name:
        _fail(source, line, "node has no nodename")
    return builder.build(source, line)


def parse_resourceyaml(text: str, source: str = "<string>") -> list[Node]:
    """Read a resourceyaml document (one or more YAML documents)."""
    nodes: dict[str, Node] = {}
    loader: _YamlLoader | None = None
    try:
        loader = _YamlLoader(text)  # the reader rejects forbidden characters here
        while loader.check_node():
            root = loader.get_node()
            if isinstance(root, yaml.MappingNode):
                loader.flatten_mapping(root)
                for key_node, value_node in root.value:
                    if not isinstance(key_node, yaml.ScalarNode):
                        _fail(source, _yaml_line(key_node), "node names must be scalars")
                    name = _yaml_scalar(loader, key_node, source)
                    if name is None:
                        _fail(source, _yaml_line(key_node), "node name is null")
                    if not isinstance(value_node, yaml.MappingNode):
                        _fail(source, _yaml_line(value_node), f"node {name!r} is not a map")
                    _add(nodes, _yaml_node(loader, name, value_node, source, _yaml_line(key_node)))
            elif isinstance(root, yaml.SequenceNode):
                for item in root.value:
                    if not isinstance(item, yaml.MappingNode):
                        _fail(source, _yaml_line(item), "a node list holds node maps")
                    _add(nodes, _yaml_node(loader, None, item, source, _yaml_line(item)))
            # Other documents (scalars, empty documents) are ignored.
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        _fail(source, line, f"invalid YAML: {exc.problem or exc.context}", column)
    except yaml.YAMLError as exc:
        _fail(source, None, f"invalid YAML: {exc}")
    except RecursionError:
        _fail(source, None, "invalid YAML: nested too deeply")
    finally:
        if loader is not None:
            loader.dispose()
    return list(nodes.values())


class _YamlDumper(yaml.SafeDumper):
    pass


# Keys that stay plain (as in ecs-nodes.md §5's example) when YAML reads them back as the
# same string; every other scalar is double-quoted, the only style that escapes line
# breaks such as U+0085 instead of folding them.
_PLAIN_KEY: Final = re.compile("[A-Za-z_][A-Za-z0-9_.:/-]*")
_STR_TAG: Final = "tag:yaml.org,2002:str"


_RESOLVER: Final = yaml.resolver.Resolver()


def _yaml_key(key: str) -> yaml.ScalarNode:
    tag = _RESOLVER.resolve(yaml.ScalarNode, key, (True, False))  # type: ignore[no-untyped-call]
    plain = _PLAIN_KEY.fullmatch(key) is not None and not key.endswith(":") and tag == _STR_TAG
    return yaml.ScalarNode(_STR_TAG, key, style=None if plain else '"')


def _yaml_map(pairs: Sequence[tuple[yaml.ScalarNode, yaml.Node]]) -> yaml.MappingNode:
    return yaml.MappingNode("tag:yaml.org,2002:map", list(pairs), flow_style=False)


def dump_resourceyaml(nodes: Iterable[Node]) -> str:
    """Write ``nodes`` as one resourceyaml document (see :func:`formats.dump_nodes`)."""
    pairs: list[tuple[yaml.ScalarNode, yaml.Node]] = []
    for node in nodes:
        for key in _YAML_IGNORED_KEYS & node.attributes.keys():
            raise ConfigurationError(
                f"node {node.name!r}: resourceyaml cannot carry an attribute named {key!r}"
            )
        items = [
            (_yaml_key(k), yaml.ScalarNode(_STR_TAG, v, style='"'))
            for k, v in _ordered(node).items()
        ]
        pairs.append((_yaml_key(node.name), _yaml_map(items)))
    if not pairs:
        return "{}\n"
    text: str = yaml.serialize(
        _yaml_map(pairs), Dumper=_YamlDumper, allow_unicode=True, width=2**30
    )
    return text
