"""The session-manager-plugin drop-in end to end: real sandbox, real websockets, real boto3.

These are the Done-when checks of the data-channel issue: `seq 1 30000` in order, `cat`
with piped stdin staying until the remote side closes, and 5% frame loss in each
direction giving byte-exact output or a loud truncation, never a silent cut.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ecsexec.sandbox import Sandbox
from tests.conftest import boto3_session

PLUGIN = [sys.executable, "-c", "from ecsexec.cli.plugin import main; main()"]
SEQ_OUTPUT = b"".join(b"%d\r\n" % i for i in range(1, 30001))


def client_env(sb: Sandbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(sb.env)
    return env


def start_session(
    sb: Sandbox, command: str, cluster: str = "demo", service: str = "web"
) -> tuple[str, str]:
    """What `aws ecs execute-command` does before it runs the plugin: (session JSON, target)."""
    session = boto3_session(sb)
    ecs = session.client("ecs", endpoint_url=sb.endpoint_url)
    task_arn = ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"][0]
    task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
    container = task["containers"][0]
    response = ecs.execute_command(
        cluster=cluster,
        task=task_arn,
        container=container["name"],
        command=command,
        interactive=True,
    )
    target = f"ecs:{cluster}_{task_arn.rsplit('/', 1)[-1]}_{container['runtimeId']}"
    return json.dumps(response["session"]), target


def run_plugin(
    sb: Sandbox, session_json: str, target: str, *, stdin: bytes = b"", timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    argv = [
        *PLUGIN,
        session_json,
        "us-east-1",
        "StartSession",
        "",
        json.dumps({"Target": target}),
        sb.endpoint_url,
    ]
    return subprocess.run(
        argv, input=stdin, capture_output=True, env=client_env(sb), timeout=timeout, check=False
    )


def body(stdout: bytes, session_id: str) -> bytes:
    """Remote output without the plugin's start and exit lines (§14)."""
    start = f"\nStarting session with SessionId: {session_id}\n".encode()
    end = f"\n\nExiting session with sessionId: {session_id}.\n\n".encode()
    assert stdout.startswith(start), stdout[:200]
    assert stdout.endswith(end), stdout[-200:]
    return stdout[len(start) : -len(end)]


def test_seq_30000_arrives_complete_and_in_order(sandbox: Sandbox) -> None:
    session_json, target = start_session(sandbox, "seq 1 30000")
    result = run_plugin(sandbox, session_json, target)
    assert result.returncode == 0, result.stderr
    assert body(result.stdout, json.loads(session_json)["sessionId"]) == SEQ_OUTPUT


def test_cat_with_piped_stdin_stays_until_the_remote_side_closes(sandbox: Sandbox) -> None:
    session_json, target = start_session(sandbox, "cat")
    result = run_plugin(sandbox, session_json, target, stdin=b"hello\n")
    assert result.returncode == 0, result.stderr
    # The PTY echoes the input, then cat prints it; EOF (0x04) ends cat, which ends the session.
    assert body(result.stdout, json.loads(session_json)["sessionId"]) == b"hello\r\nhello\r\n"


def test_lossy_links_give_byte_exact_output() -> None:
    # The agent drains for 2 s after exit (docs/ssm-protocol.md §11); with it raised, recovery
    # always finishes and the output must be exact.
    with Sandbox(initial_wait=0.05, faults="drop=0.05,seed=7", drain_timeout=60.0) as sb:
        session_json, target = start_session(sb, "seq 1 30000")
        result = run_plugin(sb, session_json, target)
        assert result.returncode == 0, result.stderr
        assert body(result.stdout, json.loads(session_json)["sessionId"]) == SEQ_OUTPUT
        frames = sb.stats()["frames"]
        assert frames["a2c"]["dropped"] > 0 and frames["c2a"]["dropped"] > 0


def test_agent_giving_up_is_reported_never_silent() -> None:
    # With the real 2 s drain and heavy loss the agent gives up first: the plugin must
    # either have everything or say loudly that it has not.
    outcomes = []
    for seed in (1, 2, 3):
        with Sandbox(initial_wait=0.05, faults=f"a2c.drop=0.3,c2a.drop=0.05,seed={seed}") as sb:
            session_json, target = start_session(sb, "seq 1 30000")
            result = run_plugin(sb, session_json, target)
        sid = json.loads(session_json)["sessionId"]
        if result.returncode == 0:
            assert body(result.stdout, sid) == SEQ_OUTPUT
        else:
            assert result.returncode == 3
            assert b"output truncated: frame" in result.stderr
        outcomes.append(result.returncode)
    assert 3 in outcomes  # the loud path was really exercised


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_aws_cli_execute_command_uses_the_drop_in(sandbox: Sandbox, tmp_path: Path) -> None:
    session = boto3_session(sandbox)
    ecs = session.client("ecs", endpoint_url=sandbox.endpoint_url)
    task_arn = ecs.list_tasks(cluster="demo", serviceName="web")["taskArns"][0]
    env = client_env(sandbox)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [
            "aws",
            "ecs",
            "execute-command",
            "--cluster",
            "demo",
            "--task",
            task_arn,
            "--container",
            "app",
            "--interactive",
            "--command",
            "sh -c 'echo hi; exit 3'",
        ],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert b"hi\r\n" in result.stdout
    assert b"Starting session with SessionId: ecs-execute-command-" in result.stdout


