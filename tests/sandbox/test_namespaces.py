"""Sandbox containers are isolated like containers (issue 14; docs/sandbox.md §8.4).

Each container runs in its own PID, UTS and mount namespaces: ``ps`` sees only its own
processes, ``hostname`` is the task's, ``/tmp`` is private, and each ``orders`` container
finds its own JVM. When the host cannot create namespaces, or with ``namespaces=False``,
containers share the host's and the sandbox says so in its notices.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import client
from tests.exec.sandbox_nodes import targets, with_pool

from ecsexec.exec.connect import ConnectorPool
from ecsexec.exec.runner import run_on_container
from ecsexec.exec.wrap import wrap
from ecsexec.sandbox import Sandbox, namespaces

pytestmark = pytest.mark.e2e

WEB = "ECS:Cluster-Name: demo ECS:Service-Name: web"
ORDERS = "ECS:Cluster-Name: demo ECS:Service-Name: orders"
LEGACY = "ECS:Cluster-Name: demo ECS:Service-Name: legacy"
EXAMPLES = Path(__file__).parents[2] / "examples" / "jobs"
# Leaves a process in a session of its own (the session's end does not kill it), returning
# only once it is there, then prints the container's PID namespace.
DETACH = (
    "mkfifo /tmp/detached; "
    "setsid sh -c 'echo > /tmp/detached; exec sleep 300' </dev/null >/dev/null 2>&1 & "
    "read -r _ < /tmp/detached; readlink /proc/self/ns/pid"
)


def _needs_namespaces() -> None:
    reason = namespaces.probe()
    if reason is not None:
        pytest.skip(f"this host cannot create namespaces: {reason}")


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    _needs_namespaces()
    with Sandbox(process=False, initial_wait=0.05) as sandbox:
        assert sandbox.info["namespaces"] is True
        assert not [n for n in sandbox.notices if "share this host" in n]
        yield sandbox


def run(sb: Sandbox, node_filter: str, command: str) -> dict[str, tuple[int | None, str]]:
    """``command`` on every matching container at once: node → (exit code, output)."""
    chosen = targets(sb, node_filter)

    async def body(connectors: ConnectorPool) -> dict[str, tuple[int | None, str]]:
        results = await asyncio.gather(
            *(run_on_container(connectors(t), t, wrap(command), timeout=60) for t in chosen)
        )
        return {
            t.node: (r.exit_code, r.output.decode()) for t, r in zip(chosen, results, strict=True)
        }

    return with_pool(sb, body)


def only(results: dict[str, tuple[int | None, str]]) -> str:
    (code, output), *rest = results.values()
    assert not rest and code == 0, results
    return output


def in_pid_namespace(link: str) -> set[int]:
    """Host pids of the live processes whose PID namespace is ``link`` (``pid:[inode]``)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == link:
                    pids.add(int(entry))
            except OSError:  # gone, or a zombie
                pass
    return pids


def ns_pid(host_pid: int) -> int:
    """The pid a process has in its own (innermost) PID namespace."""
    status = Path(f"/proc/{host_pid}/status").read_text()
    return int(re.search(r"^NSpid:\s+(.*)$", status, re.MULTILINE)[1].split()[-1])  # type: ignore[index]


def wait_for_the_jvms(sb: Sandbox) -> None:
    """The orders JVMs start with the sandbox; look at them only once they are up."""
    logs = list(sb.state_dir.glob("containers/*/demo/*/orders/main.log"))
    assert len(logs) == 2, "the demo/orders service needs java on PATH"
    deadline = time.monotonic() + 60
    while not all(b"orders service ready" in log.read_bytes() for log in logs):
        assert time.monotonic() < deadline, "the orders JVMs did not start"
        time.sleep(0.1)


