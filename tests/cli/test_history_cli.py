"""`ecsexec run` records history; `ecsexec history` reads it. Subprocesses against the sandbox."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from ecsexec.sandbox import Sandbox
from tests.cli.test_job_cli import ECSEXEC, ecsexec, env_for

WEB = "ECS:Service-Name: web ECS:Cluster-Name: demo"


def test_an_ad_hoc_run_is_recorded_and_read_back(sandbox: Sandbox, tmp_path: Path) -> None:
    run = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--", "echo hi; echo there; exit 3")
    assert run.returncode == 1
    listed = ecsexec(sandbox, tmp_path, "history", "list", "--format", "json")
    (record,) = json.loads(listed.stdout)
    assert (record["kind"], record["command"], record["filter"]) == (
        "run",
        "echo hi; echo there; exit 3",
        WEB,
    )
    assert (record["status"], record["exit_code"]) == ("failed", 1)
    nodes = [n["node"] for n in record["nodes"]]
    assert len(nodes) == 3
    assert {(n["status"], n["exit_code"], n["log_bytes"]) for n in record["nodes"]} == {
        ("failed", 3, 9)
    }
    run_id = str(record["id"])
    text = ecsexec(sandbox, tmp_path, "history", "list")
    assert text.returncode == 0 and run_id in text.stdout and "failed" in text.stdout
    only_ok = ecsexec(sandbox, tmp_path, "history", "list", "--status", "succeeded")
    assert only_ok.stdout == "" and "no runs recorded with status succeeded" in only_ok.stderr
    shown = ecsexec(sandbox, tmp_path, "history", "show", run_id)
    assert shown.returncode == 0
    assert "echo hi; echo there; exit 3" in shown.stdout
    assert all(node in shown.stdout for node in nodes)
    log = ecsexec(sandbox, tmp_path, "history", "log", run_id)
    assert log.stdout == "".join(f"{n}: hi\n{n}: there\n" for n in nodes)
    one = ecsexec(sandbox, tmp_path, "history", "log", run_id, "--node", nodes[1])
    assert one.stdout == "hi\nthere\n"
    missing = ecsexec(sandbox, tmp_path, "history", "show", "999")
    assert missing.returncode == 2 and "no run #999" in missing.stderr


def test_a_terminated_run_is_recorded_as_interrupted(sandbox: Sandbox, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*ECSEXEC, "run", "-F", "ECS:Service-Name: legacy", "--", "echo started; sleep 60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(sandbox, tmp_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        # The line break is held back until the end marker: read the word, not the line.
        assert proc.stdout.read(7) == "started"
        during = ecsexec(sandbox, tmp_path, "history", "list", "--status", "running")
        assert "running" in during.stdout and "echo started; sleep 60" in during.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    after = ecsexec(sandbox, tmp_path, "history", "list", "--format", "json")
    (record,) = json.loads(after.stdout)
    assert (record["status"], record["exit_code"]) == ("interrupted", 130)


def test_cleanup_ends_the_sessions_a_killed_run_left_running(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """After a SIGKILL nothing could end the sessions; their ids are in history as each
    started, so `history cleanup RUN` can."""
    env = env_for(sandbox, tmp_path)
    proc = subprocess.Popen(
        [*ECSEXEC, "run", "-F", "ECS:Service-Name: web", "--", "echo started; sleep 120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    names = set()
    while len(names) < 3:
        line = proc.stdout.readline()
        assert line, "the run ended early"
        names.add(line.split(": ", 1)[0])
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()
    left = [s for s in sandbox.control.sessions() if s["state"] == "active"]
    assert len(left) >= 3  # what the killed process could not end
    shown = subprocess.run(
        [*ECSEXEC, "history", "show", "1", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    record = json.loads(shown.stdout)
    assert record["status"] == "incomplete"
    started = {n["node"] for n in record["nodes"] if n["session_id"]}
    assert names <= started
    cleaned = subprocess.run(
        [*ECSEXEC, "history", "cleanup", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.count(": terminated") == len(started)
    assert [s for s in sandbox.control.sessions() if s["state"] == "active"] == []
