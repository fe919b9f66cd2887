"""Tests for the node filter language: every §10 conformance row, then the rest.

§N refers to docs/node-filter.md.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecsexec.errors import FilterSyntaxError
from ecsexec.nodes.filter import (
    FilterWarning,
    NodeFilter,
    _is_plain_text,
    format_filter_error,
    java_split,
    match_tags,
    match_value,
    parse_filter,
    rank,
    regex_or_equals,
    select,
    tokenize,
    unmatched_key_warnings,
)
from ecsexec.nodes.javaregex import (
    BACKTRACK_BUDGET,
    JavaRegexError,
    compile_bounded,
    compile_java,
    translate,
)
from ecsexec.nodes.node import Node, java_trim

FAST = settings(max_examples=150, deadline=None)


def names(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes]


def toks(text: str) -> list[str]:
    return [t.text for t in tokenize(text)]


# --- Definitions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sep", "pieces"),
    [
        ("", ",", [""]),
        ("a,,b", ",", ["a", "", "b"]),
        ("a,", ",", ["a"]),
        (",a", ",", ["", "a"]),
        (",", ",", []),
        ("+", "+", []),
        ("a,,", ",", ["a"]),
        ("a", ",", ["a"]),
    ],
)
def test_java_split(text: str, sep: str, pieces: list[str]) -> None:
    assert java_split(text, sep) == pieces


# --- §1 / §10 tokenizer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        # §1 table
        ('"a b"c"d e"', ["a bcd e"]),
        ("\"a\"'b c'", ["a'b", "c'"]),
        ('"abc', ["abc"]),
        ('x  ""', ["x", ""]),
        (" ", []),
        ("  ", [""]),
        # §10 (QuotedStringTokenizerTest)
        ('"ab""c def"', ['ab"c def']),
        ("'a''bc def'", ["a'bc def"]),
        ("abc \"\" def '' xyz", ["abc", "", "def", "", "xyz"]),
        ("\"scurry 'donut' slef\"", ["scurry 'donut' slef"]),
        # more of §1
        ("", []),
        ("\t\r\n", [""]),
        ("  a  ", ["a"]),
        ("a\x00b\x1fc", ["a", "b", "c"]),
        ("a\xa0b", ["a\xa0b"]),  # NBSP is an ordinary character
        ("a'b c", ["a'b", "c"]),  # a quote inside an unquoted token is literal
        ("''", [""]),
        ("'it''s'", ["it's"]),
        ("'a'b'c d'", ["abc d"]),  # the same quote kind re-opens quoting
    ],
)
def test_tokenizer(text: str, tokens: list[str]) -> None:
    assert toks(text) == tokens


def test_token_positions() -> None:
    tokens = tokenize(' ab "c d"')
    assert [(t.start, t.quoted) for t in tokens] == [(1, False), (4, True)]
    assert tokens[0].positions == (1, 2)
    assert tokens[1].positions == (5, 6, 7)


# --- §2 / §10 parse ------------------------------------------------------------------------------

PARSE_ROWS = [
    ("tags: xyz", {"tags": "xyz"}, {}),
    ("xyz", {"name": "xyz"}, {}),
    ("xyz abc", {"name": "xyz,abc"}, {}),
    ("tags:xyz tags:abc", {"tags": "xyz,abc"}, {}),
    ("tags: xyz  name: 'monkey toe'", {"tags": "xyz", "name": "monkey toe"}, {}),
    ("tags:xyz", {"tags": "xyz"}, {}),
    ("!tags: xyz", {}, {"tags": "xyz"}),
    ("!tags: xyz !name: 'macaroon brigade' ", {}, {"tags": "xyz", "name": "macaroon brigade"}),
    ("!tags:xyz", {}, {"tags": "xyz"}),
    ("tags: xyz,vwz !name: 'macaroon brigade' ", {"tags": "xyz,vwz"}, {"name": "macaroon brigade"}),
    (
        '    tags:   xyz,vwz  !name:    "macaroon brigade"',
        {"tags": "xyz,vwz"},
        {"name": "macaroon brigade"},
    ),
    (
        "!cloud.display_name:\t 'Rackspace Open Cloud - Chicago' !cloud.xyz:\r\n 'monkeyfill'",
        {},
        {"cloud.display_name": "Rackspace Open Cloud - Chicago", "cloud.xyz": "monkeyfill"},
    ),
    (" '!test:money pants'  ", {}, {"test": "money pants"}),
    (" '!test:xyz:money pants'  ", {}, {"test": "xyz:money pants"}),
    ("as:test: elf", {"as:test": "elf"}, {}),
]


@pytest.mark.parametrize(("text", "include", "exclude"), PARSE_ROWS)
def test_parse_conformance(text: str, include: dict[str, str], exclude: dict[str, str]) -> None:
    flt = parse_filter(text)
    assert dict(flt.include) == include
    assert dict(flt.exclude) == exclude


@pytest.mark.parametrize(
    ("text", "include", "exclude"),
    [
        # §2 consequences
        ("ECS:Region: us-east-1", {"ECS:Region": "us-east-1"}, {}),
        ("ECS:Region:us-east-1", {"ECS": "Region:us-east-1"}, {}),
        ("a:b:c: v", {"a:b:c": "v"}, {}),
        ("tags: name: x", {"tags": "name:", "name": "x"}, {}),
        ("tags: !web", {"tags": "!web"}, {}),
        ('os-name: "Mac OS X"', {"os-name": "Mac OS X"}, {}),
        ("os-name: Mac OS X", {"os-name": "Mac", "name": "OS,X"}, {}),
        ("'!env:big prod'", {}, {"env": "big prod"}),
        ("'name: web 1'", {"name": " web 1"}, {}),
        ("!web01", {"name": "!web01"}, {}),
        ("!!a: x", {}, {"!a": "x"}),
        ("name: web1 name: web2", {"name": "web1,web2"}, {}),
        ("name: web01, web02", {"name": "web01,,web02"}, {}),
        ("tags:", {}, {}),
        ("name: web1 tags:", {"name": "web1"}, {}),
        (": x", {"": "x"}, {}),
        ("name: a !name: b name: c", {"name": "a,c"}, {"name": "b"}),
        ("name: x:y", {"name": "x:y"}, {}),
    ],
)
def test_parse_rules(text: str, include: dict[str, str], exclude: dict[str, str]) -> None:
    flt = parse_filter(text)
    assert dict(flt.include) == include
    assert dict(flt.exclude) == exclude


def test_canonical_form() -> None:
    flt = parse_filter("  tags:web,prod  !name: 'a b'  x:y ''")
    # The trailing '' is a real, empty token: a bare word, so name="".
    assert str(flt) == 'tags: web,prod x: y name: "" !name: "a b"'
    assert parse_filter(str(flt)) == flt
    assert str(parse_filter("")) == ""
    assert str(parse_filter("  ")) == 'name: ""'
    assert str(parse_filter('"a b:" \'"x\'')) == '"a b:" """x"'


