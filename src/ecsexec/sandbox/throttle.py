"""API throttling: token buckets per (account, region, action), shared by all callers (§11).

The ``--throttle`` grammar is parsed by ``faults.parse_throttle_list``, shared with the
``throttle=`` fault item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# docs/sandbox.md §11: modest stand-ins, not AWS's published numbers.
DEFAULT_RATE = 20.0
DEFAULT_BURST = 50.0


@dataclass(frozen=True, slots=True)
class Limit:
    rate: float
    burst: float


class Throttle:
    """Token buckets; ``enabled=False`` is ``--throttle off``."""

    def __init__(
        self,
        overrides: dict[str, Limit] | None = None,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.overrides: dict[str, Limit] = dict(overrides or {})
        self.fault_overrides: dict[str, Limit] = {}
        self._clock = clock
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}

    def limit(self, action: str) -> Limit:
        return (
            self.fault_overrides.get(action)
            or self.overrides.get(action)
            or Limit(DEFAULT_RATE, DEFAULT_BURST)
        )

    def set_fault_overrides(self, limits: dict[str, Limit]) -> None:
        """``throttle=`` fault items override buckets on top of ``--throttle`` (§12)."""
        # Buckets of every action whose limit changes start over, full, under the new limit.
        changed = set(self.fault_overrides) | set(limits)
        self.fault_overrides = dict(limits)
        for key in [k for k in self._buckets if k[2] in changed]:
            del self._buckets[key]

    def take(self, account: str, region: str, action: str) -> bool:
        """Take one token; False means the caller gets ThrottlingException."""
        if not self.enabled and action not in self.fault_overrides:
            return True
        limit = self.limit(action)
        now = self._clock()
        key = (account, region, action)
        tokens, last = self._buckets.get(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - last) * limit.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def reset(self) -> None:
        self._buckets.clear()
