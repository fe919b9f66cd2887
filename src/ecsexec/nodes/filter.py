"""Parse Rundeck node filters, select nodes with them and rank the result (docs/node-filter.md).

Pipeline (docs/node-filter.md, introduction): tokens (§1) -> include and exclude maps (§2) ->
per node, include match I and exclude match E (§3-§5) -> keep or drop (§6) -> order (§7).
Selectors are Java regexes; :mod:`ecsexec.nodes.javaregex` translates them and bounds
their evaluation: a selector that backtracks catastrophically (``name: (.*)*x``) is
answered by a matcher that cannot blow up, and one that no bounded matcher can evaluate
on some value (a back-reference under nested quantifiers) raises FilterSyntaxError naming
the filter, the key and the limit, instead of running for hours. Everything here is pure:
warnings are returned, never printed.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Final

from ecsexec.errors import FilterSyntaxError
from ecsexec.nodes.node import Node, is_blank, is_delimiter, java_trim, utf16_key
from ecsexec.nodes.regex_errors import JavaRegexError, RegexCostError

__all__ = [
    "FIELD_KEYS",
    "FilterWarning",
    "NodeFilter",
    "Token",
    "format_filter_error",
    "java_split",
    "match_tags",
    "match_value",
    "parse_filter",
    "rank",
    "regex_or_equals",
    "select",
    "tokenize",
    "unmatched_key_warnings",
]

#: docs/node-filter.md §3: filter keys compared with node fields, and the attribute they read
#: (None: ``name`` reads the node name, ``tags`` the tag set).
FIELD_KEYS: Final[Mapping[str, str | None]] = {
    "name": None,
    "hostname": "hostname",
    "os-name": "osName",
    "os-family": "osFamily",
    "os-arch": "osArch",
    "os-version": "osVersion",
    "tags": None,
}

_QUOTES: Final = "'\""
_DELIMITERS: Final = "".join(chr(c) for c in range(0x21))  # what Java's trim strips


def java_split(text: str, sep: str) -> list[str]:
    """Java's ``String.split`` for a one-character literal separator.

    Splits at every ``sep`` and drops *trailing* empty strings; ``""`` gives ``[""]``
    (docs/node-filter.md, Definitions).
    """
    return [piece for _, piece in _split_spans(text, sep)]


def _split_spans(text: str, sep: str) -> list[tuple[int, str]]:
    """:func:`java_split` with the offset of every piece in ``text``."""
    if not text:
        return [(0, "")]
    spans: list[tuple[int, str]] = []
    start = 0
    while True:
        index = text.find(sep, start)
        if index < 0:
            spans.append((start, text[start:]))
            break
        spans.append((start, text[start:index]))
        start = index + 1
    while spans and not spans[-1][1]:
        spans.pop()
    return spans


# --- §1 tokenizing ---------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One filter token.

    ``start`` is the 0-based index of its first character in the filter (the opening
    quote of a quoted token); ``positions`` the index of each character of ``text``.
    """

    text: str
    start: int
    positions: tuple[int, ...]
    quoted: bool


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens exactly like Rundeck's ``QuotedStringTokenizer`` (§1)."""
    return _tokenize(text)[0]


def _tokenize(text: str) -> tuple[list[Token], list[int]]:
    """Tokens, and the positions of quotes left open at the end of the input."""
    # docs/node-filter.md §1: a port of QuotedStringTokenizer.readNextToken/readQuotedToken,
    # quirks included: one leading delimiter is skipped, then a run is consumed up to
    # (not including) the last character, so input of 2+ delimiters yields one empty token.
    n = len(text)
    tokens: list[Token] = []
    unclosed: list[int] = []

    def consume_delimiters(start: int) -> int:
        while start < n - 1:
            start += 1
            if not is_delimiter(text[start]):
                break
        return start

    pos = 0
    while pos < n:
        if is_delimiter(text[pos]):
            pos += 1
        if pos >= n:
            break
        if is_delimiter(text[pos]):
            pos = consume_delimiters(pos)
        start = pos
        quote = text[pos] if text[pos] in _QUOTES else ""
        quoting = bool(quote)
        open_at = pos
        if quoting:
            pos += 1
        chars: list[str] = []
        positions: list[int] = []
        ended = False
        while pos < n:
            char = text[pos]
            if quoting:
                if char == quote:
                    if pos + 1 < n and text[pos + 1] == quote:
                        # docs/node-filter.md §1: the opening quote doubled is one literal quote.
                        chars.append(quote)
                        positions.append(pos)
                        pos += 2
                        continue
                    quoting = False
                    pos += 1
                    continue
            else:
                if is_delimiter(char):
                    pos = consume_delimiters(pos)
                    ended = True
                    break
                if quote and char == quote:
                    # docs/node-filter.md §1: the closing quote ends quoting, not the token;
                    # the same quote kind re-opens it (the other kind is literal).
                    quoting = True
                    open_at = pos
                    pos += 1
                    continue
            chars.append(char)
            positions.append(pos)
            pos += 1
        if not ended and quoting:
            unclosed.append(open_at)  # docs/node-filter.md §1: runs to the end, no error
        tokens.append(Token("".join(chars), start, tuple(positions), bool(quote)))
    return tokens, unclosed


