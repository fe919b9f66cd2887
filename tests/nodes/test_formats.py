"""Tests for the resource document formats (docs/ecs-nodes.md §5): reading, writing, round trips."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.errors import ConfigurationError
from ecsexec.nodes.formats import (
    dump_nodes,
    load_nodes,
    parse_resourcejson,
    parse_resourcexml,
    parse_resourceyaml,
)
from ecsexec.nodes.node import Node, is_blank

FAST = settings(max_examples=120, deadline=None)

# docs/ecs-nodes.md §5, verbatim (two long lines are split at a comma).
SPEC_JSON = """{"nginx-3b4196bd-4a50-46a2-a8fb-024cd43a42e1": {
  "nodename": "nginx-3b4196bd-4a50-46a2-a8fb-024cd43a42e1", "hostname": "10.0.1.23",
  "username": "root",
  "osFamily": "unix", "osName": "Linux", "osArch": "x86_64", "tags": "ecs, fargate",
  "node-executor": "ecsexec-node-executor", "file-copier": "ecsexec-file-copier",
  "ECS:Container-Image": "nginx:latest",
  "ECS:CPU": "256", "ECS:Memory-Reservation": "512", "ECS:Task-Launch-Type": "FARGATE",
  "ECS:Task-ID": "cef73b218edc4475835d1d83814d501c", "ECS:Tag:team": "web",
  "ECS:Task-Tags": "[{\\"key\\":\\"team\\",\\"value\\":\\"web\\"}]",
  "ECS:Started-At": "2024-05-01T12:34:56.789Z"}}
"""
SPEC_YAML = """web01:
  nodename: "web01"
  hostname: "10.0.0.5"
  tags: "prod, web"
  app-port: "8080"
"""
SPEC_XML = """<project>
  <node name="web01" hostname="10.0.0.5" username="root" tags="prod, web" role="web">
    <attribute name="ECS:Region" value="us-west-1"/>
  </node>
