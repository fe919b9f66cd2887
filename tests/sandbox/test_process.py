"""Real processes under a real PTY, as container-mode ECS Exec runs them (docs/sandbox.md §8)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ecsexec.sandbox import namespaces
from ecsexec.sandbox.namespaces import ContainerNamespace, Namespaces
from ecsexec.sandbox.process import CannotStart, PtyProcess, resolve_executable
from ecsexec.sandbox.shlex_go import split

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent-home", "LANG": "C.UTF-8"}
TIMEOUT = 10.0


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie awaiting its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


class Run:
    """Drive one PtyProcess on the running loop and collect what it prints."""

    def __init__(
        self,
        command: str,
        *,
        env: dict[str, str] | None = None,
        cwd: str = "/",
        namespace: ContainerNamespace | None = None,
    ) -> None:
        self.proc = PtyProcess.spawn(split(command), env=env or ENV, cwd=cwd, namespace=namespace)
        self.output = bytearray()
        self.chunks: list[bytes] = []
        self.eof = asyncio.Event()
        self.exited = asyncio.Event()
        self.changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.proc.start_reading(loop, self._data, self._eof)
        self.proc.watch_exit(loop, lambda _rc: self.exited.set())

    def _data(self, data: bytes) -> None:
        self.chunks.append(data)
        self.output += data
        self.changed.set()

    def _eof(self) -> None:
        self.eof.set()

    async def until(self, predicate: Callable[[bytes], bool]) -> None:
        async def wait() -> None:
            while not predicate(bytes(self.output)):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), TIMEOUT)

    async def finish(self) -> bytes:
        await asyncio.wait_for(self.eof.wait(), TIMEOUT)
        await asyncio.wait_for(self.exited.wait(), TIMEOUT)
        self.proc.close()
        return bytes(self.output)

    async def kill(self) -> None:
        self.proc.kill()
        self.proc.close()
        await asyncio.wait_for(self.exited.wait(), TIMEOUT)

    async def __aenter__(self) -> Run:
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Never leave a process behind, even when the test body failed.
        if self.proc.returncode is None or not self.proc.closed:
            await self.kill()


async def _output(command: str, *, env: dict[str, str] | None = None, cwd: str = "/") -> bytes:
    async with Run(command, env=env, cwd=cwd) as run:
        return await run.finish()


def test_no_shell_no_expansion() -> None:
    assert asyncio.run(_output("echo $HOME")) == b"$HOME\r\n"


def test_shell_expands_with_the_given_env() -> None:
    assert asyncio.run(_output("sh -c 'echo $HOME'")) == b"/nonexistent-home\r\n"


def test_crlf_and_merged_stderr() -> None:
    out = asyncio.run(_output("sh -c 'echo out; echo err 1>&2; printf \"a\\nb\"'"))
    assert out == b"out\r\nerr\r\na\r\nb"


def test_env_is_exactly_the_callers() -> None:
    os.environ["ECSEXEC_TEST_SECRET"] = "must-not-leak"
    try:
        out = asyncio.run(_output("env"))
    finally:
        del os.environ["ECSEXEC_TEST_SECRET"]
    lines = sorted(out.decode().split("\r\n")[:-1])
    assert lines == sorted(f"{k}={v}" for k, v in ENV.items())


def test_session_leader_with_the_pty_as_controlling_terminal() -> None:
    async def main() -> tuple[int, bytes]:
        async with Run("sh -c 'test -t 0 && test -t 1 && echo tty; cat /proc/$$/stat'") as run:
            return run.proc.pid, await run.finish()

    pid, out = asyncio.run(main())
    first, stat_line = out.decode().split("\r\n", 1)
    assert first == "tty"
    fields = stat_line.rsplit(")", 1)[1].split()
    pgrp, session, tty_nr = int(fields[2]), int(fields[3]), int(fields[4])
    assert pgrp == pid
    assert session == pid
    assert tty_nr != 0


def test_only_the_terminal_is_inherited_and_no_signal_is_ignored_or_blocked() -> None:
    # The sandbox holds sockets, PTY masters and pidfds: none may reach a command. Python
    # ignores SIGPIPE and SIGXFSZ, which an exec would pass on unless put back.
    out = asyncio.run(_output("sh -c 'ls /proc/$$/fd; grep -E \"^Sig(Ign|Blk)\" /proc/$$/status'"))
    fds, blocked, ignored = out.decode().split("\r\n")[:3]
    assert fds.split() == ["0", "1", "2"]
    # The shell ignores no standard signal at start, and blocks none. (glibc's
    # posix_spawn leaves its own internal signals 32 and 33 ignored, as in every program
    # it starts; glibc installs its handlers for them when a program needs them.)
    assert ignored.startswith("SigIgn:") and int(ignored.split()[1], 16) & 0x7FFFFFFF == 0
    assert blocked.split() == ["SigBlk:", "0000000000000000"]


def test_descriptors_inherited_by_the_sandbox_do_not_reach_a_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ecsexec.sandbox import process

    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as one inherited from the shell would be
    monkeypatch.setattr(process, "_INHERITED_SWEPT", False)  # as in a fresh process
    try:
        out = asyncio.run(_output("sh -c 'ls /proc/$$/fd'"))
        assert out.split() == [b"0", b"1", b"2"]
        assert not os.get_inheritable(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_spawning_moves_no_other_threads_working_directory(tmp_path: Path) -> None:
    # posix_spawn has no cwd argument: the spawn thread changes its own working
    # directory, never the caller's.
    before = os.getcwd()
    out = asyncio.run(_output("pwd", cwd=str(tmp_path)))
    assert out == f"{tmp_path}\r\n".encode()
    assert os.getcwd() == before


def test_a_missing_working_directory_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(CannotStart, match="fork/exec /bin/true: No such file or directory"):
        PtyProcess.spawn(["/bin/true"], env=ENV, cwd=str(tmp_path / "gone"))


def test_what_c_cannot_hold_cannot_start() -> None:
    # libc takes C strings: a NUL would silently cut one short.
    with pytest.raises(CannotStart, match="embedded null byte"):
        PtyProcess.spawn(["/bin/true"], env={**ENV, "X": "a\0b"}, cwd="/")
    with pytest.raises(CannotStart, match="embedded null byte"):
        PtyProcess.spawn(["/bin/true"], env=ENV, cwd="/\0tmp")
    with pytest.raises(CannotStart, match="illegal environment variable name"):
        PtyProcess.spawn(["/bin/true"], env={**ENV, "A=B": "c"}, cwd="/")


def test_a_c_library_without_the_spawn_functions_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ecsexec.sandbox import process

    def old_libc(self: object) -> None:
        raise AttributeError("undefined symbol: posix_spawn_file_actions_addchdir_np")

    monkeypatch.setattr(process, "_LIBC_SPAWN", None)
    monkeypatch.setattr(process._LibcSpawn, "__init__", old_libc)
    with pytest.raises(CannotStart, match=r"addchdir_np \(glibc 2\.29 or later"):
        PtyProcess.spawn(["/bin/true"], env=ENV, cwd="/")


def test_wait_gives_the_exit_status_from_a_worker_thread() -> None:
    proc = PtyProcess.spawn(split("sh -c 'exit 7'"), env=ENV, cwd="/")
    try:
        assert proc.wait(TIMEOUT) == 7
        assert proc.poll() == 7 and proc.returncode == 7
    finally:
        proc.close()
    proc = PtyProcess.spawn(split("sleep 30"), env=ENV, cwd="/")
    try:
        assert proc.wait(0.01) is None
        proc.kill()
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    finally:
        proc.close()


def test_ctrl_c_becomes_sigint() -> None:
    async def main() -> int | None:
        async with Run("sh -c 'echo ready; exec sleep 30'") as run:
            await run.until(lambda out: b"ready" in out)
            run.proc.write(b"\x03")
            await run.finish()
            return run.proc.returncode

    assert asyncio.run(main()) == -signal.SIGINT


def test_input_is_echoed_and_read() -> None:
    async def main() -> bytes:
        async with Run("sh -c 'read x; echo got:$x'") as run:
            run.proc.write(b"hello\r")
            return await run.finish()

    assert asyncio.run(main()) == b"hello\r\ngot:hello\r\n"


def test_large_input_is_queued_not_lost() -> None:
    # The PTY takes ~4 KB at a time; the rest must wait in the write queue.
    async def main() -> bytes:
        async with Run("sh -c 'stty -icanon -echo; echo ready; head -c 20000 | wc -c'") as run:
            await run.until(lambda out: b"ready" in out)
            run.proc.write(b"x" * 20000)
            return await run.finish()

    assert asyncio.run(main()).split() == [b"ready", b"20000"]


def test_winsize() -> None:
    async def main() -> bytes:
        async with Run("sh -c 'read x; stty size'") as run:
            assert run.proc.get_winsize() == (0, 0)  # §7: 0×0 until the first Size message
            run.proc.set_winsize(132, 43)
            run.proc.write(b"\r")
            return await run.finish()

    assert asyncio.run(main()).endswith(b"43 132\r\n")


def test_reads_are_at_most_1024_bytes() -> None:
    async def main() -> Run:
        async with Run("head -c 50000 /dev/zero") as run:
            await run.finish()
            return run

    run = asyncio.run(main())
    assert len(run.output) == 50000
    assert max(len(c) for c in run.chunks) <= 1024


def test_pausing_inside_the_callback_stops_further_reads_at_once() -> None:
    """Several reads may run per readiness callback; a pause from on_data ends that loop."""

    async def main() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        proc = PtyProcess.spawn(split("head -c 50000 /dev/zero"), env=ENV, cwd="/")
        sizes: list[int] = []
        violations: list[int] = []
        eof = asyncio.Event()
        paused = False

        def resume() -> None:
            nonlocal paused
            paused = False
            proc.resume_reading()

        def on_data(data: bytes) -> None:
            nonlocal paused
            if paused:
                violations.append(len(data))
            sizes.append(len(data))
            paused = True  # pause after every read; resume on the next loop iteration
            proc.pause_reading()
            loop.call_soon(resume)

        exited = asyncio.Event()
        proc.start_reading(loop, on_data, eof.set)
        proc.watch_exit(loop, lambda _rc: exited.set())
        try:
            await asyncio.wait_for(eof.wait(), TIMEOUT)
            await asyncio.wait_for(exited.wait(), TIMEOUT)
        finally:
            proc.kill()
            proc.close()
        return sizes, violations

    sizes, violations = asyncio.run(main())
    assert violations == []
    assert sum(sizes) == 50000
    assert max(sizes) <= 1024


def test_closing_inside_the_callback_ends_reading_without_eof() -> None:
    async def main() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        proc = PtyProcess.spawn(split("head -c 50000 /dev/zero"), env=ENV, cwd="/")
        calls = 0
        eof = False
        exited = asyncio.Event()
        read = asyncio.Event()

        def on_data(_data: bytes) -> None:
            nonlocal calls
            calls += 1
            proc.close()  # the read loop must not touch the closed fd again
            read.set()

        def on_eof() -> None:
            nonlocal eof
            eof = True

        proc.watch_exit(loop, lambda _rc: exited.set())
        proc.start_reading(loop, on_data, on_eof)
        try:
            await asyncio.wait_for(read.wait(), TIMEOUT)
        finally:
            proc.kill()
            proc.close()
        await asyncio.wait_for(exited.wait(), TIMEOUT)
        return calls, eof

    calls, eof = asyncio.run(main())
    assert calls == 1
    assert not eof


def test_background_holder_keeps_eof_away_until_it_exits() -> None:
    async def main() -> None:
        # The kernel SIGHUPs the foreground group when the PTY's session leader exits, so
        # only a holder that ignores SIGHUP outlives it (as under the real agent).
        async with Run("sh -c 'trap \"\" HUP; sleep 0.3 & echo started'") as run:
            await asyncio.wait_for(run.exited.wait(), TIMEOUT)
            assert not run.eof.is_set()  # the background sleep still holds the slave
            await asyncio.wait_for(run.eof.wait(), TIMEOUT)
            run.proc.close()

    asyncio.run(main())


def test_kill_kills_the_process_group() -> None:
    async def main() -> tuple[int, int]:
        async with Run("sh -c 'sleep 300 & echo child=$!; wait'") as run:
            await run.until(lambda out: b"\r\n" in out)
            child = int(bytes(run.output).split(b"child=")[1].split(b"\r\n")[0])
            assert not _gone(child)
            await run.kill()
            return run.proc.pid, child

    pid, child = asyncio.run(main())
    assert _gone(pid)

    async def child_gone() -> None:
        while not _gone(child):  # reparented: its new parent reaps it
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(child_gone(), TIMEOUT))


def test_missing_executable_cannot_start() -> None:
    with pytest.raises(CannotStart, match="executable file not found"):
        PtyProcess.spawn(["no-such-command-xyz"], env=ENV, cwd="/")
    with pytest.raises(CannotStart, match="no such file"):
        PtyProcess.spawn(["/no/such/path"], env=ENV, cwd="/")


def test_distroless_has_no_shells() -> None:
    for shell in ("sh", "/bin/sh", "bash", "busybox"):
        with pytest.raises(CannotStart, match="not found"):
            PtyProcess.spawn([shell, "-c", "true"], env=ENV, cwd="/", distroless=True)
    assert resolve_executable("echo", ENV, "/", distroless=True).endswith("/echo")


def test_resolution_uses_the_container_path_and_cwd(tmp_path: Path) -> None:
    tool = tmp_path / "bin" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho mytool ran in $(pwd)\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = {**ENV, "PATH": f"{tool.parent}:/usr/bin:/bin"}
    assert resolve_executable("mytool", env, "/") == str(tool)
    with pytest.raises(CannotStart):
        resolve_executable("mytool", ENV, "/")
    assert resolve_executable("./bin/mytool", ENV, str(tmp_path)) == str(tool)
    out = asyncio.run(_output("mytool", env=env, cwd=str(tmp_path)))
    assert out == f"mytool ran in {tmp_path}\r\n".encode()


def test_background_close_releases_the_master() -> None:
    from ecsexec.sandbox.process import _closer

    proc = PtyProcess.spawn(["true"], env=ENV, cwd="/")
    fd = proc.master_fd
    proc.close(in_background=True)
    assert proc.closed
    _closer().submit(lambda: None).result()  # one thread: the close ran before this
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    proc.close(in_background=True)  # idempotent
    proc.kill()
    proc.wait(TIMEOUT)


# -- inside a container's own namespaces (namespaces.py) ---------------------------------------


@pytest.fixture(scope="module")
def owner() -> Iterator[Namespaces]:
    reason = namespaces.probe()
    if reason is not None:
        pytest.skip(f"this host cannot create namespaces: {reason}")
    owner = Namespaces()
    yield owner
    owner.close()


def _pid_namespace(ns: ContainerNamespace) -> str:
    assert ns.init_pid is not None
    return os.readlink(f"/proc/{ns.init_pid}/ns/pid_for_children")


def _members(link: str) -> set[int]:
    """Host pids of the live processes in the PID namespace ``link``."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == link:
                    pids.add(int(entry))
            except OSError:  # gone, or a zombie
                pass
    return pids


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_in_a_container_it_is_the_same_session_leader_with_its_exit_status(
    owner: Namespaces, tmp_path: Path
) -> None:
    ns = owner.container("box.internal", keep=[str(tmp_path)])
    assert ns.init_pid is None  # nothing runs until the container is used
    command = (
        "sh -c 'test -t 0 && test -t 1 && echo tty; echo $$; hostname; cat /proc/1/comm; pwd; "
        "cat /proc/$$/stat; exit 3'"
    )

    async def main() -> tuple[int, bytes, int | None]:
        async with Run(command, cwd=str(tmp_path), namespace=ns) as run:
            status = Path(f"/proc/{run.proc.pid}/status").read_text()
            inner = re.search(r"^NSpid:\s+(.*)$", status, re.MULTILINE)
            assert inner is not None
            out = await run.finish()
            return int(inner[1].split()[-1]), out, run.proc.returncode

    inner_pid, out, code = asyncio.run(main())
    tty, pid, hostname, init, cwd, stat_line = out.decode().split("\r\n", 5)
    assert (tty, int(pid), hostname, init, cwd) == (
        "tty",
        inner_pid,
        "box.internal",
        "cat",
        str(tmp_path),  # under the private /tmp, kept visible
    )
    fields = stat_line.rsplit(")", 1)[1].split()
    assert int(fields[2]) == int(fields[3]) == inner_pid  # its own group and session
    assert int(fields[4]) != 0  # with the PTY as controlling terminal
    assert code == 3