# --- §2 parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterWarning:
    """A warning about a filter (docs/node-filter.md §8); it never changes the result."""

    message: str
    column: int  # 1-based, in code points of the filter text

    def __str__(self) -> str:
        return f"node filter column {self.column}: {self.message}"


@dataclass(frozen=True)
class _Piece:
    """One value token's contribution to a selector."""

    token: Token
    offset: int  # where the value starts in token.text (after "key:" for a pair token)


@dataclass(frozen=True)
class _ClauseSource:
    key_token: Token
    pieces: tuple[_Piece, ...]


@dataclass(frozen=True)
class NodeFilter:
    """A parsed filter: the include and exclude maps of docs/node-filter.md §2, in key order.

    Equality compares the maps only. ``str()`` gives a canonical filter text that parses
    back to an equal filter; ``text`` keeps the original.
    """

    include: tuple[tuple[str, str], ...] = ()
    exclude: tuple[tuple[str, str], ...] = ()
    text: str = field(default="", compare=False)
    warnings: tuple[FilterWarning, ...] = field(default=(), compare=False)
    _sources: Mapping[tuple[bool, str], _ClauseSource] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __hash__(self) -> int:
        return hash((self.include, self.exclude))

    def __str__(self) -> str:
        words = [f"{_quote(key + ':')} {_quote(value)}" for key, value in self.include]
        words += [f"{_quote('!' + key + ':')} {_quote(value)}" for key, value in self.exclude]
        return " ".join(words)

    @property
    def include_blank(self) -> bool:
        """True when the include side is blank (§3: blank field selectors are ignored)."""
        return _side_blank(self.include)

    @property
    def exclude_blank(self) -> bool:
        """True when the exclude side is blank."""
        return _side_blank(self.exclude)

    @property
    def is_blank(self) -> bool:
        """True when both sides are blank: the filter selects no node (§6)."""
        return self.include_blank and self.exclude_blank

    def keeps(self, node: Node, *, exclude_precedence: bool = True) -> bool:
        """Whether ``node`` is selected (§6 table).

        Raises FilterSyntaxError when a selector's regex cannot be evaluated within bounds
        on one of the node's values (see :mod:`ecsexec.nodes.javaregex`).
        """
        include_blank, exclude_blank = self.include_blank, self.exclude_blank
        included = not include_blank and _side_matches(self, False, node)
        # docs/node-filter.md §6 table; a blank include side never includes anything.
        if exclude_blank:
            return included
        excluded = _side_matches(self, True, node)
        if include_blank:
            return not excluded
        if exclude_precedence:
            return included and not excluded
        return included or not excluded


def _quote(word: str) -> str:
    if word and word[0] not in _QUOTES and not any(is_delimiter(c) for c in word):
        return word
    return '"' + word.replace('"', '""') + '"'


def _side_blank(clauses: Sequence[tuple[str, str]]) -> bool:
    # docs/node-filter.md §3: a side is blank when all its field selectors are blank and it
    # has no attribute clause (an attribute clause with a blank selector still counts).
    return all(key in FIELD_KEYS and is_blank(selector) for key, selector in clauses)