# --- §4 / §10 value matching ---------------------------------------------------------------------

VALUE_TRUE = ["test1", "test1,test2", "test1,test2,test3", "test.", "test[1-9]", "test.*", "test.+"]
VALUE_TRUE += [".*test1", ".*test.*"]
VALUE_FALSE = [
    "test2",
    "test1 test2",
    "test1 test2,test3",
    "testz,test2,test3",
    "test..",
    "test[a-b]",
]
VALUE_FALSE += [".+test.*"]


@pytest.mark.parametrize("selector", VALUE_TRUE)
def test_match_value_true(selector: str) -> None:
    assert match_value(selector, "test1")


@pytest.mark.parametrize("selector", VALUE_FALSE)
def test_match_value_false(selector: str) -> None:
    assert not match_value(selector, "test1")


@pytest.mark.parametrize(
    ("flt", "attributes", "kept"),
    [
        ("test1: som.v.lue", {"test1": "somevalue"}, True),
        ("test1: nonvalue,nonsomevalue", {"test1": "somevalue"}, False),
        ("test1: nonvalue,somevalue", {"test1": "somevalue"}, True),
        ("test1: value1 test2: value2", {"test1": "value1", "test2": "xvalue2"}, False),
        ("test1: value1 test2: value2", {"test1": "value1", "test2": "value2"}, True),
    ],
)
def test_attribute_clauses_conformance(flt: str, attributes: dict[str, str], kept: bool) -> None:
    assert bool(select([Node("n", attributes)], flt)) is kept


def test_match_value_rules() -> None:
    # Step 1: a blank value never matches, not even ".*".
    assert not match_value(".*", "")
    assert not match_value(".*", None)
    assert not match_value(".*", "  ")
    # Step 2: a blank selector never matches.
    assert not match_value(" ", "x")
    # Step 4: comma items are compared exactly, untrimmed.
    assert match_value("a, web02", " web02")
    assert not match_value("a, web02", "web02")
    # The whole selector is Java-trimmed before the regex/equality test.
    assert match_value("  web1 ", "web1")


# --- §5 / §10 tags -------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    return text.split()


TAGSET = frozenset({"test1", "test2", "test3"})
TAGS_TRUE = words("""
test1 test2 test3 test1,test2 test1,testz testz,test2 test1+test2 testz,test1+test2
testz+test1,test1+test2 test. test[1-3] test.* test.+ test[z1]* test[z1]+ .*test1 test.,test2
test.,test[1-3] test.,testz testz,test[1-3] test[a-z],test2 test.+test2 test.+test[1-3]
test[a-x],test1+test2 testx,test[1-2]+test3 testx,test1+test[34] testx,test[12]+test[34]
test[x-z],test[12]+test[34] testz+test[1-3],test1+test2 testz+test[1-3],test.+test2""")
TAGS_FALSE = words("""
testz testz+test2 testz,testx testz+test1,test1+testx test[4-9] testz+ testz* .+test1
test[a-z]+test2 test[a-z]+test[1-3] testz,test[xl] test[abz],testx test[abz],test[xt]
test[p-r],test[xz]+test[34] test[p-r],test..+test[34] test[p-r],test1+test[45]
testz+test[1-3],test1+testx testz+test[1-3],test.+testx test[x-z]+test1,test.+testx""")


@pytest.mark.parametrize("selector", TAGS_TRUE)
def test_match_tags_true(selector: str) -> None:
    assert match_tags(selector, TAGSET)


@pytest.mark.parametrize("selector", TAGS_FALSE)
def test_match_tags_false(selector: str) -> None:
    assert not match_tags(selector, TAGSET)


def test_match_tags_rules() -> None:
    tags = frozenset({"web", "prod", "priority1"})
    assert not match_tags("web", frozenset())
    assert not match_tags(" ", tags)
    assert match_tags("web+prod,db", tags)
    assert match_tags("db,web+prod", tags)
    assert not match_tags("prio.+", tags)  # "prio." AND nothing
    assert match_tags("prio..*", tags)
    assert match_tags("+", tags)  # a clause without terms holds
    assert not match_tags(",", tags)
    assert not match_tags("+web", tags)  # its empty first term matches no tag
    assert match_tags(" web , x", tags)  # terms are Java-trimmed
    assert not match_tags("!web", tags)
    assert match_tags("Web", frozenset({"Web"}))
    assert not match_tags("WEB", tags)  # case-sensitive


