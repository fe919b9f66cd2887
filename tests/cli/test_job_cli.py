"""`ecsexec job` as a user runs it: subprocesses against the sandbox, with a private state dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from ecsexec.sandbox import Sandbox

ECSEXEC = [sys.executable, "-m", "ecsexec"]
EXAMPLES = Path(__file__).parents[2] / "examples" / "jobs"


def env_for(sb: Sandbox | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    if sb is not None:
        env.update(sb.env)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # a private node cache
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # a private history
    return env


def ecsexec(sb: Sandbox | None, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ECSEXEC, *args],
        capture_output=True,
        text=True,
        env=env_for(sb, tmp_path),
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,  # ecsexec run forwards a non-terminal stdin
    )


def wait_for_the_jvms(sb: Sandbox) -> None:
    """The orders JVMs start with the sandbox; attach only once they are up."""
    logs = list(sb.state_dir.glob("containers/*/demo/*/orders/main.log"))
    assert len(logs) == 2, "the demo/orders service needs java on PATH"
    deadline = time.monotonic() + 60
    while not all(b"orders service ready" in log.read_bytes() for log in logs):
        assert time.monotonic() < deadline, "the orders JVMs did not start"
        time.sleep(0.1)


def test_the_java_thread_dump_job_end_to_end(sandbox: Sandbox, tmp_path: Path) -> None:
    wait_for_the_jvms(sandbox)
    job = str(EXAMPLES / "java-thread-dump.yaml")
    run = ecsexec(
        sandbox,
        tmp_path,
        *("job", "run", job, "--option", "container=orders"),
        *("--option", "count=2", "--option", "interval=1"),
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    nodes = sorted({line.split(": ", 1)[0] for line in lines})
    assert len(nodes) == 2 and all(n.startswith("orders-") for n in nodes)
    for node in nodes:
        mine = [line.split(": ", 1)[1] for line in lines if line.startswith(node + ": ")]
        assert sum(line.startswith("Full thread dump OpenJDK") for line in mine) == 2
        summary = [line for line in mine if line.startswith("dump ")]
        assert len(summary) == 2
        assert all(" BLOCKED, Java-level deadlock found" in line for line in summary)
        assert "    inventory-reserver" in mine and "    payment-charger" in mine
    assert "data.pid = " in run.stderr and "2 succeeded" in run.stderr

    listed = ecsexec(sandbox, tmp_path, "history", "list", "--format", "json")
    (record,) = json.loads(listed.stdout)
    assert (record["kind"], record["job"], record["status"], record["exit_code"]) == (
        "job",
        "diagnostics/java-thread-dump",
        "succeeded",
        0,
    )
    assert record["options"] == {"container": "orders", "count": "2", "interval": "1"}
    assert record["filter"] == "ECS:Container-Name: orders"
    assert sorted(n["node"] for n in record["nodes"]) == nodes
    log = ecsexec(sandbox, tmp_path, "history", "log", str(record["id"]))
    assert log.returncode == 0
    assert log.stdout.count("Full thread dump OpenJDK") == 4
    one = ecsexec(sandbox, tmp_path, "history", "log", str(record["id"]), "--node", nodes[0])
    assert one.stdout.splitlines()[0].isdigit()  # step 1 printed the pid
    assert one.stdout.count("Full thread dump OpenJDK") == 2


FAILING = textwrap.dedent(
    """\
    - name: failing
      options:
      - {name: pw, secure: true, required: true}
      nodefilters: {filter: 'ECS:Service-Name: legacy'}
      sequence:
        commands:
        - exec: echo "got ${unquotedoption.pw}"; exit 4
        - exec: echo never
    - name: empty
      nodefilters:
        filter: 'name: no-such-node'
        dispatch: {successOnEmptyNodeFilter: true}
      sequence: {commands: [{exec: 'true'}]}
    - name: nothing
      nodefilters: {filter: 'name: no-such-node'}
      sequence: {commands: [{exec: 'true'}]}
    """
)


def test_exit_statuses_and_a_secret_on_the_command_line(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(FAILING)
    failed = ecsexec(
        sandbox, tmp_path, "job", "run", str(path), "--job", "failing", "--option", "pw=hunter22"
    )
    assert failed.returncode == 1
    assert failed.stdout == "got ****\n"
    assert "step 1 failed: exit code 4" in failed.stderr and "hunter22" not in failed.stderr
    missing = ecsexec(sandbox, tmp_path, "job", "run", str(path), "--job", "failing")
    assert missing.returncode == 2 and "'pw' is required" in missing.stderr
    empty = ecsexec(sandbox, tmp_path, "job", "run", str(path), "--job", "empty")
    assert empty.returncode == 0, empty.stderr
    nothing = ecsexec(sandbox, tmp_path, "job", "run", str(path), "--job", "nothing")
    assert nothing.returncode == 2 and "no nodes match" in nothing.stderr
    shown = ecsexec(sandbox, tmp_path, "history", "show", "1", "--format", "json")
    record = json.loads(shown.stdout)
    assert (record["job"], record["status"], record["options"]) == (
        "failing",
        "failed",
        {"pw": "****"},
    )
    log = ecsexec(sandbox, tmp_path, "history", "log", "1")
    assert log.stdout == "got ****\n"


def test_validate_and_list(tmp_path: Path) -> None:
    good = ecsexec(None, tmp_path, "job", "validate", str(EXAMPLES / "java-thread-dump.yaml"))
    assert good.returncode == 0 and "1 job(s) valid: diagnostics/java-thread-dump" in good.stdout
    bad = tmp_path / "jobs" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text("- name: j\n  sequence:\n    commands:\n    - exec: echo ${option.nope}\n")
    (bad.parent / "ok.yml").write_text(
        "- name: fine\n  options: [{name: who, required: true}]\n"
        "  sequence: {commands: [{exec: 'echo ${option.who}'}]}\n"
    )
    invalid = ecsexec(None, tmp_path, "job", "validate", str(bad))
    assert invalid.returncode == 2
    assert (
        f"ecsexec: error: {bad}:4: ${{option.nope}}: job 'j' has no option 'nope'" in invalid.stderr
    )
    listed = ecsexec(None, tmp_path, "job", "list", str(bad.parent))
    assert listed.returncode == 2  # one file is broken; the others are still listed
    assert "fine" in listed.stdout and "who*" in listed.stdout and "ok.yml:1" in listed.stdout
    assert f"{bad}:4:" in listed.stderr


def test_job_run_honours_the_dispatch_defaults_of_ecsexec_toml(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """[dispatch] timeout applies to `job run` as to `run`; a flag still wins over it."""
    (tmp_path / "ecsexec.toml").write_text("[dispatch]\ntimeout = 1.5\nrate = 50\n")
    path = tmp_path / "slow.yaml"
    path.write_text(
        "- name: slow\n"
        "  nodefilters: {filter: 'ECS:Service-Name: legacy'}\n"
        "  sequence: {commands: [{exec: 'echo started; sleep 30; echo never'}]}\n"
    )
    config = str(tmp_path / "ecsexec.toml")
    timed_out = ecsexec(sandbox, tmp_path, "job", "run", str(path), "--config", config)
    assert timed_out.returncode == 3, timed_out.stderr
    assert "timed out after 1.5 s" in timed_out.stderr
    assert timed_out.stdout == "started\n"  # the output before the timeout is kept
    flag = ecsexec(
        sandbox, tmp_path, "job", "run", str(path), "--config", config, "--timeout", "0.5"
    )
    assert flag.returncode == 3 and "timed out after 0.5 s" in flag.stderr


def test_a_script_with_a_secure_value_leaves_no_file_after_a_timeout(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A script step's text (with @option.pw@ expanded) must not rest on the container's
    disk when its session is killed (SIGKILL: no cleanup trap runs)."""
    half, other_half = "ecsexec-job-secret-", uuid.uuid4().hex
    path = tmp_path / "secret.yaml"
    path.write_text(
        "- name: holds-a-secret\n"
        "  options: [{name: pw, secure: true, required: true}]\n"
        "  nodefilters: {filter: 'ECS:Service-Name: legacy'}\n"
        "  sequence:\n"
        "    commands:\n"
        "    - script: |\n"
        "        echo started\n"
        "        sleep 30 # @option.pw@\n"
    )
    secret = half + other_half
    ran = ecsexec(
        sandbox, tmp_path, "job", "run", str(path), "--option", f"pw={secret}", "--timeout", "3"
    )
    assert ran.returncode == 3 and "started" in ran.stdout, ran.stderr
    search = ecsexec(
        sandbox,
        tmp_path,
        *("run", "-F", "ECS:Service-Name: legacy", "--"),
        f'grep -rlF "$(printf %s {half} {other_half})" "${{TMPDIR:-/tmp}}" /dev/shm "$HOME"'
        " 2>/dev/null; echo searched",
    )
    assert search.stdout == "searched\n", search.stdout