</project>
"""

WEB01 = Node(
    "web01",
    {"hostname": "10.0.0.5", "username": "root", "role": "web", "ECS:Region": "us-west-1"},
    frozenset({"prod", "web"}),
)


# --- the spec's examples -------------------------------------------------------------------------


def test_spec_json_example() -> None:
    [node] = parse_resourcejson(SPEC_JSON)
    assert node.name == "nginx-3b4196bd-4a50-46a2-a8fb-024cd43a42e1"
    assert node.tags == frozenset({"ecs", "fargate"})
    assert node.os_arch == "x86_64"
    assert node.attributes["ECS:Task-Tags"] == '[{"key":"team","value":"web"}]'
    assert "nodename" not in node.attributes
    assert parse_resourcejson(dump_nodes([node], "json")) == [node]


def test_spec_yaml_example() -> None:
    assert parse_resourceyaml(SPEC_YAML) == [
        Node("web01", {"hostname": "10.0.0.5", "app-port": "8080"}, frozenset({"prod", "web"}))
    ]


def test_spec_xml_example() -> None:
    assert parse_resourcexml(SPEC_XML) == [WEB01]


# --- writing -------------------------------------------------------------------------------------


def test_dump_json_layout() -> None:
    node = Node(
        "n1",
        {"ECS:CPU": "256", "osFamily": "unix", "hostname": "h", "z": "1"},
        frozenset({"web", "ecs", "b"}),
    )
    text = dump_nodes([node], "json")
    assert text.endswith("\n")
    document = json.loads(text)
    assert list(document) == ["n1"]
    # nodename, standard properties in order, tags (sorted, ", "), then the rest.
    assert list(document["n1"].items()) == [
        ("nodename", "n1"),
        ("hostname", "h"),
        ("osFamily", "unix"),
        ("tags", "b, ecs, web"),
        ("ECS:CPU", "256"),
        ("z", "1"),
    ]
    assert "é" in dump_nodes([Node("é")], "json")  # not \u-escaped


def test_dump_yaml_quotes_every_value() -> None:
    text = dump_nodes([Node("web01", {"app-port": "8080", "on": "yes"}, frozenset({"w"}))], "yaml")
    assert text == ('web01:\n  nodename: "web01"\n  tags: "w"\n  app-port: "8080"\n  "on": "yes"\n')
    # Keys that YAML would read differently, or that hold line breaks, are quoted too.
    odd = dump_nodes([Node("1", {"a\x85b": "c", "ECS:CPU": "1", "x: y": "z"})], "yaml")
    assert odd.splitlines()[:2] == ['"1":', '  nodename: "1"']
    assert '"a\\Nb"' in odd  # NEL escaped, never folded into a space
    assert parse_resourceyaml(odd)[0].attributes["a\x85b"] == "c"
    assert '  ECS:CPU: "1"' in odd
    assert '  "x: y": "z"' in odd
    assert yaml.safe_load(text)["web01"]["app-port"] == "8080"


def test_dump_xml_layout() -> None:
    node = Node(
        "web01",
        {"hostname": "10.0.0.5", "role": "web", "ECS:Region": "us-west-1", "a.b": "1"}
        | {"name": "n", "xmlns": "x", "2x": "y", "é-ok": "z"},
        frozenset({"web", "prod"}),
    )
    text = dump_nodes([node], "xml")
    assert text.startswith('<project>\n  <node name="web01" hostname="10.0.0.5" tags="prod, web"')
    assert 'role="web"' in text
    # Only ASCII names become XML attributes (expat rejects some 5th-edition names).
    for child in ("ECS:Region", "a.b", "name", "xmlns", "2x", "é-ok"):
        assert f'<attribute name="{child}" value=' in text
    assert parse_resourcexml(text) == [node]


@pytest.mark.parametrize(
    ("fmt", "empty"), [("json", "{}\n"), ("yaml", "{}\n"), ("xml", "<project/>\n")]
)
def test_dump_empty(fmt: str, empty: str) -> None:
    assert dump_nodes([], fmt) == empty  # type: ignore[arg-type]


def test_dump_later_duplicate_wins() -> None:
    nodes = [Node("a", {"v": "1"}), Node("a", {"v": "2"})]
    for fmt in ("json", "yaml", "xml"):
        assert load_text(dump_nodes(nodes, fmt), fmt) == [Node("a", {"v": "2"})]  # type: ignore[arg-type]


def test_dump_unknown_format() -> None:
    with pytest.raises(ValueError, match="format"):
        dump_nodes([], "csv")  # type: ignore[arg-type]


# --- values a format cannot carry ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "yaml", "xml"])
def test_tags_with_commas_cannot_be_written(fmt: str) -> None:
    with pytest.raises(ConfigurationError, match="contains ','"):
        dump_nodes([Node("a", tags=frozenset({"a,b"}))], fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["attributes", "frameworkProject", "class"])
def test_yaml_cannot_carry_ignored_keys(key: str) -> None:
    with pytest.raises(ConfigurationError, match="resourceyaml cannot carry"):
        dump_nodes([Node("a", {key: "x"})], "yaml")
    # JSON and XML carry them.
    node = Node("a", {key: "x"})
    assert parse_resourcejson(dump_nodes([node], "json")) == [node]
    assert parse_resourcexml(dump_nodes([node], "xml")) == [node]


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x0b", "\x1f", "\ufffe", "\uffff", "\ud800"])
def test_xml_cannot_carry_forbidden_characters(char: str) -> None:
    for node in (Node(f"a{char}"), Node("a", {f"k{char}": "v"}), Node("a", {"k": f"v{char}"})):
        with pytest.raises(ConfigurationError, match="resourcexml cannot carry character"):
            dump_nodes([node], "xml")


# --- resourcejson reading ------------------------------------------------------------------------


def test_json_array_form_and_skips() -> None:
    text = json.dumps(
        [
            {"nodename": "a", "hostname": "h"},
            {"hostname": "no-name"},  # skipped
            "junk",  # skipped
            {"nodename": "b", "tags": ["x", " y ", 5, True]},
        ]
    )
    assert parse_resourcejson(text) == [
        Node("a", {"hostname": "h"}),
        Node("b", tags=frozenset({"x", "y", "5", "true"})),
    ]


def test_json_object_form_rules() -> None:
    text = json.dumps(
        {
            "key-name": {"nodename": "inner", "a": 1},  # the inner nodename overrides the key
            "skipped": "not an object",
            "typed": {
                "int": 8080,
                "big": 123456789012345678901234567890,
                "float": 1.5,
                "hundred": 100.0,
                "small": 0.0001,
                "large": 1e21,
                "neg": -2.5e-10,
                "zero": -0.0,
                "t": True,
                "f": False,
                "nested": {"dropped": "yes"},
                "list": ["dropped"],
                "tags": "a, b,c ,  d,,e",
            },
        }
    )
    inner, typed = parse_resourcejson(text)
    assert inner == Node("inner", {"a": "1"})
    assert dict(typed.attributes) == {
        "int": "8080",
        "big": "123456789012345678901234567890",
        "float": "1.5",
        "hundred": "100.0",
        "small": "1.0E-4",
        "large": "1.0E21",
        "neg": "-2.5E-10",
        "zero": "-0.0",
        "t": "true",
        "f": "false",
    }
    # "tags" splits on ", *" (other spaces kept, then trimmed in the tag set)
    assert typed.tags == frozenset({"a", "b", "c", "d", "e"})


def test_json_later_duplicate_replaces() -> None:
    text = '[{"nodename": "a", "v": "1"}, {"nodename": "b"}, {"nodename": "a", "w": "2"}]'
    assert parse_resourcejson(text) == [Node("a", {"w": "2"}), Node("b")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": {"x": null}}', "is null"),
        ('{"a": {"tags": null}}', "is null"),
        ('{"a": {"tags": ["x", null]}}', "is null"),
        ('[{"nodename": null}]', "is null"),
        ('{"a": {"x": NaN}}', "NaN"),
        ('"scalar"', "object or an array"),
        ("17", "object or an array"),
        ('{" ": {}}', "blank"),
        ('{"a": {"nodename": ""}}', "blank"),
    ],
)
def test_json_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        parse_resourcejson(text, "nodes.json")


def test_json_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigurationError, match=r"^nodes\.json:3:9: invalid JSON"):
        parse_resourcejson('{\n  "a": {\n    "x" "y"}}', "nodes.json")


# --- resourceyaml reading ------------------------------------------------------------------------


def test_yaml_map_form_rules() -> None:
    text = """
