"""Spawn one exec'd command under a real PTY, as the SSM agent does in a container.

See docs/sandbox.md §8.

The child is a session leader whose controlling terminal is the PTY slave (§8.2), so
``0x03`` becomes SIGINT and stdout/stderr are merged with ``\\r\\n``. The sandbox runs
inside threaded test processes, so neither ``pty.fork()`` nor ``preexec_fn`` is used:
libc's ``posix_spawn`` with ``POSIX_SPAWN_SETSID`` makes the child a session leader, then
its first file action opens the slave by name as fd 0, which makes it the controlling
terminal (a session leader without one opening a terminal without ``O_NOCTTY``; glibc
and musl apply setsid before the file actions). That is one exec per session: util-linux
``setsid --ctty`` in between cost a whole extra exec (~0.3 ms of CPU) per session.

libc's posix_spawn is called through ctypes, not ``os.posix_spawn``: ctypes lets go of
the GIL for the call, which lasts until the child has exec'd (~0.4 ms), and
``os.posix_spawn`` holds it, stalling the sandbox's event loop (a fifth of its samples
at 1,000 sessions); ctypes also reaches ``posix_spawn_file_actions_addchdir_np`` for the
working directory, which ``os.posix_spawn`` lacks. posix_spawn does not close
descriptors: every descriptor Python opens is close-on-exec (PEP 446), and before its
first spawn the process marks close-on-exec those it inherited (from the shell or CI that
started it), so the command inherits only its terminal. The signals Python ignores
(SIGPIPE, SIGXFSZ) are back to their defaults and none is blocked, as ``subprocess``
does. (glibc's posix_spawn leaves its two internal signals, 32 and 33, ignored in every
program it starts; glibc programs set their own handlers for them.) The environment is
exactly the caller's (§8.3: nothing is inherited).

Reading is non-blocking through ``loop.add_reader``; end of output is EIO on the master
once every holder of the slave has closed it. Exit is noticed through a pidfd, so there
is no child-watcher thread and no polling.

Given a container's namespaces (``namespaces.ContainerNamespace``), the same spawn happens
on a thread that has joined them, so the child (the session leader) is inside the
container and everything above holds unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import struct
import termios
import threading
import time
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

# What subprocess's restore_signals puts back: Python ignores these, and an ignored signal
# stays ignored across exec (a shell pipeline would then see EPIPE instead of SIGPIPE).
_DEFAULT_SIGNALS: Final = (signal.SIGPIPE, signal.SIGXFSZ)
_TIOCGPTN: Final = 0x80045430  # _IOR("T", 0x30, unsigned int): the PTY number; not in termios

_INHERITED_SWEPT = False  # see _close_inherited_on_exec
_CLOSER: ThreadPoolExecutor | None = None
_CLOSER_LOCK = threading.Lock()


def _closer() -> ThreadPoolExecutor:
    """One thread for :meth:`PtyProcess.close` ``(in_background=True)``."""
    global _CLOSER
    with _CLOSER_LOCK:
        if _CLOSER is None:
            _CLOSER = ThreadPoolExecutor(1, thread_name_prefix="sandbox-pty-close")
        return _CLOSER


def _close_inherited_on_exec() -> None:
    """Once per process: mark close-on-exec every descriptor from 3 up that is not (those
    inherited at start, or made inheritable), so that no spawned command gets them."""
    global _INHERITED_SWEPT
    with _CLOSER_LOCK:
        if _INHERITED_SWEPT:
            return
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2:
                with contextlib.suppress(OSError):  # the listing's own descriptor, now closed
                    if os.get_inheritable(fd):
                        os.set_inheritable(fd, False)
        _INHERITED_SWEPT = True


def _slave_path(master: int) -> str:
    """The slave's name, from its number (what ptsname does; ``os.ttyname`` would read
    /proc/self, which a container's own /proc lacks, then search /dev/pts)."""
    raw = fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0")
    return f"/dev/pts/{struct.unpack('I', raw)[0]}"


