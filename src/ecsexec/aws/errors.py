"""Translate botocore exceptions into :class:`ecsexec.errors.AwsError` with a hint.

This is the one place that knows botocore's exception types; nothing above ``aws/``
ever sees them.
"""

from __future__ import annotations

import re
from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSLError,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from ecsexec.errors import AwsError, CredentialsError, EcsexecError

LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})

THROTTLING_CODES: Final = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)

_HINTS: Final[dict[str, str]] = {
    "ThrottlingException": "the API rate limit was hit; lower --rate/--threads or retry later",
    "AccessDeniedException": "the caller's IAM policy does not allow this action",
    "UnrecognizedClientException": "the access key is not known to this endpoint/region",
    "InvalidSignatureException": "the secret key does not match the access key",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "InvalidClientTokenId": "the access key is not known to this endpoint/region",
    "ExpiredTokenException": "the session credentials have expired; refresh them",
    "ClusterNotFoundException": "check the cluster name and the region",
    "TargetNotConnectedException": "the container's SSM agent is not connected to Session Manager",
    "DoesNotExistException": "the session no longer exists",
    "NotFoundException": "the KMS key does not exist in this region or account",
    "InvalidCiphertextException": "the KMS encryption context does not match",
    "IncorrectKeyException": "the ciphertext was made with a different KMS key",
}


def translate(exc: Exception, operation: str) -> EcsexecError:
    """Return the ecsexec error for a botocore exception raised by ``operation``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "") or code
        hint = _HINTS.get(code, "")
        if code == "AccessDeniedException" and operation:
            hint = f"the caller needs IAM permission for {_iam_action(operation)}"
        return AwsError(
            message,
            code=code,
            operation=operation,
            hint=hint,
            retryable=code in THROTTLING_CODES,
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(f"{operation}: no usable AWS credentials were found ({exc})")
    if isinstance(exc, CredentialRetrievalError):
        # A refresh failed mid-run (container endpoint, IMDS, credential_process). The
        # message may quote the endpoint's response body: keep only the status code.
        provider = exc.kwargs.get("provider", "credentials")
        status = re.search(r"non 200 response (\d{3})", str(exc.kwargs.get("error_msg", "")))
        what = f"the endpoint returned {status.group(1)}" if status else "the provider failed"
        return CredentialsError(
            f"{operation}: refreshing credentials from {provider} failed: {what}"
        )
    if isinstance(exc, SSOTokenLoadError | UnauthorizedSSOTokenError | TokenRetrievalError):
        return CredentialsError(
            f"{operation}: the SSO session is missing or expired ({exc}); run `aws sso login`"
        )
    if isinstance(exc, ProfileNotFound):
        return CredentialsError(f"{operation}: {exc}")
    if isinstance(exc, NoRegionError):
        return AwsError(
            "no AWS region is configured",
            code="NoRegion",
            operation=operation,
            hint="pass --region or set AWS_REGION / AWS_DEFAULT_REGION",
        )
    if isinstance(exc, SSLError):
        return AwsError(
            str(exc),
            code="SSLError",
            operation=operation,
            hint="set AWS_CA_BUNDLE (or ca_bundle) if the endpoint uses a private CA",
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        local = _is_local(str(getattr(exc, "kwargs", {}).get("endpoint_url", "")))
        return AwsError(
            str(exc),
            code=type(exc).__name__,
            operation=operation,
            hint=(
                "nothing answers on this local endpoint: is the sandbox running? "
                "(ecsexec sandbox status; start one with ecsexec sandbox up --detach, then "
                'eval "$(ecsexec sandbox env)"; or unset AWS_ENDPOINT_URL for AWS)'
                if local
                else "check the endpoint URL and network access"
            ),
            retryable=True,
        )
    if isinstance(exc, BotoCoreError):
        return AwsError(str(exc), code=type(exc).__name__, operation=operation)
    raise exc


def _is_local(url: str) -> bool:
    """Whether a URL (or a message holding one) names this machine: a local sandbox."""
    found = re.search(r"https?://(\[[^\]]*\]|[^/:\s'\"]+)", url)
    return bool(found) and found.group(1).strip("[]") in LOCAL_HOSTS  # type: ignore[union-attr]


_SERVICE_OF: Final[dict[str, str]] = {
    "ResumeSession": "ssm",
    "TerminateSession": "ssm",
    "GenerateDataKey": "kms",
    "AssumeRole": "sts",
}


def _iam_action(operation: str) -> str:
    return f"{_SERVICE_OF.get(operation, 'ecs')}:{operation}"