# --- §4 / §10 regex_or_equals --------------------------------------------------------------------

ROE_TRUE = [
    ("test1", "test1"),
    ("/", "/"),
    ("/123", "/123"),
    ("test1[", "test1["),
    ("test/1[", "test/1["),
    ("test/1[${", "test/1[${"),
    ("test[123]", "test1"),
    ("test[123]", "test2"),
    ("test(abc)?", "testabc"),
    ("test(abc)?", "test"),
    ("test[zyx]", "test[zyx]"),
    ("/test[zyx]/", "testx"),
    ("/test[zyx]/", "testy"),
    ("//", ""),
]
ROE_FALSE = [
    ("test2", "test1"),
    ("/", "//"),
    ("/123", "/1234"),
    ("test1[", "test2["),
    ("test/1[", "test1["),
    ("test/2[${", "test/1[${"),
    ("test//1[${", "test/1[${"),
    ("test/1[${}", "test/1[${"),
    ("test(/1[${})?", "test/1[${"),
    ("test(abc)?", "testz"),
    ("test(abc)?", "testabx"),
    ("/test[zyx]/", "testZ"),
    ("/test[zyx]/", "test[zyx]"),
    ("/test[zyx]/", "/test[zyx]/"),
]


@pytest.mark.parametrize(("selector", "item"), ROE_TRUE)
def test_regex_or_equals_true(selector: str, item: str) -> None:
    assert regex_or_equals(selector, item)


@pytest.mark.parametrize(("selector", "item"), ROE_FALSE)
def test_regex_or_equals_false(selector: str, item: str) -> None:
    assert not regex_or_equals(selector, item)


@pytest.mark.parametrize("selector", ["/test[zyx/", "/test[zyx]${/", "/test(/1[${})?/"])
def test_regex_or_equals_error(selector: str) -> None:
    with pytest.raises(FilterSyntaxError):
        regex_or_equals(selector, "x")
    with pytest.raises(FilterSyntaxError):
        parse_filter(f"name: {selector}")


# --- §10 selection scenario ----------------------------------------------------------------------

N1 = Node(
    "testnode1",
    {"hostname": "test1.local", "osArch": "x86", "osFamily": "windows", "osName": "Windows NT"}
    | {"osVersion": "5.1"},
    frozenset({"priority1", "devenv", "serverbox"}),
)
N2 = Node(
    "testnode2",
    {"hostname": "testnode2", "osArch": "x386", "osFamily": "unix", "osName": "Mac OS X"}
    | {"osVersion": "10.5.1", "testattribute1": "testvalue1", "testattribute2": "testvalue2"}
    | {"testattribute3": "testvalue3"},
    frozenset({"priority2", "devenv", "workstation"}),
)
N3 = Node(
    "testnode3",
    {"hostname": "testnode3.local", "osArch": "intel", "osFamily": "solaris"}
    | {"osName": "Solaris Something", "osVersion": "3.7", "testattribute1": "testvalue1"}
    | {"testattribute2": "testvalue2redux", "testattribute4": "testvalue5"},
    frozenset({"priority1", "workstation"}),
)
BY_NUMBER = {"1": N1, "2": N2, "3": N3}

TWO_NODE_ROWS = [
    # (filter, kept with exclude precedence, kept with include precedence or None)
    ("hostname: test1.local", "1", "1"),
    ("!hostname: test1.local", "2", "2"),
    ("!hostname: testnode2", "1", "1"),
    ("hostname: testnode2 !hostname: test1.local", "2", None),
    ("hostname: testnode2,test1.local", "1 2", "1 2"),
    ("!hostname: testnode2,test1.local", "", ""),
    ("hostname: test.* !hostname: testnode2", "1", "1 2"),
    ("hostname: test.* !hostname: test1.local", "2", "1 2"),
    ("hostname: testnode2 !hostname: test.*", "", "2"),
    ("hostname: test1.local !hostname: test.*", "", "1"),
    ("tags: priority1", "1", "1"),
    ("tags: priority2,priority1", "1 2", "1 2"),
    ("tags: devenv !tags: priority2", "1", "1 2"),
    ("tags: priority2 !tags: devenv", "", "2"),
    # "The name and os-* tests follow the same pattern."
    ("name: testnode1", "1", "1"),
    ("!name: testnode1", "2", "2"),
    ("name: test.* !name: testnode2", "1", "1 2"),
    ("os-family: unix", "2", "2"),
    ('os-name: "Mac OS X"', "2", "2"),
    ("os-name: Windows.*", "1", "1"),
    ("os-arch: x86", "1", "1"),
    ("os-version: 5.1", "1", "1"),
    ("os-family: .* !os-family: windows", "2", "1 2"),
]


@pytest.mark.parametrize(("flt", "kept", "kept_inc"), TWO_NODE_ROWS)
def test_selection_two_nodes(flt: str, kept: str, kept_inc: str | None) -> None:
    expected = [BY_NUMBER[k] for k in kept.split()]
    assert select([N1, N2], flt) == expected
    if kept_inc is not None:
        expected_inc = [BY_NUMBER[k] for k in kept_inc.split()]
        assert select([N1, N2], flt, exclude_precedence=False) == expected_inc