web01:
  nodename: other          # the key wins
  enabled: yes             # YAML 1.1 boolean
  no: false                # a YAML 1.1 boolean key too
  port: 8080
  octal: 010
  ratio: 1.5
  big: 1.0e+21
  inf: .inf
  empty: ~                 # null: not set
  when: 2024-05-01         # timestamp: its text
  stamp: 2024-05-01T12:34:56Z
  nested: {a: 1}           # dropped
  list: [1, 2]             # dropped
  attributes: {x: 1}       # ignored key
  frameworkProject: p      # ignored key
  class: c                 # ignored key
  tags: "a, b ,,c"
"""
    [node] = parse_resourceyaml(text)
    assert node.name == "web01"
    assert dict(node.attributes) == {
        "enabled": "true",
        "false": "false",
        "port": "8080",
        "octal": "8",
        "ratio": "1.5",
        "big": "1.0E21",
        "inf": "Infinity",
        "when": "2024-05-01",
        "stamp": "2024-05-01T12:34:56Z",
    }
    assert node.tags == frozenset({"a", "b", "c"})


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ("[a, ' b ', 5, true, null, [x]]", {"a", "b", "5", "true"}),
        ("42", {"42"}),
        ("true", {"true"}),
        ("'x,y'", {"x", "y"}),
        ("~", set()),
        ("{a: 1}", set()),
    ],
)
def test_yaml_tags(tags: str, expected: set[str]) -> None:
    [node] = parse_resourceyaml(f"n:\n  tags: {tags}\n")
    assert node.tags == expected


def test_yaml_list_form_documents_and_merge_keys() -> None:
    text = """