def _side_matches(flt: NodeFilter, exclude: bool, node: Node) -> bool:
    # docs/node-filter.md §6: every clause of the side must match (AND over keys). §3: a
    # blank field selector is ignored; an attribute clause is always evaluated.
    for key, selector in flt.exclude if exclude else flt.include:
        try:
            if key == "tags":
                if not is_blank(selector) and not _match_tags(selector, node.tags):
                    return False
            elif key in FIELD_KEYS:
                attribute = FIELD_KEYS[key]
                value = node.name if attribute is None else node.attributes.get(attribute)
                if not is_blank(selector) and not _match_value(selector, value):
                    return False
            elif not _match_value(selector, node.get(key)):
                return False
        except RegexCostError as exc:
            shown = ("!" if exclude else "") + key
            error = FilterSyntaxError(
                f'regex for key "{shown}" {_cost_message(exc, node.name)}',
                filter_text=flt.text,
                column=_column(flt, exclude, key, 0),
            )
            error.key = shown  # type: ignore[attr-defined]
            error.selector = selector  # type: ignore[attr-defined]
            raise error from None
    return True


def _cost_message(exc: RegexCostError, node_name: str = "") -> str:
    from ecsexec.nodes.javaregex import BACKTRACK_BUDGET

    on = f" of node {node_name!r}" if node_name else ""
    return (
        f"is too costly to evaluate: on a {exc.length}-character value{on} a backtracking "
        f"match could take more than {BACKTRACK_BUDGET:,} steps, and the bounded matcher "
        f"cannot take it because {exc.reason}; simplify the regex (avoid nested quantifiers "
        "such as (x+)+ and back-references)"
    )


def parse_filter(text: str) -> NodeFilter:
    """Parse a filter (§1-§2) and check every selector that may be tried as a regex (§8).

    Raises FilterSyntaxError for an invalid ``/…/`` regex or an untranslatable Java
    construct, naming the 1-based column.
    """
    tokens, unclosed = _tokenize(text)
    warnings = [
        FilterWarning("unclosed quote; it runs to the end of the filter", p + 1) for p in unclosed
    ]
    sides: dict[bool, dict[str, list[_Piece]]] = {False: {}, True: {}}
    key_tokens: dict[tuple[bool, str], Token] = {}
    pending: tuple[str, Token] | None = None
    for token in tokens:
        t = token.text
        offset = 0
        if pending is None:
            if t.endswith(":"):
                # §2 rule 1: the key is everything up to the last colon.
                pending = (t[: t.rindex(":")], token)
                continue
            if ":" in t:
                # §2 rule 2: the key ends at the first colon, the rest is the value.
                offset = t.index(":") + 1
                pending = (t[: offset - 1], token)
            else:
                # §2 rule 3: a bare word selects by node name.
                pending = ("name", token)
                if t.startswith("!") and len(t) > 1:
                    warnings.append(
                        FilterWarning(
                            f'"{t}" selects a node named "{t}"; to exclude, write "!name: {t[1:]}"',
                            token.start + 1,
                        )
                    )
        key, key_token = pending
        exclude = key.startswith("!")
        if exclude:
            key = key[1:]  # §2 rule 4: exactly one "!" is removed
        sides[exclude].setdefault(key, []).append(_Piece(token, offset))
        key_tokens.setdefault((exclude, key), key_token)
        pending = None
    if pending is not None:
        warnings.append(
            FilterWarning(f'key "{pending[0]}" has no value and is ignored', pending[1].start + 1)
        )
    sources = {
        (exclude, key): _ClauseSource(key_tokens[(exclude, key)], tuple(pieces))
        for exclude, side in sides.items()
        for key, pieces in side.items()
    }
    flt = NodeFilter(
        include=tuple((k, _joined(p)) for k, p in sides[False].items()),
        exclude=tuple((k, _joined(p)) for k, p in sides[True].items()),
        text=text,
        warnings=tuple(warnings),
        _sources=sources,
    )
    extra = _check_selectors(flt)
    if extra:
        object.__setattr__(flt, "warnings", flt.warnings + tuple(extra))
    return flt


def _joined(pieces: Sequence[_Piece]) -> str:
    # §2 rule 4: a repeated key appends "," and the new value.
    return ",".join(p.token.text[p.offset :] for p in pieces)


