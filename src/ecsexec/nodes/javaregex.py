"""Translate Java ``java.util.regex`` patterns into equivalent Python ``re`` patterns.

node-filter.md §4.1: Rundeck matches selectors with Java regexes, so ecsexec must accept
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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

__all__ = ["JavaRegexError", "compile_java", "translate"]

_MAX_CP: Final = 0x10FFFF
_MAX_INT: Final = 0x7FFFFFFF  # Java int arithmetic bounds repetition counts

Ranges = tuple[tuple[int, int], ...]


class JavaRegexError(Exception):
    """A pattern is invalid in Java, or valid but not translatable (``unsupported``).

    ``position`` is a 0-based index into the original pattern (code points).
    """

    def __init__(self, reason: str, position: int, *, unsupported: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position
        self.unsupported = unsupported


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


# node-filter.md §4.1: Java's \d \s \w are ASCII-only (no (?U)).
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


@dataclass(frozen=True)
class _Frag:
    """Translated text of a sub-pattern and its length bounds (``hi`` None: unbounded)."""

    text: str
    lo: int
    hi: int | None


@dataclass(frozen=True)
class _Pred:
    """A character-class escape (``\\d``, ``\\p{Alpha}`` ...) as a code-point set."""

    ranges: Ranges


def _set_frag(ranges: Ranges) -> _Frag:
    return _Frag(_class_text(ranges), 1, 1)


# Anchors (node-filter.md §4.1 table), written as zero-width Python assertions.
_NL_ETC = "\\n\\x85\\u2028\\u2029"
_BEGIN: Final = _Frag("\\A", 0, 0)
_CARET: Final = _Frag(f"(?!\\Z)(?:\\A|(?<=[{_NL_ETC}])|(?<=\\r)(?!\\n))", 0, 0)
_UNIX_CARET: Final = _Frag("(?!\\Z)(?:\\A|(?<=\\n))", 0, 0)
_DOLLAR: Final = _Frag("(?=(?:\\r\\n|(?<!\\r)\\n|[\\r\\x85\\u2028\\u2029])?\\Z)", 0, 0)
_DOLLAR_M: Final = _Frag("(?=\\Z|(?<!\\r)\\n|[\\r\\x85\\u2028\\u2029])", 0, 0)
_UNIX_DOLLAR: Final = _Frag("(?=\\n?\\Z)", 0, 0)
_UNIX_DOLLAR_M: Final = _Frag("(?=\\n|\\Z)", 0, 0)
_END: Final = _Frag("\\Z", 0, 0)
# Java 11/17 \b treats Unicode letters and digits as word characters (unlike its \w).
_BOUND: Final = _Frag("(?u:\\b)", 0, 0)
# Python's \B never matches an empty string; "not a boundary" does, like Java's.
_NOT_BOUND: Final = _Frag("(?!(?u:\\b))", 0, 0)

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
        return _Frag("(?!)", 0, None)

    @property
    def ci(self) -> bool:
        return "i" in self.flags

    # --- grammar -------------------------------------------------------------------

    def translate(self) -> str:
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
        return frag.text

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
                # node-filter.md §4.1: "." excludes \n \r U+0085 U+2028 U+2029; (?s) takes
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
        )

    def dollar(self, *, multiline: bool) -> _Frag:
        if "d" in self.flags:
            return _UNIX_DOLLAR_M if multiline else _UNIX_DOLLAR
        return _DOLLAR_M if multiline else _DOLLAR

    def literal(self, chars: list[int]) -> _Frag:
        # node-filter.md §4.1: (?i) folds ASCII letters only (no (?u) in Java's default).
        if self.ci:
            text = "".join(_class_text(_fold_ascii(((c, c),))) for c in chars)
        else:
            text = "".join(_cp(c) for c in chars)
        return _Frag(text, len(chars), len(chars))

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
            return _Frag("(?!)", 0, None)
        name = self.group_names[group]
        return _Frag(f"(?{'i' if self.ci else ''}:(?P={name}))", 0, None)

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
        unsupported (node-filter.md §4.1 table).
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
        ch = self.next()
        if ch == _QM:
            ch = self.skip()
            if ch == ord(":"):
                pass
            elif ch in (ord("="), ord("!")):
                head, lookaround = f"(?{chr(ch)}", True
            elif ch == ord(">"):
                head = "(?>"
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
        if lookaround:
            node = _Frag(head + inner.text + tail, 0, 0)
        else:
            node = _Frag(head + inner.text + tail, inner.lo, inner.hi)
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
        if ch in (_QM, _PLUS):
            text += chr(ch)
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
        return _Frag(f"(?:{node.text}){text}", lo, hi)


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
def _compiled(pattern: str) -> re.Pattern[str] | JavaRegexError:
    # Cached with its failure: a lenient selector that is not a valid regex is tried
    # against every node.
    try:
        text = translate(pattern)
    except JavaRegexError as exc:
        return exc
    try:
        return re.compile(text, re.ASCII)
    except (re.error, RecursionError, OverflowError) as exc:
        return JavaRegexError(
            f"unsupported Java regex construct: Python cannot compile the translation ({exc})",
            0,
            unsupported=True,
        )


def compile_java(pattern: str) -> re.Pattern[str]:
    """Compile Java regex ``pattern`` for use with ``fullmatch``; raises JavaRegexError."""
    result = _compiled(pattern)
    if isinstance(result, JavaRegexError):
        raise result
    return result