- nodename: a
  hostname: h
- nodename: b
---
just a scalar document
---
---
base: &base {osFamily: unix}
c:
  <<: *base
  hostname: hc
a:
  hostname: replaced
"""
    assert parse_resourceyaml(text) == [
        Node("a", {"hostname": "replaced"}),
        Node("b"),
        Node("base", {"osFamily": "unix"}),
        Node("c", {"osFamily": "unix", "hostname": "hc"}),
    ]


def test_yaml_numeric_keys_and_names() -> None:
    assert parse_resourceyaml("8080:\n  true: 1\n") == [Node("8080", {"true": "1"})]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a:\n  x: 1\nb: ~\n", 3, "is not a map"),
        ("a:\n  x: 1\nb: scalar\n", 3, "is not a map"),
        ("- nodename: a\n- hostname: h\n", 2, "no nodename"),
        ("- nodename: a\n- scalar\n", 2, "node maps"),
        ("a:\n  ? [x]\n  : 1\n", 2, "must be scalars"),
        ("~:\n  x: 1\n", 1, "null"),
        ("a:\n  x: !!binary aGVsbG8=\n", 2, "quote it"),
        ("a:\n  x: !custom 1\n", 2, "quote it"),
        ("a:\n  x: [\n", 3, "invalid YAML"),
        ("a:\n\tx: 1\n", 2, "invalid YAML"),
        ('" ":\n  x: 1\n', 1, "blank"),
    ],
)
def test_yaml_errors_have_lines(text: str, line: int, message: str) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"^nodes\.yaml:{line}(:\d+)?: .*{re.escape(message)}"
    ):
        parse_resourceyaml(text, "nodes.yaml")


# --- resourcexml reading -------------------------------------------------------------------------


def test_xml_reading_rules() -> None:
    text = """<?xml version="1.0" encoding="UTF-8"?>
<project>
  <setting name="ignored"/>
  <node name="a" osArch="x86_64" tags=" x ,, y" custom="1" nodename="ignored">
    <attribute name="text">  spaced &amp; kept
</attribute>
    <attribute name="both" value="attr wins">text</attribute>
    <attribute name="empty"/>
    <attribute name="tags" value="z"/>
    <other/>
  </node>
  <node name="b"><attribute name="hostname" value="h"/></node>
  <node name="a" hostname="second"/>
