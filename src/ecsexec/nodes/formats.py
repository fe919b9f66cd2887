"""Read and write node documents: resourcejson, resourceyaml and resourcexml (ecs-nodes.md §5).

Writers and readers round-trip every node losslessly, except for values a format cannot
carry, which the writer refuses with ConfigurationError instead of corrupting:

* every format: a tag containing ``,`` (tags are written as one ``", "``-joined string);
* resourceyaml: attributes named ``attributes``, ``frameworkProject`` or ``class``
  (the reader ignores those keys);
* resourcexml: characters XML 1.0 forbids (most C0 controls, U+FFFE, U+FFFF, lone
  surrogates).

Readers report ``file:line`` (and column) where the format gives a position: JSON syntax
errors, every YAML and XML error. XML input with a DOCTYPE is rejected, so entity
expansion attacks cannot reach the parser.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal, NoReturn
from xml.parsers import expat

from ecsexec.errors import ConfigurationError
from ecsexec.nodes.node import STANDARD_PROPERTIES, Node, is_blank, tag_set

__all__ = [
    "dump_nodes",
    "load_nodes",
    "parse_resourcejson",
    "parse_resourcexml",
    "parse_resourceyaml",
]

Format = Literal["json", "yaml", "xml"]

_FORMAT_NAMES: Final[dict[str, Format]] = {
    "json": "json",
    "resourcejson": "json",
    "yaml": "yaml",
    "yml": "yaml",
    "resourceyaml": "yaml",
    "xml": "xml",
    "resourcexml": "xml",
}
_YAML_IGNORED_KEYS: Final = frozenset({"attributes", "frameworkProject", "class"})
# ecs-nodes.md §5: XML attributes of <node> that are standard properties (tags apart).
_XML_NODE_PROPERTIES: Final = (
    "hostname",
    "username",
    "description",
    "osArch",
    "osFamily",
    "osName",
    "osVersion",
)
# XML 1.0 "Char" production: everything else cannot appear in a document at all.
_XML_INVALID: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# XML attribute names we write: ASCII names without ":" (namespaces) or "." (ecs-nodes.md
# §5). Non-ASCII names are valid XML 1.0 5th edition but not to every parser (expat
# follows the 4th edition), so they go to <attribute> children like the rest.
_XML_NAME: Final = re.compile("[A-Za-z_][A-Za-z0-9_-]*")


def _fail(source: str, line: int | None, message: str, column: int | None = None) -> NoReturn:
    where = source
    if line is not None:
        where += f":{line}"
        if column is not None:
            where += f":{column}"
    raise ConfigurationError(f"{where}: {message}")


def _java_double(value: float) -> str:
    """Java's ``Double.toString`` (shortest digits, Java's layout) for JSON/YAML floats."""
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).rstrip("0") or "0"
    # Position of the decimal point relative to the start of ``text``.
    point = len(digits) + exponent
    prefix = "-" if sign else ""
    if 1e-3 <= abs(value) < 1e7:
        if point <= 0:
            return f"{prefix}0.{'0' * -point}{text}"
        whole, fraction = text[:point].ljust(point, "0"), text[point:]
        return f"{prefix}{whole}.{fraction or '0'}"
    return f"{prefix}{text[0]}.{text[1:] or '0'}E{point - 1}"


@dataclass
class _NodeBuilder:
    """A node being read: later keys replace earlier ones, like Rundeck's attribute map."""

    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()

    def build(self, source: str, line: int | None) -> Node:
        if is_blank(self.name):
            _fail(source, line, "node name is blank")
        return Node(self.name, self.attributes, self.tags)


def _add(nodes: dict[str, Node], node: Node) -> None:
    # ecs-nodes.md §5: a later node with the same name replaces the earlier one.
    nodes[node.name] = node


# --- resourcejson ----------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _json_text(value: object, source: str, where: str) -> str | None:
    """A JSON scalar as Rundeck stores it; None for nested values (dropped).

    ecs-nodes.md §5: scalars become text (``true``/``false``, numbers as Java prints
    them), ``null`` is an error, nested objects and arrays are dropped.
    """
    if value is None:
        _fail(source, None, f"{where} is null")
    return _scalar_text(value)