def _column(flt: NodeFilter, exclude: bool, key: str, index: int) -> int:
    """1-based filter column of character ``index`` of a selector (§8)."""
    source = flt._sources.get((exclude, key))
    if source is None:
        return 0
    # docs/node-filter.md §8: the exact column when the selector is one unquoted token,
    # else the first character of the value token holding the fault.
    pieces = source.pieces
    start = 0
    for number, piece in enumerate(pieces):
        length = len(piece.token.text) - piece.offset
        if index < start + length or number == len(pieces) - 1:
            token = piece.token
            if len(pieces) == 1 and not token.quoted and length > 0:
                at = min(max(index - start, 0), length - 1) + piece.offset
                return token.positions[min(at, len(token.positions) - 1)] + 1
            return token.start + 1
        if index == start + length:  # the joining comma: point at the next value
            return pieces[number + 1].token.start + 1
        start += length + 1
    return pieces[0].token.start + 1


def _selector_problem(selector: str) -> tuple[int, JavaRegexError, bool] | None:
    """How ``regex_or_equals(selector, …)`` fails for every item, or None.

    Returns the index in ``selector`` of the faulty character, the error, and whether the
    selector is a ``/…/`` regex. Invalid non-``/…/`` regexes are not problems (§4).
    """
    slashed = len(selector) >= 2 and selector[0] == "/" and selector[-1] == "/"
    body = selector[1:-1] if slashed else selector
    pattern = java_trim(body)
    lead = len(body) - len(body.lstrip(_DELIMITERS))
    if _is_plain_text(pattern):
        return None  # compiles in Java, to itself
    from ecsexec.nodes.javaregex import compile_java

    try:
        compile_java(pattern)
    except JavaRegexError as exc:
        if slashed or exc.unsupported:
            return (1 if slashed else 0) + lead + exc.position, exc, slashed
    return None


def _check_selectors(flt: NodeFilter) -> list[FilterWarning]:
    """§8: raise for selectors that cannot be evaluated; return `tags: x.+` warnings."""
    warnings: list[FilterWarning] = []
    for exclude, clauses in ((False, flt.include), (True, flt.exclude)):
        for key, selector in clauses:
            if is_blank(selector):
                continue  # docs/node-filter.md §3, §4 step 2, §5 step 1: never tried as a regex
            checks: list[tuple[int, str]]
            if key == "tags" and ("+" in selector or "," in selector):
                # docs/node-filter.md §5 step 2: every "+" term of every "," clause is tried.
                checks = [
                    (clause_at + term_at, term)
                    for clause_at, clause in _split_spans(selector, ",")
                    for term_at, term in _split_spans(clause, "+")
                ]
            else:
                checks = [(0, selector)]
            for at, part in checks:
                problem = _selector_problem(part)
                if problem is not None:
                    index, exc, slashed = problem
                    raise _filter_error(flt, exclude, key, selector, at + index, exc, slashed)
            if key == "tags":
                for match in re.finditer(r"\.\+", selector):
                    warnings.append(
                        FilterWarning(
                            '".+" in a tags selector: "+" means AND there; write ".*" or "..*"',
                            _column(flt, exclude, key, match.start()),
                        )
                    )
    return warnings


def _filter_error(
    flt: NodeFilter,
    exclude: bool,
    key: str,
    selector: str,
    index: int,
    exc: JavaRegexError,
    slashed: bool,
) -> FilterSyntaxError:
    shown = ("!" if exclude else "") + key
    if exc.unsupported:
        message = f'selector for key "{shown}" uses an {exc.reason}'
    elif slashed:
        message = f'/…/ regex for key "{shown}" does not compile ({exc.reason})'
    else:
        message = f'regex for key "{shown}" does not compile ({exc.reason})'
    error = FilterSyntaxError(
        message, filter_text=flt.text, column=_column(flt, exclude, key, index)
    )
    error.key = shown  # type: ignore[attr-defined]
    error.selector = selector  # type: ignore[attr-defined]
    return error


def format_filter_error(error: FilterSyntaxError) -> str:
    """The §8 rendering: message with column, the filter echoed, and a caret line."""
    message = str(error)
    suffix = f" (column {error.column})"
    if error.column and message.endswith(suffix):
        message = message[: -len(suffix)]
    head = f"invalid node filter at column {error.column}: {message}" if error.column else message
    if not error.filter_text:
        return head
    echo = "".join(" " if is_delimiter(c) else c for c in error.filter_text)
    caret = " " * (max(error.column, 1) - 1) + "^"
    return f"{head}\n  {echo}\n  {caret}"


