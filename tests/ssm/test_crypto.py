"""The KMS session cipher: key split, format, tamper detection."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ecsexec.errors import ProtocolError
from ecsexec.ssm.crypto import DataKey, SessionCipher


def test_key_split_matches_spec() -> None:
    key = os.urandom(64)
    client, agent = SessionCipher(key, role="client"), SessionCipher(key, role="agent")
    blob = client.encrypt(b"input")
    # §8.3: [32:64] is client->agent; the format is nonce || ciphertext+tag, no AAD.
    assert AESGCM(key[32:]).decrypt(blob[:12], blob[12:], None) == b"input"
    assert agent.decrypt(blob) == b"input"
    out = agent.encrypt(b"output")
    assert AESGCM(key[:32]).decrypt(out[:12], out[12:], None) == b"output"
    assert client.decrypt(out) == b"output"


def test_tampering_and_wrong_key_raise_protocol_error() -> None:
    key = os.urandom(64)
    blob = bytearray(SessionCipher(key, role="agent").encrypt(b"secret"))
    blob[-1] ^= 1
    with pytest.raises(ProtocolError):
        SessionCipher(key).decrypt(bytes(blob))
    with pytest.raises(ProtocolError):
        SessionCipher(os.urandom(64)).decrypt(SessionCipher(key, role="agent").encrypt(b"x"))
    with pytest.raises(ProtocolError, match="64 bytes"):
        SessionCipher(b"short")


def test_reprs_hide_key_material() -> None:
    key = DataKey(b"S3CR" * 16, b"BLOBDATA")
    assert "S3CR" not in repr(key)
    assert "BLOBDATA" not in repr(key)
    assert "key" in repr(SessionCipher(bytes(64))).lower()
