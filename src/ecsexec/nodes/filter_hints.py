"""Hints for filters that select nothing or name what no node has: did you mean ...?

Pure and advisory: a hint never changes what a filter selects (Rundeck's semantics stay
exact, see :mod:`ecsexec.nodes.filter`); it only tells the user what they probably meant.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from ecsexec.nodes.filter import FIELD_KEYS, NodeFilter
from ecsexec.nodes.node import Node

CLOSE_ENOUGH = 0.8  # difflib ratio for a near miss such as ECS:Servic-Name


def _attribute_names(nodes: Sequence[Node]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        names.update(node.attributes)
    return names


def _closest(key: str, names: set[str]) -> str | None:
    by_case = [name for name in names if name.lower() == key.lower()]
    if by_case:
        return sorted(by_case)[0]
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=CLOSE_ENOUGH)
    return close[0] if close else None


def filter_hints(flt: NodeFilter, nodes: Sequence[Node], selected: Sequence[Node]) -> list[str]:
    """What the user probably meant, for ``flt`` over ``nodes`` (which selected ``selected``)."""
    hints: list[str] = []
    names = _attribute_names(nodes)
    for exclude, clauses in ((False, flt.include), (True, flt.exclude)):
        for key, selector in clauses:
            if key in FIELD_KEYS or key in names:
                continue
            suggestion = _closest(key, names)
            if suggestion:
                bang = "!" if exclude else ""
                hints.append(f'key "{key}": did you mean "{bang}{suggestion}: {selector}"?')
    if not flt.include and not flt.exclude:
        if flt.warnings:
            hints.append(
                "the filter has nothing left to select by, so it selects no node "
                "(every node: -F '.*')"
            )
        return hints
    if selected:
        return hints
    for key, selector in flt.include:
        if key != "name":
            continue
        for word in selector.split(","):
            holders = sorted(
                {
                    name
                    for node in nodes
                    for name, value in node.attributes.items()
                    if value == word and name not in FIELD_KEYS
                }
            )
            if holders and not any(node.name == word for node in nodes):
                hints.append(f'no node is named "{word}"; did you mean "{holders[0]}: {word}"?')
    return hints