# --- §4/§5 matching ----------------------------------------------------------------------


def _raise_for(selector: str, exc: JavaRegexError, index: int) -> FilterSyntaxError:
    return FilterSyntaxError(
        f"selector {selector!r}: {exc.reason}", filter_text=selector, column=index + 1
    )


def _selector_cost_error(selector: str, exc: RegexCostError) -> FilterSyntaxError:
    return FilterSyntaxError(f"selector {selector!r} {_cost_message(exc)}", filter_text=selector)


_REGEX_SYNTAX: Final = re.compile(r"[\\^$.|?*+()\[\]{}]")


def _is_plain_text(pattern: str) -> bool:
    """Whether ``pattern`` holds none of Java's regex metacharacters, so that as a regex
    it is valid and matches exactly itself (docs/node-filter.md §4.1): the common
    selector (a name, an image, a status) is then compared without the regex port."""
    return _REGEX_SYNTAX.search(pattern) is None


def regex_or_equals(selector: str, item: str) -> bool:
    """§4 ``regex_or_equals``: ``/…/`` is a strict regex; otherwise regex, then equality.

    Raises FilterSyntaxError for an invalid ``/…/`` regex, an untranslatable construct,
    or a regex too costly to evaluate on ``item`` (see :mod:`ecsexec.nodes.javaregex`).
    """
    try:
        return _regex_or_equals(selector, item)
    except RegexCostError as exc:
        raise _selector_cost_error(selector, exc) from None


def _regex_or_equals(selector: str, item: str) -> bool:
    # docs/node-filter.md §4: only the untrimmed selector's own slashes make it a /…/ regex.
    slashed = len(selector) >= 2 and selector[0] == "/" and selector[-1] == "/"
    trimmed = java_trim(selector[1:-1] if slashed else selector)
    if _is_plain_text(trimmed):
        return trimmed == item  # the regex matches exactly itself (§4.1)
    from ecsexec.nodes.javaregex import compile_bounded

    if slashed:
        try:
            pattern = compile_bounded(trimmed)
        except JavaRegexError as exc:
            problem = _selector_problem(selector)
            raise _raise_for(selector, exc, problem[0] if problem else 0) from None
        return pattern.fullmatch(item)
    try:
        pattern = compile_bounded(trimmed)
    except JavaRegexError as exc:
        if exc.unsupported:
            problem = _selector_problem(selector)
            raise _raise_for(selector, exc, problem[0] if problem else 0) from None
        return trimmed == item  # docs/node-filter.md §4: an invalid regex is silently no match
    return pattern.fullmatch(item) or trimmed == item


def match_value(selector: str, value: str | None) -> bool:
    """§4 ``match_value``: regex-or-equals on the whole selector, else an exact comma item."""
    try:
        return _match_value(selector, value)
    except RegexCostError as exc:
        raise _selector_cost_error(selector, exc) from None


def _match_value(selector: str, value: str | None) -> bool:
    if value is None or is_blank(value) or is_blank(selector):
        return False  # docs/node-filter.md §4 steps 1-2: even ".*" misses a blank value
    if _regex_or_equals(selector, value):
        return True
    # docs/node-filter.md §4 step 4: comma items are compared exactly, untrimmed.
    return value in java_split(selector, ",")


def match_tags(selector: str, tags: Set[str]) -> bool:
    """§5 ``match_tags``: ``,`` is OR, ``+`` is AND, each term exact-or-regex."""
    try:
        return _match_tags(selector, tags)
    except RegexCostError as exc:
        raise _selector_cost_error(selector, exc) from None


def _match_tags(selector: str, tags: Set[str]) -> bool:
    if not tags or is_blank(selector):
        return False
    if "+" in selector or "," in selector:
        # docs/node-filter.md §5 step 2: "," is OR, "+" (binding tighter) is AND. A term is
        # Java-trimmed for membership; regex_or_equals gets it raw, so " /x/" is no /…/.
        return any(
            all(
                java_trim(term) in tags or any(_regex_or_equals(term, tag) for tag in tags)
                for term in java_split(clause, "+")
            )
            for clause in java_split(selector, ",")
        )
    return selector in tags or any(_regex_or_equals(selector, tag) for tag in tags)