def _scalar_text(value: object) -> str | None:
    """A scalar as Rundeck's Java code prints it (``true``/``false``, Java doubles);
    None for anything that is not a bool, string or number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _java_double(value)
    return None


def _json_node(name: str, obj: dict[str, Any], source: str) -> Node:
    builder = _NodeBuilder(name)
    for key, value in obj.items():
        where = f"node {name!r} key {key!r}"
        if key == "nodename":
            text = _json_text(value, source, where)
            if text is not None:
                builder.name = text  # object form: an inner nodename overrides the key
        elif key == "tags":
            if isinstance(value, list):
                items = []
                for item in value:
                    text = _json_text(item, source, f"{where} item")
                    if text is not None:
                        items.append(text)
                builder.tags = tag_set(items)
            else:
                text = _json_text(value, source, where)
                if text is not None and not is_blank(text):
                    # ecs-nodes.md §5: a tags string splits on ", *" (other spaces kept).
                    builder.tags = tag_set(re.split(", *", text))
        else:
            text = _json_text(value, source, where)
            if text is not None:
                builder.attributes[key] = text
    return builder.build(source, None)


def parse_resourcejson(text: str, source: str = "<string>") -> list[Node]:
    """Read a resourcejson document: an object keyed by node name, or an array of nodes."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        _fail(source, exc.lineno, f"invalid JSON: {exc.msg}", exc.colno)
    except RecursionError:
        _fail(source, None, "invalid JSON: arrays or objects nested too deeply")
    except ValueError as exc:
        _fail(source, None, f"invalid JSON: {exc}")
    nodes: dict[str, Node] = {}
    # ecs-nodes.md §5: an object name -> node object, or an array of node objects.
    if isinstance(data, dict):
        for name, obj in data.items():
            if isinstance(obj, dict):  # non-object values are skipped
                _add(nodes, _json_node(name, obj, source))
    elif isinstance(data, list):
        for obj in data:
            if isinstance(obj, dict) and "nodename" in obj:
                name = _json_text(obj["nodename"], source, "nodename")
                if name is not None:
                    _add(nodes, _json_node(name, obj, source))
    else:
        _fail(source, None, "a resourcejson document is an object or an array of node objects")
    return list(nodes.values())


# --- resourceyaml (in ecsexec.nodes.yaml_format, imported when a YAML document is met) --


def parse_resourceyaml(text: str, source: str = "<string>") -> list[Node]:
    """Read a resourceyaml document (one or more YAML documents)."""
    from ecsexec.nodes.yaml_format import parse_resourceyaml as parse

    return parse(text, source)


# --- resourcexml ------------------------------------------------------------------------------


class _DoctypeRejected(Exception):
    pass


@dataclass
class _Element:
    tag: str
    attributes: dict[str, str]
    line: int
    text: list[str] = field(default_factory=list)
    children: list[_Element] = field(default_factory=list)


