"""A connection that cannot be made is not retried; throttling still is (no sockets)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from ecsexec.aws.clients import fail_fast


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def _client(max_attempts: int) -> Any:
    session = boto3.Session(aws_access_key_id="AKID", aws_secret_access_key="s", region_name="x")
    config = Config(retries={"mode": "adaptive", "max_attempts": max_attempts})
    return session.client("ecs", endpoint_url="http://127.0.0.1:9", config=config)


def test_a_refused_connection_is_reported_after_one_attempt() -> None:
    client = fail_fast(_client(10))
    attempts: list[int] = []

    def refuse(request: Any, **_: Any) -> None:
        attempts.append(1)
        raise EndpointConnectionError(endpoint_url=request.url)

    client.meta.events.register("before-send.ecs", refuse)
    with pytest.raises(EndpointConnectionError):
        client.list_clusters()
    assert len(attempts) == 1  # botocore alone would make 10, with backoff between


def test_throttling_is_still_retried() -> None:
    client = fail_fast(_client(2))
    attempts: list[int] = []
    body = b'{"__type": "ThrottlingException", "message": "slow down"}'

    def throttle(request: Any, **_: Any) -> AWSResponse:
        attempts.append(1)
        return AWSResponse(
            request.url, 400, {"x-amzn-ErrorType": "ThrottlingException"}, _Body(body)
        )

    client.meta.events.register("before-send.ecs", throttle)
    with pytest.raises(ClientError, match="ThrottlingException"):
        client.list_clusters()
    assert len(attempts) > 1  # retried, as before
