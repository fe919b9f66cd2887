"""Bounded regex evaluation (javaregex "Bounded matching"): the cost bound, the memoized
matcher and their agreement with ``re`` on every pattern the translator accepts."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ecsexec.nodes import javaregex
from ecsexec.nodes.javaregex import (
    BACKTRACK_BUDGET,
    JavaRegexError,
    RegexCostError,
    compile_bounded,
    compile_java,
)

FAST = settings(max_examples=400, deadline=None)

# Java pattern pieces: anchors in every flag mode, classes, look-arounds, atomic groups,
# possessive and lazy quantifiers, counted repetition, inline flags.
LEAVES = [
    "a",
    "b",
    "x",
    ".",
    "[ab]",
    "[^a]",
    "\\w",
    "\\d",
    "\\s",
    "é",
    "_",
    "\\n",
    "\\r",
    "\\u2028",
    "^",
    "$",
    "\\A",
    "\\Z",
    "\\z",
    "\\b",
    "\\B",
    "",
]
QUANTIFIERS = ["*", "+", "?", "{2}", "{0,2}", "{1,}", "*?", "+?", "??", "*+", "++", "?+", "{1,2}+"]
FLAGS = ["", "(?m)", "(?s)", "(?d)", "(?md)", "(?i)", "(?ms)"]
TEXT_ALPHABET = "ab_x1 é\n\r\u2028\x85A"


def java_patterns() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(LEAVES)

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(children, children).map("".join),
            st.tuples(children, children).map("|".join),
            children.map(lambda c: f"({c})"),
            children.map(lambda c: f"(?:{c})"),
            children.map(lambda c: f"(?>{c})"),
            children.map(lambda c: f"(?={c})"),
            children.map(lambda c: f"(?!{c})"),
            st.tuples(children, st.sampled_from(QUANTIFIERS)).map(lambda t: f"(?:{t[0]}){t[1]}"),
        )

    body = st.recursive(leaf, extend, max_leaves=8)
    behind = st.sampled_from(["(?<=a)", "(?<!\\n)", "(?<=ab|ba)", "(?<!^)", "(?<=\\b.)"])
    return st.tuples(
        st.sampled_from(FLAGS), body, st.one_of(st.just(""), behind), body.map(str)
    ).map("".join)


def both(pattern: str, text: str) -> tuple[bool, bool]:
    bounded = compile_bounded(pattern)
    return bounded.matcher_program().fullmatch(text), bounded.regex.fullmatch(text) is not None


@FAST
@given(java_patterns(), st.lists(st.text(TEXT_ALPHABET, max_size=6), min_size=1, max_size=6))
@example("(?m)a$\\r\\n^b", ["a\r\nb", "a\rb", "a\nb"])
@example("\\b", ["", "a"])
@example("(?>a|ab)c", ["ac", "abc"])
@example("a++a", ["aa", "aaa"])
@example("(?:ab)+?c", ["ababc"])
@example("(?<=a{2})x", ["aax"])
def test_the_bounded_matcher_agrees_with_re(pattern: str, texts: list[str]) -> None:
    try:
        program = compile_bounded(pattern).matcher_program()
    except RegexCostError:
        assume(False)  # e.g. an atomic group around a loop that can match nothing
        return
    except JavaRegexError:
        assume(False)  # not a valid (or translatable) Java regex
        return
    regex = compile_java(pattern)
    for text in texts:
        assert program.fullmatch(text) == (regex.fullmatch(text) is not None), (pattern, text)


@FAST
@given(java_patterns(), st.integers(min_value=0, max_value=60))
def test_the_bound_never_decreases_with_the_length(pattern: str, length: int) -> None:
    try:
        bounded = compile_bounded(pattern)
    except JavaRegexError:
        assume(False)
        return
    assert bounded.bound(length) <= bounded.bound(length + 1)


def counting_re(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every value handed to ``re`` by a BoundedRegex."""
    seen: list[str] = []
    real = javaregex.BoundedRegex.fullmatch

    def spy(self: javaregex.BoundedRegex, text: str) -> bool:
        n = len(text)
        if self.bound(n) <= BACKTRACK_BUDGET:
            seen.append(text)
        return real(self, text)

    monkeypatch.setattr(javaregex.BoundedRegex, "fullmatch", spy)
    return seen


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("(.*)*x", "a" * 40, False),  # 2^40 ways for re: hours
        ("(.*)*x", "a" * 39 + "x", True),
        ("(a|a)*b", "a" * 40, False),
        ("(a+)+b", "a" * 40, False),
        ("(\\w+\\s?)*$", "a" * 40 + "!", False),
        (".*a.*a.*a.*a.*a.*x", "a" * 40, False),  # polynomial: 41^6 steps
        ("(?:a|ab)*c", "ab" * 30, False),
    ],
)
def test_catastrophic_patterns_are_answered_without_re(
    pattern: str, text: str, expected: bool
) -> None:
    bounded = compile_bounded(pattern)
    assert bounded.bound(len(text)) > BACKTRACK_BUDGET  # re would be unsafe here
    assert bounded.fullmatch(text) is expected


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("spring.*", "spring-orders:1.4.2" * 2),
        ("app-.*-web.*", "app-" + "x" * 36),
        ("(foo|bar)*", "foobar" * 7),
        ("(a|b)*", "ab" * 20),
        ("[a-z0-9-]+(:[0-9.]+)?", "spring-orders:1.4.2"),
        ("(?i)web(srv)?-\\d{1,3}", "WEB-012"),
        ("(.*)-\\1", "abc-abc"),
    ],
)
def test_ordinary_patterns_stay_on_re(pattern: str, text: str) -> None:
    assert compile_bounded(pattern).bound(len(text)) <= BACKTRACK_BUDGET


