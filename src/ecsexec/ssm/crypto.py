"""The KMS session cipher: AES-256-GCM with the 64-byte data key split in two.

See docs/ssm-protocol.md §8.

Pure apart from drawing random nonces. The data key itself is obtained elsewhere
(kms:GenerateDataKey through the caller's own credentials); this module only uses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from ecsexec.errors import ProtocolError

DATA_KEY_BYTES: Final = 64
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16


@dataclass(frozen=True, slots=True)
class DataKey:
    """What kms:GenerateDataKey returned: the plaintext key and its KMS ciphertext blob."""

    plaintext: bytes
    ciphertext_blob: bytes

    def __repr__(self) -> str:  # never print key material
        return f"DataKey(<{len(self.plaintext)} bytes>, blob=<{len(self.ciphertext_blob)} bytes>)"


class SessionCipher:
    """Encrypts one direction and decrypts the other.

    §8.3: bytes [0:32] of the data key are the agent→client key, [32:64] client→agent.
    ``role`` says which side we are, so the agent emulation reuses the same cipher.
    """

    def __init__(self, data_key: bytes, *, role: str = "client") -> None:
        if len(data_key) != DATA_KEY_BYTES:
            raise ProtocolError(f"KMS data key must be {DATA_KEY_BYTES} bytes, got {len(data_key)}")
        if role not in ("client", "agent"):
            raise ValueError(f"role must be 'client' or 'agent', not {role!r}")
        # cryptography is imported here, by the first encrypted session: its import cost
        # ~8 ms of every start-up, and most sessions are not encrypted.
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._invalid_tag = InvalidTag
        agent_to_client, client_to_agent = data_key[:32], data_key[32:]
        if role == "client":
            self._encryptor, self._decryptor = AESGCM(client_to_agent), AESGCM(agent_to_client)
        else:
            self._encryptor, self._decryptor = AESGCM(agent_to_client), AESGCM(client_to_agent)

    def __repr__(self) -> str:
        return "SessionCipher(<keys hidden>)"

    def encrypt(self, plaintext: bytes, nonce: bytes | None = None) -> bytes:
        """§8.7: ``nonce(12) || ciphertext || tag(16)``, no AAD."""
        n = os.urandom(NONCE_BYTES) if nonce is None else nonce
        return n + self._encryptor.encrypt(n, plaintext, None)

    def decrypt(self, blob: bytes) -> bytes:
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise ProtocolError(f"encrypted payload too short ({len(blob)} bytes)")
        try:
            return self._decryptor.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], None)
        except self._invalid_tag as exc:
            raise ProtocolError("encrypted payload failed authentication (wrong key?)") from exc