THREE_NODE_ROWS = [
    ("hostname: .*.local", "1 3"),
    ("hostname: .*.local tags: workstation", "3"),
    ("hostname: .*.local tags: workstation,priority2", "3"),
    ("tags: workstation,priority2", "2 3"),
    ("tags: devenv", "1 2"),
    ("tags: devenv+priority2", "2"),
    ("tags: devenv !testattribute1: testvalue1", "1"),
    ("testattribute1: testvalue1", "2 3"),
    ("testattribute1: testvalue2", ""),
    ("testattribute2: testvalue2", "2"),
    ("testattribute2: testvalue2redux", "3"),
    ("testattribute2: testvalue2,testvalue2redux", "2 3"),
    ("testattribute3: testvalue3", "2"),
    ("testattribute3: testvalue4", ""),
    ("testattribute4: testvalue5", "3"),
]


@pytest.mark.parametrize(("flt", "kept"), THREE_NODE_ROWS)
def test_selection_three_nodes(flt: str, kept: str) -> None:
    assert select([N1, N2, N3], flt) == [BY_NUMBER[k] for k in kept.split()]


# --- §3, §4, §6 examples -------------------------------------------------------------------------


def node(name: str, tags: str = "", **attributes: str) -> Node:
    return Node(
        name, {k.replace("_", "-"): v for k, v in attributes.items()}, frozenset(tags.split(","))
    )


WEB = [node("web01"), node("web02"), node("db01"), node("web[1"), node("web 1"), node("web.*")]


@pytest.mark.parametrize(
    ("flt", "kept"),
    [
        ("web", []),
        ("web.*", ["web01", "web02", "web[1", "web 1", "web.*"]),
        ("Web.*", []),
        ("(?i)WEB0.*", ["web01", "web02"]),
        ("name: web.*,db.*", ["web.*"]),  # one regex "web.*,db.*" plus two literal names
        ("name: web.*|db.*", ["web01", "web02", "db01", "web[1", "web 1", "web.*"]),
        ('name: "web01, web02"', ["web01"]),
        ("name: web01, web02", ["web01", "web02"]),
        ("web[1", ["web[1"]),  # invalid regex: compared literally
        ("'name: web 1'", ["web 1"]),
        ("name: web01 name: db01", ["web01", "db01"]),
        ("!name: web01,db01", ["web02", "web[1", "web 1", "web.*"]),
        (".*", ["web01", "web02", "db01", "web[1", "web 1", "web.*"]),
        ("", []),
        ("   ", []),
        (" ", []),
        ('name: ""', []),
        ("tags:", []),
    ],
)
def test_name_selection(flt: str, kept: list[str]) -> None:
    assert names(select(WEB, flt)) == kept


def test_blank_selectors() -> None:
    nodes = [node("a", tags="web", env="prod"), node("b", tags="db")]
    assert select(nodes, 'name: "" tags: web') == select(nodes, "tags: web") == [nodes[0]]
    assert select(nodes, 'env: "" tags: web') == []
    assert parse_filter('name: "" hostname: " "').is_blank
    assert not parse_filter('env: ""').is_blank
    assert select(nodes, 'env: ""') == []
    # An attribute clause with a blank selector on the exclude side: the side is present
    # and never matches, so nothing is excluded.
    assert select(nodes, '!env: ""') == nodes


def test_attribute_keys_are_exact_and_include_standard_properties() -> None:
    n = node("web01", hostname="h1", osFamily="unix")
    assert select([n], "nodename: web0.") == [n]
    assert select([n], "osFamily: unix") == [n]
    assert select([n], "Name: web01") == []
    assert select([n], "HOSTNAME: h1") == []
    assert select([n], "env: .*") == []  # "has a non-blank env"
    assert select([node("x", env="")], "env: .*") == []
    assert select([node("x", env="p")], "env: .*") != []


def test_exclusion_needs_every_clause() -> None:
    nodes = [
        node("a", tags="web", hostname="10.0.0.1"),
        node("b", tags="db", hostname="10.0.0.2"),
        node("c", tags="web", hostname="192.168.0.1"),
    ]
    assert names(select(nodes, r"!hostname: 10\..* !tags: web")) == ["b", "c"]
    assert names(select(nodes, "!name: a,b")) == ["c"]


def test_select_accepts_parsed_filters_and_keeps_input_order() -> None:
    nodes = [node("b"), node("a")]
    flt = parse_filter(".*")
    assert select(nodes, flt) == nodes
    assert flt.keeps(nodes[0])


# --- §4.1 Java regex semantics -------------------------------------------------------------------


def jmatch(pattern: str, text: str) -> bool:
    return compile_java(pattern).fullmatch(text) is not None


@pytest.mark.parametrize(
    "pattern",
    [
        *["a{", "x{y}", "a{,3}", "a{ 1}", "${", "test[zyx]${", "a{1", "a{2,1}", "a{1,2,3}"],
        *["**", "a**", "+a", "?", "(a", "a)", "[a", "[]", "[z-a]", "a\\", "\\y", "\\E"],
        # Python-only syntax is invalid in Java
        *["(?P<n>a)", "(?P=n)", "(?#c)", "(?(1)a|b)", "(?a)", "(?L)", "(?<1a>x)", "\\k<n>"],
        *["\\x4", "\\u12", "\\0", "\\09", "\\x{110000}", "(?<n>a)(?<n>b)", "(?$a)", "[\\b]"],
        "[\\1]",
    ],
)
def test_java_invalid(pattern: str) -> None:
    with pytest.raises(JavaRegexError) as info:
        compile_java(pattern)
    assert not info.value.unsupported
    # Tried leniently, an invalid regex is compared literally.
    assert regex_or_equals(pattern, pattern)
    assert not regex_or_equals(pattern, pattern + "x")


