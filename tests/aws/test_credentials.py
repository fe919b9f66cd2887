"""Credential providers against the sandbox's real endpoints, through botocore's own providers.

Each test runs with a private process environment: the host's ``AWS_*``/``ECSEXEC_*``
variables are removed and only what the sandbox's ``env`` prints (or less) is set.
"""

from __future__ import annotations

import configparser
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecsexec.aws.credentials import AwsSessionFactory, SessionFactories, redact_url
from ecsexec.aws.settings import AwsSettings
from ecsexec.config import Config, KeystoreSettings
from ecsexec.errors import AwsError, CredentialsError
from ecsexec.sandbox import Sandbox
from ecsexec.store.keys import KeyStore

ACCOUNT = "123456789012"
OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/ecsexec-operator"
Env = Callable[..., None]


def sandbox_secrets(sb: Sandbox) -> list[str]:
    """Every secret key and token the sandbox issued, plus the container auth token."""
    creds = sb.call(lambda: list(sb.server.rt.creds._by_key.values()))
    found = [c.secret_key for c in creds] + [c.token for c in creds if c.token]
    token_file = sb.state_dir / "container-credentials-token"
    if token_file.exists():
        found.append(token_file.read_text().strip())
    assert found
    return found


def assert_no_secret(sb: Sandbox, *texts: str) -> None:
    secrets = sandbox_secrets(sb)
    for text in texts:
        for secret in secrets:
            assert secret not in text