def _parse_xml_tree(data: bytes, source: str, *, encoding: str | None) -> _Element:
    """Parse with expat (the parser under ElementTree), keeping element line numbers."""
    parser = expat.ParserCreate(encoding)
    parser.buffer_text = True
    stack: list[_Element] = []
    roots: list[_Element] = []

    def reject_doctype(*_: object) -> None:
        raise _DoctypeRejected

    def start(tag: str, attributes: dict[str, str]) -> None:
        element = _Element(tag, attributes, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def data_handler(text: str) -> None:
        if stack:
            stack[-1].text.append(text)

    # No DOCTYPE means no entity declarations: nothing to expand, nothing external.
    parser.StartDoctypeDeclHandler = reject_doctype
    parser.EntityDeclHandler = reject_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data_handler
    try:
        parser.Parse(data, True)
    except (LookupError, ValueError, UnicodeError) as exc:
        # The declared encoding is not one Python can decode (an unknown name, a
        # multi-byte codec expat cannot take, a bytes-to-bytes codec), or the bytes do
        # not decode in it.
        _fail(
            source,
            parser.CurrentLineNumber,
            f"invalid XML: unsupported encoding or bytes that do not decode in it ({exc})",
        )
    except _DoctypeRejected:
        _fail(
            source, parser.CurrentLineNumber, "DOCTYPE declarations are not allowed in node files"
        )
    except expat.ExpatError as exc:
        _fail(source, exc.lineno, f"invalid XML: {expat.errors.messages[exc.code]}", exc.offset + 1)
    return roots[0]


def _xml_nodes(root: _Element, source: str) -> list[Node]:
    if root.tag != "project":
        _fail(source, root.line, f"the root element is <{root.tag}>, expected <project>")
    nodes: dict[str, Node] = {}
    for element in root.children:
        if element.tag != "node":
            continue
        name = element.attributes.get("name")
        if name is None:
            _fail(source, element.line, "<node> has no name attribute")
        builder = _NodeBuilder(name)
        pairs = [(k, v) for k, v in element.attributes.items() if k != "name"]
        for child in element.children:
            if child.tag != "attribute":
                continue
            key = child.attributes.get("name")
            if key is None:
                _fail(source, child.line, "<attribute> has no name attribute")
            value = child.attributes.get("value")
            pairs.append((key, "".join(child.text) if value is None else value))
        for key, value in pairs:
            if key == "tags":
                builder.tags = tag_set(value.split(","))
            elif key != "nodename":  # the name attribute is the node name
                builder.attributes[key] = value
        _add(nodes, builder.build(source, element.line))
    return list(nodes.values())


def parse_resourcexml(text: str, source: str = "<string>") -> list[Node]:
    """Read a resourcexml document: ``<project>`` with ``<node name=…>`` children."""
    # The text is already decoded: force UTF-8 whatever the XML declaration says.
    return _xml_nodes(
        _parse_xml_tree(text.encode("utf-8", "surrogatepass"), source, encoding="UTF-8"), source
    )


# --- loading and dumping -----------------------------------------------------------------------


def _format_of(path: Path, data: bytes) -> Format:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("json", "yaml", "yml", "xml"):
        return _FORMAT_NAMES[suffix]
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        return "xml"
    if head in (b"{", b"["):
        return "json"
    return "yaml"


def load_nodes(path: Path, fmt: str | None = None) -> list[Node]:
    """Read a node file; the format is ``fmt`` (``json``/``resourcejson``, ...) or guessed.

    Guessing uses the extension (``.json``, ``.yaml``/``.yml``, ``.xml``), else the first
    character (``<`` XML, ``{``/``[`` JSON, anything else YAML).
    """
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        _fail(source, None, f"cannot read node file: {exc.strerror or exc}")
    if fmt is None:
        kind = _format_of(path, data)
    elif fmt in _FORMAT_NAMES:
        kind = _FORMAT_NAMES[fmt]
    else:
        raise ConfigurationError(f"{source}: unknown node file format {fmt!r}")
    if kind == "xml":
        # Bytes: expat honours the document's own encoding declaration.
        return _xml_nodes(_parse_xml_tree(data, source, encoding=None), source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail(source, None, f"not UTF-8 text (byte {exc.start})")
    if kind == "json":
        return parse_resourcejson(text, source)
    return parse_resourceyaml(text, source)


def _check_tags(node: Node) -> str:
    for tag in node.tags:
        if "," in tag:
            raise ConfigurationError(
                f"node {node.name!r}: tag {tag!r} contains ',' and cannot be written"
            )
    return ", ".join(sorted(node.tags))


def _ordered(node: Node) -> dict[str, str]:
    """The document map of a node: nodename, standard properties, tags, the rest."""
    result = {"nodename": node.name}
    for key in STANDARD_PROPERTIES:
        if key in node.attributes:
            result[key] = node.attributes[key]
    tags = _check_tags(node)
    if tags:
        result["tags"] = tags
    for key, value in node.attributes.items():
        result.setdefault(key, value)
    return result


def _dump_json(nodes: Iterable[Node]) -> str:
    document = {node.name: _ordered(node) for node in nodes}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _dump_yaml(nodes: Iterable[Node]) -> str:
    from ecsexec.nodes.yaml_format import dump_resourceyaml

    return dump_resourceyaml(nodes)


def _xml_attribute_name_ok(key: str) -> bool:
    reserved = {"name", "nodename", "tags", *_XML_NODE_PROPERTIES}
    return (
        key not in reserved
        and not key.lower().startswith("xml")  # reserved names; xmlns would be a namespace
        and _XML_NAME.fullmatch(key) is not None
    )


def _dump_xml(nodes: Iterable[Node]) -> str:
    root = ET.Element("project")
    for node in nodes:
        for key, value in (("name", node.name), *node.attributes.items()):
            for text in (key, value):
                bad = _XML_INVALID.search(text)
                if bad:
                    raise ConfigurationError(
                        f"node {node.name!r}: resourcexml cannot carry character "
                        f"U+{ord(bad.group()):04X} (in {text!r})"
                    )
        attributes = {"name": node.name}
        for key in _XML_NODE_PROPERTIES:
            if key in node.attributes:
                attributes[key] = node.attributes[key]
        tags = _check_tags(node)
        if tags:
            attributes["tags"] = tags
        children = []
        for key, value in node.attributes.items():
            if key in _XML_NODE_PROPERTIES:
                continue  # written above
            if _xml_attribute_name_ok(key):
                attributes[key] = value
            else:
                children.append((key, value))
        element = ET.SubElement(root, "node", attributes)
        for key, value in children:
            # Always value="…": attribute values keep \r, \n and \t (ElementTree writes
            # character references), where element text would be normalised.
            ET.SubElement(element, "attribute", {"name": key, "value": value})
    if not len(root):
        return "<project/>\n"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def dump_nodes(nodes: Iterable[Node], fmt: Format) -> str:
    """Write nodes as resourcejson (``json``), resourceyaml (``yaml``) or resourcexml (``xml``).

    Raises ConfigurationError for a value the format cannot carry (see module docstring).
    A later node with the same name replaces an earlier one, as on reading.
    """
    nodes = list({node.name: node for node in nodes}.values())
    if fmt == "json":
        return _dump_json(nodes)
    if fmt == "yaml":
        return _dump_yaml(nodes)
    if fmt == "xml":
        return _dump_xml(nodes)
    raise ValueError(f"unknown node document format {fmt!r}")