@pytest.mark.parametrize(
    "pattern",
    [
        *["\\p{L}", "\\p{IsLatin}", "\\p{InGreek}", "\\pL", "\\p{javaLowerCase}"],
        *["[a-z&&[^aeiou]]", "[a[bc]]", "\\R", "\\X", "\\G", "\\b{g}", "\\N{SPACE}"],
        *["(?u)a", "(?U)a", "(?x)a", "(?c)a", "(a\\1)", "\\2(a)(b)", "(?<=a+)b", "(?<=ab|c)d"],
        # Java rejects this one (no obvious maximum length); any look-behind Python cannot
        # take is reported as unsupported: still an error, never a silent mismatch.
        "(?<=(a)\\1)b",
    ],
)
def test_java_unsupported(pattern: str) -> None:
    with pytest.raises(JavaRegexError) as info:
        compile_java(pattern)
    assert info.value.unsupported
    with pytest.raises(FilterSyntaxError, match="unsupported Java regex construct"):
        parse_filter(f"name: {pattern}")


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        # `{` quantifiers; an empty atom may be repeated as in OpenJDK 17's atom()
        ("a{2}", ["aa"], ["a", "aaa"]),
        ("a{2,}", ["aa", "aaaa"], ["a"]),
        ("a{0,1}b", ["b", "ab"], ["aab"]),
        ("{2}a", ["a"], ["{2}a"]),
        ("a{2}{3}", ["aa"], ["aaaaaa"]),
        ("[{}]", ["{", "}"], []),
        ("}", ["}"], []),
        ("]", ["]"], []),
        # inline flags mid-pattern, scoped to the group, across later alternatives
        ("web(?i)srv", ["webSRV", "websrv"], ["WEBsrv"]),
        ("a(?i)b|c", ["aB", "C"], ["Ab"]),
        ("((?i)a|b)c", ["Ac", "Bc"], ["AC"]),
        ("(?i)a(?-i)b", ["Ab", "ab"], ["AB"]),
        ("(?i:a)b", ["Ab"], ["AB"]),
        ("(?i)[a-c]x", ["BX", "bx"], ["dx"]),
        ("(?i)[^a]", ["b"], ["A", "a"]),
        ("(?i)\\p{Lower}", ["a", "A"], ["1"]),
        ("\\p{Lower}", ["a"], ["A"]),
        # ASCII-only classes and case folding
        ("(?i)é", ["é"], ["É"]),
        ("\\d", ["3"], ["\u0663"]),
        ("(?i)k", ["K", "k"], ["\u212a"]),
        ("\\s", [" ", "\x0b"], ["\xa0"]),
        ("\\w", ["_", "a", "0"], ["é"]),
        # \b uses Unicode letters and digits
        ("x\\bé", [], ["xé"]),
        ("\\bé\\b", ["é"], []),
        ("a\\Bb", ["ab"], []),
        ("\\B", [""], []),
        # "." and its flags
        (".", ["a", "\t", "\x0b"], ["\n", "\r", "\x85", "\u2028", "\u2029"]),
        ("(?s).", ["\n", "\r"], []),
        ("(?d).", ["\r", "\x85"], ["\n"]),
        ("(?sd).", ["\n"], []),
        # translatable Java-only constructs
        ("\\Qa.b\\E", ["a.b"], ["axb"]),
        ("\\Qa.b", ["a.b"], ["axb"]),
        ("\\Q1\\E2", ["12"], []),
        ("x\\Q(\\E+", ["x((("], []),
        ("[\\Q]\\E]", ["]"], []),
        ("(?<n>a)\\k<n>", ["aa"], ["ab"]),
        ("a\\z", ["a"], ["a\n"]),
        ("\\p{Alpha}+\\p{Digit}", ["ab1"], ["a"]),
        ("\\P{Alpha}", ["1"], ["a"]),
        ("\\p{Punct}\\p{XDigit}\\p{Space}\\p{Cntrl}", ["!f \x00"], []),
        ("\\p{ASCII}\\p{Graph}\\p{Print}\\p{Blank}\\p{Alnum}\\p{Upper}", ["\x00~ \tzA"], []),
        ("\\h\\H", ["\xa0x"], ["\nx"]),
        ("\\v\\V", ["\u2028x", "\x0bx"], [" x"]),
        ("[\\v-\\x0c]", ["\x0b", "\x0c"], ["\n"]),
        ("\\e\\a\\cA\\c@", ["\x1b\x07\x01\x00"], []),
        ("\\x{41}\\x42\\u0043\\0104\\07", ["ABCD\x07"], []),
        ("\\0101", ["A"], []),
        ("\\0400", ["\x200"], []),
        ("\\uD83D\\uDE00", ["\U0001f600"], []),
        ("\\t\\n\\r\\f", ["\t\n\r\x0c"], []),
        ("\\.\\*\\<\\é", [".*<é"], []),
        # escapes whose meaning differs from Python
        ("(a)\\101", ["aa01"], ["aA"]),
        ("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)\\10", ["abcdefghijj"], ["abcdefghija0"]),
        ("(a)\\2", [], ["a", "aa"]),  # no group 2: never matches, as in Java
        # $ and \Z before a final line terminator, \z at the absolute end
        ("a$\\r\\n", ["a\r\n"], []),
        ("a$\\n", ["a\n"], []),
        ("a$", ["a"], ["a\n"]),
        ("a\\Z\\u2028", ["a\u2028"], []),
        ("a\\r$\\n", [], ["a\r\n"]),
        ("(?d)a$\\r", [], ["a\r"]),
        ("(?m)a$\\nb", ["a\nb"], []),
        ("(?m)a\\n^b", ["a\nb"], []),
        ("(?m)a\\n^", [], ["a\n"]),  # Java's multiline ^ never matches at the end
        ("(?m)a\\r^\\n", [], ["a\r\n"]),
        ("^a", ["a"], []),
        ("a^", [], ["a"]),
        # same in both
        ("a++a", [], ["aa"]),
        ("(?>a|ab)c", ["ac"], ["abc"]),
        ("(?=a)a", ["a"], []),
        ("a(?<=a)b", ["ab"], []),
        ("a(?<!a)b", [], ["ab"]),
        ("(?:ab)+?c", ["ababc"], []),
        ("a(?=b)*b", ["ab"], []),
        ("(?<=a{2})x", [], ["x"]),
        ("^*a", ["a"], []),
        ("", [""], ["a"]),
        ("(?)a(?-)", ["a"], []),
    ],
)
def test_java_semantics(pattern: str, yes: list[str], no: list[str]) -> None:
    for text in yes:
        assert jmatch(pattern, text), (pattern, text)
    for text in no:
        assert not jmatch(pattern, text), (pattern, text)