class _LibcSpawn:
    """libc's posix_spawn for one session leader on a terminal, called without the GIL."""

    # <spawn.h>, the same in glibc and musl.
    SETSIGDEF: Final = 0x04
    SETSIGMASK: Final = 0x08
    SETSID: Final = 0x80
    # Opaque libc structures: posix_spawnattr_t is 336 bytes in glibc, the file actions
    # 80, sigset_t 128; room to spare for any libc.
    OPAQUE: Final = 1024

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.spawn = libc.posix_spawn
        self.spawn.argtypes = [
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_char_p),
        ]
        self.actions_init = libc.posix_spawn_file_actions_init
        self.actions_destroy = libc.posix_spawn_file_actions_destroy
        self.add_open = libc.posix_spawn_file_actions_addopen
        self.add_open.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        self.add_dup2 = libc.posix_spawn_file_actions_adddup2
        self.add_dup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self.add_chdir = libc.posix_spawn_file_actions_addchdir_np  # glibc 2.29, musl 1.1.24
        self.add_chdir.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.attr_init = libc.posix_spawnattr_init
        self.attr_destroy = libc.posix_spawnattr_destroy
        self.set_flags = libc.posix_spawnattr_setflags
        self.set_flags.argtypes = [ctypes.c_void_p, ctypes.c_short]
        self.set_sigdefault = libc.posix_spawnattr_setsigdefault
        self.set_sigmask = libc.posix_spawnattr_setsigmask
        # The signal sets never change: built once.
        self.defaults = ctypes.create_string_buffer(self.OPAQUE)
        self.no_signals = ctypes.create_string_buffer(self.OPAQUE)
        libc.sigemptyset(self.defaults)
        libc.sigemptyset(self.no_signals)
        for sig in _DEFAULT_SIGNALS:
            libc.sigaddset(self.defaults, int(sig))

    def __call__(
        self, path: str, argv: Sequence[str], env: Mapping[str, str], terminal: str, cwd: str
    ) -> int:
        """Start ``path`` as a session leader on ``terminal`` in ``cwd``; its pid, or
        OSError with the errno of whatever failed (the open, chdir or exec)."""
        if any("=" in key for key in env):
            raise ValueError("illegal environment variable name")  # as subprocess says
        args = [os.fsencode(a) for a in argv]
        envp = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
        strings = [*args, *envp, os.fsencode(path), os.fsencode(terminal), os.fsencode(cwd)]
        if any(b"\0" in b for b in strings):  # C would cut the string short there
            raise ValueError("embedded null byte")
        c_argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
        c_envp = (ctypes.c_char_p * (len(envp) + 1))(*envp, None)
        actions = ctypes.create_string_buffer(self.OPAQUE)
        attr = ctypes.create_string_buffer(self.OPAQUE)
        self.actions_init(actions)
        self.attr_init(attr)
        try:
            for result in (
                # §8.2: the new session's leader opens the slave without O_NOCTTY and so
                # gets it as controlling terminal; then stdout and stderr; then the cwd.
                self.add_open(actions, 0, os.fsencode(terminal), os.O_RDWR, 0),
                self.add_dup2(actions, 0, 1),
                self.add_dup2(actions, 0, 2),
                self.add_chdir(actions, os.fsencode(cwd)),
                self.set_sigdefault(attr, self.defaults),
                self.set_sigmask(attr, self.no_signals),
                self.set_flags(attr, self.SETSID | self.SETSIGDEF | self.SETSIGMASK),
            ):
                if result != 0:
                    raise OSError(result, os.strerror(result))
            pid = ctypes.c_int()
            err = self.spawn(ctypes.byref(pid), os.fsencode(path), actions, attr, c_argv, c_envp)
            if err != 0:
                raise OSError(err, os.strerror(err))
            return pid.value
        finally:
            self.actions_destroy(actions)
            self.attr_destroy(attr)


