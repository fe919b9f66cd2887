"""KMS, STS, credential endpoints and SigV4 checks via botocore's own clients and providers (§9)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.conftest import boto3_session, client

from ecsexec.sandbox import Sandbox
from ecsexec.sandbox.state import UNSET

CONTEXT = {"aws:ssm:SessionId": "ecs-execute-command-x", "aws:ssm:TargetId": "ecs:demo_a_b"}
TWO_KEYS = {
    "version": 1,
    "iam": {"roles": ["operator"]},
    "regions": {"us-east-1": {"kmsKeys": [{"alias": "alias/one"}, {"alias": "two"}]}},
}


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def keys() -> Iterator[Sandbox]:
    with Sandbox(TWO_KEYS) as sb:
        yield sb


# -- KMS ------------------------------------------------------------------------------------------


def test_generate_data_key_and_decrypt_bind_the_context(sandbox: Sandbox) -> None:
    kms = client(sandbox, "kms")
    key = kms.describe_key(KeyId="alias/ecs-exec")["KeyMetadata"]
    assert key["Arn"].startswith("arn:aws:kms:us-east-1:123456789012:key/")
    data = kms.generate_data_key(
        KeyId="alias/ecs-exec", NumberOfBytes=64, EncryptionContext=CONTEXT
    )
    assert len(data["Plaintext"]) == 64 and data["KeyId"] == key["Arn"]
    blob = data["CiphertextBlob"]
    assert blob.startswith(b"SBX1")
    plain = kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
    assert plain["Plaintext"] == data["Plaintext"] and plain["KeyId"] == key["Arn"]
    # The agent decrypts in-process with the same binding (§7.1 step 3).
    assert (
        sandbox.call(lambda: sandbox.server.kms.agent_decrypt(blob, CONTEXT)) == data["Plaintext"]
    )
    for other in ({**CONTEXT, "aws:ssm:TargetId": "ecs:demo_a_c"}, {}, {**CONTEXT, "extra": "1"}):
        with pytest.raises(ClientError) as exc:
            kms.decrypt(CiphertextBlob=blob, EncryptionContext=other)
        assert _code(exc) == "InvalidCiphertextException"
    for key_id in (key["KeyId"], key["Arn"], "alias/ecs-exec"):
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT, KeyId=key_id)[
            "Plaintext"
        ]


def test_kms_errors(sandbox: Sandbox, keys: Sandbox) -> None:
    kms = client(keys, "kms")
    blob = kms.generate_data_key(KeyId="alias/one", KeySpec="AES_256")["CiphertextBlob"]
    assert len(kms.decrypt(CiphertextBlob=blob)["Plaintext"]) == 32
    with pytest.raises(ClientError) as exc:
        kms.decrypt(CiphertextBlob=blob, KeyId="alias/two")
    assert _code(exc) == "IncorrectKeyException"
    with pytest.raises(ClientError) as exc:
        kms.generate_data_key(KeyId="alias/three", NumberOfBytes=64)
    assert _code(exc) == "NotFoundException"
    with pytest.raises(ClientError) as exc:
        kms.generate_data_key(KeyId="alias/one", NumberOfBytes=64, KeySpec="AES_256")
    assert _code(exc) == "ValidationException"
    with pytest.raises(ClientError) as exc:
        kms.decrypt(CiphertextBlob=b"not a sandbox blob at all, long enough to parse")
    assert _code(exc) == "InvalidCiphertextException"
    # A blob from another sandbox names a key this one does not have.
    foreign = client(sandbox, "kms").generate_data_key(KeyId="alias/ecs-exec", NumberOfBytes=16)
    with pytest.raises(ClientError) as exc:
        kms.decrypt(CiphertextBlob=foreign["CiphertextBlob"])
    assert _code(exc) == "NotFoundException"


# -- STS ------------------------------------------------------------------------------------------


def test_caller_identity_and_assume_role(sandbox: Sandbox) -> None:
    sts = client(sandbox, "sts")
    me = sts.get_caller_identity()
    assert me["Arn"] == "arn:aws:iam::123456789012:user/sandbox" and me["Account"] == "123456789012"
    creds = sts.assume_role(
        RoleArn="arn:aws:iam::123456789012:role/ecsexec-readonly",
        RoleSessionName="bob",
        DurationSeconds=900,
    )
    c = creds["Credentials"]
    assert c["AccessKeyId"].startswith("ASIA")
    assert (
        creds["AssumedRoleUser"]["Arn"]
        == "arn:aws:sts::123456789012:assumed-role/ecsexec-readonly/bob"
    )
    role = boto3_session(sandbox).client(
        "sts",
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
    )
    assert role.get_caller_identity()["Arn"] == creds["AssumedRoleUser"]["Arn"]
    forged = boto3_session(sandbox).client(
        "sts",
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"][:-4] + "AAAA",
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as exc:
        forged.get_caller_identity()
    assert _code(exc) == "InvalidClientTokenId"


def test_assume_role_denied_for_unlisted_roles(sandbox: Sandbox) -> None:
    sts = client(sandbox, "sts")
    with pytest.raises(ClientError) as exc:
        sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/admin", RoleSessionName="eve")
    assert _code(exc) == "AccessDenied"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "sts:AssumeRole on resource: arn:aws:iam::123456789012:role/admin" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        sts.assume_role(
            RoleArn="arn:aws:iam::999999999999:role/ecsexec-readonly", RoleSessionName="eve"
        )
    assert _code(exc) == "AccessDenied"


def test_assume_role_with_web_identity_is_unsigned(keys: Sandbox) -> None:
    sts = boto3.Session(region_name="us-east-1").client(
        "sts",
        endpoint_url=keys.endpoint_url,
        aws_access_key_id="AKIAUNKNOWNUNKNOWN00",
        aws_secret_access_key="not-a-sandbox-secret",
    )
    payload = (
        base64.urlsafe_b64encode(json.dumps({"sub": "ci-runner"}).encode()).decode().rstrip("=")
    )
    creds = sts.assume_role_with_web_identity(
        RoleArn="arn:aws:iam::123456789012:role/operator",
        RoleSessionName="ci",
        WebIdentityToken=f"eyJhbGciOiJub25lIn0.{payload}.",
    )
    assert creds["SubjectFromWebIdentityToken"] == "ci-runner"
    assert creds["AssumedRoleUser"]["Arn"] == "arn:aws:sts::123456789012:assumed-role/operator/ci"


# -- SigV4 ----------------------------------------------------------------------------------------


def test_unknown_key_and_bad_signature_are_rejected(sandbox: Sandbox) -> None:
    base = boto3.Session(region_name="us-east-1")
    no_retry = Config(retries={"total_max_attempts": 1})
    unknown = base.client(
        "ecs",
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id="AKIAUNKNOWNUNKNOWN00",
        aws_secret_access_key="x" * 40,
        config=no_retry,
    )
    with pytest.raises(ClientError) as exc:
        unknown.list_clusters()
    assert _code(exc) == "UnrecognizedClientException"
    static_key = (
        (sandbox.state_dir / "aws-credentials")
        .read_text()
        .split("aws_access_key_id = ")[1]
        .split()[0]
    )
    wrong_secret = base.client(
        "ecs",
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id=static_key,
        aws_secret_access_key="y" * 40,
        config=no_retry,
    )
    with pytest.raises(ClientError) as exc:
        wrong_secret.list_clusters()
    assert _code(exc) == "InvalidSignatureException"
    request = urllib.request.Request(
        sandbox.endpoint_url + "/",
        data=b"{}",
        headers={
            "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=5)
    body = json.loads(http.value.read())
    http.value.close()
    assert http.value.code == 400
    assert body == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }
    assert http.value.headers["x-amzn-RequestId"]


# -- credential endpoints -------------------------------------------------------------------------


def _apply_env(monkeypatch: pytest.MonkeyPatch, sb: Sandbox) -> None:
    """What ``eval "$(ecsexec sandbox env)"`` does to a shell."""
    for name in (*UNSET, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in sb.env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("mode", ["container", "imds"])
def test_botocore_providers_get_sandbox_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, mode: str
) -> None:
    with Sandbox(TWO_KEYS, credentials=mode) as sb:
        assert "aws_access_key_id" not in (sb.state_dir / "aws-credentials").read_text()
        _apply_env(monkeypatch, sb)
        session = boto3.Session()
        creds = session.get_credentials()
        assert creds is not None
        assert creds.method == ("container-role" if mode == "container" else "iam-role")
        arn = session.client("sts").get_caller_identity()["Arn"]
        assert arn.startswith("arn:aws:sts::123456789012:assumed-role/ecsexec-sandbox/")
        meta = sb.info["metadata_url"]
        assert meta.startswith("http://127.0.0.1:")
        if mode == "container":
            uri = sb.env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            bad = urllib.request.Request(uri, headers={"Authorization": "wrong"})
        else:
            bad = urllib.request.Request(meta + "/latest/meta-data/iam/security-credentials/")
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(bad, timeout=5)
        http.value.close()
        assert http.value.code == 401
