"""``ecsexec nodes`` and ``ecsexec run`` with ``--server``: the team server's API instead of
AWS credentials, rendered and exiting as a local run does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.web.conftest import WebServer
from tests.web.web_client import Caller, run

pytestmark = pytest.mark.e2e

WEB = "ECS:Service-Name: web"


def ecsexec(*args: str, token: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env["COLUMNS"] = "200"
    if token is not None:
        env["ECSEXEC_SERVER_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "ecsexec", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # no ecsexec.toml here: nothing local is used
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_nodes_through_the_server_with_a_token_file(web_server: WebServer, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(web_server.users["webops"].token + "\n")
    done = ecsexec(
        "nodes",
        "--server",
        web_server.base_url,
        "--token-file",
        str(token_file),
        "--format",
        "json",
        token=None,
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert '"ECS:Service-Name": "web"' in done.stdout
    assert '"ECS:Service-Name": "api"' not in done.stdout  # webops sees the web service only
    assert web_server.users["webops"].token not in done.stdout + done.stderr


def test_run_through_the_server_keeps_exit_codes_and_output(
    web_server: WebServer, tmp_path: Path
) -> None:
    done = ecsexec(
        "run",
        "--server",
        web_server.base_url,
        "-F",
        WEB,
        "--",
        "echo hi; exit 3",
        token=web_server.users["operator"].token,
        tmp_path=tmp_path,
    )
    assert done.returncode == 1, done.stderr  # a command exited non-zero, as locally
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and all(line.endswith("hi") for line in lines)
    assert "exit 3" in done.stderr or " 3 " in done.stderr

    ok = ecsexec(
        "run",
        "--server",
        web_server.base_url,
        "-F",
        WEB,
        "--format",
        "json",
        "--",
        "true",
        token=web_server.users["operator"].token,
        tmp_path=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert '"exit_code": 0' in ok.stdout


@pytest.mark.parametrize(
    ("user", "args", "status", "says"),
    [
        (None, ("nodes",), 2, "ECSEXEC_SERVER_TOKEN"),
        ("bad", ("nodes",), 2, "refused the API token"),
        ("viewer", ("run", "-F", WEB, "--", "id"), 3, "may not run commands"),
        ("webops", ("run", "-F", "ECS:Service-Name: api", "--", "id"), 2, "no nodes match"),
        ("operator", ("run", "-F", WEB, "--rate", "5", "--", "id"), 2, "--rate cannot be used"),
    ],
)
def test_refusals_through_the_server_exit_as_local_errors_do(
    web_server: WebServer,
    tmp_path: Path,
    user: str | None,
    args: tuple[str, ...],
    status: int,
    says: str,
) -> None:
    token = "ecx_wrong" if user == "bad" else (web_server.users[user].token if user else None)
    done = ecsexec(
        args[0], "--server", web_server.base_url, *args[1:], token=token, tmp_path=tmp_path
    )
    assert done.returncode == status, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_stops_the_run_on_the_server_and_exits_130(
    web_server: WebServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env["ECSEXEC_SERVER_TOKEN"] = web_server.users["operator"].token
    args = ["run", "--server", web_server.base_url, "-F", WEB, "--", "echo started; sleep 60"]
    process = subprocess.Popen(
        [sys.executable, "-m", "ecsexec", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the first node's output: the run is going
        assert line.rstrip().endswith("started"), line
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "stopping the run on the server" in err and "Traceback" not in err
    run_id = int(err.split("run #", 1)[1].split()[0])

    async def status() -> str:
        async with Caller(web_server, web_server.users["viewer"]) as caller:
            record = await caller.get_json(f"/api/v1/runs/{run_id}")
            return str(record["status"])

    assert run(status()) == "interrupted"