_LIBC_SPAWN: _LibcSpawn | None = None


def _libc_spawn() -> _LibcSpawn:
    global _LIBC_SPAWN
    if _LIBC_SPAWN is None:
        try:
            _LIBC_SPAWN = _LibcSpawn()
        except AttributeError as exc:  # a libc without one of the functions
            raise CannotStart(
                f"this C library cannot start commands on a terminal ({exc}): the sandbox "
                "needs posix_spawn with POSIX_SPAWN_SETSID and addchdir_np (glibc 2.29 or "
                "later, musl 1.1.24 or later)"
            ) from exc
    return _LIBC_SPAWN


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

    def __init__(self, pid: int, master_fd: int) -> None:
        self.pid: int = pid
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
        # The exit code once reaped (as subprocess gives it: -N for signal N); the lock
        # keeps the loop's poll and a worker thread's wait from both calling waitpid.
        self._exit_code: int | None = None
        self._wait_lock = threading.Lock()
        self.returncode: int | None = None  # set once the exit waiters have been told
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
        if not _INHERITED_SWEPT:
            _close_inherited_on_exec()  # here: inside a container /proc is not ours
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
        spawn = _libc_spawn()
        master, slave = os.openpty()
        try:
            os.set_blocking(master, False)
            pid = spawn(path, [path, *argv[1:]], env, _slave_path(master), cwd)
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the environment
            os.close(master)
            reason = exc.strerror if isinstance(exc, OSError) else None
            raise CannotStart(f"fork/exec {argv[0]}: {reason or exc}") from exc
        finally:
            os.close(slave)  # only the child holds the slave, so its exit gives EIO
        return cls(pid, master)

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

    def _try_reap(self) -> int | None:
        """The exit code if the child has exited (reaping it), else None. Never blocks."""
        with self._wait_lock:
            if self._exit_code is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    # Reaped by someone else (SIGCHLD ignored?): the status is lost, and
                    # subprocess says 0 here too.
                    self._exit_code = 0
                else:
                    if pid == 0:
                        return None
                    self._exit_code = os.waitstatus_to_exitcode(status)
            return self._exit_code

    def _pidfd_ready(self) -> None:
        if self._try_reap() is None:
            return
        self._reaped()

    def _poll_exit(self) -> None:
        if self._try_reap() is None:
            if self._loop is not None:
                self._loop.call_later(0.05, self._poll_exit)
            return
        self._reaped()

    def _reaped(self) -> None:
        code = self._exit_code
        assert code is not None  # called once _try_reap has given it
        self.returncode = code
        self._release_namespace()
        self._close_pidfd()
        waiters, self._exit_waiters = self._exit_waiters, []
        for waiter in waiters:
            waiter(code)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def wait(self, timeout: float) -> int | None:
        """Block until the process has exited and been reaped (for worker threads)."""
        if self._try_reap() is None:
            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:  # no pidfd support: poll
                deadline = time.monotonic() + timeout
                while self._try_reap() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                try:
                    poller = select.poll()
                    poller.register(pidfd, select.POLLIN)
                    poller.poll(timeout * 1000)  # readable once the process has exited
                finally:
                    os.close(pidfd)
                self._try_reap()
        if self._exit_code is not None:
            self._release_namespace()
        return self._exit_code

    def _release_namespace(self) -> None:
        namespace, self._namespace = self._namespace, None
        if namespace is not None:
            namespace.release()

    def poll(self) -> int | None:
        code = self._try_reap()
        if code is not None and self.returncode is None:
            self._reaped()
        return code

    # --- ending ---------------------------------------------------------------------

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (§8.4); processes detached to other groups survive."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            # The group is gone; still make sure our own child is not left running
            # (only while unreaped: after that its pid may belong to someone else).
            if self._try_reap() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)

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
    try:  # os-level: once per container start, where pathlib's parsing showed
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)
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
