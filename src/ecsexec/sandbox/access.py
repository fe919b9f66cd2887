"""Topology ``access:`` rules: explicit denies by action, principal and resource.

See docs/sandbox.md §2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ecsexec.sandbox.model import ApiError


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    # IAM wildcards: ``*`` matches any run of characters (``/`` included), ``?`` exactly one.
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


@dataclass(frozen=True, slots=True)
class AccessRule:
    deny: str
    principal: str = "*"
    resource: str = "*"

    def matches(self, action: str, principal: str, resource: str) -> bool:
        return bool(
            _glob(self.deny).match(action)
            and _glob(self.principal).match(principal)
            and _glob(self.resource).match(resource)
        )


def check(rules: list[AccessRule], action: str, principal: str, resource: str) -> None:
    """Raise AccessDeniedException when a deny rule matches (message per §2, *(model)*)."""
    for rule in rules:
        if rule.matches(action, principal, resource):
            raise ApiError(
                "AccessDeniedException",
                f"User: {principal} is not authorized to perform: {action} on resource: "
                f"{resource} with an explicit deny in an identity-based policy",
            )
