"""Honest termination outcomes end to end (docs/ssm-protocol.md §11): "terminated" only when
ssm:TerminateSession succeeded, else the AWS error code and "may still be running"."""

from __future__ import annotations

import asyncio

import pytest

from ecsexec.aws.clients import session_from_env, ssl_context
from ecsexec.aws.ecs import EcsApi
from ecsexec.aws.ssm import SsmSessionControl
from ecsexec.nodes import ecs_attributes as attrs
from ecsexec.nodes.ecs_source import EcsNodeSource, EcsSourceConfig
from ecsexec.sandbox import Sandbox
from ecsexec.ssm.channel import ChannelClosed
from ecsexec.ssm.session import Session, SessionOptions, TerminationOutcome

pytestmark = pytest.mark.e2e

# Ctrl-C (the fallback when TerminateSession fails) must not end it: SIGINT is ignored by
# the shell and, inherited as ignored, by sleep.
STUBBORN = "sh -c 'trap \"\" INT; echo started; sleep 60'"


class GaveUp(Exception):
    """Leaves the session's ``async with`` as the runner's timeout does."""


async def give_up_once_started(session: Session) -> None:
    output = b""
    async with session:
        async for event in session:
            assert not isinstance(event, ChannelClosed)
            output += getattr(event, "data", b"")
            if b"started" in output:
                raise GaveUp


async def time_out(sb: Sandbox, command: str) -> tuple[Session, TerminationOutcome]:
    """Run ``command`` on one node and give up on it as the runner's timeout does."""
    boto = session_from_env(sb.env)
    api = EcsApi(boto, region="us-east-1")
    try:
        nodes, _ = EcsNodeSource(EcsSourceConfig(region="us-east-1"), api).discover()
        node = nodes[0].attributes
        started = await api.execute_command_async(
            cluster=node[attrs.CLUSTER_ARN],
            task=node[attrs.TASK_ARN],
            container=node[attrs.CONTAINER_NAME],
            command=command,
            runtime_id=node[attrs.RUNTIME_ID],
        )
    finally:
        await api.aclose()
    session = Session(
        started.session_id,
        started.stream_url,
        started.token_value,
        target=started.target,
        control=SsmSessionControl(boto),
        options=SessionOptions(ssl_context=ssl_context(boto)),
    )
    with pytest.raises(GaveUp):
        await give_up_once_started(session)
    assert session.termination is not None
    return session, session.termination


def active(sb: Sandbox, session_id: str) -> bool:
    return any(
        s["sessionId"] == session_id and s["state"] == "active" for s in sb.control.sessions()
    )


def test_a_denied_terminate_session_is_reported_and_the_session_still_runs() -> None:
    with Sandbox(
        tasks=1,
        seed=1,
        initial_wait=0.05,
        faults="error=TerminateSession:1.0:AccessDeniedException",
    ) as sb:
        session, outcome = asyncio.run(time_out(sb, STUBBORN))
        assert not outcome.confirmed and not outcome.closed
        assert outcome.error_code == "AccessDeniedException"
        assert outcome.describe() == "the session may still be running (AccessDeniedException)"
        assert active(sb, session.session_id)  # true: nothing ended it
        stats = sb.stats()
        assert stats["api"]["ssm"]["TerminateSession"]["errors"] == {"AccessDeniedException": 1}

        sb.set_faults("")  # TerminateSession allowed again
        session, outcome = asyncio.run(time_out(sb, STUBBORN))
        assert outcome.confirmed and outcome.closed
        assert outcome.describe() == "the session was terminated"
        assert not active(sb, session.session_id)
