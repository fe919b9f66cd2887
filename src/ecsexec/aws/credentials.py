"""Resolve AWS credentials through botocore's own providers; one boto3 session per region.

``credential_provider`` (docs/ecs-nodes.md §3, issue 6) picks exactly one source:

- ``default``: botocore's standard chain (environment, profiles, SSO, container, IMDS);
- ``instance``: botocore's ``InstanceMetadataProvider`` alone, IMDSv2 only (v1 disabled);
- ``container``: botocore's ``ContainerProvider`` alone;
- ``keys``: the access key id plus the secret read from key storage;
- ``profile``: the named profile's own providers (keys, SSO, role_arn, credential_process),
  without the chain's container/IMDS fallbacks.

``assume_role_arn`` puts ``sts:AssumeRole`` (with ``ExternalId``) on top through botocore's
``AssumeRoleCredentialFetcher``, refreshed automatically before expiry. Credentials are
resolved once per :class:`AwsSessionFactory` and shared by every region's session, so ECS
discovery, ExecuteCommand, SSM resume/terminate and KMS all use the same ones.

No error message carries a secret; the container endpoint's path (a capability in ECS) is
shown only as ``…``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import boto3
import botocore
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    ContainerProvider,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    InstanceMetadataProvider,
    RefreshableCredentials,
    create_credential_resolver,
)
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    MetadataRetrievalError,
    NoCredentialsError,
    ProfileNotFound,
)
from botocore.utils import InstanceMetadataFetcher, resolve_imds_endpoint_mode

from ecsexec.aws import endpoints
from ecsexec.aws.errors import translate
from ecsexec.aws.settings import AwsSettings
from ecsexec.errors import CredentialsError, EcsexecError

SecretReader = Callable[[str], str]
"""Key-storage path -> the secret text (``keys`` provider)."""

DEFAULT_ROLE_SESSION_NAME: Final = "ecsexec"
# botocore's own refresh window for instance credentials (credentials.py's advisory timeout).
IMDS_REFRESH_WINDOW: Final = 15 * 60
# The chain's providers that come after a profile's own: `profile` must not fall through
# to them, or a broken profile would silently run as the instance or container role.
_NOT_PROFILE: Final = ("ec2-credentials-file", "boto-config", "container-role", "iam-role")
_STS_CONFIG: Final = Config(retries={"mode": "standard", "max_attempts": 3})


class _Resolved(CredentialProvider):  # type: ignore[misc]
    """Hands the already-resolved credentials to another region's botocore session."""

    METHOD = "ecsexec-resolved"
    CANONICAL_NAME = "EcsexecResolved"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


class EndpointSession(boto3.session.Session):  # type: ignore[misc]
    """A boto3 session whose clients default to one endpoint URL (``[aws] endpoint_url``)."""

    def __init__(self, *, botocore_session: Any, endpoint_url: str | None) -> None:
        super().__init__(botocore_session=botocore_session)
        self.default_endpoint_url = endpoint_url
        # Clients may be built from two threads at once (a warm-up beside discovery), and
        # botocore does not promise that creating them concurrently from one session works.
        self._client_lock = threading.Lock()

    def endpoint_identity(self, service_id: str) -> str:
        """What decides the endpoint of this session's ``service_id`` clients (its region,
        ``[aws] endpoint_url``, the environment, the config file, the profile): a key under
        which the URL one of them resolved may be remembered."""
        identity = endpoints.endpoint_identity(
            service_id, str(self.region_name or ""), self.default_endpoint_url or ""
        )
        # A botocore upgrade may bring new endpoint rules.
        return f"{identity}\nprofile={self.profile_name}\nbotocore={botocore.__version__}"

    def client(self, *args: Any, **kwargs: Any) -> Any:
        if self.default_endpoint_url and kwargs.get("endpoint_url") is None:
            kwargs["endpoint_url"] = self.default_endpoint_url
        with self._client_lock:
            return super().client(*args, **kwargs)


