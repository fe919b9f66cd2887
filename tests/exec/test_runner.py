"""One command on one container, end to end: real sandbox, websockets and boto3."""

from __future__ import annotations

import asyncio

import pytest

from ecsexec.errors import AwsError
from ecsexec.exec.runner import run_on_container
from ecsexec.exec.wrap import raw, wrap
from ecsexec.sandbox import Sandbox
from tests.exec.sandbox_nodes import pool, targets


def run(sb: Sandbox, node_filter: str, command: str, **kw):  # type: ignore[no-untyped-def]
    target = targets(sb, node_filter)[0]
    return asyncio.run(run_on_container(pool(sb)(target), target, wrap(command), **kw))


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
        task = asyncio.create_task(
            run_on_container(
                pool(sandbox)(target),
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
        raw_result = asyncio.run(
            run_on_container(pool(sb)(target), target, raw("echo hi"), timeout=30)
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
