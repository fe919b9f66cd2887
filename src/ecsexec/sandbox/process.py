"""Spawn one exec'd command under a real PTY, as the SSM agent does in a container.

See docs/sandbox.md §8.

The child is a session leader whose controlling terminal is the PTY slave (setsid +
TIOCSCTTY, §8.2), so ``0x03`` becomes SIGINT and stdout/stderr are merged with ``\\r\\n``.
The sandbox runs inside threaded test processes, so neither ``pty.fork()`` nor
``preexec_fn`` is used: util-linux ``setsid --ctty`` does the session work between fork
and the final exec. The environment is exactly the caller's (§8.3: nothing is inherited).

Reading is non-blocking through ``loop.add_reader``; end of output is EIO on the master
once every holder of the slave has closed it. Exit is noticed through a pidfd, so there
is no child-watcher thread and no polling.

Given a container's namespaces (``namespaces.ContainerNamespace``), the same fork happens
on a thread that has joined them, so the child (the session leader) is inside the
container and everything above holds unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import termios
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ecsexec.sandbox.namespaces import ContainerNamespace

__all__ = [
    "DEFAULT_PATH",
    "DISTROLESS_MISSING",
    "CannotStart",
    "PtyProcess",
    "resolve_executable",
]

# Used when the container's environment has no PATH (what Go's LookPath would see is unknown).
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# §8.3: `sandbox.distroless: true` makes these "not found".
DISTROLESS_MISSING: Final = frozenset({"sh", "bash", "dash", "ash", "busybox"})
READ_SIZE: Final = 1024  # §7: one frame per PTY read of at most 1024 bytes
# Reads per readiness callback. Each read is still its own ≤1024-byte frame (§7); looping
# only saves an epoll round trip per read. The bound keeps one busy PTY from starving
# the loop (64 reads ≈ 64 KiB, well under a millisecond).
READS_PER_WAKEUP: Final = 64

_SETSID: Final = shutil.which("setsid") or "/usr/bin/setsid"


_CLOSER: ThreadPoolExecutor | None = None
_CLOSER_LOCK = threading.Lock()


def _closer() -> ThreadPoolExecutor:
    """One thread for :meth:`PtyProcess.close` ``(in_background=True)``."""
    global _CLOSER
    with _CLOSER_LOCK:
        if _CLOSER is None:
            _CLOSER = ThreadPoolExecutor(1, thread_name_prefix="sandbox-pty-close")
        return _CLOSER


class CannotStart(Exception):
    """The command cannot be started; the message is what the agent would log (§7)."""


def resolve_executable(
    argv0: str, env: Mapping[str, str], cwd: str, *, distroless: bool = False
) -> str:
    """Resolve ``argv0`` like Go's ``exec.LookPath`` on the container's PATH (§8.1)."""
    if not argv0:
        raise CannotStart("exec: no command")
    if distroless and os.path.basename(argv0) in DISTROLESS_MISSING:
        raise CannotStart(f'exec: "{argv0}": executable file not found in $PATH')
    if "/" in argv0:
        candidate = os.path.join(cwd, argv0)  # relative names resolve against the cwd
        if _is_executable(candidate):
            return os.path.normpath(candidate)
        raise CannotStart(f"fork/exec {argv0}: no such file or directory")
    for entry in env.get("PATH", DEFAULT_PATH).split(os.pathsep):
        directory = os.path.join(cwd, entry or ".")
        candidate = os.path.join(directory, argv0)
        if _is_executable(candidate):
            return os.path.normpath(candidate)
    raise CannotStart(f'exec: "{argv0}": executable file not found in $PATH')


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


class PtyProcess:
    """One process group under one PTY, driven from an asyncio loop.

    ``spawn`` is synchronous. After it, the owner calls :meth:`start_reading` and
    :meth:`watch_exit`; :meth:`close` releases every fd and must always be called.
    """

    def __init__(self, popen: subprocess.Popen[bytes], master_fd: int) -> None:
        self._popen = popen
        self.pid: int = popen.pid
        self.master_fd: int = master_fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._on_data: Callable[[bytes], None] | None = None
        self._on_eof: Callable[[], None] | None = None
        self._eof = False
        self._pending: deque[bytes] = deque()
        self._writing = False
        self._pidfd: int | None = None
        self._exit_waiters: list[Callable[[int], None]] = []
        self.returncode: int | None = None
        self.closed = False
        self._namespace: ContainerNamespace | None = None

    # --- spawning -------------------------------------------------------------------

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        distroless: bool = False,
        namespace: ContainerNamespace | None = None,
    ) -> PtyProcess:
        """Start ``argv`` as a session leader on a new PTY; raise :class:`CannotStart`.

        With ``namespace`` the process starts inside that container (its PATH lookup and
        ``cwd`` too) and keeps the container alive until it has been reaped.
        """
        if namespace is None:
            return cls._spawn(argv, env=env, cwd=cwd, distroless=distroless)
        cwd = os.path.abspath(cwd)  # spawn threads have their own working directory

        def inside() -> PtyProcess:
            proc = cls._spawn(argv, env=env, cwd=cwd, distroless=distroless)
            namespace.retain()
            proc._namespace = namespace
            return proc

        return namespace.run(inside)

    @classmethod
    def _spawn(
        cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: str, distroless: bool
    ) -> PtyProcess:
        if not argv:
            raise CannotStart("exec: no command")
        if any("\0" in arg for arg in argv):
            # Go's exec refuses a NUL in an argument with EINVAL before forking.
            raise CannotStart(f"fork/exec {argv[0]!r}: invalid argument (a NUL byte)")
        path = resolve_executable(argv[0], env, cwd, distroless=distroless)
        master, slave = os.openpty()
        try:
            os.set_blocking(master, False)
            popen = subprocess.Popen(
                # §8.2: setsid + TIOCSCTTY on stdin (the slave), then exec the command.
                # No start_new_session: setsid(1) would fork if it were a group leader.
                [_SETSID, "--ctty", "--", path, *argv[1:]],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env),
                cwd=cwd,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the environment
            os.close(master)
            reason = exc.strerror if isinstance(exc, OSError) else None
            raise CannotStart(f"fork/exec {argv[0]}: {reason or exc}") from exc
        finally:
            os.close(slave)  # only the child holds the slave, so its exit gives EIO
        return cls(popen, master)

    # --- terminal -------------------------------------------------------------------

    def set_winsize(self, cols: int, rows: int) -> None:
        """§7: a Size message sets the PTY window size (TIOCSWINSZ)."""
        if self.closed:
            return
        packed = struct.pack("HHHH", max(0, min(rows, 0xFFFF)), max(0, min(cols, 0xFFFF)), 0, 0)
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master_fd, termios.TIOCSWINSZ, packed)

    def get_winsize(self) -> tuple[int, int]:
        """(cols, rows) as the kernel holds them."""
        raw = fcntl.ioctl(self.master_fd, termios.TIOCGWINSZ, b"\0" * 8)
        rows, cols, _, _ = struct.unpack("HHHH", raw)
        return cols, rows

    # --- reading --------------------------------------------------------------------

    def start_reading(
        self,
        loop: asyncio.AbstractEventLoop,
        on_data: Callable[[bytes], None],
        on_eof: Callable[[], None],
    ) -> None:
        """Call ``on_data`` with each read (≤1024 bytes) and ``on_eof`` once at EIO."""
        self._loop = loop
        self._on_data = on_data
        self._on_eof = on_eof
        self.resume_reading()

    def pause_reading(self) -> None:
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.master_fd)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._eof and not self.closed and self._loop is not None:
            self._loop.add_reader(self.master_fd, self._read_ready)
            self._reading = True

    def _read_ready(self) -> None:
        fd = self.master_fd
        on_data = self._on_data
        read = os.read
        for _ in range(READS_PER_WAKEUP):
            try:
                data = read(fd, READ_SIZE)  # §7: at most 1024 bytes per read, one frame each
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.EBADF):
                    raise
                data = b""  # EIO: every slave holder has closed it
            if not data:
                self._eof = True
                self.pause_reading()
                if self._on_eof is not None:
                    self._on_eof()
                return
            if on_data is not None:
                on_data(data)
            if not self._reading:
                return  # the callback paused reading (publication paused) or closed the PTY

    @property
    def at_eof(self) -> bool:
        return self._eof

    @property
    def reading_started(self) -> bool:
        """True once :meth:`start_reading` has been called (paused or not)."""
        return self._on_data is not None

    # --- writing --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write terminal input; queue what the PTY cannot take yet (its buffer is ~4 KB)."""
        if self.closed or not data:
            return
        if not self._pending:
            try:
                written = os.write(self.master_fd, data)
            except BlockingIOError:
                written = 0
            except OSError:
                return  # the terminal is gone; input is lost as it would be on AWS
            data = data[written:]
            if not data:
                return
        self._pending.append(data)
        if not self._writing and self._loop is not None:
            self._loop.add_writer(self.master_fd, self._write_ready)
            self._writing = True

    def _write_ready(self) -> None:
        while self._pending:
            chunk = self._pending[0]
            try:
                written = os.write(self.master_fd, chunk)
            except BlockingIOError:
                return
            except OSError:
                self._pending.clear()
                break
            if written < len(chunk):
                self._pending[0] = chunk[written:]
                return
            self._pending.popleft()
        if self._loop is not None:
            self._loop.remove_writer(self.master_fd)
        self._writing = False

    # --- exit -----------------------------------------------------------------------

    def watch_exit(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[int], None]) -> None:
        """Call ``on_exit(returncode)`` once the process has exited and been reaped."""
        self._loop = loop
        if self.returncode is not None:
            loop.call_soon(on_exit, self.returncode)
            return
        self._exit_waiters.append(on_exit)
        if self._pidfd is None:
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except OSError:
                # Already reaped elsewhere or no pidfd support: fall back to a slow poll.
                loop.call_later(0.05, self._poll_exit)
                return
            loop.add_reader(self._pidfd, self._pidfd_ready)

    def _pidfd_ready(self) -> None:
        if self._popen.poll() is None:
            return
        self._reaped()

    def _poll_exit(self) -> None:
        if self._popen.poll() is None:
            if self._loop is not None:
                self._loop.call_later(0.05, self._poll_exit)
            return
        self._reaped()

    def _reaped(self) -> None:
        self.returncode = self._popen.returncode
        self._release_namespace()
        self._close_pidfd()
        waiters, self._exit_waiters = self._exit_waiters, []
        for waiter in waiters:
            waiter(self.returncode)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def wait(self, timeout: float) -> int | None:
        """Block until the process has exited and been reaped (for worker threads)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)
        if self._popen.returncode is not None:
            self._release_namespace()
        return self._popen.returncode

    def _release_namespace(self) -> None:
        namespace, self._namespace = self._namespace, None
        if namespace is not None:
            namespace.release()

    def poll(self) -> int | None:
        code = self._popen.poll()
        if code is not None and self.returncode is None:
            self._reaped()
        return code

    # --- ending ---------------------------------------------------------------------

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (§8.4); processes detached to other groups survive."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            # The group is gone; still make sure our own child is not left running.
            if self._popen.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._popen.send_signal(sig)

    def close(self, *, in_background: bool = False) -> None:
        """Stop watching and close the master (the PTY). Idempotent; does not kill.

        ``in_background`` leaves the ``close(2)`` itself to a worker thread: the kernel's
        PTY teardown took ~400 µs per session in the fan-out benchmark, all of it on the
        event loop. The fd is out of the loop's selector first, and nothing else holds
        its number, so nobody can use it in between.
        """
        if self.closed:
            return
        self.closed = True
        self.pause_reading()
        if self._writing and self._loop is not None:
            self._loop.remove_writer(self.master_fd)
            self._writing = False
        self._pending.clear()
        if in_background:
            try:
                _closer().submit(os.close, self.master_fd)
                return
            except RuntimeError:  # the interpreter is shutting down: no new threads
                pass
        os.close(self.master_fd)

    def release(self) -> None:
        """Give up the exit watch (used at shutdown after the process has been killed)."""
        self._close_pidfd()
        self._exit_waiters.clear()
        self.poll()


def start_time(pid: int) -> str | None:
    """A process's start time (field 22 of /proc/PID/stat): with its pid, an identity that a
    recycled pid cannot fake. None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields are counted after the parenthesised command name, which may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def sweep_recorded(record: Path, kill: Callable[[int, int], None]) -> int:
    """Kill what a previous sandbox recorded in ``record`` (``[{"pid", "start"}]``) and
    still runs, with ``kill(pid, SIGKILL)``; delete the record; return how many."""
    try:
        entries = json.loads(record.read_text())
    except (OSError, ValueError):
        return 0
    killed = kill_recorded(entries if isinstance(entries, list) else [], kill)
    record.unlink(missing_ok=True)
    return killed


def kill_recorded(entries: Iterable[Any], kill: Callable[[int, int], None]) -> int:
    """``kill(pid, SIGKILL)`` each ``{"pid", "start"}`` entry whose process still runs
    (the same start time: not a reused PID); return how many."""
    killed = 0
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        pid, started = entry.get("pid"), entry.get("start")
        if isinstance(pid, int) and started and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
                killed += 1
    return killed
