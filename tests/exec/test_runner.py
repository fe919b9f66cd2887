"""One command on one container, end to end: real sandbox, websockets and boto3."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import pytest

from ecsexec.aws.clients import session_from_env
from ecsexec.aws.ecs import ExecSession
from ecsexec.errors import AwsError, Status
from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.results import CommandResult
from ecsexec.exec.runner import Connector, ContainerTarget, SessionLike, run_on_container
from ecsexec.exec.wrap import WrappedCommand, raw, wrap
from ecsexec.sandbox import Sandbox
from ecsexec.ssm.channel import ChannelClosed, Event, OutputReceived
from ecsexec.ssm.session import SessionOptions
from tests.exec.sandbox_nodes import pool, targets, with_pool


def run(sb: Sandbox, node_filter: str, command: str, **kw):  # type: ignore[no-untyped-def]
    target = targets(sb, node_filter)[0]
    return with_pool(sb, lambda p: run_on_container(p(target), target, wrap(command), **kw))


@pytest.mark.parametrize(
    ("command", "exit_code", "output"),
    [
        ("echo hello; echo err >&2; exit 3", 3, b"hello\nerr\n"),
        ("printf 'no newline'", 0, b"no newline"),
        (
            "ls /nonexistent-dir",
            2,
            b"ls: cannot access '/nonexistent-dir': No such file or directory\n",
        ),
        ("kill -9 $$", 137, b""),
        ('echo "$TERM $PAGER $APP_ENV"', 0, b"dumb cat demo\n"),
        ("seq 1 20000 | tail -1", 0, b"20000\n"),
    ],
)
def test_exit_codes_and_clean_output(
    sandbox: Sandbox, command: str, exit_code: int, output: bytes
) -> None:
    result = run(sandbox, "ECS:Service-Name: web ECS:Cluster-Name: demo", command, timeout=30)
    assert result.exit_code == exit_code
    assert result.output == output
    assert not result.truncated
    assert result.session_id.startswith("ecs-execute-command-")


def test_large_output_is_byte_exact(sandbox: Sandbox) -> None:
    result = run(sandbox, "ECS:Service-Name: web", "seq 1 30000", timeout=60)
    assert result.output == b"".join(b"%d\n" % i for i in range(1, 30001))
    assert result.ok


def test_kms_encrypted_cluster(sandbox: Sandbox) -> None:
    before = sandbox.stats()["agent"]["kms_decrypts"]
    result = run(sandbox, "ECS:Cluster-Name: secure", "echo secret; exit 5", timeout=30)
    assert (result.exit_code, result.output) == (5, b"secret\n")
    assert sandbox.stats()["agent"]["kms_decrypts"] > before


def test_timeout_terminates_the_session(sandbox: Sandbox) -> None:
    before = sandbox.stats()["sessions"]["by_end_reason"]["terminated"]
    result = run(sandbox, "ECS:Service-Name: web", "echo started; sleep 60", timeout=1.5)
    assert result.exit_code is None
    assert "timed out" in result.reason
    assert result.output == b"started\n"
    stats = sandbox.stats()["sessions"]
    assert stats["by_end_reason"]["terminated"] == before + 1


def test_cancelling_terminates_the_session(sandbox: Sandbox) -> None:
    target = targets(sandbox, "ECS:Service-Name: web")[0]
    seen = asyncio.Event()

    async def scenario() -> None:
        async with pool(sandbox) as connectors:
            task = asyncio.create_task(
                run_on_container(
                    connectors(target),
                    target,
                    wrap("echo go; sleep 60"),
                    timeout=30,
                    on_output=lambda _n, _d, _h: seen.set(),
                )
            )
            await asyncio.wait_for(seen.wait(), 20)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    before = sandbox.stats()["sessions"]["by_end_reason"]["terminated"]
    asyncio.run(scenario())
    assert sandbox.stats()["sessions"]["by_end_reason"]["terminated"] == before + 1


def test_exec_disabled_error_says_to_restart_with_enable_execute_command(
    sandbox: Sandbox,
) -> None:
    with pytest.raises(AwsError) as info:
        run(sandbox, "ECS:Exec-Enabled: false", "true")
    assert info.value.code == "InvalidParameterException"
    assert "--enable-execute-command" in info.value.hint


def test_agent_stopped_error_names_the_agent_status(sandbox: Sandbox) -> None:
    with pytest.raises(AwsError) as info:
        run(sandbox, "ECS:Exec-Agent-Status: STOPPED", "true")
    assert "ExecuteCommandAgent is STOPPED" in info.value.hint


DISTROLESS = {
    "version": 1,
    "regions": {
        "us-east-1": {
            "clusters": [
                {
                    "clusterName": "c",
                    "services": [
                        {
                            "serviceName": "s",
                            "taskDefinition": "d",
                            "desiredCount": 1,
                            "launchType": "FARGATE",
                            "enableExecuteCommand": True,
                        }
                    ],
                }
            ]
        }
    },
    "taskDefinitions": [
        {
            "family": "d",
            "networkMode": "awsvpc",
            "cpu": "256",
            "memory": "512",
            "requiresCompatibilities": ["FARGATE"],
            "containerDefinitions": [
                {"name": "app", "image": "distroless:1", "sandbox": {"distroless": True}}
            ],
        }
    ],
}


def test_distroless_container_reports_unknown_status_and_raw_mode_runs() -> None:
    with Sandbox(topology=DISTROLESS, initial_wait=0.05) as sb:
        result = run(sb, "ECS:Cluster-Name: c", "echo hi", timeout=30)
        assert result.exit_code is None
        assert "cannot start /bin/sh" in result.reason
        target = targets(sb, "ECS:Cluster-Name: c")[0]
        raw_result = with_pool(
            sb, lambda p: run_on_container(p(target), target, raw("echo hi"), timeout=30)
        )
        assert raw_result.output == b"hi\n"
        assert raw_result.exit_code is None and "raw" in raw_result.reason


def test_drops_duplicates_reordering_and_disconnects_keep_output_and_exit_code_exact() -> None:
    # About 120 seeded fault decisions each way (frames and acks): a few disconnects, not
    # one that may land after channel_closed when the PTY's read sizes vary under load.
    faults = "drop=0.05,dup=0.05,reorder=0.05,disconnect=0.02,seed=5"
    with Sandbox(initial_wait=0.05, faults=faults, drain_timeout=60.0) as sb:
        result = run(
            sb, "ECS:Service-Name: web ECS:Cluster-Name: demo", "seq 1 20000; exit 7", timeout=60
        )
        stats = sb.stats()
    assert result.output == b"".join(b"%d\n" % i for i in range(1, 20001))
    assert result.exit_code == 7
    # The client reconnected through ResumeSession.
    assert stats["sessions"]["resumes"] >= 1, (stats["sessions"], stats["frames"])
    assert stats["frames"]["a2c"]["dropped"] and stats["frames"]["a2c"]["duplicated"]


def test_agent_giving_up_is_truncation_with_unknown_exit_status_never_success() -> None:
    with Sandbox(initial_wait=0.05, faults="a2c.drop=0.3,seed=4") as sb:
        result = run(sb, "ECS:Service-Name: web ECS:Cluster-Name: demo", "seq 1 30000", timeout=60)
    assert result.truncated
    assert result.exit_code is None and result.status == "error"
    assert "truncated" in result.reason


class WatchedSession:
    """A real session whose raw output passes through ``on_output`` before the runner sees
    it: the test acts at an exact point of the stream. Everything else is the session's."""

    def __init__(self, session: SessionLike, on_output: Callable[[bytes], Awaitable[None]]):
        self._session = session
        self._on_output = on_output

    @property
    def session_id(self) -> str:
        return self._session.session_id

    async def __aenter__(self) -> WatchedSession:
        await self._session.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session.__aexit__(exc_type, exc, tb)

    async def __aiter__(self) -> AsyncIterator[Event]:
        async for event in self._session:
            if isinstance(event, OutputReceived):
                await self._on_output(event.data)
            yield event

    def send_size(self, cols: int, rows: int) -> None:
        self._session.send_size(cols, rows)

    def open_input_gate(self, reason: str) -> None:
        self._session.open_input_gate(reason)

    async def send_input(self, data: bytes) -> None:
        await self._session.send_input(data)

    async def wait_closed(self) -> ChannelClosed:
        return await self._session.wait_closed()