def static_keys(sb: Sandbox) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    parser.read(sb.env["AWS_SHARED_CREDENTIALS_FILE"])
    section = parser["ecsexec-sandbox"]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Env:
    """``use_env(mapping, drop=...)``: a private AWS environment for this test."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "ECSEXEC_")):
            monkeypatch.delenv(name)
    # No host ~/.aws files either.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))

    def use(values: dict[str, str], *, drop: tuple[str, ...] = ()) -> None:
        for name, value in values.items():
            if name not in drop:
                monkeypatch.setenv(name, value)
        for name in drop:
            monkeypatch.delenv(name, raising=False)

    return use


@pytest.fixture(scope="module")
def container_sb() -> Iterator[Sandbox]:
    with Sandbox(credentials="container", initial_wait=0.05) as sb:
        yield sb


@pytest.fixture(scope="module")
def instance_sb() -> Iterator[Sandbox]:
    with Sandbox(credentials="instance", initial_wait=0.05) as sb:
        yield sb


def assume_role_calls(sb: Sandbox) -> int:
    api: dict[str, Any] = sb.stats()["api"]
    return int(api.get("sts", {}).get("AssumeRole", {}).get("calls", 0))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- container ----------------------------------------------------------------------------------


def test_container_provider_with_the_sandbox_token(container_sb: Sandbox, use_env: Env) -> None:
    use_env(container_sb.env)
    # Static keys in the environment must not win: `container` means that provider only.
    use_env({"AWS_ACCESS_KEY_ID": "AKIAX", "AWS_SECRET_ACCESS_KEY": "x"})
    factory = AwsSessionFactory(AwsSettings(credential_provider="container"))
    identity = factory.caller_identity()
    assert identity.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/ecsexec-sandbox/ecs-task"
    assert identity.method == "container-role"
    assert identity.endpoint_url == container_sb.endpoint_url
    # One resolution serves every region and service.
    east, west = factory("us-east-1"), factory("eu-west-1")
    assert east.get_credentials() is west.get_credentials()
    assert west.client("ecs").list_clusters()["clusterArns"] == [
        f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/demo"
    ]
    assert east.client("kms").describe_key(KeyId="alias/ecs-exec")["KeyMetadata"]["KeyId"]
    assert_no_secret(container_sb, repr(factory), repr(identity))


def test_container_provider_with_a_bad_token(container_sb: Sandbox, use_env: Env) -> None:
    use_env(container_sb.env, drop=("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",))
    use_env({"AWS_CONTAINER_AUTHORIZATION_TOKEN": "not-the-token-4711"})
    factory = AwsSessionFactory(AwsSettings(credential_provider="container"))
    with pytest.raises(CredentialsError) as info:
        factory("us-east-1")
    message = str(info.value)
    uri = container_sb.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    assert message.startswith(
        f"container provider: the container credentials endpoint {redact_url(uri)} returned 401"
    )
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" in message
    assert uri not in message  # the per-task path is a capability in ECS
    assert "not-the-token-4711" not in message
    assert_no_secret(container_sb, message)


def test_container_provider_without_its_variables(use_env: Env) -> None:
    use_env({})
    with pytest.raises(CredentialsError, match="container provider: neither AWS_CONTAINER"):
        AwsSessionFactory(AwsSettings(credential_provider="container")).credentials()


# -- instance (IMDSv2) --------------------------------------------------------------------------


def test_instance_provider_uses_imdsv2(instance_sb: Sandbox, use_env: Env) -> None:
    use_env(instance_sb.env)
    use_env({"AWS_ACCESS_KEY_ID": "AKIAX", "AWS_SECRET_ACCESS_KEY": "x"})
    factory = AwsSessionFactory(AwsSettings(credential_provider="instance"))
    identity = factory.caller_identity("eu-west-1")
    # The sandbox's IMDS answers GETs only with a v2 token (HttpTokens=required).
    assert (
        identity.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/ecsexec-sandbox/i-0ec5e7ec5e7ec5e70"
    )
    assert identity.method == "iam-role" and identity.region == "eu-west-1"
    assert_no_secret(instance_sb, repr(identity))


def test_instance_provider_unreachable(use_env: Env) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    use_env({"AWS_EC2_METADATA_SERVICE_ENDPOINT": url})
    with pytest.raises(CredentialsError) as info:
        AwsSessionFactory(AwsSettings(credential_provider="instance")).credentials()
    assert str(info.value).startswith(
        f"instance provider: could not get an IMDSv2 token from {url}"
    )


def test_instance_provider_disabled(use_env: Env) -> None:
    use_env({"AWS_EC2_METADATA_DISABLED": "true"})
    with pytest.raises(CredentialsError, match="AWS_EC2_METADATA_DISABLED is true"):
        AwsSessionFactory(AwsSettings(credential_provider="instance")).credentials()


# -- keys from key storage -----------------------------------------------------------------------


def keys_config(tmp_path: Path, sb: Sandbox, *, secret: str | None = None) -> Config:
    real_secret = static_keys(sb)[1]
    store = KeyStore(tmp_path / "ks")
    store.put("keys/project/demo/aws-secret", (secret or real_secret).encode())
    return Config(keystore=KeystoreSettings(dir=tmp_path / "ks"))


def test_keys_provider_reads_the_secret_from_key_storage(
    sandbox: Sandbox, use_env: Env, tmp_path: Path
) -> None:
    # Only the endpoint and region: no credentials file, profile or key variables.
    use_env({"AWS_DEFAULT_REGION": "us-east-1"})
    config = keys_config(tmp_path, sandbox)
    settings = AwsSettings(
        credential_provider="keys",
        access_key_id=static_keys(sandbox)[0],
        secret_key_path="keys/project/demo/aws-secret",
        endpoint_url=sandbox.endpoint_url,
    )
    factory = AwsSessionFactory(settings, secret_reader=config.read_password)
    identity = factory.caller_identity()
    assert identity.arn == f"arn:aws:iam::{ACCOUNT}:user/sandbox"
    assert identity.method == "keys" and identity.endpoint_url == sandbox.endpoint_url
    assert factory("us-east-1").client("ecs").list_clusters()["clusterArns"]
    assert_no_secret(sandbox, repr(factory), repr(identity), repr(settings))


def test_keys_provider_errors_name_the_path_never_the_secret(
    sandbox: Sandbox, use_env: Env, tmp_path: Path
) -> None:
    use_env({"AWS_DEFAULT_REGION": "us-east-1"})
    config = keys_config(tmp_path, sandbox, secret="wrong-secret-0815")
    settings = AwsSettings(
        credential_provider="keys",
        access_key_id=static_keys(sandbox)[0],
        secret_key_path="keys/project/demo/aws-secret",
        endpoint_url=sandbox.endpoint_url,
    )
    with pytest.raises(
        AwsError, match=r"(?s)SignatureDoesNotMatch.*hint: the secret key does not match"
    ) as bad:
        AwsSessionFactory(settings, secret_reader=config.read_password).caller_identity()
    assert "wrong-secret-0815" not in str(bad.value)
    missing = AwsSettings(**{**settings.__dict__, "secret_key_path": "keys/project/demo/nope"})
    with pytest.raises(CredentialsError, match="keys provider: no key at keys/project/demo/nope"):
        AwsSessionFactory(missing, secret_reader=config.read_password).credentials()
    config.open_keystore().put("keys/project/demo/pub", b"PUBLIC", "public")
    public = AwsSettings(**{**settings.__dict__, "secret_key_path": "keys/project/demo/pub"})
    with pytest.raises(CredentialsError, match="public key; secret_key_path must name a password"):
        AwsSessionFactory(public, secret_reader=config.read_password).credentials()


# -- assume-role ---------------------------------------------------------------------------------


def test_assume_role_with_external_id(
    sandbox: Sandbox, use_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    use_env(sandbox.env)
    settings = AwsSettings(assume_role_arn=OPERATOR, external_id="ext-4242")
    factory = AwsSessionFactory(settings)
    with caplog.at_level(logging.DEBUG, logger="botocore.endpoint"):
        identity = factory.caller_identity()
    assert identity.arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/ecsexec-operator/ecsexec"
    assert identity.method == "assume-role"
    sent = [r.getMessage() for r in caplog.records if "AssumeRole" in r.getMessage()]
    assert sent and "'ExternalId': 'ext-4242'" in sent[0]
    assert "assume-role" in identity.provider and "ext-4242" not in repr(settings)


def test_assume_role_refreshes_before_expiry(use_env: Env) -> None:
    # 60 s credentials are inside botocore's 10-minute mandatory refresh window, so every
    # use refreshes: each is a new AssumeRole, transparently.
    with Sandbox(initial_wait=0.05, credential_ttl=60) as sb:
        use_env(sb.env)
        factory = AwsSessionFactory(AwsSettings(assume_role_arn=OPERATOR))
        first = factory.credentials().get_frozen_credentials().access_key
        assert factory.caller_identity().arn.endswith(":assumed-role/ecsexec-operator/ecsexec")
        second = factory.credentials().get_frozen_credentials().access_key
        assert first != second
        assert assume_role_calls(sb) >= 3
        assert_no_secret(sb, repr(factory))


def test_assume_role_denied_names_the_role(sandbox: Sandbox, use_env: Env) -> None:
    use_env(sandbox.env)
    arn = f"arn:aws:iam::{ACCOUNT}:role/not-in-topology"
    with pytest.raises(CredentialsError) as info:
        AwsSessionFactory(AwsSettings(assume_role_arn=arn)).credentials()
    message = str(info.value)
    assert message.startswith(f"assume-role: sts:AssumeRole on {arn} with the default provider")
    assert "AccessDenied" in message
    assert_no_secret(sandbox, message)


def test_assume_role_on_top_of_container_credentials(container_sb: Sandbox, use_env: Env) -> None:
    use_env(container_sb.env)
    settings = AwsSettings(credential_provider="container", assume_role_arn=OPERATOR)
    identity = AwsSessionFactory(settings).caller_identity()
    assert identity.arn.endswith(":assumed-role/ecsexec-operator/ecsexec")


# -- profile and default --------------------------------------------------------------------------


def write_profiles(tmp_path: Path, sb: Sandbox, empty_endpoint: str) -> dict[str, str]:
    """Profile ``dev`` holds ``sb``'s static key; profile ``empty`` has no credentials."""
    access_key, secret = static_keys(sb)
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile dev]\nregion = eu-west-1\nendpoint_url = {sb.endpoint_url}\n"
        f"[profile empty]\nregion = us-east-1\nendpoint_url = {empty_endpoint}\n"
    )
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[dev]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret}\n"
    )
    return {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(credentials)}