def test_translation_is_cached_and_uses_fullmatch() -> None:
    assert compile_java("web") is compile_java("web")
    assert not jmatch("web", "web01")
    assert translate("a|b") == "a|b"


# Patterns built from constructs with the same meaning in Java and Python: the
# translation must agree with Python's own reading on inputs without line terminators.
def _common_patterns() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(["a", "b", "c", ".", "[ab]", "[^a]", "[a-c]", "\\d", "x"])

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        quantified = st.tuples(
            children, st.sampled_from(["*", "+", "?", "{2}", "{1,2}", "*?", "+?", "{0,}"])
        ).map(lambda t: f"(?:{t[0]}){t[1]}")
        return st.one_of(
            st.tuples(children, children).map("".join),
            st.tuples(children, children).map("|".join),
            children.map(lambda c: f"({c})"),
            quantified,
        )

    return st.recursive(leaf, extend, max_leaves=6)


@FAST
@given(_common_patterns(), st.lists(st.text("abcx1", max_size=5), min_size=1, max_size=5))
def test_translation_agrees_with_python_on_common_syntax(pattern: str, texts: list[str]) -> None:
    java = compile_java(pattern)
    python = re.compile(pattern)
    for text in texts:
        assert (java.fullmatch(text) is None) == (python.fullmatch(text) is None), (pattern, text)


REGEX_ALPHABET = [*"ab()[]{}|^$.*+?\\-&,:=!<>#0129dDswbBpPQEkxuvVcnzZAGRXiImsLu", "\n"]


@FAST
@given(st.text(st.sampled_from(REGEX_ALPHABET), max_size=14))
def test_translator_fuzz(pattern: str) -> None:
    try:
        compile_java(pattern).fullmatch("ab\n1")
    except JavaRegexError as exc:
        error: JavaRegexError | None = exc
    else:
        error = None
    if error is not None:
        assert 0 <= error.position <= max(len(pattern) - 1, 0)


# --- §7 rank order -------------------------------------------------------------------------------


def ranked(nodes: list[Node], **kwargs: str) -> list[str]:
    return names(rank(nodes, **kwargs))


def test_rank_default_is_name_ascending() -> None:
    nodes = [node("b"), node("a"), node("C")]
    assert ranked(nodes) == ["C", "a", "b"]
    assert ranked(nodes, order="descending") == ["b", "a", "C"]


def test_rank_numeric_then_string() -> None:
    nodes = [node("n1", r="10"), node("n2", r="9"), node("n3", r="1"), node("n4", r="01")]
    assert ranked(nodes, attribute="r") == ["n4", "n3", "n2", "n1"]  # 01 before 1
    assert ranked(nodes, attribute="r", order="descending") == ["n1", "n2", "n3", "n4"]


@pytest.mark.parametrize(
    ("a", "b", "first"),
    [
        ("20000000000000000000", "3", "a"),  # out of long range: compared as text
        ("9223372036854775807", "3", "b"),
        ("-9223372036854775808", "-3", "a"),
        ("+5", "10", "a"),
        ("1_0", "9", "a"),  # Python's int() would read 10; Java does not
        (" 5", "10", "a"),
        ("\u0663", "10", "a"),  # Java's Long.parseLong reads Unicode digits (3 < 10)
        ("-", "+", "b"),
        ("\U0001f600", "\ufffd", "a"),  # UTF-16 order
    ],
)
def test_rank_java_number_parsing(a: str, b: str, first: str) -> None:
    nodes = [node("b", r=b), node("a", r=a)]
    assert ranked(nodes, attribute="r")[0] == first


def test_rank_missing_attribute_and_ties() -> None:
    nodes = [node("z"), node("y", r="5"), node("x"), node("w", r=""), node("v", r="5")]
    assert ranked(nodes, attribute="r") == ["w", "v", "y", "x", "z"]
    assert ranked(nodes, attribute="r", order="descending") == ["z", "x", "y", "v", "w"]


def test_rank_rejects_unknown_order() -> None:
    with pytest.raises(ValueError, match="order"):
        rank([], order="up")


# --- §8 errors and warnings ----------------------------------------------------------------------


def error_for(text: str) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    return info.value


