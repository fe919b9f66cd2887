"""google/shlex splitting as the ECS agent does it.

See docs/sandbox.md §8.1, docs/ssm-protocol.md §13.
"""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecsexec.sandbox.shlex_go import ShlexError, split


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("", []),
        ("   \t\r\n ", []),
        ("ls -la /tmp", ["ls", "-la", "/tmp"]),
        ("a\tb\rc\nd", ["a", "b", "c", "d"]),
        ("'single $HOME \\n'", ["single $HOME \\n"]),  # single quotes: literal
        ('"a\\"b"', ['a"b']),
        ('"\\a\\$\\\\"', ["a$\\"]),  # inside "…", a backslash escapes any char and is dropped
        ("a\\ b c", ["a b", "c"]),  # outside quotes, backslash escapes a space
        ("a\\\nb", ["a\nb"]),  # ... and a newline
        ("pre'mid'\"dq\"post", ["premiddqpost"]),
        ('"" x', ["", "x"]),
        ("''", [""]),
        ("echo $HOME", ["echo", "$HOME"]),  # no expansion of any kind
        ("echo ~ *", ["echo", "~", "*"]),
        ("a#b", ["a#b"]),  # '#' inside a word is literal
        ("a #b c\nd", ["a", "d"]),  # comment at token start runs to the next LF
        ("#only a comment", []),
        ("x #c1\n#c2\ny", ["x", "y"]),
        ("a #comment\twith\ttabs\rand cr\nb", ["a", "b"]),  # only LF ends a comment
        ("'#not' \"#not\"", ["#not", "#not"]),
        ("\\#x", ["#x"]),
        ("sh -c 'echo hi; exit 3'", ["sh", "-c", "echo hi; exit 3"]),
        ("ünïcödé 'ß'", ["ünïcödé", "ß"]),
    ],
)
def test_split_matches_google_shlex(command: str, expected: list[str]) -> None:
    assert split(command) == expected


def test_python_shlex_differs_on_hash_inside_words() -> None:
    # The reason the sandbox has its own splitter: posix shlex with comments drops "#b".
    lexer = shlex.shlex("a#b c", posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    assert list(lexer) == ["a"]
    assert split("a#b c") == ["a#b", "c"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("'abc", "closing quote"),
        ('"abc', "closing quote"),
        ("abc\\", "escape"),
        ('"abc\\', "escape"),
        ("ok 'x' 'y", "closing quote"),
    ],
)
def test_errors(command: str, message: str) -> None:
    with pytest.raises(ShlexError, match=message):
        split(command)


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the subclass relation is the point
        split("'")


@given(st.lists(st.text()))
def test_shlex_join_round_trips(words: list[str]) -> None:
    assert split(shlex.join(words)) == words


@given(st.text())
def test_shlex_quote_round_trips(word: str) -> None:
    assert split(shlex.quote(word)) == [word]


@given(st.text(alphabet=st.sampled_from("ab #'\"\\\n\t $"), max_size=30))
def test_never_crashes_and_errors_only_as_shlex_error(command: str) -> None:
    try:
        words = split(command)
    except ShlexError:
        return
    assert all(isinstance(w, str) for w in words)


def test_client_marker_script_round_trips() -> None:
    # docs/ssm-protocol.md §12: the client sends shlex.join(["/bin/sh", "-c", script]).
    script = "\n".join(
        [
            "stty -echo 2>/dev/null",
            "printf '\\n__ECSEXEC_%s_%s__\\n' B 0123456789abcdef",
            "/bin/sh -c " + shlex.quote('echo "it\'s" $HOME # not a comment; exit 3'),
            "__ecsexec_rc=$?",
            'exit "$__ecsexec_rc"',
        ]
    )
    assert split(shlex.join(["/bin/sh", "-c", script])) == ["/bin/sh", "-c", script]
