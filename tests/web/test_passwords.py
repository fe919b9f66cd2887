"""Password hashes, secrets and token digests (pure)."""

from __future__ import annotations

import hashlib

import pytest

from ecsexec.web import passwords
from ecsexec.web.passwords import (
    TOKEN_PREFIX,
    hash_password,
    needs_rehash,
    new_api_token,
    new_secret,
    same_secret,
    token_digest,
    verify_password,
)


def test_a_hash_is_argon2id_salted_and_verifies_only_its_password() -> None:
    first = hash_password("correct horse")
    second = hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second  # a fresh salt each time
    assert "correct horse" not in first
    assert verify_password(first, "correct horse")
    assert verify_password(second, "correct horse")
    assert not verify_password(first, "correct horsE")
    assert not verify_password(first, "")
    assert not needs_rehash(first)


def test_bad_or_missing_hashes_never_verify_and_never_raise() -> None:
    assert not verify_password(None, "anything")
    assert not verify_password("", "anything")
    assert not verify_password("plain-text-password", "plain-text-password")
    assert not verify_password("$argon2id$v=19$m=65536,t=3,p=4$broken", "x")
    assert needs_rehash("not a hash")


def test_a_hash_with_weaker_parameters_asks_for_a_rehash() -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    assert verify_password(weak, "pw")
    assert needs_rehash(weak)


@pytest.mark.parametrize("bad", ["", "x" * (passwords.MAX_PASSWORD_BYTES + 1)])
def test_empty_and_oversized_passwords_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="password"):
        hash_password(bad)
    assert not verify_password(hash_password("ok"), bad)


def test_secrets_are_random_url_safe_and_of_the_asked_strength() -> None:
    seen = {new_secret() for _ in range(50)}
    assert len(seen) == 50
    for value in seen:
        assert len(value) >= 43  # 32 bytes, base64 without padding
        assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(new_secret(12)) == 16


def test_an_api_token_is_stored_only_as_its_sha256_digest() -> None:
    token, digest = new_api_token()
    assert token.startswith(TOKEN_PREFIX)
    assert digest == hashlib.sha256(token.encode()).hexdigest() == token_digest(token)
    assert token not in digest
    other, other_digest = new_api_token()
    assert other != token and other_digest != digest


def test_same_secret_compares_whole_values() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd")
    assert not same_secret("abc", "ab")
