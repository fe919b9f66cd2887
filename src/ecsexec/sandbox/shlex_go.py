"""Split a command line exactly as github.com/google/shlex ``Split`` does (docs/sandbox.md §8.1).

Pure. The ECS agent in container mode splits ``command`` with google/shlex and execs the
result without a shell, so the sandbox must reproduce its rules rather than Python's
``shlex`` (which differs on ``#`` inside words and on escapes inside double quotes):

- whitespace is space, tab, CR and LF;
- ``'…'`` is literal;
- inside ``"…"`` a backslash makes *any* next character literal and is dropped;
- outside quotes a backslash escapes any next character;
- ``#`` starts a comment only at the start of a token; it runs to the next ``\\n``;
- there is no expansion of any kind.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ShlexError", "split"]

_SPACE: Final = frozenset(" \t\r\n")

# Tokenizer states, named after google/shlex's.
_START, _IN_WORD, _ESCAPING, _ESCAPING_QUOTED, _QUOTING_ESCAPING, _QUOTING, _COMMENT = range(7)


class ShlexError(ValueError):
    """An unclosed quote or a trailing backslash; the agent fails the session on it."""


def split(command: str) -> list[str]:
    """Return the words of ``command``; raise :class:`ShlexError` where google/shlex errors."""
    words: list[str] = []
    value: list[str] = []
    state = _START
    for ch in command:
        if state == _START:
            if ch in _SPACE:
                continue
            if ch == '"':
                state = _QUOTING_ESCAPING
            elif ch == "'":
                state = _QUOTING
            elif ch == "\\":
                state = _ESCAPING
            elif ch == "#":
                state = _COMMENT  # only at the start of a token (§8.1)
            else:
                value.append(ch)
                state = _IN_WORD
        elif state == _IN_WORD:
            if ch in _SPACE:
                words.append("".join(value))
                value.clear()
                state = _START
            elif ch == '"':
                state = _QUOTING_ESCAPING
            elif ch == "'":
                state = _QUOTING
            elif ch == "\\":
                state = _ESCAPING
            else:
                value.append(ch)  # includes '#': a#b stays a#b
        elif state == _ESCAPING:
            value.append(ch)
            state = _IN_WORD
        elif state == _ESCAPING_QUOTED:
            value.append(ch)
            state = _QUOTING_ESCAPING
        elif state == _QUOTING_ESCAPING:
            if ch == '"':
                state = _IN_WORD
            elif ch == "\\":
                state = _ESCAPING_QUOTED
            else:
                value.append(ch)
        elif state == _QUOTING:
            if ch == "'":
                state = _IN_WORD
            else:
                value.append(ch)
        elif ch == "\n":  # _COMMENT: runs to the next LF; other whitespace stays inside it
            state = _START
    # End of input, as google/shlex handles EOF in each state.
    if state in (_ESCAPING, _ESCAPING_QUOTED):
        raise ShlexError("EOF found after escape character")
    if state in (_QUOTING, _QUOTING_ESCAPING):
        raise ShlexError("EOF found when expecting closing quote")
    if state == _IN_WORD:
        words.append("".join(value))
    return words