def test_error_rendering_matches_spec_example() -> None:
    err = error_for("name: /(web|api-[0-9]+/")
    assert err.column == 8
    assert err.filter_text == "name: /(web|api-[0-9]+/"
    assert format_filter_error(err) == (
        'invalid node filter at column 8: /…/ regex for key "name" does not compile '
        "(missing ), unterminated subpattern)\n"
        "  name: /(web|api-[0-9]+/\n"
        "         ^"
    )


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("name: /web[1/", 11, 'key "name"'),  # the unclosed "["
        ("name:/a{/", 8, 'key "name"'),  # one token key:value
        ("!name: /x)/", 10, 'key "!name"'),
        ('name: "/(a/"', 7, 'key "name"'),  # quoted: the value token's first character
        ("name: /a name: b[/", 16, 'key "name"'),  # joined: the token holding the fault
        ("tags: web,/x[/", 13, 'key "tags"'),
        ("tags: web+/x{/", 13, 'key "tags"'),
        ("env: '/  a**/'", 6, 'key "env"'),  # trimmed inside a quoted token
        ("name: \\p{L}", 7, "unsupported"),
        ("\tname:\t/a{/", 10, 'key "name"'),
    ],
)
def test_error_columns(text: str, column: int, fragment: str) -> None:
    err = error_for(text)
    assert err.column == column
    assert fragment in str(err)
    rendered = format_filter_error(err).splitlines()
    assert "\t" not in rendered[1]
    assert rendered[2].index("^") == column + 1


def test_errors_are_raised_only_for_selectors_that_are_tried() -> None:
    parse_filter("tags: ' /x[/'")  # not /…/ (leading space): lenient
    parse_filter("name: a name: /b[/")  # selector "a,/b[/" is not /…/: lenient
    parse_filter('name: ""')
    parse_filter("tags: web[")


def test_tokenizer_and_parse_warnings() -> None:
    flt = parse_filter("name: 'web tags:")
    assert FilterWarning("unclosed quote; it runs to the end of the filter", 7) in flt.warnings
    assert any(w.column == 1 and "no value" in w.message for w in parse_filter("tags:").warnings)
    assert any("!name: web01" in w.message for w in parse_filter("!web01").warnings)
    dotplus = parse_filter("tags: prio.+").warnings
    assert [w.column for w in dotplus] == [11]
    assert parse_filter("name: web.* tags: x").warnings == ()
    assert str(FilterWarning("m", 3)) == "node filter column 3: m"


ECS_NODES = [
    Node(
        "nginx-3b4196bd",
        {"ECS:Container-Image": "nginx:latest", "ECS:Service-Name": "web"}
        | {"ECS:Tag:aws:ecs:serviceName": "web", "ECS:Tag:Cost Center": "finance"}
        | {"ECS:Task-Launch-Type": "FARGATE", "ECS:Container-Name": "nginx"},
        frozenset({"ecs", "fargate"}),
    ),
    Node(
        "job-1",
        {"ECS:Container-Image": "busybox:1", "ECS:Service-Name": "", "ECS:Container-Name": "job"},
        frozenset({"ecs", "ec2"}),
    ),
]


def test_unmatched_key_warning_with_hint() -> None:
    flt = parse_filter("ECS:Container-Image:nginx:latest")
    assert select(ECS_NODES, flt) == []
    warnings = unmatched_key_warnings(flt, ECS_NODES)
    assert [str(w) for w in warnings] == [
        'node filter column 1: key "ECS" matches no attribute; '
        'did you mean "ECS:Container-Image: nginx:latest"?'
    ]
    assert (
        unmatched_key_warnings(parse_filter("ECS:Container-Image: nginx:latest"), ECS_NODES) == []
    )
    assert unmatched_key_warnings(parse_filter("tags: x nodename: y"), ECS_NODES) == []
    plain = unmatched_key_warnings(parse_filter("  !env: prod"), ECS_NODES)
    assert [str(w) for w in plain] == ['node filter column 3: key "env" matches no attribute']


# --- §9 gotchas for ECS users --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "kept"),
    [
        ("ECS:Container-Image: nginx:latest", ["nginx-3b4196bd"]),
        ("ECS:Container-Image:nginx:latest", []),
        ("'ECS:Container-Image:nginx:latest'", []),
        ('"ECS:Container-Image:" nginx:latest', ["nginx-3b4196bd"]),
        ("ECS:Tag:aws:ecs:serviceName: web", ["nginx-3b4196bd"]),
        ('"ECS:Tag:Cost Center:" finance', ["nginx-3b4196bd"]),
        ("ECS:Service-Name: .*", ["nginx-3b4196bd"]),
        ("!ECS:Service-Name: .*", ["job-1"]),
        ("ECS:Task-Launch-Type: FARGATE", ["nginx-3b4196bd"]),
        ("tags: FARGATE", []),
        ("tags: fargate", ["nginx-3b4196bd"]),
        ("ECS:Container-Name: nginx", ["nginx-3b4196bd"]),
        ("ECS:Container-Image: /busybox:1/", ["job-1"]),
        (r"ECS:Container-Image: /nginx\.latest/", []),
        ("ECS:Container-Image: nginx.latest", ["nginx-3b4196bd"]),  # "." matches ":"
        ("ECS:Container-Image: nginx.latest,busybox:1", ["job-1"]),
    ],
)
def test_ecs_gotchas(flt: str, kept: list[str]) -> None:
    assert names(select(ECS_NODES, flt)) == kept


# --- bounded evaluation (javaregex "Bounded matching") -----------------------------------------

LONG_NAMES = [node("a" * 40), node("app-" + "b" * 36), node("a" * 39 + "x")]


def test_a_backtracking_filter_is_answered_at_once() -> None:
    # re would try 2^40 ways to split each name: hours. The bounded matcher answers.
    assert compile_bounded("(.*)*x").bound(40) > BACKTRACK_BUDGET
    assert names(select(LONG_NAMES, "name: (.*)*x")) == ["a" * 39 + "x"]
    assert names(select(LONG_NAMES, "!name: (a|a)*b")) == names(LONG_NAMES)
    assert names(select(LONG_NAMES, "tags: (.*)*x name: .*")) == []