# --- §6 selection, §7 order ----------------------------------------------------------------


def select(
    nodes: Iterable[Node], flt: NodeFilter | str, *, exclude_precedence: bool = True
) -> list[Node]:
    """The nodes ``flt`` keeps (§6), in input order; a blank filter selects none.

    ``exclude_precedence=False`` is Rundeck's include precedence.
    """
    if isinstance(flt, str):
        flt = parse_filter(flt)
    return [node for node in nodes if flt.keeps(node, exclude_precedence=exclude_precedence)]


_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1


def _parse_long(text: str) -> int | None:
    """Java's ``Long.parseLong``: optional sign, then decimal digits, in range.

    Java accepts any BMP Unicode decimal digit (``Character.digit``), and nothing else:
    no spaces or ``_`` (which Python's ``int()`` accepts).
    """
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits:
        return None
    value = 0
    for char in digits:
        digit = unicodedata.decimal(char, -1) if ord(char) <= 0xFFFF else -1
        if digit < 0:
            return None
        value = value * 10 + digit
    if text[:1] == "-":
        value = -value
    return value if _LONG_MIN <= value <= _LONG_MAX else None


def _cmp_text(a: str, b: str) -> int:
    ka, kb = utf16_key(a), utf16_key(b)
    return (ka > kb) - (ka < kb)


def _compare(a: Node, b: Node, attribute: str) -> int:
    # docs/node-filter.md §7: a port of Rundeck's INodeEntryComparator.
    va, vb = a.get(attribute), b.get(attribute)
    if va is not None and vb is not None:
        # §7 step 1: numeric order only when both parse and differ ("01" vs "1": text).
        na, nb = _parse_long(va), _parse_long(vb)
        if na is not None and nb is not None and na != nb:
            return -1 if na < nb else 1
        result = _cmp_text(va, vb)
        if result:
            return result
    elif va is not None:  # §7 step 2: the node having the attribute comes first
        return -1
    elif vb is not None:
        return 1
    return _cmp_text(a.name, b.name)


def rank(
    nodes: Iterable[Node], *, attribute: str = "nodename", order: str = "ascending"
) -> list[Node]:
    """Nodes sorted by a rank attribute (§7); descending reverses the whole comparison."""
    if order not in ("ascending", "descending"):
        raise ValueError(f"order must be 'ascending' or 'descending', not {order!r}")
    # docs/node-filter.md §7 step 4: descending reverses the whole comparison, name ties too.
    sign = 1 if order == "ascending" else -1

    def compare(a: Node, b: Node) -> int:
        return sign * _compare(a, b, attribute)

    return sorted(nodes, key=functools.cmp_to_key(compare))


# --- §8 warnings after matching ------------------------------------------------------------


def unmatched_key_warnings(flt: NodeFilter, nodes: Iterable[Node]) -> list[FilterWarning]:
    """§8: one warning per attribute clause key that no node has, with a colon hint.

    The hint appears when the key and value came from one ``key:value`` token and
    splitting at a later colon names an attribute some node has (§9).
    """
    names: set[str] = set()
    for node in nodes:
        names.add("nodename")
        names.update(node.attributes)
    warnings: list[FilterWarning] = []
    for exclude, clauses in ((False, flt.include), (True, flt.exclude)):
        for key, selector in clauses:
            if key in FIELD_KEYS or key in names:
                continue
            source = flt._sources.get((exclude, key))
            column = source.key_token.start + 1 if source else 0
            message = f'key "{key}" matches no attribute'
            hint = _colon_hint(key, selector, names)
            if hint:
                message += f'; did you mean "{"!" if exclude else ""}{hint}"?'
            warnings.append(FilterWarning(message, column))
    return warnings


def _colon_hint(key: str, selector: str, names: Set[str]) -> str | None:
    best: str | None = None
    for index, char in enumerate(selector):
        if char == ":" and f"{key}:{selector[:index]}" in names:
            best = f"{key}:{selector[:index]}: {selector[index + 1 :]}"
    return best
