"""Build boto3 sessions and clients, and the TLS context the data channel must share with them."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import boto3
import botocore.session
from botocore.exceptions import (
    BotoCoreError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ProfileNotFound,
)

from ecsexec.errors import ConfigurationError

AwsSession: TypeAlias = boto3.session.Session
"""A boto3 session; outer layers name it through this alias and never import boto3."""

SessionFactory: TypeAlias = Callable[[str], AwsSession]
"""Region -> boto3 session (the same credentials serve ECS, SSM and KMS)."""

CONNECT_TIMEOUT: Final = 5.0  # seconds; botocore's 60 made a dead endpoint look like a hang


def fail_fast(client: Any) -> Any:
    """Do not retry a connection that could not be made; return ``client``.

    botocore retries connection errors like throttling, with backoff: against a stopped
    sandbox (connection refused) discovery took 28 s before failing. A refused or
    unanswered connection is reported at once instead; throttling is still retried.
    """

    def veto(caught_exception: BaseException | None = None, **_: Any) -> None:
        if isinstance(caught_exception, EndpointConnectionError | ConnectTimeoutError):
            raise caught_exception

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register_first(f"needs-retry.{service}", veto)
    return client


def make_session(*, profile: str | None = None, region: str | None = None) -> boto3.session.Session:
    """A boto3 session from the standard chain (profiles, SSO and credential_process included)."""
    try:
        return boto3.session.Session(profile_name=profile or None, region_name=region or None)
    except ProfileNotFound as exc:
        raise ConfigurationError(f"AWS profile not found: {exc.kwargs.get('profile')}") from None
    except BotoCoreError as exc:
        raise ConfigurationError(f"cannot set up AWS session: {exc}") from None


def ca_bundle(session: boto3.session.Session) -> str | None:
    """The CA bundle botocore itself resolved (AWS_CA_BUNDLE or the profile's ca_bundle)."""
    value = session._session.get_config_variable("ca_bundle")
    return str(value) if value else None


def ssl_context(session: boto3.session.Session) -> ssl.SSLContext:
    """TLS context for wss:// that trusts exactly what botocore trusts for HTTPS.

    One context per CA bundle, shared: each costs 20-45 ms of CPU to load the trust store,
    and a run used to build two before its first ExecuteCommand.
    """
    bundle = ca_bundle(session)
    if bundle and not os.path.exists(bundle):
        raise ConfigurationError(f"CA bundle not found: {bundle}")
    return _shared_context(bundle)


@functools.lru_cache(maxsize=8)
def _shared_context(bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def session_identity(session: boto3.session.Session, service: str) -> str:
    """The endpoint a ``service`` client of ``session`` calls and the access key id it signs
    with: what a caller's own session factory hides from the node cache's key. Builds a
    client and resolves credentials (tens of ms), so it is for such factories only."""
    credentials = session.get_credentials()
    access_key = credentials.access_key if credentials is not None else ""
    return f"{session.client(service).meta.endpoint_url} {access_key}"


def session_from_env(env: dict[str, str], region: str | None = None) -> boto3.session.Session:
    """A boto3 session configured only from the given AWS_* variables, not os.environ.

    Used to reach a private sandbox without touching the process environment.
    """
    core = botocore.session.Session()
    for variable, setting in (
        ("AWS_CONFIG_FILE", "config_file"),
        ("AWS_SHARED_CREDENTIALS_FILE", "credentials_file"),
        ("AWS_PROFILE", "profile"),
        ("AWS_CA_BUNDLE", "ca_bundle"),
    ):
        if env.get(variable):
            core.set_config_variable(setting, env[variable])
    core.set_config_variable("region", region or env.get("AWS_DEFAULT_REGION"))
    return boto3.session.Session(botocore_session=core)
