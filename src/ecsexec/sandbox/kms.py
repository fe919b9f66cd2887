"""The sandbox KMS: GenerateDataKey, Decrypt, DescribeKey; context bound as AAD.

See docs/sandbox.md §9.1.

Ciphertext blob *(sandbox)*: ``b"SBX1" ‖ key uuid (16 bytes) ‖ nonce (12) ‖
AES-GCM(master, plaintext, aad=canonical JSON of the sorted context)``.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ecsexec.sandbox.model import ApiError, KmsKey, World, arn
from ecsexec.sandbox.runtime import Call, Handler, Runtime

MAGIC = b"SBX1"
_HEADER = len(MAGIC) + 16 + 12
KEY_SPECS = {"AES_256": 32, "AES_128": 16}


def create_key(
    world: World, region: str, alias: str | None = None, description: str = ""
) -> KmsKey:
    """Add a symmetric key; ``alias`` may be given with or without ``alias/``."""
    reg = world.region_for_write(region)
    key_id = world.uuid()
    key = KmsKey(
        key_id=key_id,
        arn=arn(region, world.account, "kms", f"key/{key_id}"),
        region=region,
        # Key material is always random, never derived from the seed.
        material=AESGCM.generate_key(bit_length=256),
        aliases=[],
        created_at=world.now(),
        description=description,
    )
    reg.kms_keys[key_id] = key
    if alias:
        name = alias if alias.startswith("alias/") else f"alias/{alias}"
        if name in reg.kms_aliases:
            raise ApiError(
                "AlreadyExistsException", f"An alias with the name {name} already exists"
            )
        reg.kms_aliases[name] = key_id
        key.aliases.append(name)
    return key


def resolve_key(world: World, region: str, ref: str) -> KmsKey | None:
    """Key ID, key ARN, ``alias/<name>`` or alias ARN (§9.1)."""
    reg = world.region(region)
    if ref.startswith("arn:"):
        parts = ref.split(":", 5)
        if len(parts) != 6 or parts[2] != "kms" or parts[3] != region:
            return None
        ref = parts[5]
        if ref.startswith("key/"):
            ref = ref[4:]
    if ref.startswith("alias/"):
        key_id = reg.kms_aliases.get(ref)
        return reg.kms_keys.get(key_id) if key_id else None
    return reg.kms_keys.get(ref)


def _aad(context: dict[str, str] | None) -> bytes:
    return json.dumps(context or {}, sort_keys=True, separators=(",", ":")).encode()


def encrypt(key: KmsKey, plaintext: bytes, context: dict[str, str] | None) -> bytes:
    nonce = os.urandom(12)
    sealed = AESGCM(key.material).encrypt(nonce, plaintext, _aad(context))
    return MAGIC + uuid.UUID(key.key_id).bytes + nonce + sealed


def _blob_key_id(blob: bytes) -> str:
    if len(blob) < _HEADER + 16 or not blob.startswith(MAGIC):
        raise ApiError("InvalidCiphertextException", "The ciphertext is invalid.")
    return str(uuid.UUID(bytes=blob[4:20]))


def decrypt(
    world: World,
    region: str,
    blob: bytes,
    context: dict[str, str] | None,
    key_ref: str | None = None,
) -> tuple[KmsKey, bytes]:
    """The key and plaintext; errors as KMS raises them (§9.1)."""
    blob_key = _blob_key_id(blob)
    if key_ref is not None:
        wanted = resolve_key(world, region, key_ref)
        if wanted is None:
            raise ApiError("NotFoundException", f"Key '{key_ref}' does not exist")
        if wanted.key_id != blob_key:
            raise ApiError(
                "IncorrectKeyException",
                "The key ID in the request does not identify a CMK that can perform this "
                "operation.",
            )
    key = world.region(region).kms_keys.get(blob_key)
    if key is None:
        raise ApiError("NotFoundException", f"Key '{blob_key}' does not exist")
    try:
        plaintext = AESGCM(key.material).decrypt(blob[20:32], blob[32:], _aad(context))
    except InvalidTag:
        # A different encryption context fails authentication, exactly like real KMS.
        raise ApiError("InvalidCiphertextException", "") from None
    return key, plaintext


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise ApiError("ValidationException", f"{name} is not valid base64") from None


class KmsApi:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.handlers: dict[str, Handler] = {
            "GenerateDataKey": self.generate_data_key,
            "Decrypt": self.decrypt,
            "DescribeKey": self.describe_key,
        }

    def _key(self, call: Call, ref: str) -> KmsKey:
        key = resolve_key(self.rt.world, call.region, ref)
        if key is None:
            raise ApiError("NotFoundException", f"Key '{ref}' does not exist")
        self.rt.authorize(call, key.arn)
        return key

    async def generate_data_key(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        key = self._key(call, p["KeyId"])
        spec = p.get("KeySpec")
        if ("NumberOfBytes" in p) == (spec is not None):
            raise ApiError(
                "ValidationException", "Please specify either number of bytes or key spec."
            )
        n = KEY_SPECS[spec] if spec is not None else int(p["NumberOfBytes"])
        if not 1 <= n <= 1024:
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{n}' at 'numberOfBytes' failed to satisfy "
                "constraint: Member must have value less than or equal to 1024",
            )
        plaintext = os.urandom(n)
        blob = encrypt(key, plaintext, p.get("EncryptionContext"))
        return {"CiphertextBlob": _b64(blob), "Plaintext": _b64(plaintext), "KeyId": key.arn}

    async def decrypt(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        blob = _unb64(p["CiphertextBlob"], "CiphertextBlob")
        key_ref = p.get("KeyId")
        key_id = _blob_key_id(blob)
        known = self.rt.world.region(call.region).kms_keys.get(key_id)
        self.rt.authorize(call, known.arn if known else "*")
        key, plaintext = decrypt(
            self.rt.world, call.region, blob, p.get("EncryptionContext"), key_ref
        )
        return {
            "KeyId": key.arn,
            "Plaintext": _b64(plaintext),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }

    async def describe_key(self, call: Call, p: dict[str, Any]) -> dict[str, Any]:
        key = self._key(call, p["KeyId"])
        return {
            "KeyMetadata": {
                "AWSAccountId": self.rt.world.account,
                "KeyId": key.key_id,
                "Arn": key.arn,
                "CreationDate": round(key.created_at, 3),
                "Enabled": True,
                "Description": key.description,
                "KeyUsage": "ENCRYPT_DECRYPT",
                "KeyState": "Enabled",
                "Origin": "AWS_KMS",
                "KeyManager": "CUSTOMER",
                "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
                "KeySpec": "SYMMETRIC_DEFAULT",
                "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
                "MultiRegion": False,
            }
        }

    def agent_decrypt(self, blob: bytes, context: dict[str, str]) -> bytes:
        """The in-process Decrypt the simulated agent calls (§7.1 step 3).

        The hub serves every region, so the key is found by the UUID inside the blob.
        """
        key_id = _blob_key_id(blob)
        for name, region in self.rt.world.regions.items():
            if key_id in region.kms_keys:
                return decrypt(self.rt.world, name, blob, context)[1]
        raise ApiError("NotFoundException", f"Key '{key_id}' does not exist")
