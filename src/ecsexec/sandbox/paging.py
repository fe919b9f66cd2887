"""Opaque HMAC-protected ``nextToken`` cursors bound to the filters they were issued for (§4).

A cursor holds the sort key (creation time, ARN) of the last item returned, so items added
or removed between pages never cause duplicates or skips among the unchanged ones.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ecsexec.sandbox.model import ApiError

T = TypeVar("T")
Key = tuple[float, str]


class Pager:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:16]

    @staticmethod
    def _bind(scope: dict[str, Any]) -> str:
        text = json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def issue(self, scope: dict[str, Any], last: Key) -> str:
        body = json.dumps([self._bind(scope), last[0], last[1]], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(body + self._mac(body)).decode().rstrip("=")

    def resume(self, scope: dict[str, Any], token: str) -> Key:
        """The cursor's position; InvalidParameterException if tampered or reused elsewhere."""
        bad = ApiError("InvalidParameterException", "Invalid nextToken.")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise bad from None
        body, mac = raw[:-16], raw[-16:]
        if len(raw) <= 16 or not hmac.compare_digest(mac, self._mac(body)):
            raise bad
        try:
            bound, created, arn = json.loads(body)
        except (ValueError, TypeError):
            raise bad from None
        if bound != self._bind(scope):
            raise bad
        return (float(created), str(arn))

    def page(
        self,
        items: Sequence[T],
        key: Callable[[T], Key],
        keep: Callable[[T], bool],
        *,
        scope: dict[str, Any],
        token: str | None,
        limit: int,
    ) -> tuple[list[T], str | None]:
        """Up to ``limit`` kept items after the cursor, plus the next cursor if more remain.

        ``items`` must be sorted by ``key``.
        """
        start = 0
        if token:
            start = bisect.bisect_right(items, self.resume(scope, token), key=key)
        out: list[T] = []
        i = start
        n = len(items)
        while i < n:
            item = items[i]
            i += 1
            if keep(item):
                if len(out) == limit:
                    return out, self.issue(scope, key(out[-1]))
                out.append(item)
        return out, None
