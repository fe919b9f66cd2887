"""The access keys the sandbox issued, and the principal each one stands for.

See docs/sandbox.md §2, §9.

Keys are always random (``secrets``), never derived from ``--seed``, and never logged:
``Credential.__repr__`` hides the secret and the token.
"""

from __future__ import annotations

import base64
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass

_KEY_ALPHABET = string.ascii_uppercase + "234567"
SANDBOX_USER = "sandbox"


def _key_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


@dataclass(frozen=True, slots=True)
class Credential:
    access_key: str
    secret_key: str
    token: str | None
    principal: str
    user_id: str
    expires_at: float | None = None
    role_arn: str | None = None

    def __repr__(self) -> str:  # never print key material
        return f"Credential({self.access_key}, principal={self.principal})"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class CredentialStore:
    """Static user key plus every role credential issued by STS or the metadata endpoints."""

    def __init__(self, account: str, clock: Callable[[], float] = time.time) -> None:
        self.account = account
        self.clock = clock
        self._by_key: dict[str, Credential] = {}
        self.static = self._add(
            Credential(
                access_key=_key_id("AKIA"),
                secret_key=secrets.token_urlsafe(30)[:40],
                token=None,
                # docs/sandbox.md §2: the static key is arn:aws:iam::<acct>:user/sandbox.
                principal=f"arn:aws:iam::{account}:user/{SANDBOX_USER}",
                user_id=_key_id("AIDA"),
            )
        )

    def _add(self, cred: Credential) -> Credential:
        self._by_key[cred.access_key] = cred
        return cred

    def lookup(self, access_key: str) -> Credential | None:
        return self._by_key.get(access_key)

    def role_arn(self, role: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{role}"

    def issue_role(self, role: str, session_name: str, ttl: float) -> Credential:
        """Temporary credentials for ``role``; the principal is the assumed-role ARN (§2)."""
        now = self.clock()
        self._prune(now)
        return self._add(
            Credential(
                access_key=_key_id("ASIA"),
                secret_key=secrets.token_urlsafe(30)[:40],
                token=base64.b64encode(secrets.token_bytes(96)).decode(),
                principal=f"arn:aws:sts::{self.account}:assumed-role/{role}/{session_name}",
                user_id=f"AROA{_key_id('')}:{session_name}",
                expires_at=now + ttl,
                role_arn=self.role_arn(role),
            )
        )

    def _prune(self, now: float) -> None:
        # Keep expired credentials for a day so a late caller gets ExpiredTokenException,
        # not UnrecognizedClientException; drop them after that.
        stale = [
            k
            for k, c in self._by_key.items()
            if c.expires_at is not None and now - c.expires_at > 86400
        ]
        for k in stale:
            del self._by_key[k]