def test_a_costly_back_reference_is_refused_with_the_reason() -> None:
    bounded = compile_bounded("(a+)+\\1x")
    assert bounded.fullmatch("aaaa") is False  # short values are still cheap for re
    with pytest.raises(RegexCostError, match="back-reference") as info:
        bounded.fullmatch("a" * 40)
    assert info.value.length == 40
    assert info.value.bound > BACKTRACK_BUDGET


def test_a_huge_unrolled_program_is_refused() -> None:
    bounded = compile_bounded("(?:(?:a|ab){1000}){1000}c")
    with pytest.raises(RegexCostError, match="instructions"):
        bounded.fullmatch("ab" * 40)


def test_the_search_budget_bounds_the_bounded_matcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(javaregex, "SEARCH_BUDGET", 50)
    bounded = compile_bounded("(.*)*x")
    with pytest.raises(RegexCostError, match="more than 50 states"):
        bounded.fullmatch("a" * 40)


def test_every_anchor_predicate_equals_its_translation() -> None:
    texts = ["", "a", "\n", "a\n", "a\r\n", "\r", "a\rb", "\u2028", "a\x85", "é", "_a", "a b"]
    for name in ("_BEGIN", "_CARET", "_UNIX_CARET", "_DOLLAR", "_DOLLAR_M", "_UNIX_DOLLAR"):
        frag = getattr(javaregex, name)
        check = javaregex._ASSERTIONS[frag.node.kind]
        compiled = re.compile(frag.text, re.ASCII)
        for text in texts:
            for pos in range(len(text) + 1):
                want = compiled.match(text, pos) is not None
                assert check(text, pos) == want, (name, text, pos)
    for name in ("_UNIX_DOLLAR_M", "_END", "_BOUND", "_NOT_BOUND"):
        frag = getattr(javaregex, name)
        check = javaregex._ASSERTIONS[frag.node.kind]
        compiled = re.compile(frag.text, re.ASCII)
        for text in texts:
            for pos in range(len(text) + 1):
                assert check(text, pos) == (compiled.match(text, pos) is not None), (name, text)