@dataclass(frozen=True)
class Identity:
    """What ``sts:GetCallerIdentity`` says, plus how the credentials were found."""

    account: str
    arn: str
    user_id: str
    provider: str  # our description: "container (...)", "profile 'x' -> assume-role ..."
    method: str  # botocore's name for where the credentials came from
    region: str
    endpoint_url: str


def redact_url(url: str) -> str:
    """``scheme://host:port/…``: the container endpoint's path is a capability in ECS."""
    parts = urlsplit(url)
    tail = "/…" if parts.path.strip("/") else ""
    return f"{parts.scheme}://{parts.netloc}{tail}" if parts.scheme else "…"


class AwsSessionFactory:
    """``region -> boto3.Session`` for one :class:`AwsSettings`, credentials resolved once."""

    def __init__(self, settings: AwsSettings, *, secret_reader: SecretReader | None = None) -> None:
        self.settings = settings
        self._imds_url = "the instance metadata service"
        self._secret_reader = secret_reader
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._sessions: dict[str, boto3.session.Session] = {}
        # The profile's region, read once; the botocore session that read it is kept for
        # resolving the credentials (each costs ~7 ms of CPU: 368 event handlers).
        self._region_read: tuple[str | None] | None = None
        self._spare_core: Any = None

    def __repr__(self) -> str:
        return f"AwsSessionFactory({self.settings.describe()})"

    # -- sessions ---------------------------------------------------------------------------

    def _core(self, region: str | None) -> Any:
        core = botocore.session.Session()
        if self.settings.profile:
            if self.settings.profile not in core.available_profiles:
                known = ", ".join(sorted(core.available_profiles)) or "none"
                raise CredentialsError(
                    f"profile {self.settings.profile!r} is not in the AWS config or "
                    f"credentials files (profiles there: {known})"
                )
            core.set_config_variable("profile", self.settings.profile)
        if region:
            core.set_config_variable("region", region)
        if self.settings.ca_bundle:
            core.set_config_variable("ca_bundle", self.settings.ca_bundle)
        return core

    def default_region(self) -> str | None:
        """``[aws] region``, else the profile's or ``AWS_DEFAULT_REGION``, as botocore sees it."""
        if self.settings.region:
            return self.settings.region
        if self._region_read is None:
            core = self._core(None)
            try:
                region = core.get_config_variable("region")
            except ProfileNotFound:
                return None
            self._spare_core = core
            self._region_read = (str(region) if region else None,)
        return self._region_read[0]

    def __call__(self, region: str) -> boto3.session.Session:
        with self._lock:
            cached = self._sessions.get(region)
        if cached is not None:
            return cached
        credentials = self.credentials()
        core = self._core(region)
        core.register_component("credential_provider", CredentialResolver([_Resolved(credentials)]))
        session = EndpointSession(
            botocore_session=core, endpoint_url=self.settings.endpoint_url or None
        )
        with self._lock:
            return self._sessions.setdefault(region, session)

    def check_local(self) -> None:
        """Raise now for what is wrong on this machine alone: a ``keys`` provider's secret
        that key storage cannot give (a wrong passphrase, a missing key). Cheap, with no AWS
        call and no botocore, so a node-cache hit still reports it (the cache key names the
        access key id, not the passphrase)."""
        if self.settings.credential_provider == "keys" and self._credentials is None:
            self._keys()

    # -- credentials ------------------------------------------------------------------------

    def credentials(self) -> Credentials:
        """The resolved (and, for temporary ones, self-refreshing) credentials."""
        with self._lock:
            if self._credentials is None:
                self._credentials = self._resolve()
            return self._credentials

    @property
    def method(self) -> str:
        """botocore's name for the credential source (after :meth:`credentials`)."""
        creds = self._credentials
        return str(getattr(creds, "method", "") or "") if creds is not None else ""

    def _sts_region(self) -> str:
        return self.default_region() or "us-east-1"

    def _resolve(self) -> Credentials:
        region = self._sts_region()
        core, self._spare_core = self._spare_core or self._core(None), None
        core.set_config_variable("region", region)
        base = self._base(core)
        if self.settings.assume_role_arn:
            return self._assume_role(core, base)
        return base

    def _base(self, core: Any) -> Credentials:
        provider = self.settings.credential_provider
        try:
            if provider == "keys":
                creds = self._keys()
            elif provider == "container":
                creds = self._container()
            elif provider == "instance":
                creds = self._instance(core)
            elif provider == "profile":
                resolver = create_credential_resolver(core, region_name=self._sts_region())
                for method in _NOT_PROFILE:
                    resolver.remove(method)
                creds = resolver.load_credentials()
                if creds is None:
                    raise CredentialsError(
                        f"profile provider: profile {self.settings.profile!r} has no "
                        "credentials (no keys, sso_session/sso_*, role_arn or credential_process)"
                    )
            else:
                creds = core.get_credentials()
                if creds is None:
                    raise CredentialsError(
                        "default provider: the standard chain found no credentials "
                        "(environment, shared credentials/config files, SSO, container "
                        "endpoint, instance metadata); set credential_provider or AWS_PROFILE"
                    )
            # Deferred credentials (a profile's role_arn, SSO) fail only on first use: use
            # them now so the failure names the provider, not some later API call.
            creds.get_frozen_credentials()
        except EcsexecError:
            raise
        except (BotoCoreError, ClientError, ValueError, OSError, KeyError) as exc:
            raise self._failure(exc) from None
        return creds

    def _keys(self) -> Credentials:
        if self._secret_reader is None:
            raise CredentialsError("keys provider: no key storage is available to read the secret")
        secret = self._secret_reader(self.settings.secret_key_path)
        return Credentials(self.settings.access_key_id, secret, None, method="keys")

    def _container(self) -> Credentials:
        provider = ContainerProvider()
        creds = provider.load()
        if creds is None:
            raise CredentialsError(
                "container provider: neither AWS_CONTAINER_CREDENTIALS_FULL_URI nor "
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set (is this running in an ECS task? "
                "for the sandbox: `ecsexec sandbox up --credentials container`, then "
                '`eval "$(ecsexec sandbox env)"`)'
            )
        result: Credentials = creds
        return result

    def _instance(self, core: Any) -> Credentials:
        fetcher = InstanceMetadataFetcher(
            timeout=core.get_config_variable("metadata_service_timeout"),
            num_attempts=core.get_config_variable("metadata_service_num_attempts"),
            user_agent=core.user_agent(),
            config={
                "ec2_metadata_service_endpoint": core.get_config_variable(
                    "ec2_metadata_service_endpoint"
                ),
                "ec2_metadata_service_endpoint_mode": resolve_imds_endpoint_mode(core),
                "ec2_credential_refresh_window": IMDS_REFRESH_WINDOW,
                # issue 6: `instance` means IMDSv2 only; botocore then refuses tokenless GETs.
                "ec2_metadata_v1_disabled": True,
            },
        )
        self._imds_url = str(fetcher.get_base_url())
        creds = InstanceMetadataProvider(iam_role_fetcher=fetcher).load()
        if creds is None:
            if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
                raise CredentialsError(
                    "instance provider: AWS_EC2_METADATA_DISABLED is true, so botocore does "
                    "not query instance metadata"
                )
            raise CredentialsError(
                f"instance provider: IMDSv2 at {self._imds_url} returned no credentials "
                "(a metadata request failed or timed out, or no IAM role is attached)"
            )
        result: Credentials = creds
        return result

    def _failure(self, exc: BaseException) -> CredentialsError:
        provider = self.settings.credential_provider
        text = str(exc)
        if provider == "container" and isinstance(exc, CredentialRetrievalError | ValueError):
            url = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") or (
                "http://169.254.170.2"
                + os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "")
            )
            where = redact_url(url)
            status = re.search(r"non 200 response (\d{3})", text)
            if status:
                code = status.group(1)
                hint = ""
                if code in ("401", "403"):
                    hint = (
                        ": the authorization token (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or "
                        "AWS_CONTAINER_AUTHORIZATION_TOKEN) was refused"
                    )
                return CredentialsError(
                    f"container provider: the container credentials endpoint {where} "
                    f"returned {code}{hint}"
                )
            if isinstance(exc, ValueError):
                # botocore refuses plain-http hosts other than loopback and ECS's own.
                return CredentialsError(f"container provider: {text}")
            reason = text.split("container metadata: ", 1)[-1]
            return CredentialsError(
                f"container provider: could not get credentials from {where}: {reason}"
            )
        if provider == "container" and isinstance(exc, OSError):
            return CredentialsError(
                f"container provider: cannot read the authorization token file: "
                f"{exc.strerror or type(exc).__name__}"
                + (f" ({exc.filename})" if exc.filename else "")
            )
        if provider == "instance" and isinstance(exc, MetadataRetrievalError):
            return CredentialsError(
                f"instance provider: could not get an IMDSv2 token from "
                f"{self._imds_url} "
                "(unreachable, or it does not allow IMDSv2; IMDSv1 is never used)"
            )
        if isinstance(exc, NoCredentialsError):
            return CredentialsError(f"{provider} provider: no credentials were found")
        if isinstance(exc, ClientError):
            error = translate(exc, str(exc.operation_name or ""))
            return CredentialsError(f"{provider} provider: {error}")
        if isinstance(exc, KeyError):
            return CredentialsError(
                f"{provider} provider: the credentials response lacks the field {exc}"
            )
        return CredentialsError(f"{provider} provider: {text}")

    def _assume_role(self, core: Any, base: Credentials) -> Credentials:
        arn = self.settings.assume_role_arn
        extra: dict[str, Any] = {
            "RoleSessionName": self.settings.role_session_name or DEFAULT_ROLE_SESSION_NAME
        }
        if self.settings.external_id:
            extra["ExternalId"] = self.settings.external_id
        region = self._sts_region()
        endpoint = self.settings.endpoint_url or None

        def sts_client(service: str, **kwargs: Any) -> Any:
            return core.create_client(
                service, region_name=region, endpoint_url=endpoint, config=_STS_CONFIG, **kwargs
            )

        fetcher = AssumeRoleCredentialFetcher(
            client_creator=sts_client,
            source_credentials=base,
            role_arn=arn,
            extra_args=extra,
        )
        try:
            metadata = fetcher.fetch_credentials()
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, "AssumeRole")
            raise CredentialsError(
                f"assume-role: sts:AssumeRole on {arn} with the "
                f"{self.settings.credential_provider} provider's credentials failed: {error}"
            ) from None
        # botocore refreshes these (another AssumeRole) before they expire.
        creds: Credentials = RefreshableCredentials.create_from_metadata(
            metadata, refresh_using=fetcher.fetch_credentials, method="assume-role"
        )
        return creds

    # -- identity ---------------------------------------------------------------------------

    def caller_identity(self, region: str | None = None) -> Identity:
        """``sts:GetCallerIdentity`` with these credentials."""
        region = region or self._sts_region()
        client = self(region).client("sts", config=_STS_CONFIG)
        try:
            response = client.get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "GetCallerIdentity") from None
        return Identity(
            account=str(response.get("Account") or ""),
            arn=str(response.get("Arn") or ""),
            user_id=str(response.get("UserId") or ""),
            provider=self.settings.describe(),
            method=self.method,
            region=region,
            endpoint_url=str(client.meta.endpoint_url),
        )


class SessionFactories:
    """One :class:`AwsSessionFactory` per distinct set of credentials (sources may share).

    Settings that differ only in ``region`` share a factory: sessions are per region
    anyway, and one resolution (one container fetch, one AssumeRole) serves them all.
    """

    def __init__(self, secret_reader: SecretReader | None = None) -> None:
        self._secret_reader = secret_reader
        self._factories: dict[AwsSettings, AwsSessionFactory] = {}
        self._lock = threading.Lock()

    def __call__(self, settings: AwsSettings) -> AwsSessionFactory:
        key = dataclasses.replace(settings, region="")
        with self._lock:
            factory = self._factories.get(key)
            if factory is None:
                factory = AwsSessionFactory(settings, secret_reader=self._secret_reader)
                self._factories[key] = factory
            return factory


__all__ = [
    "AwsSessionFactory",
    "EndpointSession",
    "Identity",
    "SessionFactories",
    "redact_url",
]
