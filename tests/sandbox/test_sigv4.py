"""SigV4 checks: the signature must cover the body (no UNSIGNED-PAYLOAD for JSON APIs)."""

from __future__ import annotations

import calendar
import hashlib
import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from ecsexec.sandbox import Sandbox
from ecsexec.sandbox.credentials import CredentialStore
from ecsexec.sandbox.model import ApiError
from ecsexec.sandbox.sigv4 import MAX_SKEW, verify

URL = "http://127.0.0.1:4566/"
TARGET = "AmazonEC2ContainerServiceV20141113.ExecuteCommand"


def signed(
    store: CredentialStore, body: bytes, *, content_sha256: str | None, url: str = URL
) -> CIMultiDict[str]:
    """Headers of a request signed by botocore, optionally declaring its body hash."""
    headers = {"X-Amz-Target": TARGET, "Content-Type": "application/x-amz-json-1.1"}
    if content_sha256 is not None:
        headers["X-Amz-Content-SHA256"] = content_sha256
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    key = store.static
    SigV4Auth(Credentials(key.access_key, key.secret_key), "ecs", "us-east-1").add_auth(request)
    # As aiohttp hands them to verify(), with the Host header the client sends.
    return CIMultiDict([*request.headers.items(), ("Host", "127.0.0.1:4566")])


def check(store: CredentialStore, headers: CIMultiDict[str], body: bytes) -> None:
    verify(method="POST", url=URL, headers=headers, body=body, store=store)


ORIGINAL = json.dumps({"task": "t", "command": "echo hi", "interactive": True}).encode()
SWAPPED = json.dumps({"task": "t", "command": "rm -rf /data", "interactive": True}).encode()


def test_an_unsigned_payload_is_rejected_so_the_body_cannot_be_swapped() -> None:
    store = CredentialStore("123456789012")
    headers = signed(store, ORIGINAL, content_sha256="UNSIGNED-PAYLOAD")
    assert "x-amz-content-sha256" in headers["Authorization"]  # the header is signed ...
    for body in (SWAPPED, ORIGINAL):  # ... but not the body: refused whatever the body
        with pytest.raises(ApiError) as info:
            check(store, headers, body)
        assert info.value.code == "InvalidSignatureException"
        assert "UNSIGNED-PAYLOAD" in info.value.message


def test_a_declared_body_hash_must_be_the_bodys() -> None:
    store = CredentialStore("123456789012")
    declared = hashlib.sha256(ORIGINAL).hexdigest()
    headers = signed(store, ORIGINAL, content_sha256=declared)
    check(store, headers, ORIGINAL)  # the real hash, signed: fine
    with pytest.raises(ApiError) as info:
        check(store, headers, SWAPPED)
    assert info.value.code == "InvalidSignatureException"
    assert "does not match the request body" in info.value.message


def test_without_the_header_the_body_is_hashed_and_signed() -> None:
    store = CredentialStore("123456789012")
    headers = signed(store, ORIGINAL, content_sha256=None)
    check(store, headers, ORIGINAL)
    with pytest.raises(ApiError) as info:
        check(store, headers, SWAPPED)
    assert info.value.code == "InvalidSignatureException"


@pytest.mark.e2e
def test_the_sandbox_refuses_a_replayed_request_with_a_swapped_body(sandbox: Sandbox) -> None:
    key_line = (sandbox.state_dir / "aws-credentials").read_text()
    access = key_line.split("aws_access_key_id = ")[1].split()[0]
    secret = key_line.split("aws_secret_access_key = ")[1].split()[0]
    url = sandbox.endpoint_url + "/"
    body = json.dumps({"cluster": "demo", "task": "nope", "command": "x", "interactive": True})
    request = AWSRequest(
        method="POST",
        url=url,
        data=body.encode(),
        headers={
            "X-Amz-Target": TARGET,
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD",
        },
    )
    SigV4Auth(Credentials(access, secret), "ecs", "us-east-1").add_auth(request)
    swapped = body.replace('"x"', '"touch /tmp/pwned"').encode()
    raw = urllib.request.Request(url, data=swapped, headers=dict(request.headers.items()))
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(raw, timeout=5)
    answer = json.loads(http.value.read())
    http.value.close()
    assert http.value.code == 400  # the sandbox's status for every signature error
    assert answer["__type"] == "InvalidSignatureException"
    assert "UNSIGNED-PAYLOAD" in answer["message"]


def test_a_request_signed_too_long_ago_is_refused_as_aws_does() -> None:
    store = CredentialStore("123456789012")
    headers = signed(store, ORIGINAL, content_sha256=None)
    signed_at = calendar.timegm(time.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
    with pytest.raises(ApiError) as info:
        verify(
            method="POST",
            url=URL,
            headers=headers,
            body=ORIGINAL,
            store=store,
            now=signed_at + MAX_SKEW + 1,
        )
    assert info.value.code == "InvalidSignatureException"
    verify(method="POST", url=URL, headers=headers, body=ORIGINAL, store=store, now=signed_at)


@pytest.mark.parametrize(
    "amz_date", ["20261306T014512Z", "20261206T014512", "", "20261206T246060Z"]
)
def test_a_malformed_x_amz_date_is_an_incomplete_signature(amz_date: str) -> None:
    store = CredentialStore("123456789012")
    headers = signed(store, ORIGINAL, content_sha256=None)
    headers["X-Amz-Date"] = amz_date
    with pytest.raises(ApiError) as info:
        check(store, headers, ORIGINAL)
    assert info.value.code == "IncompleteSignatureException"