</project>"""
    assert parse_resourcexml(text) == [
        Node("a", {"hostname": "second"}),
        Node("b", {"hostname": "h"}),
    ]
    first = parse_resourcexml(text.replace('<node name="a" hostname="second"/>', ""))[0]
    assert dict(first.attributes) == {
        "osArch": "x86_64",
        "custom": "1",
        "text": "  spaced & kept\n",
        "both": "attr wins",
        "empty": "",
    }
    assert first.tags == frozenset({"z"})  # the later tags replaces the earlier


def test_xml_rejects_doctype_and_entities() -> None:
    laughs = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n<project><node name="&lol2;"/></project>'
    )
    with pytest.raises(
        ConfigurationError, match=r"^n\.xml:2: DOCTYPE declarations are not allowed"
    ):
        parse_resourcexml(laughs, "n.xml")
    external = '<!DOCTYPE p SYSTEM "http://example.invalid/x.dtd"><project/>'
    with pytest.raises(ConfigurationError, match="DOCTYPE"):
        parse_resourcexml(external)
    with pytest.raises(ConfigurationError, match="undefined entity"):
        parse_resourcexml('<project><node name="&ext;"/></project>')


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("<nodes/>", "x.xml:1", "expected <project>"),
        ("<project>\n<node/>\n</project>", "x.xml:2", "no name attribute"),
        (
            '<project>\n<node name="a">\n<attribute value="v"/></node></project>',
            "x.xml:3",
            "no name",
        ),
        ('<project><node name=" "/></project>', "x.xml:1", "blank"),
        ("<project>\n<node name='a'>\n</project>", "x.xml:3:3", "invalid XML: mismatched tag"),
        ("", "x.xml:1:1", "invalid XML: no element found"),
    ],
)
def test_xml_errors_have_lines(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{re.escape(where)}: .*{re.escape(message)}"):
        parse_resourcexml(text, "x.xml")


# --- load_nodes ----------------------------------------------------------------------------------


def load_text(text: str, fmt: str) -> list[Node]:
    return {"json": parse_resourcejson, "yaml": parse_resourceyaml, "xml": parse_resourcexml}[fmt](
        text
    )


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("n.json", SPEC_XML.replace("<", "<")),  # replaced below: extension decides
        ("n.xml", SPEC_XML),
        ("n.yaml", SPEC_YAML),
        ("n.yml", SPEC_YAML),
        ("nodes", SPEC_XML),
        ("nodes", '  {"web01": {"hostname": "10.0.0.5"}}'),
        ("nodes", '[{"nodename": "web01", "hostname": "10.0.0.5"}]'),
        ("nodes.txt", SPEC_YAML),
    ],
)
def test_load_nodes_by_extension_and_content(tmp_path: Path, filename: str, content: str) -> None:
    if filename == "n.json":
        content = '{"web01": {"hostname": "10.0.0.5"}}'
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    [node] = load_nodes(path)
    assert node.name == "web01"
    assert node.hostname == "10.0.0.5"


def test_load_nodes_explicit_format_bom_and_encodings(tmp_path: Path) -> None:
    path = tmp_path / "nodes.data"
    path.write_bytes(b'\xef\xbb\xbf{"a": {}}')
    assert load_nodes(path) == [Node("a")]
    assert load_nodes(path, "resourcejson") == [Node("a")]
    latin = tmp_path / "latin.xml"
    latin.write_bytes(
        '<?xml version="1.0" encoding="ISO-8859-1"?><project><node name="é"/></project>'.encode(
            "latin-1"
        )
    )
    assert load_nodes(latin) == [Node("é")]
    # Decoded text ignores the declared encoding.
    assert parse_resourcexml(
        '<?xml version="1.0" encoding="ISO-8859-1"?><project><node name="é"/></project>'
    ) == [Node("é")]


def test_load_nodes_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read node file"):
        load_nodes(tmp_path / "missing.json")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: \xff\n")
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_nodes(bad)
    with pytest.raises(ConfigurationError, match="unknown node file format"):
        load_nodes(bad, "csv")
    broken = tmp_path / "broken.json"
    broken.write_text("{\n  oops\n}")
    with pytest.raises(ConfigurationError, match=rf"^{re.escape(str(broken))}:2:3: invalid JSON"):
        load_nodes(broken)


# --- lossless round trips ------------------------------------------------------------------------


def node_strategy(
    chars: st.SearchStrategy[str], reserved: frozenset[str]
) -> st.SearchStrategy[Node]:
    text = st.text(chars, max_size=12)
    names = text.filter(lambda s: not is_blank(s))
    keys = text.filter(lambda k: k not in reserved)
    attributes = st.dictionaries(
        keys | st.sampled_from(["hostname", "osFamily", "username", "name", "xmlns"]),
        text,
        max_size=5,
    )
    tags = st.frozensets(text.filter(lambda t: "," not in t), max_size=4)
    return st.builds(Node, names, attributes, tags)


def nodes_strategy(
    chars: st.SearchStrategy[str], reserved: frozenset[str]
) -> st.SearchStrategy[list[Node]]:
    return st.lists(node_strategy(chars, reserved), max_size=4, unique_by=lambda n: n.name)


RESERVED = frozenset({"nodename", "tags"})
# Any character but surrogates (YAML, JSON) / XML 1.0 characters, plus the tricky ones.
ANY_CHAR = st.characters(blacklist_categories=("Cs",)) | st.sampled_from(
    list("\"'<&>\n\r\t\x85\u2028\ufeff:#- ")
)
XML_FORBIDDEN = [chr(c) for c in (*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF)]
XML_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters=XML_FORBIDDEN)
XML_CHAR |= st.sampled_from(list("\"'<&>\n\r\t\x85\u2028\ufeff:#- "))


@FAST
@given(nodes_strategy(ANY_CHAR, RESERVED))
def test_json_round_trip(nodes: list[Node]) -> None:
    assert parse_resourcejson(dump_nodes(nodes, "json")) == nodes


@FAST
@given(nodes_strategy(ANY_CHAR, RESERVED | {"attributes", "frameworkProject", "class"}))
def test_yaml_round_trip(nodes: list[Node]) -> None:
    assert parse_resourceyaml(dump_nodes(nodes, "yaml")) == nodes


@FAST
@given(nodes_strategy(XML_CHAR, RESERVED))
def test_xml_round_trip(nodes: list[Node]) -> None:
    assert parse_resourcexml(dump_nodes(nodes, "xml")) == nodes


@settings(max_examples=50, deadline=None)
@given(nodes_strategy(XML_CHAR, RESERVED | {"attributes", "frameworkProject", "class"}))
def test_formats_agree(nodes: list[Node]) -> None:
    as_json = parse_resourcejson(dump_nodes(nodes, "json"))
    assert parse_resourceyaml(dump_nodes(as_json, "yaml")) == parse_resourcexml(
        dump_nodes(as_json, "xml")
    )


@FAST
@given(st.text(max_size=60))
def test_readers_raise_only_configuration_errors(text: str) -> None:
    for parse in (parse_resourcejson, parse_resourceyaml, parse_resourcexml):
        with contextlib.suppress(ConfigurationError):
            parse(text)


@pytest.mark.parametrize(
    "encoding", ["x-unknown", "utf-7", "utf-32", "rot13", "base64", "hex", "zlib", "idna"]
)
def test_xml_declaring_an_encoding_python_cannot_decode_is_a_clear_error(
    tmp_path: Path, encoding: str
) -> None:
    path = tmp_path / "nodes.xml"
    path.write_bytes(
        f"<?xml version='1.0' encoding='{encoding}'?><project><node name='a'/></project>".encode()
    )
    with pytest.raises(ConfigurationError, match=f"{re.escape(str(path))}:1: invalid XML: "):
        load_nodes(path)


def test_xml_bytes_that_do_not_decode_in_the_declared_encoding(tmp_path: Path) -> None:
    head = b"<?xml version='1.0' encoding='cp1252'?>"
    path = tmp_path / "nodes.xml"
    path.write_bytes(head + b"<project><node name='\x81'/></project>")  # 0x81: undefined
    with pytest.raises(ConfigurationError, match="invalid XML"):
        load_nodes(path)
    latin = tmp_path / "latin.xml"
    latin.write_bytes(
        head.replace(b"cp1252", b"latin-1") + b"<project><node name='\xe9'/></project>"
    )
    assert [n.name for n in load_nodes(latin)] == ["é"]


def test_deeply_nested_json_says_so() -> None:
    with pytest.raises(ConfigurationError, match="arrays or objects nested too deeply"):
        parse_resourcejson("[" * 5000 + "]" * 5000)