def test_kms_session_uses_the_callers_own_credentials(sandbox: Sandbox) -> None:
    before = sandbox.stats()["api"].get("kms", {}).get("GenerateDataKey", {}).get("calls", 0)
    session_json, target = start_session(
        sandbox, "sh -c 'echo encrypted; exit 4'", cluster="secure", service="payments"
    )
    result = run_plugin(sandbox, session_json, target)
    assert result.returncode == 0, result.stderr
    assert body(result.stdout, json.loads(session_json)["sessionId"]) == b"encrypted\r\n"
    assert b"encrypted using AWS KMS" in result.stderr  # CustomerMessage goes to stderr
    after = sandbox.stats()["api"]["kms"]["GenerateDataKey"]["calls"]
    assert after == before + 1


def test_piped_stdin_gets_a_300_by_100_terminal(sandbox: Sandbox) -> None:
    # ECS starts the command before any client attaches, so the size applies from the
    # moment the input gate opens (§7); a command that waits for input sees it.
    session_json, target = start_session(sandbox, "sh -c 'read line; stty size'")
    result = run_plugin(sandbox, session_json, target, stdin=b"go\n")
    assert body(result.stdout, json.loads(session_json)["sessionId"]) == b"go\r\n100 300\r\n"


def test_third_interrupt_without_a_tty_terminates_the_session(sandbox: Sandbox) -> None:
    # The remote command ignores SIGINT, so only TerminateSession can end it.
    session_json, target = start_session(sandbox, "sh -c 'trap \"\" INT; echo armed; sleep 60'")
    argv = [
        *PLUGIN,
        session_json,
        "us-east-1",
        "StartSession",
        "",
        json.dumps({"Target": target}),
        sandbox.endpoint_url,
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env(sandbox),
    )
    assert proc.stdout is not None
    seen = b""
    while b"armed" not in seen:
        chunk = proc.stdout.read1(4096)
        assert chunk, "the plugin ended before the command started"
        seen += chunk
    before = sandbox.stats()["sessions"]["by_end_reason"]["terminated"]
    for sent in (1, 2):
        # Each of the first two reaches the remote terminal as 0x03, echoed as ^C. Wait
        # for that echo before the next signal: pending signals of one kind coalesce.
        proc.send_signal(signal.SIGINT)
        while seen.count(b"^C") < sent:
            chunk = proc.stdout.read1(4096)
            assert chunk, "the plugin ended early"
            seen += chunk
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert sandbox.stats()["sessions"]["by_end_reason"]["terminated"] == before + 1


def test_aws_ssm_start_session_on_an_ecs_target_uses_the_drop_in(sandbox: Sandbox) -> None:
    """`aws ssm start-session --target ecs:...`: the sandbox's StartSession, then the
    drop-in (the session JSON reaches it through AWS_SSM_START_SESSION_RESPONSE)."""
    ecs = boto3_session(sandbox).client("ecs", endpoint_url=sandbox.endpoint_url)
    task_arn = ecs.list_tasks(cluster="demo", serviceName="legacy")["taskArns"][0]
    (task,) = ecs.describe_tasks(cluster="demo", tasks=[task_arn])["tasks"]
    container = task["containers"][0]
    target = f"ecs:demo_{task_arn.rsplit('/', 1)[1]}_{container['runtimeId']}"
    env = client_env(sandbox)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    def start(*extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["aws", "ssm", "start-session", "--target", target, *extra],
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    command = start(
        "--document-name",
        "AWS-StartInteractiveCommand",
        "--parameters",
        '{"command": ["sh -c \'echo from-ssm; exit 0\'"]}',
    )
    assert command.returncode == 0, command.stderr
    assert b"from-ssm\r\n" in command.stdout
    assert b"Starting session with SessionId:" in command.stdout
    shell = start()  # no document: a shell, which stdin's end of file ends
    assert shell.returncode == 0, shell.stderr
    bad = subprocess.run(
        ["aws", "ssm", "start-session", "--target", "ecs:demo_0_0"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert bad.returncode != 0 and b"TargetNotConnected" in bad.stderr
