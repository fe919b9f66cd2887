"""`ecsexec run` and `ecsexec nodes` as a user runs them: subprocesses against the sandbox."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ecsexec.exec.connect import SMALL_RUN
from ecsexec.sandbox import Sandbox
from tests.conftest import client

ECSEXEC = [sys.executable, "-m", "ecsexec"]
WEB = "ECS:Service-Name: web ECS:Cluster-Name: demo"


def env_for(sb: Sandbox, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env.update(sb.env)
    # Private cache, history and key storage per test: never the user's own.
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    return env


def ecsexec(
    sb: Sandbox, tmp_path: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ECSEXEC, *args],
        capture_output=True,
        text=True,
        env=env_for(sb, tmp_path),
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,  # ecsexec run forwards a non-terminal stdin
    )


def test_exit_codes_0_3_and_127_with_stderr(sandbox: Sandbox, tmp_path: Path) -> None:
    ok = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--format", "json", "--", "echo fine")
    assert ok.returncode == 0, ok.stderr
    records = json.loads(ok.stdout)
    assert {r["status"] for r in records} == {"succeeded"}
    assert {r["output"] for r in records} == {"fine\n"}
    assert set(records[0]) == {
        "node",
        "status",
        "exit_code",
        "output",
        "output_encoding",
        "error",
        "started_at",
        "duration_s",
        "session_id",
    }
    three = ecsexec(
        sandbox,
        tmp_path,
        "run",
        "-F",
        WEB,
        "--format",
        "json",
        "--",
        "sh",
        "-c",
        "echo to-stderr >&2; exit 3",
    )
    assert three.returncode == 1
    assert {(r["exit_code"], r["output"]) for r in json.loads(three.stdout)} == {(3, "to-stderr\n")}
    missing = ecsexec(
        sandbox, tmp_path, "run", "-F", WEB, "--format", "jsonl", "--", "no-such-command-xyz"
    )
    assert missing.returncode == 1
    lines = [json.loads(line) for line in missing.stdout.splitlines()]
    assert {r["exit_code"] for r in lines} == {127}
    assert len(lines) == len(json.loads(ok.stdout))


def test_text_output_is_prefixed_and_summarised(sandbox: Sandbox, tmp_path: Path) -> None:
    result = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--", "echo line; exit 7")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines and all(line.endswith(": line") for line in lines)
    assert "7" in result.stderr and "failed" in result.stderr


def test_group_shows_identical_output_once(sandbox: Sandbox, tmp_path: Path) -> None:
    result = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--group", "--", "echo same")
    assert result.returncode == 0
    assert result.stdout.count("same\n") == 1
    assert "(3)" in result.stdout


def test_utf8_and_large_output_are_byte_exact(sandbox: Sandbox, tmp_path: Path) -> None:
    text = "héllo wörld ✓ 日本語"
    result = ecsexec(
        sandbox,
        tmp_path,
        "run",
        "-F",
        "ECS:Service-Name: legacy",
        "--format",
        "json",
        "--",
        f"printf '%s\\n' '{text}'; head -c 10000000 /dev/zero | tr '\\0' x",
    )
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["output"] == text + "\n" + "x" * 10_000_000


def test_filter_is_required_and_bad_filters_name_the_column(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    missing = ecsexec(sandbox, tmp_path, "run", "--", "true")
    assert missing.returncode == 2 and "-F '.*'" in missing.stderr
    bad = ecsexec(sandbox, tmp_path, "nodes", "-F", "name: /[unclosed/")
    assert bad.returncode == 2 and "column" in bad.stderr


def test_dry_run_lists_nodes_without_running(sandbox: Sandbox, tmp_path: Path) -> None:
    before = sandbox.stats()["sessions"]["opened"]
    result = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--dry-run", "--", "true")
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 3
    assert sandbox.stats()["sessions"]["opened"] == before


def test_nodes_json_round_trips_through_nodes_file(sandbox: Sandbox, tmp_path: Path) -> None:
    listed = ecsexec(sandbox, tmp_path, "nodes", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    path = tmp_path / "nodes.json"
    path.write_text(listed.stdout)
    flt = "ECS:Container-Image: spring.*"
    live = ecsexec(sandbox, tmp_path, "nodes", "-F", flt, "--format", "json")
    from_file = ecsexec(
        sandbox, tmp_path, "nodes", "--nodes-file", str(path), "-F", flt, "--format", "json"
    )
    assert json.loads(live.stdout) == json.loads(from_file.stdout)
    assert len(json.loads(live.stdout)) == 2


def test_timeout_leaves_no_session_behind(sandbox: Sandbox, tmp_path: Path) -> None:
    result = ecsexec(
        sandbox, tmp_path, "run", "-F", WEB, "--timeout", "1", "--format", "json", "--", "sleep 30"
    )
    assert result.returncode == 3
    assert {r["status"] for r in json.loads(result.stdout)} == {"timeout"}
    assert [s for s in sandbox.control.sessions() if s["state"] == "active"] == []


SLEEPER = "echo started; sleep 60"
MANY = ("run", "-F", ".*", "--yes", "--threads", "100", "--rate", "1000")


def start_sleepers(env: dict[str, str], *args: str, nodes: int) -> subprocess.Popen[str]:
    """`ecsexec ARGS -- SLEEPER`, returned once every node printed that it started."""
    proc = subprocess.Popen(
        [*ECSEXEC, *args, "--", SLEEPER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    started = 0
    while started < nodes:
        line = proc.stdout.readline()
        assert line, f"ecsexec ended after {started} of {nodes} nodes started"
        started += line.rstrip().endswith("started")
    return proc


@pytest.mark.parametrize(
    "signals",
    [
        [signal.SIGINT],
        [signal.SIGTERM],
        [signal.SIGHUP],  # a closed terminal or a dropped SSH connection
        [signal.SIGINT, signal.SIGINT],  # a second Ctrl-C while sessions are being ended
        [signal.SIGTERM, signal.SIGINT],
    ],
    ids=["int", "term", "hup", "int-int", "term-int"],
)
def test_ctrl_c_terminates_every_session(
    sandbox: Sandbox, tmp_path: Path, signals: list[int]
) -> None:
    proc = start_sleepers(env_for(sandbox, tmp_path), "run", "-F", WEB, nodes=3)
    for signum in signals:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert [s for s in sandbox.control.sessions() if s["state"] == "active"] == []
    # The run is recorded as interrupted, every node as cancelled (none "running").
    shown = ecsexec(sandbox, tmp_path, "history", "show", "1", "--format", "json")
    record = json.loads(shown.stdout)
    assert record["status"] == "interrupted"
    assert {n["status"] for n in record["nodes"]} == {"cancelled"}


@pytest.mark.parametrize("flag", ["--keepgoing", "--fail-fast"])
def test_keepgoing_and_fail_fast(sandbox: Sandbox, tmp_path: Path, flag: str) -> None:
    result = ecsexec(
        sandbox,
        tmp_path,
        "run",
        "-F",
        WEB,
        "--threads",
        "1",
        flag,
        "--format",
        "json",
        "--",
        "exit 1",
    )
    assert result.returncode == 1
    ran = [r["status"] for r in json.loads(result.stdout)]
    # Every node has a record; fail-fast leaves the ones after the failure not started.
    assert ran == (["failed"] * 3 if flag == "--keepgoing" else ["failed", *["not started"] * 2])


def test_dispatch_defaults_come_from_ecsexec_toml_and_flags_win(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "ecsexec.toml").write_text("[dispatch]\nthreads = 1\nkeepgoing = false\n")

    def run(*flags: str) -> list[str]:
        result = subprocess.run(
            [*ECSEXEC, "run", "-F", WEB, "--format", "json", *flags, "--", "exit 1"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env_for(sandbox, tmp_path),
            timeout=120,
            check=False,
        )
        assert result.returncode == 1, result.stderr
        return [r["status"] for r in json.loads(result.stdout) if r["status"] != "not started"]

    assert len(run()) == 1  # fail-fast and one thread, from the file
    assert len(run("--keepgoing")) == 3  # the flag wins


def _binary(size: int = 300_000) -> tuple[str, bytes]:
    """A command printing ``size`` random bytes, and those bytes (the same seeded generator
    in the container, which runs this machine's Python, and here)."""
    code = f"import random,sys; sys.stdout.buffer.write(random.Random(1234).randbytes({size}))"
    return f"{sys.executable} -c {shlex.quote(code)}", random.Random(1234).randbytes(size)


def test_one_node_prints_exactly_the_commands_bytes(sandbox: Sandbox, tmp_path: Path) -> None:
    command, data = _binary()
    one = "ECS:Service-Name: legacy"
    done = subprocess.run(
        [*ECSEXEC, "run", "-F", one, "--", command],
        capture_output=True,
        env=env_for(sandbox, tmp_path),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) == len(data)
    assert hashlib.sha256(done.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_json_records_are_lossless_for_any_bytes(sandbox: Sandbox, tmp_path: Path) -> None:
    command, data = _binary(50_000)
    binary = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--format", "json", "--", command)
    assert binary.returncode == 0, binary.stderr
    for record in json.loads(binary.stdout):
        assert record["output_encoding"] == "base64"
        assert base64.b64decode(record["output"]) == data
    text = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--format", "jsonl", "--", "echo 'é ok'")
    for line in text.stdout.splitlines():
        record = json.loads(line)
        assert (record["output"], record["output_encoding"]) == ("é ok\n", "utf-8")


def test_several_nodes_show_bytes_that_are_not_utf8_escaped(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    shown = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--", "printf 'a\\377b\\n'")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3
    assert all(line.endswith(": a\\xffb") for line in lines), lines
    assert "\ufffd" not in shown.stdout  # never silently replaced


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGHUP])
def test_a_second_signal_during_cleanup_leaves_nothing_running(tmp_path: Path, second: int) -> None:
    """Many sessions, so that ending them takes a while and the second signal lands
    during that cleanup: every session is still terminated, every process gone."""
    with Sandbox(tasks=60, initial_wait=0.05, throttle="off") as sb:
        proc = start_sleepers(env_for(sb, tmp_path), *MANY, nodes=60)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        said = ""
        while "interrupted" not in said:  # the first signal was handled: cleanup is on
            line = proc.stderr.readline()
            assert line, "ecsexec exited without saying it was interrupted"
            said += line
        proc.send_signal(second)
        _, err = proc.communicate(timeout=60)
        err = said + err
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        active = [s for s in sb.control.sessions() if s["state"] == "active"]
        assert active == [], f"{len(active)} sessions left running"
        deadline = time.monotonic() + 10
        while sb.stats()["processes"].get("ptys_open", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sb.stats()["processes"].get("ptys_open", 0) == 0


def test_a_closed_stdout_ends_the_run_cleanly(sandbox: Sandbox, tmp_path: Path) -> None:
    """`ecsexec run ... | head -2`: no traceback, sessions ended, the run recorded."""
    proc = subprocess.Popen(
        # Output keeps coming, so a write surely follows the reader's going away (a writer
        # learns it only when it next writes, as with any Unix pipe).
        [*ECSEXEC, "run", "-F", WEB, "--", "echo started; while :; do echo more; sleep 0.1; done"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(sandbox, tmp_path),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().endswith(b"started\n")
    proc.stdout.close()  # the reader is gone, as when `head` has its lines
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141, err  # 128 + SIGPIPE, as a shell reports it
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert [s for s in sandbox.control.sessions() if s["state"] == "active"] == []
    shown = ecsexec(sandbox, tmp_path, "history", "show", "1", "--format", "json")
    assert json.loads(shown.stdout)["status"] == "interrupted"


def test_declining_the_confirmation_exits_1_and_runs_nothing(tmp_path: Path) -> None:
    """Over 20 nodes on a terminal ecsexec asks first; 'n' is a choice, not an interrupt."""
    nodes = {
        f"app-{n:02d}": {
            "ECS:Cluster-ARN": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "ECS:Task-ARN": f"arn:aws:ecs:us-east-1:123456789012:task/c/{n:032x}",
            "ECS:Container-Name": "app",
            "ECS:Region": "us-east-1",
        }
        for n in range(21)
    }
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps(nodes))
    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_DEFAULT_REGION="us-east-1")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    proc = subprocess.Popen(
        [*ECSEXEC, "run", "--nodes-file", str(path), "-F", ".*", "--", "true"],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    os.close(secondary)
    os.write(primary, b"n\n")
    _, err = proc.communicate(timeout=60)
    os.close(primary)
    assert proc.returncode == 1, err
    assert "Run 'true' on 21 containers?" in err and "aborted" in err
    assert not (tmp_path / "state" / "ecsexec").exists()  # no run was recorded


LEGACY = "ECS:Service-Name: legacy"


def test_piped_stdin_reaches_every_node(sandbox: Sandbox, tmp_path: Path) -> None:
    """`echo foo | ecsexec run ... -- 'read x'`, as pssh -I does it."""
    done = subprocess.run(
        [*ECSEXEC, "run", "-F", WEB, "--", 'read x; echo "got $x"'],
        input="foo\n",
        capture_output=True,
        text=True,
        env=env_for(sandbox, tmp_path),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.endswith(": got foo") for line in lines)


def test_stdin_from_a_file(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_bytes(b"line one\nline two\n")
    done = subprocess.run(
        [*ECSEXEC, "run", "-F", LEGACY, "--stdin", str(source), "--", "wc -l"],
        capture_output=True,
        text=True,
        env=env_for(sandbox, tmp_path),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_a_terminal_stdin_is_closed_at_once(sandbox: Sandbox, tmp_path: Path) -> None:
    """With a terminal there is no input to forward: `read` sees end of file at once
    instead of waiting out the timeout."""
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [*ECSEXEC, "run", "-F", LEGACY, "--timeout", "60", "--", "read x; echo rc=$?"],
            stdin=secondary,
            capture_output=True,
            text=True,
            env=env_for(sandbox, tmp_path),
            timeout=50,  # the run's own timeout is longer: only EOF can end it in time
            check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.stdout.strip() == "rc=1", done.stderr


def test_a_raw_command_that_ran_to_its_end_is_not_an_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """--raw has no exit status to report, but a session that ended normally succeeded."""
    done = ecsexec(
        sandbox, tmp_path, "run", "-F", LEGACY, "--raw", "--format", "json", "--", "echo hi"
    )
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout)
    assert (record["status"], record["exit_code"], record["output"]) == ("succeeded", None, "hi\n")
    assert "exit status unknown" in record["error"]


def test_a_timeout_never_claims_a_termination_that_failed(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_faults("error=TerminateSession:1.0:AccessDeniedException")
    try:
        # SIGINT-proof, so the Ctrl-C fallback cannot end it either.
        done = ecsexec(
            sandbox,
            tmp_path,
            "run",
            "-F",
            LEGACY,
            "--timeout",
            "1",
            "--format",
            "json",
            "--",
            "trap '' INT; echo started; sleep 30",
        )
    finally:
        sandbox.set_faults("")
        for session in sandbox.control.sessions():  # end what the denial left running
            if session["state"] == "active":
                client(sandbox, "ssm").terminate_session(SessionId=session["sessionId"])
    assert done.returncode == 3
    (record,) = json.loads(done.stdout)
    assert record["status"] == "timeout"
    assert record["error"] == (
        "timed out after 1 s; the session may still be running (AccessDeniedException)"
    )


def test_one_container_named_directly(sandbox: Sandbox, tmp_path: Path) -> None:
    """--task/--container: no listing; --pass-exit-code and --quiet: what the Rundeck
    plugin's node executor needs (exit code and output as they are, nothing else)."""
    listed = ecsexec(sandbox, tmp_path, "nodes", "--format", "json", "--cluster", "demo")
    node = next(n for n in json.loads(listed.stdout).values() if n["ECS:Service-Name"] == "web")
    direct = ("--cluster", "demo", "--task", node["ECS:Task-ARN"])
    sandbox.reset_stats()
    done = ecsexec(
        sandbox, tmp_path, "run", *direct, "--container", "app", "--quiet", "--pass-exit-code",
        "--", "echo $HOSTNAME-ok; exit 42",
    )  # fmt: skip
    assert done.returncode == 42 and done.stderr == ""
    assert done.stdout.endswith("-ok\n")
    ecs_calls = {k: v["calls"] for k, v in sandbox.stats()["api"]["ecs"].items()}
    assert ecs_calls == {"DescribeTasks": 1, "ExecuteCommand": 1}
    plain = ecsexec(sandbox, tmp_path, "run", *direct, "--container", "app", "--", "exit 42")
    assert plain.returncode == 1 and "1 failed" in plain.stderr
    wrong = ecsexec(sandbox, tmp_path, "run", *direct, "--container", "nope", "--", "true")
    assert wrong.returncode == 3 and "has no container 'nope'" in wrong.stderr
    usage = ecsexec(sandbox, tmp_path, "run", "--task", node["ECS:Task-ARN"], "--", "true")
    assert usage.returncode == 2
    assert "--task needs --container NAME, exactly one --cluster" in usage.stderr
    both = ecsexec(
        sandbox, tmp_path, "run", "-F", "web", *direct, "--container", "app", "--", "true"
    )
    assert both.returncode == 2 and "either a node filter (-F) or --task" in both.stderr


def test_the_command_can_come_from_the_environment(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {**env_for(sandbox, tmp_path), "THE_COMMAND": "echo from-env"}
    done = subprocess.run(
        [*ECSEXEC, "run", "-F", WEB, "--command-env", "THE_COMMAND", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {r["output"] for r in json.loads(done.stdout)} == {"from-env\n"}
    unset = ecsexec(sandbox, tmp_path, "run", "-F", WEB, "--command-env", "NOPE_UNSET")
    assert unset.returncode == 2 and "NOPE_UNSET: that variable is empty or unset" in unset.stderr


def run_reporting_aiohttp(
    sb: Sandbox, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], bool]:
    """``ecsexec run ARGS`` in a subprocess; also whether it imported aiohttp."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('AIOHTTP', 'aiohttp' in sys.modules, file=sys.stderr))\n"
        "from ecsexec.cli.main import main\n"
        f"sys.argv = ['ecsexec', 'run', *{list(args)!r}]\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env_for(sb, tmp_path),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done, "AIOHTTP True" in done.stderr


def test_a_small_run_calls_execute_command_without_importing_aiohttp(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Up to exec.connect.SMALL_RUN nodes, botocore's own client makes the call in a worker
    # thread: the same request and errors, without aiohttp's ~0.1 s import first.
    done, imported = run_reporting_aiohttp(sandbox, tmp_path, "-F", WEB, "--", "echo ok")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": ok") == 3
    assert not imported


def test_a_larger_run_calls_execute_command_through_aiohttp(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    done, imported = run_reporting_aiohttp(
        sandbox, tmp_path, "-F", "ECS:Exec-Agent-Status: RUNNING", "--yes", "--", "echo ok"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": ok") > SMALL_RUN
    assert imported


def test_a_small_run_reports_execute_command_errors_as_before(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The worker-thread call goes through the same translation and hints as aiohttp's
    # (tests/exec/test_runner.py checks that path in-process).
    done, imported = run_reporting_aiohttp(
        sandbox, tmp_path, "-F", "ECS:Exec-Enabled: false", "--", "true"
    )
    assert done.returncode != 0
    assert "InvalidParameterException" in done.stderr, done.stderr
    assert "--enable-execute-command" in done.stderr
    assert not imported
