"""Translate Java ``java.util.regex`` patterns into equivalent Python ``re`` patterns.

docs/node-filter.md §4.1: Rundeck matches selectors with Java regexes, so ecsexec must accept
exactly the patterns Java accepts and match them the same way. This module ports the
parser of OpenJDK 17's ``java.util.regex.Pattern`` (``RemoveQEQuoting``, ``expr``,
``sequence``, ``atom``, ``escape``, ``clazz``, ``range``, ``group0``, ``closure`` ...)
cursor for cursor, so Java's syntax errors are reproduced, and emits a Python pattern
whose every construct is explicit:

* literals and classes become explicit code-point sets (ASCII-only case folding under
  ``(?i)``, as Java does without ``(?u)``), so no Python flag changes their meaning;
* ``.``, ``^``, ``$``, ``\\Z`` are rewritten for the current ``s``/``m``/``d`` flags;
* inline flags are tracked by the parser (Java scopes them to the enclosing group and
  keeps them across ``|``), so Python never sees a mid-pattern global flag;
* Java constructs without a faithful Python equivalent raise an "unsupported" error
  instead of silently matching differently.

The result is compiled with ``re.ASCII`` (only back-references under ``(?i)`` use it)
and must be used with ``fullmatch`` (Java's ``String.matches``).

The parser also builds a syntax tree, so that user patterns are evaluated within bounds:
:func:`compile_bounded` gives a :class:`BoundedRegex` that uses ``re`` only where a
static bound proves the match cheap, and otherwise a matcher that cannot backtrack
catastrophically (see "Bounded matching" below); :func:`compile_java` gives plain ``re``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any, Final

from ecsexec.nodes.regex_errors import JavaRegexError, RegexCostError

__all__ = [
    "BoundedRegex",
    "JavaRegexError",
    "RegexCostError",
    "compile_bounded",
    "compile_java",
    "translate",
]

_MAX_CP: Final = 0x10FFFF
_MAX_INT: Final = 0x7FFFFFFF  # Java int arithmetic bounds repetition counts

Ranges = tuple[tuple[int, int], ...]


# --- code-point sets -------------------------------------------------------------------


def _norm(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sort and merge inclusive ranges."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    result: list[tuple[int, int]] = []
    start = 0
    for lo, hi in ranges:
        if lo > start:
            result.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_CP:
        result.append((start, _MAX_CP))
    return tuple(result)


def _fold_ascii(ranges: Ranges) -> Ranges:
    """Add the other ASCII case of every ASCII letter in ``ranges`` (Java's CIRange/SingleI)."""
    extra: list[tuple[int, int]] = []
    for lo, hi in ranges:
        for base, other in ((0x41, 0x61), (0x61, 0x41)):  # A-Z <-> a-z
            a, b = max(lo, base), min(hi, base + 25)
            if a <= b:
                extra.append((a - base + other, b - base + other))
    return _norm((*ranges, *extra))


def _chars(text: str) -> Ranges:
    return _norm((ord(c), ord(c)) for c in text)


# docs/node-filter.md §4.1: Java's \d \s \w are ASCII-only (no (?U)).
_DIGIT: Final = ((0x30, 0x39),)
_SPACE: Final = _chars(" \t\n\x0b\f\r")  # Java ASCII.SPACE, same as \s
_WORD: Final = _norm(((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)))
_HORIZ: Final = _norm(
    (
        *_chars(" \t\xa0\u1680\u180e\u202f\u205f\u3000"),
        (0x2000, 0x200A),
    )
)
_VERT: Final = _chars("\n\x0b\f\r\x85\u2028\u2029")
_LINE_TERMINATORS: Final = _chars("\n\r\x85\u2028\u2029")
_ALPHA: Final = ((0x41, 0x5A), (0x61, 0x7A))
_PUNCT: Final = _norm(((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)))
# Java's CharPredicates.forProperty POSIX (US-ASCII) classes; ``Lower``/``Upper`` widen
# to both cases under (?i), as in OpenJDK 17.
_POSIX: Final[dict[str, Ranges]] = {
    "ASCII": ((0, 0x7F),),
    "Alnum": _norm((*_ALPHA, *_DIGIT)),
    "Alpha": _ALPHA,
    "Blank": _chars(" \t"),
    "Cntrl": ((0, 0x1F), (0x7F, 0x7F)),
    "Digit": _DIGIT,
    "Graph": ((0x21, 0x7E),),
    "Lower": ((0x61, 0x7A),),
    "Print": ((0x20, 0x7E),),
    "Punct": _PUNCT,
    "Space": _SPACE,
    "Upper": ((0x41, 0x5A),),
    "XDigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
    "L1": ((0, 0xFF),),
    "all": ((0, _MAX_CP),),
}


def _cp(code: int) -> str:
    """A code point as pattern text that is literal both inside and outside a class."""
    if code < 0x80 and chr(code).isalnum():
        return chr(code)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _class_items(ranges: Ranges) -> str:
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append(_cp(lo))
        elif hi == lo + 1:
            parts.append(_cp(lo) + _cp(hi))
        else:
            parts.append(f"{_cp(lo)}-{_cp(hi)}")
    return "".join(parts)


def _class_text(ranges: Ranges) -> str:
    """Python text matching exactly one code point of ``ranges``."""
    if ranges == ((0, _MAX_CP),):
        return "(?s:.)"
    if not ranges:
        # Matches nothing, but is one character wide like every class (look-behind widths).
        return "[^\\x00-\\U0010ffff]"
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _cp(ranges[0][0])
    complement = _complement(ranges)
    if len(complement) < len(ranges):
        return f"[^{_class_items(complement)}]"
    return f"[{_class_items(ranges)}]"


# --- the syntax tree the bounded matcher runs (see "Bounded matching" below) -------------


@dataclass(frozen=True, slots=True)
class _Set:
    """One code point of ``ranges``."""

    ranges: Ranges


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    """Alternatives in priority order; no alternative at all never matches."""

    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    item: _Node
    lo: int
    hi: int | None
    mode: str  # "greedy", "lazy" or "possessive"


@dataclass(frozen=True, slots=True)
class _Look:
    item: _Node
    behind: bool
    negate: bool
    width: int  # look-behinds only: their fixed length


@dataclass(frozen=True, slots=True)
class _Atomic:
    item: _Node


@dataclass(frozen=True, slots=True)
class _Assert:
    """A zero-width anchor, by name (see ``_ASSERTIONS``)."""

    kind: str


@dataclass(frozen=True, slots=True)
class _Backref:
    group: int


_Node = _Set | _Seq | _Alt | _Repeat | _Look | _Atomic | _Assert | _Backref
_EMPTY: Final = _Seq(())
_NEVER: Final = _Alt(())


@dataclass(frozen=True)
class _Frag:
    """Translated text of a sub-pattern, its length bounds (``hi`` None: unbounded) and
    its syntax tree."""

    text: str
    lo: int
    hi: int | None
    node: _Node


@dataclass(frozen=True)
class _Pred:
    """A character-class escape (``\\d``, ``\\p{Alpha}`` ...) as a code-point set."""

    ranges: Ranges


def _set_frag(ranges: Ranges) -> _Frag:
    return _Frag(_class_text(ranges), 1, 1, _Set(ranges))


# Anchors (docs/node-filter.md §4.1 table), written as zero-width Python assertions.
_NL_ETC = "\\n\\x85\\u2028\\u2029"
_BEGIN: Final = _Frag("\\A", 0, 0, _Assert("begin"))
_CARET: Final = _Frag(f"(?!\\Z)(?:\\A|(?<=[{_NL_ETC}])|(?<=\\r)(?!\\n))", 0, 0, _Assert("caret"))
_UNIX_CARET: Final = _Frag("(?!\\Z)(?:\\A|(?<=\\n))", 0, 0, _Assert("unix_caret"))
_DOLLAR: Final = _Frag(
    "(?=(?:\\r\\n|(?<!\\r)\\n|[\\r\\x85\\u2028\\u2029])?\\Z)", 0, 0, _Assert("dollar")
)
_DOLLAR_M: Final = _Frag("(?=\\Z|(?<!\\r)\\n|[\\r\\x85\\u2028\\u2029])", 0, 0, _Assert("dollar_m"))
_UNIX_DOLLAR: Final = _Frag("(?=\\n?\\Z)", 0, 0, _Assert("unix_dollar"))
_UNIX_DOLLAR_M: Final = _Frag("(?=\\n|\\Z)", 0, 0, _Assert("unix_dollar_m"))
_END: Final = _Frag("\\Z", 0, 0, _Assert("end"))
# Java 11/17 \b treats Unicode letters and digits as word characters (unlike its \w).
_BOUND: Final = _Frag("(?u:\\b)", 0, 0, _Assert("bound"))
# Python's \B never matches an empty string; "not a boundary" does, like Java's.
_NOT_BOUND: Final = _Frag("(?!(?u:\\b))", 0, 0, _Assert("not_bound"))

_BS, _LP, _RP, _LB, _RB = ord("\\"), ord("("), ord(")"), ord("["), ord("]")
_LC, _RC, _PIPE, _CARET_CH, _DOLLAR_CH = ord("{"), ord("}"), ord("|"), ord("^"), ord("$")
_DOT, _STAR, _PLUS, _QM, _MINUS, _AMP = ord("."), ord("*"), ord("+"), ord("?"), ord("-"), ord("&")


def _is_digit(ch: int) -> bool:
    return 0x30 <= ch <= 0x39


def _is_hex(ch: int) -> bool:
    return _is_digit(ch) or 0x41 <= ch <= 0x46 or 0x61 <= ch <= 0x66


def _is_alpha(ch: int) -> bool:
    return 0x41 <= ch <= 0x5A or 0x61 <= ch <= 0x7A


def _remove_qe_quoting(codes: list[int]) -> tuple[list[int], list[int]]:
    """Port of ``Pattern.RemoveQEQuoting``: ``\\Q…\\E`` becomes escaped text.

    Returns the rewritten pattern and, for each of its code points, the index of the
    original code point it came from (for error positions).
    """
    n = len(codes)
    i = 0
    while i < n - 1:
        if codes[i] != _BS:
            i += 1
        elif codes[i + 1] != ord("Q"):
            i += 2
        else:
            break
    if i >= n - 1:
        return list(codes), list(range(n))
    out = list(codes[:i])
    where = list(range(i))
    i += 2
    in_quote = True
    begin_quote = True

    def emit(values: Iterable[int], src: int) -> None:
        for value in values:
            out.append(value)
            where.append(src)

    while i < n:
        src = i
        c = codes[i]
        i += 1
        if c >= 0x80 or _is_alpha(c):
            emit((c,), src)
        elif _is_digit(c):
            if begin_quote:
                # Java writes \x3N so a preceding escape cannot swallow the digit.
                emit((_BS, ord("x"), ord("3")), src)
            emit((c,), src)
        elif c != _BS:
            if in_quote:
                emit((_BS,), src)
            emit((c,), src)
        elif in_quote:
            if i < n and codes[i] == ord("E"):
                i += 1
                in_quote = False
            else:
                emit((_BS, _BS), src)
        elif i < n and codes[i] == ord("Q"):
            i += 1
            in_quote = True
            begin_quote = True
            continue
        else:
            emit((c,), src)
            if i != n:
                emit((codes[i],), i)
                i += 1
        begin_quote = False
    return out, where


class _Translator:
    """One translation: Java's parser state plus the Python text being built."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        codes, self.where = _remove_qe_quoting([ord(c) for c in pattern])
        self.n = len(codes)
        self.t = codes
        self.cur = 0
        self.flags: frozenset[str] = frozenset()
        self.group_count = 1  # Java's capturingGroupCount: group 0 is the whole match
        self.open_groups: set[int] = set()
        self.named: dict[str, int] = {}
        self.group_names: dict[int, str] = {}
        self.later_refs: list[tuple[int, int]] = []
        # The first untranslatable construct. Parsing goes on, so that a pattern Java
        # rejects anyway is reported as invalid (a lenient selector then compares
        # literally, as in Rundeck) rather than as unsupported.
        self.deferred: JavaRegexError | None = None

    # Java's cursor primitives; the pattern ends in an endless run of zeros, as
    # Java's double-zero terminated ``temp`` array effectively does for the parser.
    def at(self, index: int) -> int:
        return self.t[index] if 0 <= index < self.n else 0

    def peek(self) -> int:
        return self.at(self.cur)

    def read(self) -> int:
        ch = self.at(self.cur)
        self.cur += 1
        return ch

    def next(self) -> int:
        self.cur += 1
        return self.at(self.cur)

    def skip(self) -> int:
        ch = self.at(self.cur + 1)
        self.cur += 2
        return ch

    def unread(self) -> None:
        self.cur -= 1

    def source_index(self, index: int) -> int:
        """Map an index of the rewritten pattern to the original pattern."""
        if not self.pattern:
            return 0
        if index < 0:
            return 0
        if index >= self.n:
            return len(self.pattern) - 1
        return min(self.where[index], len(self.pattern) - 1)

    def error(self, reason: str, index: int | None = None) -> JavaRegexError:
        # Java reports cursor - 1 (PatternSyntaxException index).
        where = self.cur - 1 if index is None else index
        return JavaRegexError(reason, self.source_index(where))

    def unsupported(self, what: str, index: int) -> JavaRegexError:
        return JavaRegexError(
            f"unsupported Java regex construct: {what}", self.source_index(index), unsupported=True
        )

    def defer(self, what: str, index: int) -> _Frag:
        """Note an untranslatable construct; returns a placeholder to keep parsing."""
        if self.deferred is None:
            self.deferred = self.unsupported(what, index)
        return _Frag("(?!)", 0, None, _NEVER)

    @property
    def ci(self) -> bool:
        return "i" in self.flags

    # --- grammar -------------------------------------------------------------------

    def translate(self) -> str:
        return self.parse().text

    def parse(self) -> _Frag:
        frag = self.expr()
        if self.cur != self.n:
            if self.peek() == _RP:
                raise self.error("Unmatched closing ')'", self.cur)
            # A trailing backslash: Java's escape() reads past the end.
            raise self.error("Unexpected internal error (trailing backslash)", self.n - 1)
        for group, index in self.later_refs:
            if group < self.group_count:
                self.defer(f"back-reference \\{group} to a later group", index)
        if self.deferred is not None:
            raise self.deferred
        return frag

    def expr(self) -> _Frag:
        alternatives = [self.sequence()]
        while self.peek() == _PIPE:
            self.next()
            alternatives.append(self.sequence())
        if len(alternatives) == 1:
            return alternatives[0]
        his = [a.hi for a in alternatives]
        return _Frag(
            "|".join(a.text for a in alternatives),
            min(a.lo for a in alternatives),
            None if None in his else max(h for h in his if h is not None),
            _Alt(tuple(a.node for a in alternatives)),
        )

    def sequence(self) -> _Frag:
        parts: list[_Frag] = []
        while True:
            ch = self.peek()
            node: _Frag
            if ch == _LP:
                group = self.group0()  # handles its own quantifier
                if group is not None:
                    parts.append(group)
                continue
            if ch == _LB:
                node = _set_frag(self.clazz())
            elif ch == _BS:
                ch = self.next()
                if ch in (ord("p"), ord("P")):
                    node = _set_frag(self.property_escape(ch))
                else:
                    self.unread()
                    node = self.atom()
            elif ch == _CARET_CH:
                self.next()
                if "m" in self.flags:
                    node = _UNIX_CARET if "d" in self.flags else _CARET
                else:
                    node = _BEGIN
            elif ch == _DOLLAR_CH:
                self.next()
                node = self.dollar(multiline="m" in self.flags)
            elif ch == _DOT:
                # docs/node-filter.md §4.1: "." excludes \n \r U+0085 U+2028 U+2029; (?s) takes
                # anything, (?d) excludes only \n.
                self.next()
                if "s" in self.flags:
                    node = _set_frag(((0, _MAX_CP),))
                elif "d" in self.flags:
                    node = _set_frag(_complement(((10, 10),)))
                else:
                    node = _set_frag(_complement(_LINE_TERMINATORS))
            elif ch in (_PIPE, _RP):
                break
            elif ch in (_QM, _STAR, _PLUS):
                self.next()
                raise self.error(f"Dangling meta character '{chr(ch)}'")
            elif ch == 0 and self.cur >= self.n:
                break
            else:
                # Includes ']' and '}' (literals) and '{' (an empty atom Java then repeats).
                node = self.atom()
            parts.append(self.closure(node))
        los = sum(p.lo for p in parts)
        his = [p.hi for p in parts]
        return _Frag(
            "".join(p.text for p in parts),
            los,
            None if None in his else sum(h for h in his if h is not None),
            parts[0].node if len(parts) == 1 else _Seq(tuple(p.node for p in parts)),
        )

    def dollar(self, *, multiline: bool) -> _Frag:
        if "d" in self.flags:
            return _UNIX_DOLLAR_M if multiline else _UNIX_DOLLAR
        return _DOLLAR_M if multiline else _DOLLAR

    def literal(self, chars: list[int]) -> _Frag:
        # docs/node-filter.md §4.1: (?i) folds ASCII letters only (no (?u) in Java's default).
        sets = [_fold_ascii(((c, c),)) if self.ci else ((c, c),) for c in chars]
        if self.ci:
            text = "".join(_class_text(ranges) for ranges in sets)
        else:
            text = "".join(_cp(c) for c in chars)
        node = _Seq(tuple(_Set(ranges) for ranges in sets))
        return _Frag(text, len(chars), len(chars), node.items[0] if len(chars) == 1 else node)

    def atom(self) -> _Frag:
        chars: list[int] = []
        prev = -1
        ch = self.peek()
        while True:
            if ch in (_STAR, _PLUS, _QM, _LC):
                if len(chars) > 1:
                    self.cur = prev  # the quantifier applies to the last character only
                    chars.pop()
                break
            if ch in (_DOLLAR_CH, _DOT, _CARET_CH, _LP, _LB, _PIPE, _RP):
                break
            if ch == _BS:
                ch = self.next()
                if ch in (ord("p"), ord("P")):
                    if chars:
                        self.unread()
                        break
                    return _set_frag(self.property_escape(ch))
                self.unread()
                prev = self.cur
                result = self.escape(inclass=False, create=not chars, isrange=False)
                if isinstance(result, int):
                    chars.append(result)
                    ch = self.peek()
                    continue
                if not chars:
                    assert result is not None
                    return _set_frag(result.ranges) if isinstance(result, _Pred) else result
                self.cur = prev  # unwind: the escape is parsed again as its own atom
                break
            if ch == 0 and self.cur >= self.n:
                break
            prev = self.cur
            chars.append(ch)
            ch = self.next()
        return self.literal(chars)

    def escape(self, *, inclass: bool, create: bool, isrange: bool) -> int | _Pred | _Frag | None:
        """Port of ``Pattern.escape``: a code point, a class, a node, or None (not created)."""
        start = self.cur
        ch = self.skip()
        c = chr(ch) if ch <= _MAX_CP else ""
        if c == "0":
            return self.octal()
        if "1" <= c <= "9":
            if not inclass:
                return self.ref(ch - 0x30, start) if create else None
        elif c in "ABGRXZbkz" and c and inclass:
            pass  # not allowed inside a class: falls through to the error
        elif c == "A":
            return _BEGIN if create else None
        elif c == "B":
            return _NOT_BOUND if create else None
        elif c == "b":
            if not create:
                return None
            if self.peek() == _LC:
                if self.skip() == ord("g"):
                    if self.read() == _RC:
                        return self.defer("\\b{g} grapheme boundary", start)
                    raise self.error("Illegal/unsupported escape sequence")
                self.unread()
                self.unread()
            return _BOUND
        elif c == "G":
            return self.defer("\\G (end of previous match)", start) if create else None
        elif c == "R":
            return self.defer("\\R linebreak matcher", start) if create else None
        elif c == "X":
            return self.defer("\\X grapheme cluster", start) if create else None
        elif c == "Z":
            return self.dollar(multiline=False) if create else None
        elif c == "z":
            return _END if create else None
        elif c == "k":
            if self.read() != ord("<"):
                raise self.error("\\k is not followed by '<' for named capturing group")
            name = self.groupname(self.read())
            if name not in self.named:
                raise self.error(f"named capturing group <{name}> does not exist")
            return self.backref(self.named[name], start) if create else None
        elif c in "dDsSwWhHvV":
            if c == "v" and isrange:
                return 0x0B  # Java keeps \v as VT at a range end
            base = {"d": _DIGIT, "s": _SPACE, "w": _WORD, "h": _HORIZ, "v": _VERT}[c.lower()]
            ranges = _complement(base) if c.isupper() else base
            if not create:
                return None
            return _Pred(ranges)
        elif c == "N":
            if self.read() != _LC:
                raise self.error("Illegal character name escape sequence")
            while self.read() != _RC:
                if self.cur >= self.n:
                    raise self.error("Unclosed character name escape sequence")
            self.defer("\\N{name} character name", start)
            return 0xFFFD  # a placeholder character: the translation is never used
        elif c == "a":
            return 0x07
        elif c == "c":
            if self.cur < self.n:
                return self.read() ^ 64
            raise self.error("Illegal control escape sequence")
        elif c == "e":
            return 0x1B
        elif c == "f":
            return 0x0C
        elif c == "n":
            return 0x0A
        elif c == "r":
            return 0x0D
        elif c == "t":
            return 0x09
        elif c == "u":
            return self.unicode_escape()
        elif c == "x":
            return self.hex_escape()
        elif not ("a" <= c <= "z" or "A" <= c <= "Z"):
            return ch  # any other escaped character is literal (NUL past the end included)
        raise self.error("Illegal/unsupported escape sequence")

    def octal(self) -> int:
        n = self.read()
        if 0x30 <= n <= 0x37:
            m = self.read()
            if 0x30 <= m <= 0x37:
                o = self.read()
                if 0x30 <= o <= 0x37 and 0x30 <= n <= 0x33:
                    return (n - 0x30) * 64 + (m - 0x30) * 8 + (o - 0x30)
                self.unread()
                return (n - 0x30) * 8 + (m - 0x30)
            self.unread()
            return n - 0x30
        raise self.error("Illegal octal escape sequence")

    def hex_escape(self) -> int:
        n = self.read()
        if _is_hex(n):
            m = self.read()
            if _is_hex(m):
                return int(chr(n) + chr(m), 16)
        elif n == _LC and _is_hex(self.peek()):
            value = 0
            while _is_hex(n := self.read()):
                value = value * 16 + int(chr(n), 16)
                if value > _MAX_CP:
                    raise self.error("Hexadecimal codepoint is too big")
            if n != _RC:
                raise self.error("Unclosed hexadecimal escape sequence")
            return value
        raise self.error("Illegal hexadecimal escape sequence")

    def uxxxx(self) -> int:
        value = 0
        for _ in range(4):
            ch = self.read()
            if not _is_hex(ch):
                raise self.error("Illegal Unicode escape sequence")
            value = value * 16 + int(chr(ch), 16)
        return value

    def unicode_escape(self) -> int:
        high = self.uxxxx()
        if 0xD800 <= high <= 0xDBFF:
            # Java joins \uD83D\uDE00 into one code point.
            saved = self.cur
            if self.read() == _BS and self.read() == ord("u"):
                low = self.uxxxx()
                if 0xDC00 <= low <= 0xDFFF:
                    return 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            self.cur = saved
        return high

    def groupname(self, ch: int) -> str:
        if not _is_alpha(ch):
            raise self.error("capturing group name does not start with a Latin letter")
        name = [chr(ch)]
        while _is_alpha(ch := self.read()) or _is_digit(ch):
            name.append(chr(ch))
        if ch != ord(">"):
            raise self.error("named capturing group is missing trailing '>'")
        return "".join(name)

    def ref(self, number: int, start: int) -> _Frag:
        # Java takes further digits only while they name an existing group.
        while _is_digit(ch := self.peek()):
            candidate = number * 10 + ch - 0x30
            if self.group_count - 1 < candidate:
                break
            number = candidate
            self.read()
        return self.backref(number, start)

    def backref(self, group: int, start: int) -> _Frag:
        if group in self.open_groups:
            return self.defer(f"back-reference \\{group} inside its own group", start)
        if group >= self.group_count:
            # No such group yet. If none ever exists, Java's reference never matches;
            # a later group is checked at the end of the pattern.
            self.later_refs.append((group, start))
            return _Frag("(?!)", 0, None, _NEVER)
        name = self.group_names[group]
        return _Frag(f"(?{'i' if self.ci else ''}:(?P={name}))", 0, None, _Backref(group))

    def property_escape(self, ch: int) -> Ranges:
        """``\\p``/``\\P`` with the cursor on the ``p``: Java's sequence/atom/range prelude."""
        start = self.cur - 1
        complement = ch == ord("P")
        single = True
        if self.next() != _LC:
            self.unread()
        else:
            single = False
        return self.family(single, complement, start)

    def family(self, single: bool, complement: bool, start: int) -> Ranges:
        self.next()
        if single:
            name = chr(self.at(self.cur))
            self.read()
        else:
            begin = self.cur
            end = begin
            while end < self.n and self.t[end] != _RC:
                end += 1
            if end >= self.n:
                self.cur = self.n + 1
                raise self.error("Unclosed character family")
            self.cur = end + 1
            if begin == end:
                raise self.error("Empty character family")
            name = "".join(chr(c) for c in self.t[begin:end])
        ranges = _POSIX.get(name)
        if ranges is None:
            # Unicode categories, scripts, blocks, binary and java* properties.
            self.defer(f"\\p{{{name}}} Unicode property", start)
            return ()
        if name in ("Lower", "Upper") and self.ci:
            ranges = _ALPHA
        return _complement(ranges) if complement else ranges

    def clazz(self, consume: bool = True) -> Ranges:
        """Port of ``Pattern.clazz``, cursor on ``[`` (or before ``def`` in ``abc&&def``).

        Nested classes and ``&&`` are parsed for Java's syntax errors but deferred as
        unsupported (docs/node-filter.md §4.1 table).
        """
        open_at = self.cur
        ranges: list[tuple[int, int]] = []
        have_any = False
        negate = False
        ch = self.next()
        if ch == _CARET_CH and self.at(self.cur - 1) == _LB:
            ch = self.next()
            negate = True
        while True:
            if ch == _LB:
                self.defer("nested character class [...[...]]", self.cur)
                self.clazz()
                have_any = True
                ch = self.peek()
                continue
            if ch == _AMP:
                if self.next() == _AMP:
                    self.defer("character class intersection &&", self.cur - 1)
                    ch = self.next()
                    right = False
                    while ch not in (_RB, _AMP):
                        if ch == _LB:
                            self.clazz()
                        else:
                            self.unread()
                            self.clazz(consume=False)
                        right = True
                        ch = self.peek()
                    if not have_any and not right:
                        raise self.error("Bad class syntax")
                    have_any = True
                    continue
                self.unread()  # a single "&" is literal
            elif ch == 0 and self.cur >= self.n:
                raise JavaRegexError("unterminated character set", self.source_index(open_at))
            elif ch == _RB and have_any:
                if consume:
                    self.next()
                result = _norm(ranges)
                return _complement(result) if negate else result
            ranges.extend(self.range_item())
            have_any = True
            ch = self.peek()

    def range_item(self) -> Ranges:
        """Port of ``Pattern.range``: one class item (character, range or class escape)."""
        ch = self.peek()
        if ch == _BS:
            ch = self.next()
            if ch in (ord("p"), ord("P")):
                return self.property_escape(ch)
            isrange = self.at(self.cur + 1) == _MINUS
            self.unread()
            result = self.escape(inclass=True, create=True, isrange=isrange)
            if isinstance(result, _Pred):
                return result.ranges
            assert isinstance(result, int)  # nodes are errors inside a class
            ch = result
        else:
            self.next()
        if self.peek() == _MINUS:
            end_range = self.at(self.cur + 1)
            if end_range not in (_LB, _RB):
                self.next()
                m = self.peek()
                if m == _BS:
                    end = self.escape(inclass=True, create=False, isrange=True)
                    m = end if isinstance(end, int) else -1
                else:
                    self.next()
                if m < ch:
                    raise self.error("Illegal character range")
                return _fold_ascii(((ch, m),)) if self.ci else ((ch, m),)
        return _fold_ascii(((ch, ch),)) if self.ci else ((ch, ch),)

    def group0(self) -> _Frag | None:
        """Port of ``Pattern.group0`` with the cursor on ``(``; None for a flags-only group."""
        saved_flags = self.flags
        open_at = self.cur
        capture: int | None = None
        head, tail = "(?:", ")"
        lookaround = False
        lookbehind = False
        negate = False
        atomic = False
        ch = self.next()
        if ch == _QM:
            ch = self.skip()
            if ch == ord(":"):
                pass
            elif ch in (ord("="), ord("!")):
                head, lookaround, negate = f"(?{chr(ch)}", True, ch == ord("!")
            elif ch == ord(">"):
                head, atomic = "(?>", True
            elif ch == ord("<"):
                ch = self.read()
                if ch not in (ord("="), ord("!")):
                    name = self.groupname(ch)
                    if name in self.named:
                        raise self.error(f"Named capturing group <{name}> is already defined")
                    capture = self.group_count
                    self.named[name] = capture
                    self.group_names[capture] = name
                    head = f"(?P<{name}>"
                else:
                    head, lookaround, lookbehind = f"(?<{chr(ch)}", True, True
                    negate = ch == ord("!")
            elif ch in (ord("$"), ord("@")):
                raise self.error("Unknown group type")
            else:
                self.unread()
                self.add_flags()
                ch = self.read()
                if ch == _RP:
                    return None  # flags stay set to the end of the enclosing group
                if ch != ord(":"):
                    raise self.error("Unknown inline modifier")
        else:
            capture = self.group_count
            self.group_names[capture] = f"_g{capture}"
            head = f"(?P<_g{capture}>"
        if capture is not None:
            self.group_count += 1
            self.open_groups.add(capture)
        inner = self.expr()
        if self.read() != _RP:
            raise JavaRegexError("missing ), unterminated subpattern", self.source_index(open_at))
        self.flags = saved_flags
        if capture is not None:
            self.open_groups.discard(capture)
        if lookbehind and (inner.hi is None or inner.lo != inner.hi):
            # Java accepts bounded variable-length look-behinds; Python needs a fixed width.
            self.defer("look-behind without a fixed length", open_at)
        text = head + inner.text + tail
        if lookaround:
            look = _Look(inner.node, lookbehind, negate, inner.lo)
            node = _Frag(text, 0, 0, look)
        else:
            tree = _Atomic(inner.node) if atomic else inner.node
            node = _Frag(text, inner.lo, inner.hi, tree)
        return self.closure(node)

    def add_flags(self) -> None:
        flags = set(self.flags)
        ch = self.peek()
        adding = True
        while True:
            c = chr(ch) if 0 < ch <= _MAX_CP else ""
            if c and c in "imsd":
                if adding:
                    flags.add(c)
                else:
                    flags.discard(c)
            elif c == "x":
                if adding:  # comments mode changes how the rest parses: stop here
                    raise self.unsupported("(?x) comments mode", self.cur)
            elif c and c in "uUc":
                if adding:
                    what = {"u": "(?u) Unicode case", "U": "(?U) Unicode classes", "c": "(?c)"}
                    self.defer(f"{what[c]} flag", self.cur)
            elif c == "-" and adding:
                adding = False
            else:
                break
            ch = self.next()
        self.flags = frozenset(flags)

    def closure(self, node: _Frag) -> _Frag:
        ch = self.peek()
        cmax: int | None
        if ch == _QM:
            cmin, cmax, text = 0, 1, "?"
        elif ch == _STAR:
            cmin, cmax, text = 0, None, "*"
        elif ch == _PLUS:
            cmin, cmax, text = 1, None, "+"
        elif ch == _LC:
            brace_at = self.cur
            ch = self.skip()
            if not _is_digit(ch):
                raise self.error("Illegal repetition", brace_at)
            cmin = 0
            while True:
                cmin = cmin * 10 + ch - 0x30
                if cmin > _MAX_INT:
                    raise self.error("Illegal repetition range")
                ch = self.read()
                if not _is_digit(ch):
                    break
            cmax = cmin
            if ch == ord(","):
                ch = self.read()
                if ch == _RC:
                    cmax = None
                else:
                    cmax = 0
                    while _is_digit(ch):
                        cmax = cmax * 10 + ch - 0x30
                        if cmax > _MAX_INT:
                            raise self.error("Illegal repetition range")
                        ch = self.read()
            if ch != _RC:
                raise self.error("Unclosed counted closure")
            if cmax is not None and cmax < cmin:
                raise self.error("Illegal repetition range")
            self.unread()
            text = f"{{{cmin}}}" if cmax == cmin else f"{{{cmin},{'' if cmax is None else cmax}}}"
        else:
            return node
        # Java's qtype(): a following ? is reluctant, + possessive (Python 3.11 has both).
        ch = self.next()
        mode = "greedy"
        if ch in (_QM, _PLUS):
            text += chr(ch)
            mode = "lazy" if ch == _QM else "possessive"
            self.next()
        if not node.text:
            return node  # Java repeats an empty atom ("{2}" at a sequence start): no effect
        lo = node.lo * cmin
        hi: int | None
        if node.hi == 0:
            hi = 0
        elif node.hi is None or cmax is None:
            hi = None
        else:
            hi = node.hi * cmax
        return _Frag(f"(?:{node.text}){text}", lo, hi, _Repeat(node.node, cmin, cmax, mode))


# --- Bounded matching ------------------------------------------------------------------
#
# Python's ``re`` backtracks, as Java does, so a selector such as ``(.*)*x`` takes time
# exponential in the length of the value it is matched against (hours for a 40-character
# node name), and nothing can interrupt it: ``re`` holds the GIL, a thread cannot stop it,
# and a signal only reaches the main thread. :class:`BoundedRegex` therefore never starts
# a match that could run long:
#
# 1. From the syntax tree, :func:`_cost` computes an upper bound on the steps a
#    backtracking matcher can take for a fullmatch on a value of a given length: every
#    quantifier and alternative multiplies the ways through the pattern (alternatives
#    whose first characters are disjoint count once). When the bound is within
#    ``BACKTRACK_BUDGET``, ``re`` (fast, in C) answers: this is the case for the patterns
#    people write (``spring.*``, ``web-\d+``, ``(foo|bar)-.*``...).
# 2. Otherwise a matcher that cannot blow up answers: the tree is compiled into a small
#    program and searched depth first in ``re``'s own priority order, remembering every
#    (instruction, position) state already explored. A state is explored at most once,
#    so the work is at most the program size times the value length (look-arounds and
#    atomic groups are sub-searches, remembered per position). Priority order keeps the
#    semantics of atomic groups and possessive quantifiers; everything else is a yes/no
#    question about the same language, so the answer equals ``re``'s, which equals
#    Java's (the translation above).
# 3. Back-references make the state include what a group captured, so they cannot be
#    remembered that way: a pattern with one, whose bound exceeds the budget, raises
#    :class:`RegexCostError`, as does a program above ``PROGRAM_LIMIT`` instructions or a
#    search above ``SEARCH_BUDGET`` steps. The error is about the pattern and the value
#    length, never a clock, so the same filter fails the same way on every machine.

#: Steps a ``re`` match may be proven to stay within. The bound is loose: ``re`` needs
#: well under a millisecond for patterns near it.
BACKTRACK_BUDGET: Final = 1_000_000
#: Instructions of the bounded matcher's program (counted repetitions are unrolled).
PROGRAM_LIMIT: Final = 50_000
#: States the bounded matcher may explore for one value.
SEARCH_BUDGET: Final = 2_000_000

_SATURATED: Final = 1 << 62


def _sat(value: int) -> int:
    return value if value < _SATURATED else _SATURATED


def _geometric(base: int, first: int, last: int) -> int:
    """``base**first + ... + base**last`` (0 when ``last < first``), saturated."""
    if last < first:
        return 0
    if base == 0:
        return 1 if first == 0 else 0
    if base == 1:
        return _sat(last - first + 1)
    if last * (base.bit_length() - 1) >= 62:
        return _SATURATED
    return _sat((base ** (last + 1) - base**first) // (base - 1))


@dataclass(frozen=True, slots=True)
class _Cost:
    """A node's worst case from one start position: ``out`` ways to leave it (each one
    runs the rest of the pattern), ``work`` steps to find them all, its length bounds,
    and the code points its first character is drawn from (None: unknown or empty)."""

    out: int
    work: int
    lo: int
    hi: int | None
    first: Ranges | None


def _disjoint(sets: list[Ranges]) -> bool:
    spans = sorted(span for ranges in sets for span in ranges)
    return all(a[1] < b[0] for a, b in pairwise(spans))


def _cost(node: _Node, n: int) -> _Cost:
    """Upper bounds for a backtracking fullmatch on a value of ``n`` code points."""
    if isinstance(node, _Set):
        return _Cost(1, 1, 1, 1, node.ranges)
    if isinstance(node, _Assert):
        return _Cost(1, 1, 0, 0, None)
    if isinstance(node, _Backref):
        return _Cost(1, n + 1, 0, None, None)
    if isinstance(node, _Look):
        inner = _cost(node.item, n)
        return _Cost(1, _sat(inner.work + inner.out + 1), 0, 0, None)
    if isinstance(node, _Atomic):
        inner = _cost(node.item, n)
        work = _sat(inner.work + inner.out + 1)
        return _Cost(min(inner.out, 1), work, inner.lo, inner.hi, inner.first)
    if isinstance(node, _Seq):
        out, work, lo = 1, 0, 0
        hi: int | None = 0
        first: Ranges | None = None
        decided = False
        for item in node.items:
            cost = _cost(item, n)
            work = _sat(work + out * cost.work)
            out = _sat(out * cost.out)
            lo += cost.lo
            hi = None if hi is None or cost.hi is None else hi + cost.hi
            if not decided and cost.hi != 0:  # zero-width items do not move the start
                first, decided = (cost.first if cost.lo >= 1 else None), True
        return _Cost(out, work, lo, hi, first)
    if isinstance(node, _Alt):
        if not node.items:
            return _Cost(0, 1, 0, 0, None)
        costs = [_cost(item, n) for item in node.items]
        work = _sat(sum(c.work for c in costs) + len(costs))
        firsts = [c.first for c in costs if c.first is not None and c.lo >= 1]
        exclusive = len(firsts) == len(costs) and _disjoint(firsts)
        # At most one alternative can get past the first character.
        out = max(c.out for c in costs) if exclusive else _sat(sum(c.out for c in costs))
        his = [c.hi for c in costs]
        return _Cost(
            out,
            work,
            min(c.lo for c in costs),
            None if None in his else max(h for h in his if h is not None),
            _norm(span for f in firsts for span in f) if exclusive else None,
        )
    assert isinstance(node, _Repeat)
    inner = _cost(node.item, n)
    if inner.hi == 0:
        top = node.lo + 1  # an iteration that matched nothing ends the loop after the minimum
    elif inner.lo >= 1:
        top = n // inner.lo  # more iterations cannot fit in the value
    else:
        top = node.lo + n + 1
    if node.hi is not None:
        top = min(top, node.hi)
    out = _geometric(inner.out, node.lo, top)
    # Every way through k iterations tries one more and the rest of the pattern.
    work = _sat(_geometric(inner.out, 0, top) * (inner.work + 1) + out)
    if node.mode == "possessive":
        out = min(out, 1)
    lo = node.lo * inner.lo
    hi = None if node.hi is None or inner.hi is None else node.hi * inner.hi
    return _Cost(out, work, lo, hi, inner.first if node.lo >= 1 else None)


def backtrack_bound(node: _Node, length: int) -> int:
    """The step bound of a backtracking fullmatch of ``node`` on ``length`` code points."""
    cost = _cost(node, length)
    return _sat(cost.work + cost.out + 1)


# The program: one tuple per instruction, the opcode first.
_OP_SET, _OP_SPLIT, _OP_ASSERT, _OP_LOOK, _OP_ATOMIC, _OP_MATCH, _OP_FAIL = range(7)


def _is_word(char: str) -> bool:
    return char == "_" or char.isalnum()  # what re's Unicode \b means by a word character


def _bound(text: str, pos: int) -> bool:
    n = len(text)
    if n == 0:
        return False  # re's \b never matches in an empty string
    before = pos > 0 and _is_word(text[pos - 1])
    after = pos < n and _is_word(text[pos])
    return before != after


_LINE_ENDS: Final = "\r\x85\u2028\u2029"


def _at_dollar(text: str, pos: int) -> bool:
    n = len(text)
    rest = n - pos
    if rest == 0:
        return True
    char = text[pos]
    if rest == 1:
        return char in _LINE_ENDS or (char == "\n" and not (pos and text[pos - 1] == "\r"))
    return rest == 2 and text[pos : pos + 2] == "\r\n"


def _at_dollar_m(text: str, pos: int) -> bool:
    if pos == len(text):
        return True
    char = text[pos]
    return char in _LINE_ENDS or (char == "\n" and not (pos and text[pos - 1] == "\r"))


def _at_caret(text: str, pos: int) -> bool:
    if pos >= len(text):
        return False  # Java's multiline ^ never matches at the end
    if pos == 0:
        return True
    before = text[pos - 1]
    return before in "\n\x85\u2028\u2029" or (before == "\r" and text[pos] != "\n")


# The Python predicate of every anchor, equal to the text the translation emits for it.
_ASSERTIONS: Final[dict[str, Callable[[str, int], bool]]] = {
    "begin": lambda text, pos: pos == 0,
    "caret": _at_caret,
    "unix_caret": lambda text, pos: pos < len(text) and (pos == 0 or text[pos - 1] == "\n"),
    "dollar": _at_dollar,
    "dollar_m": _at_dollar_m,
    "unix_dollar": lambda text, pos: (
        pos == len(text) or (pos == len(text) - 1 and text[pos] == "\n")
    ),
    "unix_dollar_m": lambda text, pos: pos == len(text) or text[pos] == "\n",
    "end": lambda text, pos: pos == len(text),
    "bound": _bound,
    "not_bound": lambda text, pos: not _bound(text, pos),
}


class _NotCompilable(Exception):
    pass


def _program_size(node: _Node, *, atomic: bool = False) -> int:
    """Instructions :class:`_Program` would emit for ``node`` (saturated).

    Raises :class:`_NotCompilable` for what the program cannot search exactly: a
    back-reference, and inside an atomic group (or possessive quantifier) a loop whose
    body can match nothing: ``re`` and Java leave such a loop for the rest of the pattern
    at once, an order the remembered states do not keep, and inside an atomic group the
    first match found is the one kept.
    """
    if isinstance(node, _Set | _Assert):
        return 1
    if isinstance(node, _Backref):
        raise _NotCompilable("it uses a back-reference")
    if isinstance(node, _Look):
        return _sat(_program_size(node.item) + 2)
    if isinstance(node, _Atomic):
        return _sat(_program_size(node.item, atomic=True) + 2)
    if isinstance(node, _Seq | _Alt):
        total = sum(_program_size(item, atomic=atomic) for item in node.items)
        return _sat(total + len(node.items) + 1)
    atomic = atomic or node.mode == "possessive"
    if atomic and (node.hi is None or node.hi > node.lo) and _cost(node.item, 0).lo == 0:
        raise _NotCompilable("an atomic group repeats something that can match nothing")
    copies = node.lo + 1 if node.hi is None else node.hi
    return _sat((_program_size(node.item, atomic=atomic) + 1) * max(copies, 1) + 3)


class _Program:
    """The tree as instructions, searched with memoized states (see above)."""

    def __init__(self, root: _Node) -> None:
        self.code: list[tuple[Any, ...]] = []
        match = self._emit((_OP_MATCH,))
        self.start = self._compile(root, match)

    def _emit(self, instruction: tuple[Any, ...]) -> int:
        self.code.append(instruction)
        return len(self.code) - 1

    def _compile(self, node: _Node, then: int) -> int:
        """Emit ``node`` followed by instruction ``then``; return its entry."""
        if isinstance(node, _Set):
            bounds = tuple(edge for lo, hi in node.ranges for edge in (lo, hi + 1))
            return self._emit((_OP_SET, bounds, then))
        if isinstance(node, _Assert):
            return self._emit((_OP_ASSERT, _ASSERTIONS[node.kind], then))
        if isinstance(node, _Seq):
            for item in reversed(node.items):
                then = self._compile(item, then)
            return then
        if isinstance(node, _Alt):
            if not node.items:
                return self._emit((_OP_FAIL,))
            entries = [self._compile(item, then) for item in node.items]
            entry = entries[-1]
            for other in reversed(entries[:-1]):
                entry = self._emit((_OP_SPLIT, other, entry))
            return entry
        if isinstance(node, _Look):
            sub = self._compile(node.item, self._emit((_OP_MATCH,)))
            return self._emit((_OP_LOOK, sub, node.behind, node.negate, node.width, then))
        if isinstance(node, _Atomic):
            sub = self._compile(node.item, self._emit((_OP_MATCH,)))
            return self._emit((_OP_ATOMIC, sub, then))
        if isinstance(node, _Backref):
            raise _NotCompilable("it uses a back-reference")
        if node.mode == "possessive":
            return self._compile(_Atomic(_Repeat(node.item, node.lo, node.hi, "greedy")), then)
        greedy = node.mode == "greedy"
        if node.hi is None:
            loop = self._emit((_OP_FAIL,))  # patched below: the loop's choice
            body = self._compile(node.item, loop)
            self.code[loop] = (_OP_SPLIT, body, then) if greedy else (_OP_SPLIT, then, body)
            entry = loop
        else:
            entry = then
            for _ in range(node.hi - node.lo):
                body = self._compile(node.item, entry)
                entry = self._emit((_OP_SPLIT, body, then) if greedy else (_OP_SPLIT, then, body))
        for _ in range(node.lo):
            entry = self._compile(node.item, entry)
        return entry

    def fullmatch(self, text: str) -> bool:
        search = _Search(self.code, text)
        return search.run(self.start, 0, len(text)) >= 0


class _Search:
    """One value's search: explored states and remembered sub-search results."""

    def __init__(self, code: list[tuple[Any, ...]], text: str) -> None:
        self.code = code
        self.text = text
        self.codes = [ord(c) for c in text]
        self.steps = 0
        self.memo: dict[tuple[int, int], int] = {}

    def sub(self, start: int, pos: int, end: int) -> int:
        key = (start, pos)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = self.run(start, pos, end)
        return found

    def run(self, start: int, pos: int, end: int) -> int:
        """The position where the first match (in priority order) from ``start`` at
        ``pos`` ends, or -1. ``end`` >= 0 accepts a match only there; -1 anywhere."""
        code, text, codes = self.code, self.text, self.codes
        n = len(codes)
        width = n + 1
        seen: set[int] = set()
        stack = [(start, pos)]
        while stack:
            pc, pos = stack.pop()
            while True:
                state = pc * width + pos
                if state in seen:
                    break
                seen.add(state)
                self.steps += 1
                if self.steps > SEARCH_BUDGET:
                    raise RegexCostError(
                        f"the bounded matcher would explore more than {SEARCH_BUDGET:,} states",
                        length=n,
                        bound=_SATURATED,
                    )
                op = code[pc]
                kind = op[0]
                if kind == _OP_SET:
                    if pos < n and bisect_right(op[1], codes[pos]) & 1:
                        pc, pos = op[2], pos + 1
                        continue
                    break
                if kind == _OP_SPLIT:
                    stack.append((op[2], pos))
                    pc = op[1]
                    continue
                if kind == _OP_ASSERT:
                    if op[1](text, pos):
                        pc = op[2]
                        continue
                    break
                if kind == _OP_LOOK:
                    _, sub, behind, negate, look_width, after = op
                    if behind:
                        found = pos >= look_width and self.sub(sub, pos - look_width, pos) >= 0
                    else:
                        found = self.sub(sub, pos, -1) >= 0
                    if found != negate:
                        pc = after
                        continue
                    break
                if kind == _OP_ATOMIC:
                    stop = self.sub(op[1], pos, -1)
                    if stop < 0:
                        break
                    pc, pos = op[2], stop
                    continue
                if kind == _OP_MATCH and (end < 0 or pos == end):
                    return pos
                break  # a failed match or _OP_FAIL: backtrack
        return -1


class BoundedRegex:
    """A Java regex for ``fullmatch`` whose evaluation time is bounded (see above)."""

    def __init__(self, pattern: str, regex: re.Pattern[str], tree: _Node) -> None:
        self.pattern = pattern
        self.regex = regex
        self._tree = tree
        self._cheap_up_to = -1  # the bound is monotonic in the length: remember the edges
        self._costly_from: int | None = None
        self._program: _Program | RegexCostError | None = None

    def bound(self, length: int) -> int:
        """The proven step bound of a backtracking fullmatch on ``length`` code points."""
        return backtrack_bound(self._tree, length)

    def fullmatch(self, text: str) -> bool:
        """Java's ``String.matches``; raises :class:`RegexCostError` (see above)."""
        n = len(text)
        if n > self._cheap_up_to and (self._costly_from is None or n < self._costly_from):
            if self.bound(n) <= BACKTRACK_BUDGET:
                self._cheap_up_to = n
            else:
                self._costly_from = n
        if n <= self._cheap_up_to:
            return self.regex.fullmatch(text) is not None
        program = self._compile(n)
        if isinstance(program, RegexCostError):
            raise RegexCostError(program.reason, length=n, bound=self.bound(n))
        return program.fullmatch(text)

    def matcher_program(self) -> _Program:
        """The bounded matcher alone (tests compare it with ``re``)."""
        program = self._compile(0)
        if isinstance(program, RegexCostError):
            raise program
        return program

    def _compile(self, n: int) -> _Program | RegexCostError:
        if self._program is None:
            try:
                size = _program_size(self._tree)
                if size > PROGRAM_LIMIT:
                    raise _NotCompilable(
                        f"its program would need {size:,} instructions (limit {PROGRAM_LIMIT:,})"
                        if size < _SATURATED
                        else f"its program would exceed {PROGRAM_LIMIT:,} instructions"
                    )
                self._program = _Program(self._tree)
            except _NotCompilable as exc:
                self._program = RegexCostError(str(exc), length=n, bound=0)
            except RecursionError:
                self._program = RegexCostError("it is nested too deeply", length=n, bound=0)
        return self._program


def translate(pattern: str) -> str:
    """The Python pattern equivalent to Java ``pattern`` under ``fullmatch``.

    Raises JavaRegexError when Java rejects the pattern, or (``unsupported``) when it
    uses a construct ecsexec cannot translate faithfully.
    """
    try:
        return _Translator(pattern).translate()
    except RecursionError:
        raise JavaRegexError(
            "unsupported Java regex construct: groups nested too deeply", 0, unsupported=True
        ) from None


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> BoundedRegex | JavaRegexError:
    # Cached with its failure: a lenient selector that is not a valid regex is tried
    # against every node.
    try:
        frag = _Translator(pattern).parse()
    except JavaRegexError as exc:
        return exc
    except RecursionError:
        return JavaRegexError(
            "unsupported Java regex construct: groups nested too deeply", 0, unsupported=True
        )
    try:
        regex = re.compile(frag.text, re.ASCII)
    except (re.error, RecursionError, OverflowError) as exc:
        return JavaRegexError(
            f"unsupported Java regex construct: Python cannot compile the translation ({exc})",
            0,
            unsupported=True,
        )
    return BoundedRegex(pattern, regex, frag.node)


def compile_bounded(pattern: str) -> BoundedRegex:
    """Compile Java regex ``pattern`` for bounded ``fullmatch``; raises JavaRegexError."""
    result = _compiled(pattern)
    if isinstance(result, JavaRegexError):
        raise result
    return result


def compile_java(pattern: str) -> re.Pattern[str]:
    """Compile Java regex ``pattern`` for use with ``fullmatch``; raises JavaRegexError.

    The result is plain ``re``, unbounded: for user-supplied patterns matched against
    values, use :func:`compile_bounded`.
    """
    return compile_bounded(pattern).regex
