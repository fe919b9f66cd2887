"""The asyncio session driver against the sandbox: TLS, errors at the boundary, KMS failures."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from ecsexec.aws.clients import session_from_env, ssl_context
from ecsexec.aws.ecs import EcsApi
from ecsexec.aws.ssm import KmsDataKeyProvider, SsmSessionControl
from ecsexec.errors import KmsError, TransportError
from ecsexec.exec.runner import ContainerTarget
from ecsexec.sandbox import Sandbox
from ecsexec.ssm.channel import ChannelClosed, DataKeyRequest, OutputReceived
from ecsexec.ssm.crypto import DataKey
from ecsexec.ssm.session import Session, SessionOptions
from tests.exec.sandbox_nodes import targets

pytestmark = pytest.mark.e2e


def start(sb: Sandbox, target: ContainerTarget, command: str) -> tuple[Session, EcsApi]:
    boto = session_from_env(sb.env)
    api = EcsApi(boto, region="us-east-1")
    started = api.execute_command(
        cluster=target.cluster,
        task=target.task,
        container=target.container,
        command=command,
        runtime_id=target.runtime_id,
    )
    session = Session(
        started.session_id,
        started.stream_url,
        started.token_value,
        target=started.target,
        control=SsmSessionControl(boto),
        data_key_provider=KmsDataKeyProvider(boto),
        options=SessionOptions(ssl_context=ssl_context(boto)),
    )
    return session, api


async def collect(session: Session) -> tuple[bytes, ChannelClosed]:
    output = bytearray()
    async with session:
        async for event in session:
            if isinstance(event, OutputReceived):
                output += event.data
            elif isinstance(event, ChannelClosed):
                return bytes(output), event
    raise AssertionError("no channel_closed")


def test_wss_uses_the_same_ca_bundle_as_botocore() -> None:
    with Sandbox(tls=True, initial_wait=0.05) as sb:
        assert sb.endpoint_url.startswith("https://")
        target = targets(sb, "ECS:Service-Name: legacy")[0]
        session, _ = start(sb, target, "echo secure-channel")
        assert session.stream_url.startswith("wss://")
        output, closed = asyncio.run(collect(session))
        assert output == b"secure-channel\r\n" and not closed.truncated
        # Without the sandbox CA the websocket is refused with a clear TLS error naming
        # the endpoint, and the orphaned session is terminated on the way out.
        session, _ = start(sb, target, "sleep 30")
        bare = Session(
            session.session_id,
            session.stream_url,
            session._token,
            target=session.target,
            control=session._control,
            options=SessionOptions(ssl_context=ssl.create_default_context()),
        )
        with pytest.raises(TransportError, match=r"TLS error connecting to 127\.0\.0\.1:\d+"):
            asyncio.run(collect(bare))
        assert [s for s in sb.control.sessions() if s["state"] == "active"] == []


def test_connection_refused_is_a_transport_error_naming_the_host() -> None:
    session = Session(
        "ecs-execute-command-x",
        "ws://127.0.0.1:9/v1/data-channel/x",
        "token",
        options=SessionOptions(open_timeout=5),
    )
    with pytest.raises(TransportError, match=r"127\.0\.0\.1:9") as info:
        asyncio.run(collect(session))
    assert "token" not in str(info.value)


def test_kms_failure_is_reported_as_kms_error_with_key_and_context(sandbox: Sandbox) -> None:
    target = targets(sandbox, "ECS:Cluster-Name: secure")[0]
    session, _ = start(sandbox, target, "echo never")

    def refuse(request: DataKeyRequest) -> DataKey:
        raise KmsError("AccessDeniedException: not authorized to perform kms:GenerateDataKey")

    session._data_key_provider = refuse

    async def scenario() -> None:
        await collect(session)
        await session.wait_closed()

    with pytest.raises(KmsError) as info:
        asyncio.run(scenario())
    message = str(info.value)
    assert "kms:GenerateDataKey for key" in message
    assert f"aws:ssm:TargetId={target_id(target)}" in message
    assert "AccessDenied" in message


def target_id(target: ContainerTarget) -> str:
    cluster = target.cluster.rsplit("/", 1)[-1]
    return f"ecs:{cluster}_{target.task.rsplit('/', 1)[-1]}_{target.runtime_id}"