@dataclass
class WatchedBackend:
    """The real Connector, with each session watched (see :class:`WatchedSession`)."""

    connector: Connector
    on_output: Callable[[str, bytes], Awaitable[None]]  # (session ID, raw output)

    async def start(self, target: ContainerTarget, wrapped: WrappedCommand) -> ExecSession:
        return await self.connector.start(target, wrapped)

    def session(self, started: ExecSession) -> WatchedSession:
        sid = started.session_id
        return WatchedSession(
            self.connector.session(started), lambda data: self.on_output(sid, data)
        )

    async def terminate(self, session_id: str) -> None:
        await self.connector.terminate(session_id)


def test_the_socket_dropping_after_the_end_marker_keeps_the_result() -> None:
    """The end marker reached the client; then its socket drops and every ResumeSession is
    refused. The command's output and exit code are complete: the result must say so."""
    # The agent waits (up to drain_timeout) for acks of its last frames before it closes
    # the channel; this session's acks are dropped, so the channel cannot close first.
    with Sandbox(
        initial_wait=0.05,
        drain_timeout=60.0,
        faults="error=ResumeSession:1.0:AccessDeniedException",
    ) as sb:
        target = targets(sb, "ECS:Service-Name: web ECS:Cluster-Name: demo")[0]
        go = f'"$HOME/go-{uuid.uuid4().hex}"'
        # It goes on when a second session (below) creates the file, in the same container.
        wrapped = wrap(f"echo waiting; while [ ! -e {go} ]; do sleep 0.05; done; echo done; exit 7")
        raw = bytearray()
        end = re.compile(re.escape(wrapped.end_marker(7)) + rb"\r\n")
        acted: list[str] = []

        async def scenario() -> CommandResult:
            options = SessionOptions(reconnect_attempts=2, reconnect_initial=0.05)
            async with ConnectorPool(
                lambda region: session_from_env(sb.env, region),
                default_region="us-east-1",
                options=options,
            ) as connectors:

                async def on_output(session_id: str, data: bytes) -> None:
                    raw.extend(data)
                    if b"waiting" in raw and "hold acks" not in acted:
                        acted.append("hold acks")
                        await asyncio.to_thread(sb.set_faults, "c2a.drop=1.0", session_id)
                        touched = await run_on_container(
                            connectors(target), target, wrap(f"touch {go}"), timeout=30
                        )
                        assert touched.ok, touched
                    if end.search(raw) and "disconnect" not in acted:
                        acted.append("disconnect")
                        await asyncio.to_thread(sb.control.disconnect, session_id)

                backend = WatchedBackend(connectors(target), on_output)
                return await run_on_container(backend, target, wrapped, timeout=60)

        result = asyncio.run(scenario())
        resume_errors = sb.stats()["api"]["ssm"]["ResumeSession"]["errors"]
    assert acted == ["hold acks", "disconnect"]
    assert resume_errors.get("AccessDeniedException", 0) >= 1  # the socket really was lost
    assert (result.exit_code, result.output) == (7, b"waiting\ndone\n")
    assert result.status is Status.FAILED and result.error is None