def test_in_a_container_ctrl_c_and_kill_reach_the_process_group(owner: Namespaces) -> None:
    ns = owner.container("box")

    async def ctrl_c() -> int | None:
        async with Run("sh -c 'echo ready; exec sleep 30'", namespace=ns) as run:
            await run.until(lambda out: b"ready" in out)
            run.proc.write(b"\x03")
            await run.finish()
            return run.proc.returncode

    assert asyncio.run(ctrl_c()) == -signal.SIGINT

    async def kill() -> int:
        async with Run("sh -c 'sleep 300 & echo started; wait'", namespace=ns) as run:
            await run.until(lambda out: b"started" in out)
            count = len(_members(_pid_namespace(ns)))
            await run.kill()
            return count

    assert asyncio.run(kill()) == 3  # PID 1, the shell and its sleep
    link = _pid_namespace(ns)
    _wait_until(lambda: len(_members(link)) == 1)  # the orphaned sleep is killed and reaped


def test_a_retired_container_ends_with_its_last_process(owner: Namespaces) -> None:
    ns = owner.container("box")
    detach = (
        "sh -c 'mkfifo /tmp/d; "
        'setsid sh -c "echo > /tmp/d; exec sleep 300" </dev/null >/dev/null 2>&1 & '
        "read -r _ < /tmp/d; echo detached; exec sleep 300'"
    )

    async def main() -> str:
        async with Run(detach, namespace=ns) as run:
            await run.until(lambda out: b"detached" in out)
            link = _pid_namespace(ns)
            assert len(_members(link)) == 3  # PID 1, the session, the detached sleep
            ns.retire()  # the task stopped, but a process still runs in the container
            assert len(_members(link)) == 3 and not ns.closed
            await run.kill()  # the last one is reaped: the container ends
            return link

    link = asyncio.run(main())
    assert ns.closed
    _wait_until(lambda: not _members(link))  # the detached sleep went with it
    with pytest.raises(CannotStart, match="stopped"):
        PtyProcess.spawn(["true"], env=ENV, cwd="/", namespace=ns)


def test_a_container_whose_mounts_fail_ends_and_the_next_use_starts_it_again(
    owner: Namespaces, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = owner.container("box.failing")
    prepare = ContainerNamespace._prepare_here

    def fail_once(self: ContainerNamespace) -> None:
        monkeypatch.setattr(ContainerNamespace, "_prepare_here", prepare)
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(ContainerNamespace, "_prepare_here", fail_once)
    with pytest.raises(CannotStart, match=r"namespaces: .*temporarily unavailable"):
        PtyProcess.spawn(["true"], env=ENV, cwd="/", namespace=ns)
    assert ns.init_pid is None and not ns.closed  # the failed init is gone, not the container

    async def main() -> bytes:
        async with Run("hostname", namespace=ns) as run:
            return await run.finish()

    assert asyncio.run(main()) == b"box.failing\r\n"  # prepared this time
    ns.kill(wait=True)
