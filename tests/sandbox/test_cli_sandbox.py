"""``ecsexec sandbox up|down|status|stats|env|topology`` end to end, as users run them (§1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

ECSEXEC = [sys.executable, "-m", "ecsexec"]
# The sandbox commands alone (what `up --detach` starts): the same click group, faster to load.
SANDBOX_ONLY = [sys.executable, "-m", "ecsexec.cli.sandbox"]
TOPOLOGY = """\
version: 1
regions:
  us-east-1:
    clusters:
      - clusterName: cli
        tags: {owner: cli-test}
        services:
          - {serviceName: svc, taskDefinition: svc, desiredCount: 2, launchType: FARGATE,
             enableExecuteCommand: true}
taskDefinitions:
  - family: svc
    networkMode: awsvpc
    requiresCompatibilities: [FARGATE]
    cpu: "256"
    memory: "512"
    containerDefinitions:
      - {name: app, image: "app:1", sandbox: {main: [sleep, "300"]}}
"""


def _clean_env() -> dict[str, str]:
    """The user's shell without any AWS setting, so only the sandbox's can apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def ecsexec(*args: str, check: bool = True, full: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``ecsexec sandbox ARGS``; ``full`` goes through the whole ``ecsexec`` entry point."""
    result = subprocess.run(
        [*ECSEXEC, "sandbox", *args] if full else [*SANDBOX_ONLY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"ecsexec sandbox {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
        )
    return result


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    yield path
    # Never leave a sandbox behind, even when an assertion failed midway.
    if (path / "sandbox.json").exists():
        ecsexec("down", "--state-dir", str(path), check=False)


def test_detached_lifecycle(state: Path, tmp_path: Path) -> None:
    topo = tmp_path / "topology.yaml"
    topo.write_text(TOPOLOGY)
    up = ecsexec(
        "up",
        "--detach",
        "--state-dir",
        str(state),
        "--topology",
        str(topo),
        "--initial-wait",
        "50ms",
    )
    line = up.stdout.splitlines()[0]
    assert line.startswith("ready endpoint=http://127.0.0.1:")
    assert line.endswith(f" regions=us-east-1 state={state}")
    info = json.loads((state / "sandbox.json").read_text())
    sandbox_pid = info["pid"]
    mains = [c.pid for c in psutil.Process(sandbox_pid).children() if c.name() == "sleep"]
    assert len(mains) == 2

    status = ecsexec("status", "--state-dir", str(state))
    assert status.stdout.startswith(f"running pid={sandbox_pid} endpoint={info['endpoint_url']}")

    again = ecsexec("up", "--detach", "--state-dir", str(state), check=False)
    assert again.returncode != 0 and "already running" in again.stderr

    # eval "$(ecsexec sandbox env)" must make boto3 (and the AWS CLI) target the sandbox.
    script = (
        f'eval "$({" ".join(ECSEXEC)} sandbox env --state-dir {state})" && '
        f"{sys.executable} -c "
        "\"import boto3; print(boto3.client('ecs').list_clusters()['clusterArns'])\""
    )
    env = {**_clean_env(), "AWS_ACCESS_KEY_ID": "AKIAHOSTKEY", "AWS_SECRET_ACCESS_KEY": "host"}
    shell = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert shell.returncode == 0, shell.stderr
    assert "arn:aws:ecs:us-east-1:123456789012:cluster/cli" in shell.stdout

    sh = ecsexec("env", "--state-dir", str(state)).stdout
    secret = (state / "aws-credentials").read_text().split("aws_secret_access_key = ")[1].split()[0]
    assert secret not in sh and "unset AWS_ACCESS_KEY_ID" in sh
    as_json = json.loads(
        ecsexec("env", "--state-dir", str(state), "--format", "json", "--per-service").stdout
    )
    assert as_json["set"]["AWS_ENDPOINT_URL_ECS"] == info["endpoint_url"]
    assert "AWS_ENDPOINT_URL" not in as_json["set"]
    assert ecsexec("env", "--state-dir", str(state), "--format", "fish").stdout.startswith(
        "set -gx "
    )

    stats = json.loads(ecsexec("stats", "--state-dir", str(state), "--json").stdout)
    assert stats["api"]["ecs"]["ListClusters"]["calls"] == 1
    assert stats["processes"]["main"] == 2
    text = ecsexec("stats", "--state-dir", str(state)).stdout
    assert "ecs:ListClusters" in text and "sessions: opened=0" in text

    down = ecsexec("down", "--state-dir", str(state))
    assert down.stdout.strip() == "stopped"
    assert _gone(sandbox_pid) and all(_gone(pid) for pid in mains)
    assert not (state / "sandbox.json").exists()
    stopped = ecsexec("status", "--state-dir", str(state), check=False)
    assert stopped.returncode == 1 and stopped.stdout.startswith("not running")
    assert ecsexec("down", "--state-dir", str(state)).stdout.startswith("no sandbox is running")
    env_fail = ecsexec("env", "--state-dir", str(state), check=False)
    assert env_fail.returncode != 0 and "no sandbox is running" in env_fail.stderr


def test_busy_port_fails_clearly(state: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ecsexec(
            "up",
            "--detach",
            "--state-dir",
            str(state),
            "--tasks",
            "1",
            "--port",
            str(port),
            check=False,
        )
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert not (state / "sandbox.json").exists()


def test_foreground_up_prints_ready_and_stops_on_sigint(state: Path) -> None:
    proc = subprocess.Popen(
        [*ECSEXEC, "sandbox", "up", "--state-dir", str(state), "--tasks", "3", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready endpoint=http://127.0.0.1:") and "regions=us-east-1" in line
        assert (state / "sandbox.json").exists()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert not (state / "sandbox.json").exists()


def test_topology_command() -> None:
    first = ecsexec("topology", "--tasks", "7", "--seed", "4", "--mix").stdout
    assert first == ecsexec("topology", "--tasks", "7", "--seed", "4", "--mix").stdout
    doc = yaml.safe_load(first)
    services = [s for c in doc["regions"]["us-east-1"]["clusters"] for s in c["services"]]
    assert sum(s["desiredCount"] for s in services) == 7
    default = yaml.safe_load(ecsexec("topology").stdout)
    names = [c["clusterName"] for c in default["regions"]["us-east-1"]["clusters"]]
    assert names == ["demo", "demo-staging", "secure"]
