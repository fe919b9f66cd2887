"""The sandbox server: routing, control, stats, state files, TLS, main processes, lifecycle."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError, SSLError
from cryptography import x509
from tests.conftest import client
from websockets.sync.client import connect

from ecsexec.errors import ConfigurationError
from ecsexec.sandbox import Sandbox, shapes


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    """Poll a condition the sandbox reaches asynchronously (a task stopping, a log line)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


SMALL = {
    "version": 1,
    "regions": {
        "us-east-1": {
            "clusters": [
                {
                    "clusterName": "c",
                    "services": [
                        {
                            "serviceName": "s",
                            "taskDefinition": "t",
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
            "family": "t",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "app:1"}],
        }
    ],
}


# -- routing and control --------------------------------------------------------------------------


def test_control_needs_the_token(sandbox: Sandbox) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        request = urllib.request.Request(sandbox.endpoint_url + "/_sandbox/health", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(request, timeout=5)
        http.value.close()
        assert http.value.code == 401
    health = sandbox.control.health()
    assert health["status"] == "ok" and health["endpoint_url"] == sandbox.endpoint_url
    assert health["regions"] == ["us-east-1", "eu-west-1"]


def test_unknown_target_and_service(sandbox: Sandbox) -> None:
    request = urllib.request.Request(
        sandbox.endpoint_url + "/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=5)
    body = json.loads(http.value.read())
    http.value.close()
    assert body["__type"] == "UnknownOperationException"
    with pytest.raises(ClientError) as exc:
        client(sandbox, "ssm").describe_instance_information()
    assert _code(exc) == "UnknownOperationException"


def test_stats_count_calls_per_region_and_errors(sandbox: Sandbox) -> None:
    sandbox.reset_stats()
    ecs = client(sandbox, "ecs")
    ecs.list_clusters()
    ecs.list_clusters()
    with pytest.raises(ClientError):
        ecs.list_tasks(cluster="missing")
    client(sandbox, "ecs", region="eu-west-1").list_clusters()
    stats = sandbox.stats()
    assert stats["api"]["ecs"]["ListClusters"]["calls"] == 3
    assert stats["api"]["ecs"]["ListTasks"] == {
        "calls": 1,
        "errors": {"ClusterNotFoundException": 1},
        "seconds": stats["api"]["ecs"]["ListTasks"]["seconds"],
    }
    assert stats["api_by_region"]["eu-west-1"]["ecs"]["ListClusters"]["calls"] == 1
    assert stats["loop_lag_ms"]["p99"] >= 0 and stats["cpu_seconds"] >= 0
    sandbox.reset_stats()
    assert sandbox.stats()["api"] == {}


def test_strict_output_validation_catches_model_violations() -> None:
    assert shapes.validate_output("ecs", "DescribeClusters", {"clusters": [], "failures": []}) == ""
    typo = shapes.validate_output("ecs", "DescribeClusters", {"clusters": [{"clusterNme": "x"}]})
    assert "clusterNme" in typo and "unknown field" in typo
    wrong_type = shapes.validate_output(
        "ecs", "DescribeTasks", {"tasks": [{"cpu": 256, "createdAt": 1.5}]}
    )
    assert "tasks[0].cpu: expected string" in wrong_type
    enum = shapes.validate_output("ecs", "DescribeTasks", {"tasks": [{"launchType": "LAMBDA"}]})
    assert "launchType: must be one of" in enum


def test_state_files_and_permissions(sandbox: Sandbox) -> None:
    state = sandbox.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("aws-credentials", "control-token", "sandbox.json", "aws-config"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    info = json.loads((state / "sandbox.json").read_text())
    assert info["pid"] == os.getpid() and info["endpoint_url"] == sandbox.endpoint_url
    assert info["account"] == "123456789012" and info["tls"] is False
    secret = (state / "aws-credentials").read_text().split("aws_secret_access_key = ")[1].split()[0]
    token = (state / "control-token").read_text().strip()
    for leak in (secret, token):
        assert leak not in json.dumps(info) and leak not in json.dumps(sandbox.env)
    config = (state / "aws-config").read_text()
    assert (
        f"endpoint_url = {sandbox.endpoint_url}" in config and "[profile ecsexec-sandbox]" in config
    )


def test_busy_port_and_locked_state_dir_are_clear_errors(sandbox: Sandbox, tmp_path: Path) -> None:
    port = int(sandbox.endpoint_url.rsplit(":", 1)[1])
    with pytest.raises(ConfigurationError, match=f"port {port} on 127.0.0.1 is already in use"):
        Sandbox(SMALL, port=port, state_dir=tmp_path / "a").start()
    with pytest.raises(ConfigurationError, match="already running with state dir"):
        Sandbox(SMALL, state_dir=sandbox.state_dir).start()
    assert sandbox.control.health()["status"] == "ok"


# -- sessions via SSM and control -----------------------------------------------------------------


def test_resume_and_terminate_session(sandbox: Sandbox) -> None:
    ecs, ssm = client(sandbox, "ecs"), client(sandbox, "ssm")
    with pytest.raises(ClientError) as exc:
        ssm.resume_session(SessionId="ecs-execute-command-" + "0" * 26)
    assert _code(exc) == "DoesNotExistException"
    assert ssm.terminate_session(SessionId="ecs-execute-command-unknown")["SessionId"]
    task = ecs.list_tasks(cluster="demo", serviceName="web")["taskArns"][1]
    session = ecs.execute_command(cluster="demo", task=task, command="sleep 30", interactive=True)[
        "session"
    ]
    sid = session["sessionId"]
    try:
        resumed = ssm.resume_session(SessionId=sid)
        assert resumed["TokenValue"] != session["tokenValue"]
        assert resumed["StreamUrl"] != session["streamUrl"]
        assert resumed["StreamUrl"].split("?")[0] == session["streamUrl"].split("?")[0]
        assert sandbox.stats()["sessions"]["resumes"] >= 1
    finally:
        ssm.terminate_session(SessionId=sid)
    assert [
        s for s in sandbox.control.sessions() if s["sessionId"] == sid and s["state"] == "active"
    ] == []


def test_agent_status_control(sandbox: Sandbox) -> None:
    ecs = client(sandbox, "ecs")
    arn = ecs.list_tasks(cluster="demo", serviceName="web")["taskArns"][2]
    task_id = arn.rsplit("/", 1)[1]
    sandbox.control.set_agent(task_id, "app", "STOPPED")
    try:
        desc = ecs.describe_tasks(cluster="demo", tasks=[arn])["tasks"][0]
        assert desc["containers"][0]["managedAgents"][0]["lastStatus"] == "STOPPED"
        with pytest.raises(ClientError) as exc:
            ecs.execute_command(cluster="demo", task=arn, command="true", interactive=True)
        assert "execute command was not enabled" in str(exc.value)
    finally:
        sandbox.control.set_agent(task_id, "app", "RUNNING")
    assert (
        ecs.describe_tasks(cluster="demo", tasks=[arn])["tasks"][0]["containers"][0][
            "managedAgents"
        ][0]["lastStatus"]
        == "RUNNING"
    )


def test_session_limit_api_mode_and_reset(tmp_path: Path) -> None:
    with Sandbox(SMALL, session_limit=1, session_limit_mode="api", initial_wait=0.05) as sb:
        ecs, ssm = client(sb, "ecs"), client(sb, "ssm")
        task = ecs.list_tasks(cluster="c")["taskArns"][0]
        first = ecs.execute_command(cluster="c", task=task, command="sleep 30", interactive=True)
        with pytest.raises(ClientError) as exc:
            ecs.execute_command(cluster="c", task=task, command="true", interactive=True)
        assert _code(exc) == "TargetNotConnectedException"
        ecs.run_task(cluster="c", taskDefinition="t", launchType="FARGATE")
        assert len(ecs.list_tasks(cluster="c")["taskArns"]) == 2
        sb.control.reset()
        # Reloaded: the RunTask task and the session are gone, the keys still work.
        assert len(ecs.list_tasks(cluster="c")["taskArns"]) == 1
        assert sb.control.sessions() == []
        with pytest.raises(ClientError) as exc:
            ssm.resume_session(SessionId=first["session"]["sessionId"])
        assert _code(exc) == "DoesNotExistException"


# -- main processes (§8.4) ------------------------------------------------------------------------


def _mains_topology(script_ok: str, script_exit: str) -> dict[str, Any]:
    doc = json.loads(json.dumps(SMALL))
    doc["taskDefinitions"] += [
        {
            "family": "main",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [
                {
                    "name": "svc",
                    "image": "svc:1",
                    "environment": [{"name": "GREETING", "value": "hello"}],
                    "sandbox": {"main": ["sh", "-c", script_ok]},
                }
            ],
        },
        {
            "family": "crash",
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "containerDefinitions": [
                {"name": "job", "image": "job:1", "sandbox": {"main": ["sh", "-c", script_exit]}}
            ],
        },
    ]
    doc["regions"]["us-east-1"]["clusters"][0]["tasks"] = [
        {"taskDefinition": "main", "startedBy": "main"},
        {"taskDefinition": "crash", "startedBy": "crash"},
    ]
    return doc


def test_main_processes_log_exit_and_stop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A host credential must never reach a container (§8.3).
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-must-not-leak")
    topology = _mains_topology(
        'echo "main $GREETING $AWS_EXECUTION_ENV secret=${AWS_SECRET_ACCESS_KEY:-none}"; '
        "exec sleep 300",
        "echo failing; exit 3",
    )
    sb = Sandbox(topology, state_dir=tmp_path / "state")
    with sb:
        ecs = client(sb, "ecs")
        crash_arn = _wait_for(
            lambda: ecs.list_tasks(cluster="c", startedBy="crash", desiredStatus="STOPPED")[
                "taskArns"
            ]
        )[0]
        stopped = _wait_for(
            lambda: [
                t
                for t in ecs.describe_tasks(cluster="c", tasks=[crash_arn])["tasks"]
                if t["lastStatus"] == "STOPPED"
            ]
        )[0]
        assert stopped["stopCode"] == "EssentialContainerExited"
        assert stopped["stoppedReason"] == "Essential container in task exited"
        assert stopped["containers"][0]["exitCode"] == 3
        main_arn = ecs.list_tasks(cluster="c", startedBy="main")["taskArns"][0]
        task_id = main_arn.rsplit("/", 1)[1]
        log = tmp_path / "state" / "containers" / "us-east-1" / "c" / task_id / "svc" / "main.log"
        assert _wait_for(lambda: log.exists() and "main hello" in log.read_text())
        assert log.read_text().strip() == "main hello AWS_ECS_FARGATE secret=none"
        pids = [p.popen.pid for p in sb.call(lambda: list(sb.server.mains.running.values()))]
        assert len(pids) == 1 and not _gone(pids[0])
        ecs.stop_task(cluster="c", task=main_arn)
        assert _wait_for(lambda: _gone(pids[0]))
        assert _wait_for(
            lambda: (
                ecs.describe_tasks(cluster="c", tasks=[main_arn])["tasks"][0]["lastStatus"]
                == "STOPPED"
            )
        )
        assert sb.stats()["processes"]["main"] == 2
        # A new RunTask starts the main process again; stopping the sandbox kills it.
        ecs.run_task(cluster="c", taskDefinition="main", launchType="FARGATE")
        running = _wait_for(
            lambda: sb.call(lambda: [p.popen.pid for p in sb.server.mains.running.values()])
        )
    assert _wait_for(lambda: all(_gone(pid) for pid in running))
    assert not (tmp_path / "state" / "sandbox.json").exists()


@pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("jcmd") is None, reason="needs a JDK"
)
def test_demo_orders_jvm_deadlocks_for_the_thread_dump(sandbox: Sandbox) -> None:
    procs = sandbox.call(
        lambda: {
            p.container.task.id: (p.popen.pid, p.container.name)
            for p in sandbox.server.mains.running.values()
        }
    )
    assert len(procs) == 2 and {name for _, name in procs.values()} == {"orders"}
    task_id, (pid, _) = next(iter(procs.items()))
    log = sandbox.state_dir / "containers" / "us-east-1" / "demo" / task_id / "orders" / "main.log"
    assert _wait_for(lambda: log.exists() and "orders service ready" in log.read_text(), timeout=60)
    dump = subprocess.run(
        ["jcmd", str(pid), "Thread.print"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    assert "Found one Java-level deadlock" in dump
    assert '"order-worker-1"' in dump and '"inventory-reserver"' in dump


# -- TLS (§13) ------------------------------------------------------------------------------------


def test_tls_needs_the_ca_bundle(tmp_path: Path) -> None:
    state = tmp_path / "tls-state"
    with Sandbox(SMALL, tls=True, state_dir=state, initial_wait=0.05) as sb:
        assert sb.endpoint_url.startswith("https://127.0.0.1:")
        assert sb.env["AWS_CA_BUNDLE"] == str(state / "ca.pem")
        ecs = client(sb, "ecs")
        task = ecs.list_tasks(cluster="c")["taskArns"][0]
        import boto3

        untrusted = boto3.Session(region_name="us-east-1").client(
            "ecs",
            endpoint_url=sb.endpoint_url,
            aws_access_key_id="AKIAX",
            aws_secret_access_key="x",
        )
        with pytest.raises(SSLError) as exc:
            untrusted.list_clusters()
        assert sb.endpoint_url in str(exc.value)
        result = ecs.execute_command(cluster="c", task=task, command="true", interactive=True)
        session = result["session"]
        try:
            assert session["streamUrl"].startswith("wss://127.0.0.1:")
            with pytest.raises(ssl.SSLCertVerificationError):
                connect(session["streamUrl"], open_timeout=5).close()
            trusted = ssl.create_default_context(cafile=str(state / "ca.pem"))
            with connect(session["streamUrl"], ssl=trusted, open_timeout=5):
                pass
        finally:
            client(sb, "ssm").terminate_session(SessionId=session["sessionId"])
        leaf = x509.load_pem_x509_certificate((state / "tls" / "server.pem").read_bytes())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        assert san.get_values_for_type(x509.DNSName) == ["localhost"]
        assert stat.S_IMODE((state / "tls" / "server-key.pem").stat().st_mode) == 0o600
        first = (state / "ca.pem").read_bytes()
    with Sandbox(SMALL, tls=True, state_dir=state):
        assert (state / "ca.pem").read_bytes() == first  # reused across restarts


# -- lifecycle ------------------------------------------------------------------------------------


def test_process_mode_runs_out_of_process(tmp_path: Path) -> None:
    sb = Sandbox(SMALL, process=True, state_dir=tmp_path / "p")
    with sb:
        pid = sb.info["pid"]
        assert pid != os.getpid() and not _gone(pid)
        assert client(sb, "ecs").list_clusters()["clusterArns"]
        assert sb.stats()["api"]["ecs"]["ListClusters"]["calls"] == 1
    assert _gone(pid)


def test_shutdown_through_control(tmp_path: Path) -> None:
    sb = Sandbox(SMALL, state_dir=tmp_path / "s")
    sb.start()
    try:
        sb.control.shutdown()
        assert _wait_for(lambda: not (tmp_path / "s" / "sandbox.json").exists())
    finally:
        sb.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(sb.endpoint_url + "/_sandbox/health", timeout=2)