def test_profile_provider_uses_only_the_profile(
    sandbox: Sandbox, container_sb: Sandbox, use_env: Env, tmp_path: Path
) -> None:
    use_env(write_profiles(tmp_path, sandbox, container_sb.endpoint_url))
    factory = AwsSessionFactory(AwsSettings(credential_provider="profile", profile="dev"))
    identity = factory.caller_identity()
    assert identity.arn == f"arn:aws:iam::{ACCOUNT}:user/sandbox"
    assert identity.region == "eu-west-1" and identity.method == "shared-credentials-file"
    # A profile without credentials fails, even with container credentials available.
    container = container_sb.env
    use_env({k: container[k] for k in container if k.startswith("AWS_CONTAINER")})
    with pytest.raises(CredentialsError, match="profile 'empty' has no credentials"):
        AwsSessionFactory(AwsSettings(credential_provider="profile", profile="empty")).credentials()
    # ... while the default chain with that profile selected falls through to them.
    fallback = AwsSessionFactory(AwsSettings(profile="empty"))
    assert fallback.caller_identity().arn.endswith(":assumed-role/ecsexec-sandbox/ecs-task")
    with pytest.raises(CredentialsError, match=r"profile 'nope' is not in .*profiles there: dev"):
        AwsSessionFactory(AwsSettings(credential_provider="profile", profile="nope")).credentials()


def test_default_chain_and_no_credentials(sandbox: Sandbox, use_env: Env) -> None:
    use_env(sandbox.env)
    identity = AwsSessionFactory(AwsSettings()).caller_identity()
    assert identity.arn.endswith(":user/sandbox")
    assert identity.method == "shared-credentials-file"
    use_env({}, drop=tuple(sandbox.env))
    use_env({"AWS_EC2_METADATA_DISABLED": "true"})
    with pytest.raises(CredentialsError, match="default provider: the standard chain found no"):
        AwsSessionFactory(AwsSettings()).credentials()


def test_factories_share_one_resolution_per_settings(sandbox: Sandbox, use_env: Env) -> None:
    use_env(sandbox.env)
    factories = SessionFactories()
    before = assume_role_calls(sandbox)
    a = factories(AwsSettings(assume_role_arn=OPERATOR))
    assert a is factories(AwsSettings(assume_role_arn=OPERATOR))
    assert a is not factories(AwsSettings())
    assert a is factories(AwsSettings(assume_role_arn=OPERATOR, region="eu-west-1"))
    assert a("us-east-1") is a("us-east-1")
    a("eu-west-1").client("ecs").list_clusters()
    a("us-east-1").client("ecs").list_clusters()
    assert assume_role_calls(sandbox) == before + 1
