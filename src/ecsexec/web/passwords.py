"""Password hashing (argon2id) and the random secrets of the web console: sessions, tokens.

Passwords are hashed with argon2-cffi's :class:`~argon2.PasswordHasher`, whose defaults are
Argon2id with RFC 9106's low-memory profile (64 MiB, 3 passes, 4 lanes); the encoded hash
carries its own parameters and salt, so stored hashes stay verifiable when the defaults
change (:func:`needs_rehash` says when to re-hash after a successful sign-in).

Session ids and API tokens are long random strings and are stored only as their SHA-256
digest: a copy of the database lets nobody sign in. A slow KDF is not needed for them
(they have 256 bits of entropy, unlike a password). Hashing a password takes tens of
milliseconds of CPU: a server calls these from an executor, not on its event loop.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: API tokens start with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX: Final = "ecx_"
MAX_PASSWORD_BYTES: Final = 4096  # longer input only costs CPU; refuse it before hashing

_HASHER: Final = PasswordHasher()


def hash_password(password: str) -> str:
    """The encoded argon2id hash of ``password`` (a fresh random salt each time)."""
    if not password:
        raise ValueError("a password must not be empty")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password must be at most {MAX_PASSWORD_BYTES} bytes")
    return _HASHER.hash(password)


@functools.cache
def _decoy_hash() -> str:
    return _HASHER.hash(new_secret())


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; never raises for a wrong or bad hash.

    With no hash (an unknown user) a decoy hash is verified anyway and False returned, so
    the answer takes as long as for a real user and does not tell which names exist.
    """
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    try:
        matched = _HASHER.verify(password_hash or _decoy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than today's defaults."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random string of ``nbytes`` random bytes (session ids, CSRF tokens,
    one-time passwords)."""
    return secrets.token_urlsafe(nbytes)


def token_digest(token: str) -> str:
    """The SHA-256 hex digest kept in place of a token or session id."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> tuple[str, str]:
    """A new API token and its digest: ``(token shown to the user once, digest stored)``."""
    token = TOKEN_PREFIX + new_secret()
    return token, token_digest(token)


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets (CSRF tokens)."""
    return hmac.compare_digest(a.encode(), b.encode())
