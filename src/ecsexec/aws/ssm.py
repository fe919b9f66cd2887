"""SSM and KMS calls the data channel needs: ResumeSession, TerminateSession, GenerateDataKey.

They implement :class:`ecsexec.ssm.session.SessionControl` and ``DataKeyProvider`` with
the caller's own boto3 session, so KMS uses the same credentials as everything else
(docs/ssm-protocol.md §8.2, §16).
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ecsexec.aws.clients import CONNECT_TIMEOUT, fail_fast
from ecsexec.aws.errors import translate
from ecsexec.errors import KmsError
from ecsexec.ssm.channel import DataKeyRequest
from ecsexec.ssm.crypto import DATA_KEY_BYTES, DataKey


class _LazyClient:
    """A boto3 client built on its first call: most runs never resume, terminate or
    encrypt, and building an SSM or KMS client costs ~20 ms of CPU (its service model)."""

    def __init__(
        self, session: boto3.session.Session, service: str, endpoint_url: str | None, config: Any
    ) -> None:
        self._session = session
        self._service = service
        self._endpoint_url = endpoint_url
        self._config = config
        self._client: Any = None
        self._lock = threading.Lock()  # calls come from worker threads

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = fail_fast(
                    self._session.client(
                        self._service,
                        endpoint_url=self._endpoint_url,
                        config=self._config or Config(connect_timeout=CONNECT_TIMEOUT),
                    )
                )
            return self._client


class SsmSessionControl:
    """``ssm:ResumeSession`` and ``ssm:TerminateSession`` on a real SSM client (§10, §11)."""

    def __init__(
        self,
        session: boto3.session.Session,
        *,
        endpoint_url: str | None = None,
        client_config: Any = None,
    ) -> None:
        self._client = _LazyClient(session, "ssm", endpoint_url, client_config)

    def resume_session(self, session_id: str) -> tuple[str, str]:
        try:
            response = self._client().resume_session(SessionId=session_id)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "ResumeSession") from None
        return str(response.get("TokenValue") or ""), str(response.get("StreamUrl") or "")

    def terminate_session(self, session_id: str) -> None:
        try:
            self._client().terminate_session(SessionId=session_id)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "TerminateSession") from None


class KmsDataKeyProvider:
    """``kms:GenerateDataKey`` with 64 bytes and the session's encryption context (§8.2)."""

    def __init__(
        self,
        session: boto3.session.Session,
        *,
        endpoint_url: str | None = None,
        client_config: Any = None,
    ) -> None:
        self._client = _LazyClient(session, "kms", endpoint_url, client_config)

    def __call__(self, request: DataKeyRequest) -> DataKey:
        try:
            response = self._client().generate_data_key(
                KeyId=request.key_id,
                NumberOfBytes=DATA_KEY_BYTES,
                EncryptionContext=request.encryption_context,
            )
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, "GenerateDataKey")
            raise KmsError(str(error)) from None
        return DataKey(bytes(response["Plaintext"]), bytes(response["CiphertextBlob"]))