def test_a_filter_too_costly_to_evaluate_fails_naming_the_filter_and_key() -> None:
    text = "ECS:Cluster-Name: demo name: (a+)+\\1x"
    with pytest.raises(FilterSyntaxError) as info:
        select(
            [Node("z", {"ECS:Cluster-Name": "demo"}), Node("a" * 40, {"ECS:Cluster-Name": "demo"})],
            text,
        )
    error = info.value
    assert error.exit_code == 2
    assert error.filter_text == text
    assert error.column == text.index("(") + 1
    message = str(error)
    assert 'regex for key "name" is too costly to evaluate' in message
    assert "40-character value of node 'aaaa" in message
    assert f"more than {BACKTRACK_BUDGET:,} steps" in message
    assert "back-reference" in message
    rendered = format_filter_error(error)
    assert rendered.splitlines()[1:] == [f"  {text}", " " * (error.column + 1) + "^"]
    # Short values stay cheap enough for re, so the same filter works on them.
    assert names(select([node("aaaa"), node("aax")], "name: (a+)+\\1x")) == ["aax"]


def test_public_matchers_turn_cost_into_filter_errors() -> None:
    with pytest.raises(FilterSyntaxError, match="too costly"):
        regex_or_equals("(a+)+\\1x", "a" * 40)
    with pytest.raises(FilterSyntaxError, match="too costly"):
        match_value("(a+)+\\1x", "a" * 40)
    with pytest.raises(FilterSyntaxError, match="too costly"):
        match_tags("x,(a*)*\\1x", frozenset({"a" * 40}))  # "+" would mean AND here


# --- properties ----------------------------------------------------------------------------------

FILTER_WORDS = [*"ab:!,+/ \t\"'[](){}.*?\\^$|-&pPQEkx0129iu=<>#", "name", "tags", "\x00", "é"]
FILTERS = st.lists(st.sampled_from(FILTER_WORDS), max_size=25).map("".join) | st.text(max_size=20)
FUZZ_NODES = [
    Node("a", {"x": "a", "hostname": "ab"}, frozenset({"a", "b:"})),
    Node("b:[", {"osName": "b"}, frozenset({"x"})),
    Node("(", {}, frozenset()),
]


@FAST
@given(FILTERS)
def test_fuzzed_filters_raise_only_filter_syntax_errors(text: str) -> None:
    try:
        flt = parse_filter(text)
    except FilterSyntaxError as exc:
        error: FilterSyntaxError | None = exc
    else:
        error = None
    if error is not None:
        assert error.filter_text == text
        assert 1 <= error.column <= len(text)
        format_filter_error(error)
        return
    # A filter that parsed can be evaluated without errors.
    for precedence in (True, False):
        select(FUZZ_NODES, flt, exclude_precedence=precedence)
    unmatched_key_warnings(flt, FUZZ_NODES)
    for warning in flt.warnings:
        assert 1 <= warning.column <= len(text)


@FAST
@given(FILTERS)
def test_canonical_form_is_stable(text: str) -> None:
    try:
        flt = parse_filter(text)
    except FilterSyntaxError:
        return
    again = parse_filter(str(flt))
    assert again == flt
    assert str(again) == str(flt)
    assert select(FUZZ_NODES, again) == select(FUZZ_NODES, flt)


def test_node_filter_equality_ignores_text() -> None:
    assert parse_filter("tags:web") == parse_filter("  tags:   web ")
    assert hash(parse_filter("a")) == hash(NodeFilter(include=(("name", "a"),)))
    assert NodeFilter(include=(("name", "a"),)).keeps(node("a"))


# -- plain-text selectors (docs/node-filter.md §4.1 "Plain text") ---------------------------

_PLAIN = st.text(alphabet=st.characters(blacklist_characters="\\^$.|?*+()[]{}"), max_size=12)


def _through_the_regex_port(selector: str, item: str) -> bool:
    slashed = len(selector) >= 2 and selector[0] == "/" and selector[-1] == "/"
    trimmed = java_trim(selector[1:-1] if slashed else selector)
    return bool(compile_bounded(trimmed).fullmatch(item)) or (not slashed and trimmed == item)


@FAST
@given(body=_PLAIN, item=_PLAIN, slashed=st.booleans(), pad=st.sampled_from(["", " ", "\t "]))
def test_plain_selectors_match_as_the_regex_port_would(
    body: str, item: str, slashed: bool, pad: str
) -> None:
    selector = f"/{pad}{body}{pad}/" if slashed else f"{pad}{body}{pad}"
    assert _is_plain_text(java_trim(body))
    compile_java(java_trim(body))  # valid in Java, as the shortcut assumes
    assert regex_or_equals(selector, item) == _through_the_regex_port(selector, item)
    assert regex_or_equals(selector, java_trim(body))


@pytest.mark.parametrize("meta", list("\\^$.|?*+()[]{}"))
def test_every_metacharacter_takes_the_regex_port(meta: str) -> None:
    assert not _is_plain_text(f"web{meta}1")


@pytest.mark.e2e
def test_a_plain_filter_loads_no_regex_port() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom ecsexec.nodes.filter import parse_filter, select\n"
        "from ecsexec.nodes.node import Node\n"
        "flt = parse_filter('ECS:Service-Name: legacy !name: web-2 tags: a+b')\n"
        "select([Node('web-1', {'ECS:Service-Name': 'legacy'})], flt)\n"
        "print('PORT', 'ecsexec.nodes.javaregex' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "PORT False" in done.stdout, done.stdout + done.stderr