def test_ps_lists_only_the_containers_own_processes(sb: Sandbox) -> None:
    for node, (code, output) in run(sb, WEB, "ps -e -o pid=,ppid=,comm=").items():
        assert code == 0, output
        rows = [line.split() for line in output.splitlines()]
        pids = {int(pid): (int(ppid), comm) for pid, ppid, comm in rows}
        # PID 1 is the container's init; everything else is this session's own tree
        # (its leader's parent, the agent, is outside the namespace: ppid 0).
        assert pids[1] == (0, "cat"), (node, output)
        session = {pid: v for pid, v in pids.items() if pid != 1}
        assert session and all(ppid == 0 or ppid in session for ppid, _ in session.values())
        assert {comm for _, comm in session.values()} <= {"sh", "ps"}, (node, output)


def test_hostname_is_the_containers(sb: Sandbox) -> None:
    ecs = client(sb, "ecs")
    host = socket.gethostname()
    for target in targets(sb, WEB):
        task = ecs.describe_tasks(cluster=target.cluster, tasks=[target.task])["tasks"][0]
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        expected = details["privateDnsName"]  # Fargate: the task ENI's DNS name
        output = only(run(sb, f"name: {target.node}", 'hostname; echo "$HOSTNAME"'))
        assert output == f"{expected}\n{expected}\n" and expected != host
    # EC2 bridge mode: Docker's hostname, the container ID's first 12 characters.
    (legacy,) = targets(sb, LEGACY)
    output = only(run(sb, f"name: {legacy.node}", "hostname"))
    assert output == f"{legacy.runtime_id[:12]}\n"


def test_each_orders_container_finds_its_own_jvm(sb: Sandbox) -> None:
    wait_for_the_jvms(sb)
    seen = run(sb, ORDERS, "readlink /proc/self/ns/pid; pgrep -o java")
    mains = sb.call(lambda: [p.popen.pid for p in sb.server.mains.running.values()])
    assert len(mains) == 2
    jvms = {os.readlink(f"/proc/{pid}/ns/pid"): pid for pid in mains}
    found = set()
    for node, (code, output) in seen.items():
        assert code == 0, (node, output)
        link, pid = output.split()
        # The java that pgrep finds is the JVM in this container's own PID namespace.
        assert link in jvms and int(pid) == ns_pid(jvms[link]), (node, output, jvms)
        found.add(jvms[link])
    assert len(found) == 2  # two containers, two different JVMs on the host


