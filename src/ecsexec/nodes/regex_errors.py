"""The errors of the Java regex port (:mod:`ecsexec.nodes.javaregex`), apart from it.

The filter names them in its ``except`` clauses, and a filter whose selectors are plain
text never needs the port itself (~5 ms of start-up).
"""

from __future__ import annotations

__all__ = ["JavaRegexError", "RegexCostError"]


class JavaRegexError(Exception):
    """A pattern is invalid in Java, or valid but not translatable (``unsupported``).

    ``position`` is a 0-based index into the original pattern (code points).
    """

    def __init__(self, reason: str, position: int, *, unsupported: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position
        self.unsupported = unsupported


class RegexCostError(JavaRegexError):
    """A valid pattern that cannot be evaluated on some value within the port's bounds.

    ``length`` is the value's length in code points; ``bound`` the proven step bound that
    made ``re`` unsafe; ``reason`` says why the bounded matcher could not take over.
    """

    def __init__(self, reason: str, *, length: int, bound: int) -> None:
        super().__init__(reason, 0)
        self.length = length
        self.bound = bound