def test_the_thread_dump_job_dumps_two_different_jvms(sb: Sandbox, tmp_path: Path) -> None:
    wait_for_the_jvms(sb)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECSEXEC_"))}
    env |= sb.env | {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    job = subprocess.run(
        [
            *(sys.executable, "-m", "ecsexec", "job", "run"),
            str(EXAMPLES / "java-thread-dump.yaml"),
            *("--option", "container=orders", "--option", "count=1", "--option", "interval=0"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert job.returncode == 0, job.stderr
    threads: dict[str, set[str]] = {}
    for line in job.stdout.splitlines():
        node, _, text = line.partition(": ")
        # A JavaThread's address: stable within one JVM, never shared by two processes.
        threads.setdefault(node, set()).update(re.findall(r" tid=(0x[0-9a-f]+)", text))
    assert len(threads) == 2 and all(len(t) > 5 for t in threads.values()), job.stdout
    first, second = threads.values()
    assert not first & second  # one JVM dumped twice would repeat its threads


def test_tmp_is_private_to_each_container(sb: Sandbox) -> None:
    name = f"ecsexec-ns-{uuid.uuid4().hex}"
    web = targets(sb, WEB)
    one, other = web[0].node, web[1].node
    assert only(run(sb, f"name: {one}", f"echo mine > /tmp/{name}; cat /tmp/{name}")) == "mine\n"
    # The same container sees it again in a new session; another container and the host do not.
    assert only(run(sb, f"name: {one}", f"cat /tmp/{name}")) == "mine\n"
    ((code, output),) = run(sb, f"name: {other}", f"cat /tmp/{name}").values()
    assert code != 0 and "No such file" in output
    assert not (Path("/tmp") / name).exists()
    # Its HOME (under the state dir, here in the host's /tmp) stays visible and writable.
    home = only(run(sb, f"name: {one}", 'cd && pwd && touch here && ls "$HOME"'))
    assert home.splitlines()[0].startswith(str(sb.state_dir)) and "here" in home


def test_shared_host_directories_stay_visible_under_the_private_tmp(tmp_path: Path) -> None:
    _needs_namespaces()
    shared, other = tmp_path / "shared", tmp_path / "other"
    for directory in (shared, other):
        directory.mkdir()
        (directory / "data").write_text(f"{directory.name} from the host\n")
    # A child-process sandbox: ``share`` goes through ``sandbox up --share``.
    with Sandbox(process=True, initial_wait=0.05, share=[shared], state_dir=tmp_path / "s") as sb:
        node = targets(sb, WEB)[0].node
        ((code, output),) = run(sb, f"name: {node}", f"cat {shared}/data {other}/data").values()
    assert code == 1
    assert output.startswith("shared from the host\n") and "No such file" in output


def test_containers_started_before_any_exec_run_commands_at_home() -> None:
    # POST /_sandbox/containers/start (benchmarks: on ECS a container runs before anyone
    # execs into it). Its HOME, the default cwd, must still be bound under the private
    # /tmp although no exec has created it yet.
    _needs_namespaces()
    with Sandbox(process=False, initial_wait=0.05, tasks=3, seed=1) as sandbox:
        assert sandbox.start_containers() == 3
        inits = sandbox.call(lambda: [ns.init_pid for ns in sandbox.server._container_ns.values()])
        assert len(inits) == 3 and all(inits)
        results = run(sandbox, "name: .*", 'pwd; test "$(pwd)" = "$HOME" && hostname')
        assert len(results) == 3
        for code, output in results.values():
            assert code == 0, output
            cwd, hostname = output.splitlines()
            assert cwd.startswith(str(sandbox.state_dir)) and hostname != socket.gethostname()
        # The same containers, not new ones.
        assert (
            sandbox.call(lambda: [ns.init_pid for ns in sandbox.server._container_ns.values()])
            == inits
        )


def test_stopping_a_task_ends_every_process_in_its_containers(sb: Sandbox) -> None:
    """A process detached from its session survives the session (as on AWS) but not the task."""
    (target,) = targets(sb, "ECS:Cluster-Name: demo-staging ECS:Service-Name: web")
    output = only(
        run(
            sb,
            f"name: {target.node}",
            DETACH,
        )
    )
    link = output.strip()
    members = in_pid_namespace(link)
    assert len(members) == 2  # PID 1 and the detached sleep, after the session ended
    client(sb, "ecs").stop_task(cluster=target.cluster, task=target.task, reason="test")
    deadline = time.monotonic() + 30
    while in_pid_namespace(link):
        assert time.monotonic() < deadline, f"still running: {in_pid_namespace(link)}"
        time.sleep(0.05)


def test_the_sandbox_leaves_no_process_behind(tmp_path: Path) -> None:
    _needs_namespaces()
    with Sandbox(process=False, initial_wait=0.05, state_dir=tmp_path / "state") as sandbox:
        node = targets(sandbox, WEB)[0].node
        link = only(
            run(
                sandbox,
                f"name: {node}",
                DETACH,
            )
        ).strip()
        inits = sandbox.call(
            lambda: [ns.init_pid for ns in sandbox.server._container_ns.values() if ns.init_pid]
        )
        assert in_pid_namespace(link) and inits
        assert (tmp_path / "state" / "namespaces.json").exists()
    assert not in_pid_namespace(link)
    for pid in inits:
        assert not Path(f"/proc/{pid}").exists()
    assert not (tmp_path / "state" / "namespaces.json").exists()


def test_without_namespaces_containers_share_the_host_and_a_notice_says_so() -> None:
    with Sandbox(process=False, initial_wait=0.05, namespaces=False) as sandbox:
        assert sandbox.info["namespaces"] is False
        (notice,) = [n for n in sandbox.notices if "share this host" in n]
        assert "--no-namespaces" in notice
        assert sandbox.start_containers() == 0  # nothing to start ahead
        node = targets(sandbox, WEB)[0].node
        output = only(run(sandbox, f"name: {node}", "hostname; readlink /proc/self/ns/pid"))
    assert output.splitlines() == [socket.gethostname(), os.readlink("/proc/self/ns/pid")]


def test_a_host_without_namespaces_falls_back_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(namespaces, "probe", lambda: "unshare: Operation not permitted")
    with Sandbox(process=False, initial_wait=0.05) as sandbox:
        assert sandbox.info["namespaces"] is False
        (notice,) = [n for n in sandbox.notices if "share this host" in n]
        assert "unshare: Operation not permitted" in notice and "root" in notice
        node = targets(sandbox, WEB)[0].node
        output = only(run(sandbox, f"name: {node}", "hostname"))
    assert output == f"{socket.gethostname()}\n"


def test_the_cli_option_and_its_notice(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = [sys.executable, "-m", "ecsexec", "sandbox", "up", "--state-dir", str(state)]
    started = subprocess.run(
        [*up, "--detach", "--no-namespaces", "--tasks", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stderr
        notices = [line for line in started.stdout.splitlines() if line.startswith("notice: ")]
        assert any("share this host" in n and "--no-namespaces" in n for n in notices)
    finally:
        subprocess.run(
            [sys.executable, "-m", "ecsexec", "sandbox", "down", "--state-dir", str(state)],
            capture_output=True,
            timeout=60,
            check=False,
        )
    helped = subprocess.run(
        [*up, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert "--namespaces / --no-namespaces" in helped.stdout


def test_waiting_for_an_init_works_on_descriptors_past_1024() -> None:
    # A sandbox with a few hundred sessions open hands out descriptor numbers from 1024
    # up, where select() refuses to wait (ValueError): the spawn then died and its session
    # never ran its command.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1500:
        pytest.skip("the descriptor limit is too low to open descriptor 1500")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1501), hard))
    read_end, write_end = os.pipe()
    high = os.dup2(read_end, 1500)
    try:
        assert not namespaces._readable(high, 0)
        os.write(write_end, b"ready\n")
        assert namespaces._readable(high, 0)
    finally:
        for fd in (high, read_end, write_end):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class _RecordedInit:
    """What Namespaces records of a container: its init's PID and start time."""

    def __init__(self, pid: int) -> None:
        self.init_pid = pid
        self.init_start = f"start-{pid}"


def test_the_record_names_the_live_inits_and_stays_small(tmp_path: Path) -> None:
    # One line per start and end, compacted as ends pile up: starting N containers must
    # not rewrite an N-entry list each time (O(N²) under the lock).
    record = tmp_path / "namespaces.json"
    owner = namespaces.Namespaces(record=record)
    inits = [_RecordedInit(4_000_000 + i) for i in range(600)]
    try:
        for init in inits:
            assert owner.started(init)  # type: ignore[arg-type]
        assert len(record.read_text().splitlines()) == 600
        for init in inits[:590]:
            owner.ended(init)  # type: ignore[arg-type]
        entries = namespaces._live_entries(record.read_text())
        assert entries == [{"pid": i.init_pid, "start": i.init_start} for i in inits[590:]]
        assert len(record.read_text().splitlines()) < 600
    finally:
        for init in inits[590:]:
            owner.ended(init)  # type: ignore[arg-type]
        owner.close()
    assert not record.exists()


def test_a_record_cut_short_by_a_crash_still_names_what_ran() -> None:
    text = '{"pid": 7, "start": "a"}\n{"pid": 8, "start": "b"}\n{"end": 7}\n{"pid": 9, "st'
    assert namespaces._live_entries(text) == [{"pid": 8, "start": "b"}]
